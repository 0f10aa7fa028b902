"""HTTP API behaviour with a fast fake analyser: auth, uploads, history, batch, audit, durability."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from webfakes import MINIMAL_PDF, FakeService
from webfiles import dicom_bytes, nifti_bytes, nifti_gzip_bomb, png_with_size
from webhelpers import PASSWORDS, login, running_app

from brainxai.constants import CLASSES
from brainxai.pipeline.steps import EXPLAIN_BATCH
from brainxai.web.analysis import age_on
from brainxai.web.db import session_scope
from brainxai.web.models import AuditEvent, Study
from brainxai.web.settings import Settings

PUBLIC = {("GET", "/api/health"), ("POST", "/api/auth/login"), ("POST", "/api/auth/token")}
PATH_VALUES = {"study_id": "0" * 32, "job_id": "0" * 32, "patient_id": "1", "kind": "heatmap", "study_uid": "1.2.3"}


def analyze(client: TestClient, headers: dict[str, str], data: bytes, name: str = "scan.jpg", **form: str):
    return client.post("/api/analyze", headers=headers, files={"file": (name, data)}, data=form)


def assert_error(response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"} and body["message"], body


def test_health_reports_model_device_and_methods(client: TestClient) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok" and h["database"] == "ok"
    assert h["model"] == {
        "loaded": True,
        "name": "fake-model",
        "version": "2026-01-01",
        "sha256": "0" * 64,
        "classes": list(CLASSES),
        "error": None,
    }
    assert h["device"]["type"] == "cpu" and h["device"]["cuda_available"] in (True, False)
    assert {"lrp", "gradcam", "gradcam++", "hirescam", "guided-gradcam"} <= set(h["methods"])
    assert h["limits"]["max_upload_mb"] == 2.0
    assert "not a diagnosis" in h["disclaimer"].lower() or "research use" in h["disclaimer"].lower()


def test_every_private_endpoint_requires_authentication(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    checked = 0
    for template, operations in paths.items():
        for method in operations:
            if (method.upper(), template) in PUBLIC:
                continue
            url = template.format(**PATH_VALUES)
            for headers in ({}, {"Authorization": "Bearer not-a-real-token"}, {"Cookie": "brainxai_session=forged"}):
                r = client.request(method.upper(), url, headers=headers)
                assert_error(r, 401)
            checked += 1
    # analyze, batch (list, create, get), patients (list, create, get, studies), studies (list, get, image,
    # report), audit, auth me/logout
    assert checked >= 15


def test_cookie_login_is_httponly_samesite_and_logout_ends_it(client: TestClient) -> None:
    r = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORDS["alice"]})
    assert r.status_code == 200 and r.json()["username"] == "alice"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert client.get("/api/auth/me").json()["username"] == "alice"
    # A cookie-authenticated write from another site is refused even if the browser sent the cookie.
    forged = client.post("/api/patients", json={"code": "X1"}, headers={"Origin": "https://evil.example"})
    assert_error(forged, 403)
    assert client.post("/api/patients", json={"code": "X1"}, headers={"Origin": "http://testserver"}).status_code == 201
    assert client.post("/api/auth/logout").status_code == 204
    client.cookies.clear()
    assert_error(client.get("/api/auth/me"), 401)


def test_wrong_password_is_refused_and_throttled(client: TestClient, real_argon2: None) -> None:
    for _ in range(10):
        assert_error(client.post("/api/auth/token", json={"username": "bob", "password": "nope-nope"}), 401)
    # Even the right password is refused while the name is throttled.
    assert_error(client.post("/api/auth/token", json={"username": "bob", "password": PASSWORDS["bob"]}), 429)
    assert_error(client.post("/api/auth/token", json={"username": "nobody", "password": "whatever1"}), 401)


def test_bearer_token_logout_revokes_it(client: TestClient) -> None:
    headers = login(client, "alice")
    assert client.get("/api/auth/me", headers=headers).status_code == 200
    assert client.post("/api/auth/logout", headers=headers).status_code == 204
    assert_error(client.get("/api/auth/me", headers=headers), 401)


def test_analyze_returns_prediction_links_and_stores_study(client, auth, sample_jpeg, web_settings) -> None:
    r = analyze(
        client,
        auth("alice"),
        sample_jpeg,
        "glioma case.jpg",
        method="gradcam",
        patient_code="P-001",
        patient_name="Ada Example",
        patient_birth_date="1970-05-01",
        patient_sex="F",
    )
    assert r.status_code == 201, r.text
    s = r.json()
    assert r.headers["location"] == f"/api/studies/{s['id']}"
    assert s["prediction"] in CLASSES and s["method"] == "gradcam"
    assert sum(s["probabilities"].values()) == pytest.approx(1.0)
    assert s["confidence"] == pytest.approx(max(s["probabilities"].values()))
    assert s["spatial_parameters"][0] == {
        "name": "Highlighted area",
        "value": 12.5,
        "unit": "% of brain",
        "method": "heatmap > 0.5",
        "key": None,
        "status": None,
        "text": None,
    }
    assert s["patient"]["code"] == "P-001" and s["patient"]["birth_date"] == "1970-05-01"
    assert s["source_name"] == "glioma case.jpg" and s["source_kind"] == "jpeg"
    assert set(s["links"]["images"]) == {"original", "heatmap", "overlay", "outline", "mask"}
    assert "images" not in s["result"] and "report_pdf" not in s["result"]  # no server paths leak
    headers = auth("alice")
    for url in s["links"]["images"].values():
        img = client.get(url, headers=headers)
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert img.content.startswith(b"\x89PNG")
    pdf = client.get(s["links"]["report_pdf"], headers=headers)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf" and "attachment" in pdf.headers["content-disposition"]
    # The service got the sniffed type's suffix and the patient fields for the report.
    service = client.app.state.brainxai.service
    assert service.calls[-1]["filename"] == "glioma case.jpg"
    age = age_on("1970-05-01")
    assert service.calls[-1]["patient"] == {"patient_id": "P-001", "name": "Ada Example", "age": age, "sex": "F"}
    assert 55 <= age <= 120
    folder = web_settings.data_dir / "studies" / s["id"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["original.png", "heatmap.png", "overlay.png", "outline.png", "mask.png", "report.pdf", "report.json"]
    )
    assert list((web_settings.data_dir / "tmp").iterdir()) == []


def test_dicom_and_nifti_uploads_are_accepted(client, auth) -> None:
    for name, data, kind in (
        ("a.dcm", dicom_bytes(), "dicom"),
        ("b.nii.gz", nifti_bytes(), "nifti-gz"),
        ("c.nii", nifti_bytes(compressed=False), "nifti"),
    ):
        r = analyze(client, auth("alice"), data, name, method="lrp")
        assert r.status_code == 201, r.text
        assert r.json()["source_kind"] == kind


def test_malformed_uploads_get_4xx_and_server_keeps_serving(client, auth, sample_jpeg) -> None:
    cases = [
        ("empty.jpg", b"", 422, "empty"),
        ("truncated.jpg", sample_jpeg[: len(sample_jpeg) // 2], 422, "truncated or corrupt"),
        ("notes.jpg", b"patient notes, not an image\n" * 20, 415, "unrecognised content"),
        ("huge.png", png_with_size(100_000, 100_000), 413, "decompression bomb"),
        ("huge2.png", png_with_size(9_000, 9_000), 413, "exceeds the limit"),
        ("nopixels.dcm", dicom_bytes(with_pixels=False), 422, "no pixel data"),
        ("bomb.nii.gz", nifti_gzip_bomb(10_000_000), 413, "expands beyond"),
        ("big.jpg", b"\xff\xd8\xff" + b"\0" * 2_100_000, 413, "exceeds"),
        ("cut.nii", nifti_bytes(compressed=False)[:2000], 422, "truncated"),
        ("junk.nii.gz", b"\x1f\x8b" + b"\x00" * 50, 415, "unrecognised"),
    ]
    headers = auth("alice")
    for name, data, status, phrase in cases:
        r = analyze(client, headers, data, name)
        assert_error(r, status)
        assert phrase in r.json()["message"] and name in r.json()["message"], r.json()
        assert client.get("/api/health").json()["status"] == "ok"
    assert analyze(client, headers, sample_jpeg).status_code == 201
    with session_scope(client.app.state.brainxai.session_factory) as db:
        assert len(db.scalars(select(Study)).all()) == 1  # only the good one
    assert list(client.app.state.brainxai.storage.staging_root.iterdir()) == []


def test_bad_form_fields_get_422_messages(client, auth, sample_jpeg) -> None:
    assert "method" in analyze(client, auth("alice"), sample_jpeg, method="magic").json()["message"]
    r = analyze(client, auth("alice"), sample_jpeg, patient_code="P1", patient_birth_date="2999-01-01")
    assert_error(r, 422)
    assert "birth" in r.json()["message"]
    assert_error(analyze(client, auth("alice"), sample_jpeg, patient_name="No Code"), 422)
    assert_error(client.post("/api/analyze", headers=auth("alice"), data={"method": "lrp"}), 422)
    assert_error(
        client.post("/api/auth/token", content=b"{not json", headers={"content-type": "application/json"}), 422
    )
    assert_error(client.get("/api/nowhere"), 404)


def test_client_file_names_never_become_paths(client, auth, sample_jpeg, web_settings, tmp_path) -> None:
    for evil in ("../../../evil.jpg", "..\\..\\evil.jpg", "/etc/passwd", "a\x00b\nc.jpg", ".hidden"):
        r = analyze(client, auth("alice"), sample_jpeg, evil)
        assert r.status_code == 201, r.text
        name = r.json()["source_name"]
        assert "/" not in name and "\\" not in name and "\x00" not in name and not name.startswith(".")
    assert not any(p.name.startswith("evil") for p in tmp_path.rglob("*"))
    stored = {p.name for p in (web_settings.data_dir / "studies").glob("*/*")}
    assert stored == {
        "original.png",
        "heatmap.png",
        "overlay.png",
        "outline.png",
        "mask.png",
        "report.pdf",
        "report.json",
    }


def test_users_see_only_their_patients_admin_sees_all(client, auth, sample_jpeg) -> None:
    s = analyze(client, auth("alice"), sample_jpeg, patient_code="SHARED-ID").json()
    analyze(client, auth("bob"), sample_jpeg, patient_code="SHARED-ID")  # same code, different patient
    alice_patients = client.get("/api/patients", headers=auth("alice")).json()
    bob_patients = client.get("/api/patients", headers=auth("bob")).json()
    assert [p["owner"] for p in alice_patients] == ["alice"] and [p["owner"] for p in bob_patients] == ["bob"]
    assert alice_patients[0]["id"] != bob_patients[0]["id"]
    pid = s["patient"]["id"]
    for url in (
        f"/api/studies/{s['id']}",
        s["links"]["images"]["heatmap"],
        s["links"]["report_pdf"],
        f"/api/patients/{pid}",
        f"/api/patients/{pid}/studies",
    ):
        assert_error(client.get(url, headers=auth("bob")), 404)  # not 403: existence is not revealed
        assert client.get(url, headers=auth("root")).status_code == 200
    assert len(client.get("/api/patients", headers=auth("root")).json()) == 2
    assert [x["id"] for x in client.get("/api/studies", headers=auth("bob")).json()] != [s["id"]]


def test_history_lists_patient_studies_newest_first(client, auth, sample_jpeg, samples_dir) -> None:
    ids = []
    for cls in ("glioma", "pituitary", "notumor"):
        data = (samples_dir / f"{cls}.jpg").read_bytes()
        ids.append(
            analyze(client, auth("alice"), data, f"{cls}.jpg", patient_code="H-7", patient_name="Hist").json()["id"]
        )
    patients = client.get("/api/patients", headers=auth("alice")).json()
    assert len(patients) == 1 and patients[0]["study_count"] == 3 and patients[0]["name"] == "Hist"
    studies = client.get(f"/api/patients/{patients[0]['id']}/studies", headers=auth("alice")).json()
    assert [s["id"] for s in studies] == ids[::-1]
    assert [s["source_name"] for s in studies] == ["notumor.jpg", "pituitary.jpg", "glioma.jpg"]
    assert client.get(f"/api/patients/{patients[0]['id']}", headers=auth("alice")).json()["study_count"] == 3


def wait_for_job(client: TestClient, headers, job_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/batch/{job_id}", headers=headers).json()
        if job["status"] == "done":
            return job
        time.sleep(0.05)
    raise AssertionError(f"batch job not done: {job}")


def test_batch_reports_progress_and_per_file_results(client, auth, samples_dir) -> None:
    files = [("files", (f"{c}.jpg", (samples_dir / f"{c}.jpg").read_bytes())) for c in ("glioma", "meningioma")]
    files.insert(1, ("files", ("broken.jpg", b"not an image at all")))
    files.append(("files", ("scan.nii.gz", nifti_bytes())))
    r = client.post(
        "/api/batch", headers=auth("alice"), files=files, data={"method": "hirescam", "patient_code": "B-1"}
    )
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["total"] == 4 and created["failed"] == 1 and r.headers["location"] == f"/api/batch/{created['id']}"
    job = wait_for_job(client, auth("alice"), created["id"])
    assert (job["done"], job["failed"], job["pending"], job["progress"]) == (3, 1, 0, 1.0)
    assert [i["status"] for i in job["items"]] == ["done", "error", "done", "done"]
    assert "unrecognised content" in job["items"][1]["error"]
    assert [i["filename"] for i in job["items"]] == ["glioma.jpg", "broken.jpg", "meningioma.jpg", "scan.nii.gz"]
    assert all(
        i["study"]["method"] == "hirescam" and i["study"]["patient_code"] == "B-1"
        for i in job["items"]
        if i["status"] == "done"
    )
    assert_error(client.get(f"/api/batch/{created['id']}", headers=auth("bob")), 404)
    assert [j["id"] for j in client.get("/api/batch", headers=auth("alice")).json()] == [created["id"]]
    assert list((client.app.state.brainxai.storage.uploads).iterdir()) == []  # uploads consumed


def test_batch_analyses_items_in_batches_and_keeps_each_failure_its_own(
    client, auth, samples_dir, fake_service
) -> None:
    names = ["glioma", "meningioma", "notumor", "pituitary", "glioma"]
    files = [("files", (f"{i}-{c}.jpg", (samples_dir / f"{c}.jpg").read_bytes())) for i, c in enumerate(names)]
    files.insert(2, ("files", ("bad.jpg", (samples_dir / "glioma.jpg").read_bytes())))
    fake_service.unreadable.add("bad.jpg")  # accepted at upload, fails when analysed
    created = client.post("/api/batch", headers=auth("alice"), files=files).json()
    assert created["failed"] == 0
    job = wait_for_job(client, auth("alice"), created["id"])
    assert fake_service.batches == [EXPLAIN_BATCH, 6 - EXPLAIN_BATCH]  # 6 items, analysed a batch at a time
    assert [i["status"] for i in job["items"]] == ["done", "done", "error", "done", "done", "done"]
    assert job["items"][2]["error"] == "bad.jpg: cannot decode the image (simulated)"
    studies = [i["study"]["id"] for i in job["items"] if i["status"] == "done"]
    assert len(set(studies)) == 5
    for study_id in studies:
        study = client.get(f"/api/studies/{study_id}", headers=auth("alice")).json()
        assert client.get(study["links"]["report_pdf"], headers=auth("alice")).content == MINIMAL_PDF
    assert list((client.app.state.brainxai.storage.uploads).iterdir()) == []
    assert list(client.app.state.brainxai.storage.staging_root.iterdir()) == []  # no staging folder left


def test_batch_shared_pass_failure_fails_its_items_and_logs_once(
    client, auth, samples_dir, fake_service, caplog
) -> None:
    names = ["glioma", "meningioma", "notumor", "pituitary", "glioma"]
    files = [("files", (f"{i}-{c}.jpg", (samples_dir / f"{c}.jpg").read_bytes())) for i, c in enumerate(names)]
    fake_service.failing_batches = 1  # the first batch's shared pass fails; the second batch is analysed
    with caplog.at_level(logging.ERROR, logger="brainxai.web.batch"):
        created = client.post("/api/batch", headers=auth("alice"), files=files).json()
        job = wait_for_job(client, auth("alice"), created["id"])
    assert fake_service.batches == [EXPLAIN_BATCH, len(names) - EXPLAIN_BATCH]
    statuses = [i["status"] for i in job["items"]]
    assert statuses == ["error"] * EXPLAIN_BATCH + ["done"] * (len(names) - EXPLAIN_BATCH)
    assert {i["error"] for i in job["items"][:EXPLAIN_BATCH]} == {
        "internal error while analysing this file (RuntimeError)"
    }
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "shared analysis failed" in tracebacks[0].getMessage()
    assert list((client.app.state.brainxai.storage.uploads).iterdir()) == []
    assert list(client.app.state.brainxai.storage.staging_root.iterdir()) == []


def test_batch_limits(client, auth, sample_jpeg) -> None:
    many = [("files", (f"{i}.jpg", sample_jpeg)) for i in range(11)]
    assert_error(client.post("/api/batch", headers=auth("alice"), files=many), 413)
    assert_error(client.post("/api/batch", headers=auth("alice"), data={"method": "lrp"}), 422)


def test_audit_log_records_who_created_and_viewed_what(client, auth, sample_jpeg) -> None:
    s = analyze(client, auth("alice"), sample_jpeg, patient_code="A-1").json()
    client.get(f"/api/studies/{s['id']}", headers=auth("bob"))  # refused: not logged as a view
    client.get(f"/api/studies/{s['id']}", headers=auth("alice"))
    client.get(s["links"]["report_pdf"], headers=auth("alice"))
    assert_error(client.get("/api/audit", headers=auth("alice")), 403)
    events = client.get("/api/audit", headers=auth("root")).json()
    trail = [(e["username"], e["action"], e["object_id"]) for e in events if e["object_id"] == s["id"]]
    assert trail == [
        ("alice", "report.download", s["id"]),
        ("alice", "study.view", s["id"]),
        ("alice", "study.create", s["id"]),
    ]
    actions = {e["action"] for e in events}
    assert {"login", "patient.create", "user.create"} <= actions


def test_failed_analysis_leaves_no_half_written_study(web_settings, sample_jpeg) -> None:
    with running_app(web_settings, FakeService(fail_after_files=True)) as client:
        r = analyze(client, login(client, "alice"), sample_jpeg, patient_code="NEW")
        assert_error(r, 500)
        assert "reference" in r.json()["message"]
        with session_scope(client.app.state.brainxai.session_factory) as db:
            assert db.scalars(select(Study)).all() == []
        # The patient is created with the study, in one transaction: nothing stray either.
        assert client.get("/api/patients", headers=login(client, "alice")).json() == []
        assert client.get("/api/health").status_code == 200
    assert list((web_settings.data_dir / "studies").iterdir()) == []
    assert list((web_settings.data_dir / "tmp").iterdir()) == []


def test_restart_keeps_everything_and_removes_crash_leftovers(web_settings, sample_jpeg) -> None:
    with running_app(web_settings) as client:
        headers = login(client, "alice")
        s = analyze(client, headers, sample_jpeg, patient_code="R-1").json()
    # What a kill -9 can leave: a staging folder, a published folder whose row never committed.
    (web_settings.data_dir / "tmp" / "deadbeef").mkdir()
    orphan = web_settings.data_dir / "studies" / ("f" * 32)
    orphan.mkdir()
    (orphan / "heatmap.png").write_bytes(b"partial")
    with running_app(web_settings, users=False) as client:
        assert client.get(f"/api/studies/{s['id']}", headers=headers).json()["id"] == s["id"]  # session survived
        assert client.get(s["links"]["report_pdf"], headers=headers).content.startswith(b"%PDF")
    assert not orphan.exists() and list((web_settings.data_dir / "tmp").iterdir()) == []


def test_event_loop_stays_responsive_during_inference(web_settings, sample_jpeg) -> None:
    service = FakeService(delay_s=1.5)
    with running_app(web_settings, service) as client:
        headers = login(client, "alice")
        results = []
        workers = [
            threading.Thread(target=lambda: results.append(analyze(client, headers, sample_jpeg).status_code))
            for _ in range(2)
        ]
        for t in workers:
            t.start()
        time.sleep(0.3)
        latencies = []
        for _ in range(5):
            t0 = time.perf_counter()
            assert client.get("/api/health").status_code == 200
            assert client.get("/api/patients", headers=headers).status_code == 200
            latencies.append(time.perf_counter() - t0)
        for t in workers:
            t.join()
        assert results == [201, 201]
        assert max(latencies) < 0.5, latencies
        assert service.max_active == 1  # one model, analyses serialised


def test_security_headers_and_offline_page(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    static = Path(__file__).resolve().parents[2] / "src" / "brainxai" / "web" / "static"
    external = re.compile(
        r"""(src|href)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?(https?:)?//|fetch\(\s*["'`]https?:|@import"""
    )
    for path in static.iterdir():
        text = path.read_text()
        assert not external.search(text), (path.name, external.search(text))
        assert client.get(f"/static/{path.name}").status_code == 200
    api = client.get("/api/health")
    assert api.headers["cache-control"] == "no-store"


