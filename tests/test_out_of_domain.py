"""The out-of-domain verdict through every surface: library, sidecar JSON, PDF and the analyze command.

Plumbing tests use a copy of the untrained checkpoint with hand-made domain statistics (a threshold
that flags everything or nothing); the last tests use the shipped model and its shipped statistics.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from brainxai.inference import Classifier, default_checkpoint_path
from brainxai.io.raster import read_raster
from brainxai.models.checkpoint import checkpoint_paths, file_sha256
from brainxai.models.domain import NOT_ASSESSABLE, DomainModel, domain_path
from brainxai.pipeline.measure import OUT_OF_DOMAIN_TEXT


def _copy_checkpoint(src: Path, dst_dir: Path) -> Path:
    for p in checkpoint_paths(src):
        shutil.copy(p, dst_dir / p.name)
    return dst_dir / src.name


def _stats(stem: Path, threshold: float, sha256: str | None = None) -> DomainModel:
    """Domain statistics for ``stem``'s weights: a random projection, one threshold for everything."""
    proj = np.random.default_rng(0).normal(0, 1, (1280, 8)).astype(np.float32)
    model = DomainModel(np.zeros(1280, np.float32), proj, np.zeros((4, 8), np.float32), threshold=threshold)
    model.info["weights_sha256"] = sha256 or file_sha256(checkpoint_paths(stem)[0])
    model.save(domain_path(stem))
    return model


@pytest.fixture()
def ckpt(random_checkpoint: Path, tmp_path: Path) -> Path:
    return _copy_checkpoint(random_checkpoint, tmp_path)


def test_checkpoint_without_domain_statistics_gives_none(ckpt: Path, samples_dir: Path) -> None:
    clf = Classifier.load(ckpt, device="cpu")
    assert clf.checkpoint.domain is None and clf.domain_threshold is None
    (pred,) = clf.predict(read_raster(samples_dir / "glioma.jpg"))
    assert pred.in_domain is None and pred.domain_score is None


def test_statistics_of_other_weights_are_ignored(ckpt: Path, samples_dir: Path) -> None:
    _stats(ckpt, threshold=1e9, sha256="0" * 64)
    clf = Classifier.load(ckpt, device="cpu")
    assert clf.checkpoint.domain is None
    (pred,) = clf.predict(read_raster(samples_dir / "glioma.jpg"))
    assert pred.in_domain is None


def test_prediction_carries_score_and_verdict_with_unchanged_probabilities(ckpt: Path, samples_dir: Path) -> None:
    image = read_raster(samples_dir / "glioma.jpg")
    without = Classifier.load(ckpt, device="cpu").predict(image)[0]
    stats = _stats(ckpt, threshold=1e9)
    clf = Classifier.load(ckpt, device="cpu")
    (pred,) = clf.predict(image)
    _, feats = clf.logits_and_features_prepared(clf.prepare(image))
    assert pred.in_domain is True and pred.domain_score == pytest.approx(float(stats.score(feats)[0]), rel=1e-6)
    assert pred.label == without.label
    for c, p in without.probabilities.items():
        assert pred.probabilities[c] == pytest.approx(p, abs=1e-6)
    assert clf.checkpoint.domain is not None and pred.domain_score is not None
    clf.checkpoint.domain.threshold = pred.domain_score - 1e-3
    assert clf.predict(image)[0].in_domain is False


def _pdf_text(path: Path) -> str:
    if shutil.which("pdftotext"):
        return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(str(path)).pages)


def test_out_of_domain_scan_is_marked_not_assessable_everywhere(ckpt: Path, samples_dir: Path, tmp_path: Path) -> None:
    from brainxai.cli import app

    _stats(ckpt, threshold=-1.0)  # every image is out of domain
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["analyze", str(samples_dir / "meningioma.jpg"), "--out", str(out), "--checkpoint", str(ckpt)]
        + ["--method", "gradcam", "--no-agreement"],
    )
    assert result.exit_code == 0, result.output
    assert NOT_ASSESSABLE in result.output and "for reference only" in result.output
    sidecar = json.loads(next(out.glob("*.json")).read_text())
    assert sidecar["in_domain"] is False and sidecar["assessable"] is False
    assert sidecar["domain_score"] > sidecar["domain_threshold"] == -1.0
    assert sidecar["warnings"][0].startswith(NOT_ASSESSABLE)
    assert sidecar["prediction"] in sidecar["probabilities"]  # the model output is kept
    # nothing is measured on a region explaining a prediction that is not assessable
    assert sidecar["spatial_parameters"] and all(
        p["status"] == "not_assessable" and p["value"] == OUT_OF_DOMAIN_TEXT for p in sidecar["spatial_parameters"]
    )
    text = " ".join(_pdf_text(next(out.glob("*.pdf"))).split())
    assert "Not assessable: outside what this model was trained on" in text
    assert "Outside what this model was trained on: not assessable" in text
    assert "Model output, not assessable" in text


