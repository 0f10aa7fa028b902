"""``brainxai analyze`` and ``brainxai demo`` through the real command line parser."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brainxai.cli import app


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize("command", ["analyze", "demo", "explain"])
def test_unknown_method_stops_before_loading_a_model(
    runner: CliRunner, samples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    from brainxai.inference import Classifier

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded for an unknown method")

    monkeypatch.setattr(Classifier, "load", no_load)
    out = tmp_path / "out"
    scan = [] if command == "demo" else [str(samples_dir / "glioma.jpg")]
    result = runner.invoke(app, [command, *scan, "--method", "nonsense", "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "error: unknown method 'nonsense'; available: lrp, gradcam" in result.output
    assert "internal error" not in result.output and not out.exists()


def test_missing_inputs_stop_before_loading_a_model(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brainxai.inference import Classifier

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded with nothing to analyse")

    monkeypatch.setattr(Classifier, "load", no_load)
    out = tmp_path / "out"
    absent = [str(tmp_path / "nothere.png"), str(tmp_path / "gone")]
    result = runner.invoke(app, ["analyze", *absent, "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert f"error: file not found: {absent[0]}, {absent[1]}" in " ".join(result.output.split())
    assert not out.exists()


def test_batch_with_a_corrupt_file(
    runner: CliRunner, samples_dir: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(samples_dir / "glioma.jpg", scans / "a.jpg")
    shutil.copy(samples_dir / "pituitary.jpg", scans / "b.jpg")
    (scans / "broken.jpg").write_bytes((samples_dir / "glioma.jpg").read_bytes()[:400])
    (scans / "readme.md").write_text("not a scan, and not picked up from a folder")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "analyze",
            str(scans),
            "--out",
            str(out),
            "--checkpoint",
            str(random_checkpoint),
            "--method",
            "gradcam",
            "--no-agreement",
            "--patient-name",
            "Jane Roe",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "1 of 3 file(s) failed" in result.output
    listing = result.output.split("file(s) failed:", 1)[1]
    (listed,) = [line for line in listing.splitlines() if "broken.jpg" in line]
    assert listed.count("broken.jpg") == 1, listed  # the reason does not repeat the file's name
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["file"].rsplit("/", 1)[-1] for r in rows] == ["a.jpg", "b.jpg", "broken.jpg"]
    assert list(rows[0]) == ["file", "status", "prediction", "confidence", "report", "error"]
    by_name = {Path(r["file"]).name: r for r in rows}
    assert by_name["broken.jpg"]["status"] == "failed" and by_name["broken.jpg"]["error"]
    for good in ("a.jpg", "b.jpg"):
        row = by_name[good]
        assert row["status"] == "ok" and row["prediction"] and 0 < float(row["confidence"]) <= 1
        assert Path(row["report"]).is_file() and Path(row["report"]).suffix == ".pdf"
    assert (out / "a.pdf").is_file() and (out / "b.json").is_file()


def test_single_file_report_path_and_errors(
    runner: CliRunner, samples_dir: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    pdf = tmp_path / "reports" / "mine.pdf"
    ok = runner.invoke(
        app,
        [
            "analyze",
            str(samples_dir / "meningioma.jpg"),
            "--report",
            str(pdf),
            "--checkpoint",
            str(random_checkpoint),
            "--method",
            "gradcam",
            "--no-agreement",
            "--assume-spacing",
            "0.5",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF")
    assert not (tmp_path / "reports" / "summary.csv").exists()  # one file is not a batch
    two = runner.invoke(
        app, ["analyze", str(samples_dir), "--report", str(pdf), "--checkpoint", str(random_checkpoint)]
    )
    assert two.exit_code == 1 and "--report takes a single input file" in two.output
    missing = runner.invoke(
        app, ["analyze", str(tmp_path / "nope.png"), "--checkpoint", str(random_checkpoint), "--out", str(tmp_path)]
    )
    assert missing.exit_code == 1 and "file not found" in missing.output


def test_demo_writes_one_report_per_sample(
    runner: CliRunner, samples_dir: Path, random_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brainxai.pipeline import demo

    # Two of the four samples keep this test quick; the command and the naming are the same.
    monkeypatch.setattr(demo, "sample_scans", lambda: {c: samples_dir / f"{c}.jpg" for c in ("meningioma", "notumor")})
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo", "--checkpoint", str(random_checkpoint), "--method", "gradcam"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "brainxai-demo"
    assert (out / "meningioma.pdf").is_file() and (out / "notumor.pdf").is_file()
    assert (out / "summary.csv").is_file()
    assert "not a diagnosis" in result.output


def test_demo_samples_cover_every_class() -> None:
    from brainxai.constants import CLASSES
    from brainxai.pipeline.demo import sample_scans

    assert set(sample_scans()) == set(CLASSES)


def test_demo_without_default_model_fails_cleanly(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from brainxai import inference
    from brainxai.pipeline import service

    monkeypatch.setattr(inference, "default_checkpoint_path", lambda: tmp_path / "absent")
    monkeypatch.setattr(service, "_SERVICES", {})  # a default model cached by another test must not answer
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 1
    assert "checkpoint" in result.output


def test_segment_flag_turns_the_tumour_segmentation_off_and_on(runner: CliRunner, samples_dir: Path, tmp_path: Path):
    """``--no-segment`` measures on the relevance region; the default uses the shipped segmenter."""
    import json

    sidecars = {}
    for flag in ("--no-segment", "--segment"):
        out = tmp_path / flag.strip("-")
        result = runner.invoke(
            app,
            ["analyze", str(samples_dir / "glioma.jpg"), "--out", str(out), "-m", "gradcam", "--no-report", flag],
        )
        assert result.exit_code == 0, result.output
        (sidecar,) = out.glob("*.json")
        sidecars[flag] = json.loads(sidecar.read_text())
    off, on = sidecars["--no-segment"], sidecars["--segment"]
    assert off.get("segmentation") is None
    assert not any(p.get("source") == "segmentation" for p in off["spatial_parameters"])
    assert on["segmentation"]["model"]["name"] == "unet-lite0"
