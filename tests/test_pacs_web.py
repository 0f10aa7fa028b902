"""The web app's PACS endpoints against the test Orthanc (a fake model: this is about the plumbing)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from orthanc import Orthanc, fake_analyze_study, free_port, make_series, orthanc_server  # noqa: F401  (a fixture)

from brainxai.web.settings import Settings

sys.path.insert(0, str(Path(__file__).parent / "web"))  # the web tests' helpers
from webhelpers import login, running_app


@pytest.fixture()
def web(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orthanc_server: Orthanc) -> Iterator[TestClient]:  # noqa: F811
    monkeypatch.setenv("BRAINXAI_PACS_URL", orthanc_server.dicomweb_url)
    monkeypatch.setenv("BRAINXAI_PACS_USER", orthanc_server.user)
    monkeypatch.setenv("BRAINXAI_PACS_PASSWORD", orthanc_server.password)
    monkeypatch.setattr("brainxai.pacs.service._default_analyzer", lambda: fake_analyze_study)
    from argon2 import PasswordHasher

    # argon2 at its production cost takes a second or more on a busy machine; these tests are not about it.
    monkeypatch.setattr("brainxai.web.security._hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    with running_app(Settings(data_dir=tmp_path / "data")) as client:
        yield client


def test_list_and_analyse_a_pacs_study(web: TestClient, orthanc_server: Orthanc) -> None:  # noqa: F811
    series = make_series("pituitary", slices=2, patient_id="BXA-WEB")
    orthanc_server.upload(list(series.files))
    assert web.get("/api/pacs/studies").status_code == 401
    auth = login(web, "alice")
    r = web.get("/api/pacs/studies", headers=auth, params={"since": "2026-03-14"})
    assert r.status_code == 200, r.text
    mine = [s for s in r.json()["studies"] if s["study_uid"] == series.study_uid]
    assert mine == [
        {
            "study_uid": series.study_uid,
            "date": "20260314",
            "description": "",
            "patient_id": "BXA-WEB",
            "modalities": ["MR"],
        }
    ]
    r = web.post(f"/api/pacs/studies/{series.study_uid}/analyze", headers=auth, params={"method": "gradcam"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verification"] == "UNVERIFIED" and len(body["stored"]) == 1
    assert body["series"] == [
        {"series_uid": series.series_uid, "status": "analysed", "reason": "", "prediction": "glioma", "objects": 1}
    ]
    assert len(orthanc_server.instances_of(series.study_uid)) == 3
    missing = web.post("/api/pacs/studies/1.2.3.999/analyze", headers=auth)
    assert missing.status_code == 404 and "was not found" in missing.json()["message"]
    assert web.get("/static/pacs.html").status_code == 200


def test_unconfigured_or_down_pacs(web: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = login(web, "alice")
    monkeypatch.setenv("BRAINXAI_PACS_URL", f"http://127.0.0.1:{free_port()}/dicom-web")
    r = web.get("/api/pacs/studies", headers=auth)
    assert r.status_code == 502 and "no connection" in r.json()["message"]
    monkeypatch.delenv("BRAINXAI_PACS_URL")
    r = web.get("/api/pacs/studies", headers=auth)
    assert r.status_code == 503 and "BRAINXAI_PACS_URL" in r.json()["message"]