def test_in_domain_scan_has_no_warning(ckpt: Path, samples_dir: Path, tmp_path: Path) -> None:
    from brainxai.pipeline.options import AnalysisOptions
    from brainxai.pipeline.service import AnalysisService

    _stats(ckpt, threshold=1e9)
    service = AnalysisService(ckpt, device="cpu")
    res = service.analyze(
        samples_dir / "glioma.jpg", AnalysisOptions(method="gradcam", agreement=False, report=False), out_dir=tmp_path
    )
    sidecar = json.loads(res.report_json.read_text())
    assert sidecar["in_domain"] is True and sidecar["assessable"] is True
    assert isinstance(sidecar["domain_score"], float)
    assert not any(w.startswith(NOT_ASSESSABLE) for w in sidecar["warnings"])


@pytest.mark.parametrize(("sequence", "assessable"), [("DWI", False), ("T2", True), ("T1", True)])
def test_a_sequence_the_model_never_saw_is_not_assessable_whatever_its_score(
    ckpt: Path, samples_dir: Path, tmp_path: Path, sequence: str, assessable: bool
) -> None:
    from brainxai.pipeline.options import AnalysisOptions
    from brainxai.pipeline.service import AnalysisService

    _stats(ckpt, threshold=1e9)  # the score alone says "in domain"
    service = AnalysisService(ckpt, device="cpu")
    options = AnalysisOptions(method="gradcam", agreement=False, report=False, sequence=sequence, segment=False)
    sidecar = json.loads(service.analyze(samples_dir / "glioma.jpg", options, out_dir=tmp_path).report_json.read_text())
    assert sidecar["assessable"] is assessable and sidecar["in_domain"] is assessable
    said = [w for w in sidecar["warnings"] if sequence in w]
    if sequence == "DWI":
        assert sidecar["warnings"][0].startswith(NOT_ASSESSABLE) and "never on this sequence" in sidecar["warnings"][0]
        assert all(p["status"] == "not_assessable" for p in sidecar["spatial_parameters"])
    elif sequence == "T2":
        assert len(said) == 1 and "has not been measured" in said[0]
        assert not any(w.startswith(NOT_ASSESSABLE) for w in sidecar["warnings"])
    else:
        assert said == []


# -- the shipped model and its shipped statistics ---------------------------------------------------------


def _chest_like(seed: int) -> np.ndarray:
    """A drawn frontal chest radiograph: torso, dark lungs, heart, spine, ribs."""
    rng = np.random.default_rng(seed)
    img = np.zeros((256, 256), np.float32)
    cv2.ellipse(img, (128, 150), (118, 125), 0, 0, 360, 0.55, -1)
    for side in (-1, 1):
        cv2.ellipse(img, (128 + side * 48, 125), (38, 80), side * 8, 0, 360, 0.12, -1)
    cv2.ellipse(img, (140, 165), (36, 30), 20, 0, 360, 0.5, -1)
    cv2.rectangle(img, (120, 20), (136, 250), 0.85, -1)
    for k in range(9):
        cv2.ellipse(img, (128, 70 + 17 * k), (90, 22), 0, 180, 360, 0.75, 3)
    noisy = cv2.GaussianBlur(img, (0, 0), 2.5) + rng.normal(0, 0.03, img.shape)
    return np.clip(noisy / noisy.max() * 255, 0, 255).astype(np.uint8)


def test_shipped_statistics_separate_synthetic_images_from_the_sample_slices(samples_dir: Path) -> None:
    if not domain_path(default_checkpoint_path()).is_file():
        pytest.fail("the shipped model has no domain statistics (brainxai domain fit)")
    clf = Classifier.load(device="cpu")
    assert clf.checkpoint.domain is not None
    brains = [read_raster(p) for p in sorted(samples_dir.glob("*.jpg"))]
    rng = np.random.default_rng(1)
    others = [rng.integers(0, 256, (256, 256), dtype=np.uint8), _chest_like(0), _chest_like(1)]
    inside, outside = clf.predict(brains), clf.predict(others)
    assert all(p.in_domain for p in inside), [p.domain_score for p in inside]
    assert not any(p.in_domain for p in outside), [p.domain_score for p in outside]
    assert min(p.domain_score or 0 for p in outside) > max(p.domain_score or 0 for p in inside)
