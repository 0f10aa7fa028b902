"""Schema migrations, upload sniffing, the user CLI, and one analysis through the real service."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from PIL import Image
from sqlalchemy import inspect, text
from webfiles import dicom_bytes, nifti_bytes, png_with_size
from webhelpers import login, reset_database, running_app

from brainxai.web.db import alembic_config, make_engine, upgrade_database
from brainxai.web.models import Base
from brainxai.web.process import cli_command
from brainxai.web.settings import Settings
from brainxai.web.uploads import UploadError, check_upload, safe_display_name, sniff

LIMITS = {"max_bytes": 5_000_000, "max_volume_bytes": 5_000_000}


def test_migrations_build_exactly_the_models_and_go_down_again(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade_database(engine)
    upgrade_database(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()


@pytest.mark.skipif(not os.environ.get("BRAINXAI_TEST_POSTGRES_URL"), reason="BRAINXAI_TEST_POSTGRES_URL not set")
def test_postgres_end_to_end(tmp_path: Path, sample_jpeg: bytes) -> None:
    url = os.environ["BRAINXAI_TEST_POSTGRES_URL"]
    reset_database(url)
    engine = make_engine(url)
    upgrade_database(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
    engine.dispose()
    with running_app(Settings(data_dir=tmp_path / "d", database_url=url)) as client:
        headers = login(client, "alice")
        r = client.post(
            "/api/analyze", headers=headers, files={"file": ("a.jpg", sample_jpeg)}, data={"patient_code": "PG-1"}
        )
        assert r.status_code == 201, r.text
        patients = client.get("/api/patients", headers=headers).json()
        assert patients[0]["code"] == "PG-1" and patients[0]["study_count"] == 1


def test_sniffing_trusts_content_not_names(sample_jpeg: bytes) -> None:
    assert sniff(sample_jpeg) == "jpeg"
    assert sniff(png_with_size(4, 4)) == "png"
    assert sniff(dicom_bytes()) == "dicom"
    assert sniff(nifti_bytes()) == "nifti-gz"
    assert sniff(nifti_bytes(compressed=False)) == "nifti"
    assert sniff(b"GIF89a" + b"\0" * 100) is None
    assert sniff(b"\x1f\x8b\x08\x00" + b"\0" * 40) is None  # gzip, but not of a NIfTI
    upload = check_upload(sample_jpeg, "scan.png", **LIMITS)  # a JPEG named .png is a JPEG
    assert upload.kind == "jpeg" and upload.service_filename == "scan.jpg"
    assert check_upload(nifti_bytes(), "brain", **LIMITS).service_filename == "brain.nii.gz"


def test_display_names_are_harmless() -> None:
    assert safe_display_name("../../etc/passwd") == "passwd"
    assert safe_display_name("C:\\scans\\a.jpg") == "a.jpg"
    assert safe_display_name("a\x00b\r\nc.jpg") == "abc.jpg"
    assert safe_display_name("...") == "upload"
    assert safe_display_name(None) == "upload"
    long = safe_display_name("x" * 500 + ".nii.gz")
    assert len(long) <= 120 and long.endswith(".gz")


def test_upload_refusals_carry_status_codes(sample_jpeg: bytes) -> None:
    with pytest.raises(UploadError) as exc:
        check_upload(sample_jpeg, "a.jpg", max_bytes=100, max_volume_bytes=10)
    assert exc.value.status_code == 413
    with pytest.raises(UploadError) as exc:
        check_upload(b"%PDF-1.4 not a scan", "a.jpg", **LIMITS)
    assert exc.value.status_code == 415


def test_user_cli_creates_accounts_that_can_log_in(tmp_path: Path) -> None:
    data = tmp_path / "data"

    def brainxai(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(cli_command(*args), input=stdin, text=True, capture_output=True, timeout=120)

    ok = brainxai(
        "user", "add", "dr.who", "--admin", "--password-stdin", "--data-dir", str(data), stdin="tardis-1963\n"
    )
    assert ok.returncode == 0, ok.stderr
    short = brainxai("user", "add", "amy", "--password-stdin", "--data-dir", str(data), stdin="short\n")
    assert short.returncode == 1 and "at least 8" in short.stderr
    dup = brainxai("user", "add", "dr.who", "--password-stdin", "--data-dir", str(data), stdin="another-pass\n")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    listing = brainxai("user", "list", "--data-dir", str(data))
    assert listing.stdout.split("\t")[:2] == ["dr.who", "admin"]
    with running_app(Settings(data_dir=data), users=False) as client:
        r = client.post("/api/auth/token", json={"username": "dr.who", "password": "tardis-1963"})
        assert r.status_code == 200 and r.json()["user"]["is_admin"] is True


def test_real_analysis_service_end_to_end(tmp_path: Path, random_checkpoint: Path, samples_dir: Path) -> None:
    from brainxai.web.app import default_service_factory

    settings = Settings(data_dir=tmp_path / "data", checkpoint=random_checkpoint, device="cpu")
    with running_app(settings, default_service_factory(settings)) as client:
        health = client.get("/api/health").json()
        assert health["model"]["loaded"] and health["model"]["name"] == "efficientnet-lite0"
        assert len(health["model"]["sha256"]) == 64
        headers = login(client, "alice")
        data = (samples_dir / "meningioma.jpg").read_bytes()
        r = client.post(
            "/api/analyze",
            headers=headers,
            files={"file": ("m.jpg", data)},
            data={"method": "gradcam", "patient_code": "REAL-1", "patient_birth_date": "1980-01-01"},
        )
        assert r.status_code == 201, r.text
        s = r.json()
        assert s["model"]["name"] == "efficientnet-lite0"
        assert sum(s["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert {p["name"] for p in s["spatial_parameters"]} and all(p["method"] for p in s["spatial_parameters"])
        assert s["result"]["patient"]["patient_id"] == "REAL-1" and s["result"]["patient"]["age"] >= 40
        for url in s["links"]["images"].values():
            assert client.get(url, headers=headers).content.startswith(b"\x89PNG")
        pdf = client.get(s["links"]["report_pdf"], headers=headers).content
        assert pdf.startswith(b"%PDF") and len(pdf) > 5000
        noise = bytes(range(256)) * 40  # not an image at all
        assert client.post("/api/analyze", headers=headers, files={"file": ("n.jpg", noise)}).status_code == 415
        # A valid image that is not a brain scan is refused by the service's plausibility check.
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128), dtype=np.uint8)).save(buf, "PNG")
        r = client.post("/api/analyze", headers=headers, files={"file": ("noise.png", buf.getvalue())})
        assert r.status_code == 422 and "noise.png" in r.json()["message"], r.text
        assert client.get("/api/health").json()["status"] == "ok"