def test_upload_limit_is_configurable(tmp_path, sample_jpeg) -> None:
    settings = Settings(data_dir=tmp_path / "d", max_upload_mb=0.005)
    with running_app(settings) as client:
        r = analyze(client, login(client, "alice"), sample_jpeg)
        assert_error(r, 413)
        assert "limit" in r.json()["message"]


def test_model_load_failure_degrades_gracefully(web_settings, sample_jpeg) -> None:
    from brainxai.web.app import create_app

    def broken(_settings):
        raise FileNotFoundError("no such checkpoint")

    with TestClient(create_app(web_settings, service_factory=broken)) as client:
        health = client.get("/api/health").json()
        assert health["status"] == "degraded" and health["model"]["loaded"] is False
        assert "no such checkpoint" in health["model"]["error"]
        from webhelpers import add_users

        add_users(client.app)
        assert_error(analyze(client, login(client, "alice"), sample_jpeg), 503)
        assert client.get("/api/patients", headers=login(client, "alice")).status_code == 200


def test_audit_events_are_committed_with_the_study(client, auth, sample_jpeg) -> None:
    s = analyze(client, auth("alice"), sample_jpeg).json()
    with session_scope(client.app.state.brainxai.session_factory) as db:
        event = db.scalars(select(AuditEvent).where(AuditEvent.action == "study.create")).one()
        assert event.object_id == s["id"] and event.username == "alice"


