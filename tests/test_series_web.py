"""The web app offers an analysis' DICOM results (SR, relevance map, overlay, encapsulated PDF) as one zip.

Runs the real analysis service (an untrained model) behind the app, so the zip holds real objects.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ComprehensiveSRStorage, EncapsulatedPDFStorage, SecondaryCaptureImageStorage

sys.path.insert(0, str(Path(__file__).parent / "web"))  # the web tests' helpers
from webhelpers import login, running_app

from brainxai.pipeline import get_service
from brainxai.web.db import session_scope
from brainxai.web.models import Study
from brainxai.web.settings import Settings
from brainxai.web.views import DICOM_INPUTS


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


def test_dicom_results_are_built_on_download_and_older_studies_keep_theirs(client, samples_dir: Path) -> None:
    """Only what the DICOM results are built from is stored; every download builds the same files. A study of an
    older version, which stored the files themselves, is served from them."""
    headers = login(client, "alice")
    data = (samples_dir / "meningioma.jpg").read_bytes()
    study = client.post("/api/analyze", headers=headers, files={"file": ("scan.jpg", data)}).json()
    storage = client.app.state.brainxai.storage
    folder = storage.resolve(f"studies/{study['id']}")
    assert not list(folder.rglob("*.dcm")) and len(list(folder.rglob("*-dicom-inputs.npz"))) == 1
    with session_scope(client.app.state.brainxai.session_factory) as db:
        row = db.get(Study, study["id"])
        sidecar = json.loads((folder / row.files["report_json"]).read_text())
        stored = row.result
    paths = ("images", "report_pdf", "report_json", "out_dir")
    assert stored == {k: v for k, v in sidecar.items() if k not in paths}  # what the DICOM results are built from
    first, second = (client.get(study["links"]["dicom_zip"], headers=headers).content for _ in range(2))
    assert first == second  # the same instances, not new versions under the same UIDs
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        built = {name: archive.read(name) for name in archive.namelist()}
    assert len(built) == 5

    # The same study as an older version stored it: the files in dicom/, no inputs.
    for name, content in built.items():
        (folder / "dicom" / name).write_bytes(content)
    next(folder.glob("dicom/*.npz")).unlink()
    with session_scope(client.app.state.brainxai.session_factory) as db:
        row = db.get(Study, study["id"])
        files = {k: v for k, v in row.files.items() if k != DICOM_INPUTS}
        row.files = files | {f"dicom:{name}": f"dicom/{name}" for name in built}
    got = client.get(study["links"]["dicom_zip"], headers=headers)
    with zipfile.ZipFile(io.BytesIO(got.content)) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == built
