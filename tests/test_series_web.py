"""The web app offers an analysis' DICOM results (SR, relevance map, overlay, encapsulated PDF) as one zip.

Runs the real analysis service (an untrained model) behind the app, so the zip holds real objects.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ComprehensiveSRStorage, EncapsulatedPDFStorage, SecondaryCaptureImageStorage

sys.path.insert(0, str(Path(__file__).parent / "web"))  # the web tests' helpers
from webhelpers import login, running_app

from brainxai.pipeline import get_service
from brainxai.web.settings import Settings


@pytest.fixture()
def client(tmp_path: Path, random_checkpoint: Path):
    settings = Settings(data_dir=tmp_path / "data", max_upload_mb=2.0)
    with running_app(settings, get_service(random_checkpoint)) as c:
        yield c


def test_result_offers_the_dicom_results_as_a_zip(client, samples_dir: Path) -> None:
    headers = login(client, "alice")
    data = (samples_dir / "glioma.jpg").read_bytes()
    r = client.post("/api/analyze", headers=headers, files={"file": ("scan.jpg", data)}, data={"method": "gradcam"})
    assert r.status_code == 201, r.text
    study = r.json()
    url = study["links"]["dicom_zip"]
    assert url == f"/api/studies/{study['id']}/dicom.zip"
    assert client.get(url).status_code == 401  # not without logging in
    got = client.get(url, headers=headers)
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
    assert "attachment" in got.headers["content-disposition"]
    kinds = ("source-sc", "overlay-sc", "sr", "seg", "pdf")  # a JPEG: new study, region as a Segmentation
    with zipfile.ZipFile(io.BytesIO(got.content)) as archive:
        names = archive.namelist()
        objects = {
            k: pydicom.dcmread(io.BytesIO(archive.read(n))) for n in names for k in kinds if n.endswith(f"-{k}.dcm")
        }
    assert len(names) == len(objects) == 5, names
    classes = {o.SOPClassUID for o in objects.values()}
    assert {ComprehensiveSRStorage, EncapsulatedPDFStorage, SecondaryCaptureImageStorage} <= classes
    assert len({o.StudyInstanceUID for o in objects.values()}) == 1
    assert bytes(objects["pdf"].EncapsulatedDocument).startswith(b"%PDF-")