def test_fuzzed_uploads_never_cause_server_errors(client, auth, sample_jpeg) -> None:
    """Random bodies behind every accepted signature: always a 4xx with a message, never a 5xx."""
    import gzip

    import numpy as np

    rng = np.random.default_rng(7)
    header = nifti_bytes(compressed=False)[:352]
    prefixes = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\0" * 128 + b"DICM", header, b"BM", b"II*\x00", b""]
    headers = auth("alice")
    statuses = set()
    for i in range(28):
        prefix = prefixes[i % len(prefixes)]
        body = prefix + rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes()
        if i % 4 == 3:
            body = gzip.compress(body)
        if i % 5 == 4:  # a real file, damaged in the middle
            cut = bytearray(sample_jpeg)
            cut[200:260] = rng.integers(0, 256, 60, dtype=np.uint8).tobytes()
            body = bytes(cut)
        r = analyze(client, headers, body, f"fuzz{i}.jpg")
        statuses.add(r.status_code)
        assert r.status_code in (201, 413, 415, 422), (i, r.status_code, r.text)
        assert r.status_code == 201 or r.json()["message"]
    assert statuses & {415, 422}
    assert client.get("/api/health").json()["status"] == "ok"


def test_saturated_inference_queue_answers_503_with_retry_after(tmp_path, sample_jpeg) -> None:
    settings = Settings(data_dir=tmp_path / "d", max_pending=1)
    with running_app(settings, FakeService(delay_s=1.0)) as client:
        headers = login(client, "alice")
        first: list[int] = []
        worker = threading.Thread(target=lambda: first.append(analyze(client, headers, sample_jpeg).status_code))
        worker.start()
        deadline = time.monotonic() + 10
        while client.app.state.brainxai.runner.pending == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = analyze(client, headers, sample_jpeg)
        worker.join()
        assert first == [201]
        assert_error(r, 503)
        assert r.headers["retry-after"] == "5" and "queued" in r.json()["message"]
