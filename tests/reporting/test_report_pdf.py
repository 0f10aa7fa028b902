"""The PDF report and the guidance, from hand-made results (no model needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from pypdf import PdfReader

from brainxai.analysis.spatial import compute_spatial_parameters
from brainxai.constants import CLASSES
from brainxai.reporting import build_report, date_text, guidance_for, method_title, write_report


def _result(prediction: str, spacing: tuple[float, float] | None, patient: dict | None) -> tuple[dict, dict]:
    yy, xx = np.mgrid[:160, :160]
    brain = ((xx - 80) / 60) ** 2 + ((yy - 80) / 70) ** 2 <= 1
    image = np.where(brain, 110, 0).astype(np.uint8)
    region = ((xx - 55) ** 2 + (yy - 70) ** 2) <= 12**2
    image[region] = 190
    params = compute_spatial_parameters(image, region, brain, spacing, 0.88, 0.35, prediction=prediction)
    probs = {c: 0.04 for c in CLASSES}
    probs[prediction] = 0.88
    result = {
        "id": "0123456789ab",
        "created": "2025-03-04T05:06:07+00:00",
        "prediction": prediction,
        "probabilities": probs,
        "confidence": 0.88,
        "method": "lrp",
        "spatial_parameters": [p.to_dict() for p in params],
        "agreement": {"second_method": "gradcam", "iou": 0.35},
        "scan": {
            "file": "case.dcm",
            "format": "dicom",
            "shape": [160, 160],
            "pixel_spacing_mm": list(spacing) if spacing else None,
            "modality": "MR",
        },
        "model": {
            "name": "efficientnet-lite0",
            "checkpoint": "default.safetensors",
            "version": "0.1.0",
            "created": "2025-01-01",
            "sha256": "f" * 64,
        },
        "patient": patient,
        "brainxai_version": "0.1.0",
    }
    heat = cv2.cvtColor(cv2.applyColorMap((region * 255).astype(np.uint8), cv2.COLORMAP_HOT), cv2.COLOR_BGR2RGB)
    images = {
        "original": image,
        "heatmap": heat,
        "outline": heat // 2 + np.dstack([image] * 3) // 2,
        "mask": np.dstack([region * 255] * 3).astype(np.uint8),
    }
    return result, images


def _text(path: Path) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(path).pages).split())


def test_tumour_report_holds_finding_parameters_and_disclaimer(tmp_path: Path) -> None:
    result, images = _result("meningioma", (0.5, 0.5), {"name": "Jane <Roe> & Co", "patient_id": "P-17", "age": 61})
    pdf = write_report(result, images, tmp_path / "r.pdf")
    reader = PdfReader(pdf)
    assert 1 <= len(reader.pages) <= 2
    text = _text(pdf)
    assert "Tumour pattern: Meningioma" in text
    assert "88.0%" in text
    assert "Jane <Roe> & Co" in text and "P-17" in text
    for p in result["spatial_parameters"]:
        assert p["name"].split(" (")[0] in text
    assert "mm²" in text
    assert "Research use only, not a diagnosis" in text
    assert "RESEARCH USE ONLY" in text
    assert "periodic MRI monitoring" in text
    assert "Neurosurgical consultation" in text
    assert "f" * 64 in text.replace(" ", "")
    assert "2025-03-04 05:06 UTC" in text
    assert "Grad-CAM" in text and "LRP" in text
    assert not list(tmp_path.glob("*.tmp"))


def test_no_tumour_report_without_patient_or_spacing(tmp_path: Path) -> None:
    result, images = _result("notumor", None, None)
    text = _text(write_report(result, images, tmp_path / "n.pdf"))
    assert "No tumour pattern found" in text
    assert "No patient details were entered" in text
    assert "unknown" in text and "pixels" in text
    assert "not applicable (no tumour region)" in text
    assert "does not exclude disease" in text


def test_report_renders_to_png(tmp_path: Path) -> None:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed")
    result, images = _result("pituitary", (0.8, 0.8), {"name": "A"})
    (tmp_path / "r.pdf").write_bytes(build_report(result, images))
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(tmp_path / "r.pdf"), str(tmp_path / "p")], check=True)
    pages = sorted(tmp_path.glob("p*.png"))
    assert 1 <= len(pages) <= 2
    img = cv2.imread(str(pages[0]))
    # The page is mostly white paper but carries the scan images (dark pixels) and coloured headings.
    assert (img.mean(axis=2) > 240).mean() > 0.5
    assert (img.mean(axis=2) < 40).mean() > 0.005


def test_missing_image_is_tolerated(tmp_path: Path) -> None:
    result, images = _result("glioma", (1.0, 1.0), None)
    images = {"original": images["original"], "heatmap": tmp_path / "absent.png"}
    text = _text(write_report(result, images, tmp_path / "r.pdf"))
    assert "(not available)" in text


@pytest.mark.parametrize("label", CLASSES)
def test_guidance_per_class(label: str) -> None:
    g = guidance_for(label)
    assert g.steps and "specialist" in g.title
    assert "not recommendations" in g.caveat
    low = guidance_for(label, probability=0.4)
    assert len(low.steps) == len(g.steps) + 1 and "uncertain" in low.steps[0]


def test_guidance_content_and_unknown_class() -> None:
    assert any("Endocrine" in s for s in guidance_for("pituitary").steps)
    assert any("monitoring" in s for s in guidance_for("meningioma").steps)
    with pytest.raises(KeyError):
        guidance_for("astrocytoma")


def test_labels() -> None:
    assert method_title("gradcam++") == "Grad-CAM++"
    assert method_title("new-method") == "new-method"
    assert date_text("not a date") == "not a date"


@pytest.mark.parametrize(
    ("temperature", "carried", "expected"),
    [
        (0.5166, False, "divided by 0.517 (temperature scaling fitted on held-out training images"),
        (0.5166, True, "carried over to this model, which was then trained on all training images"),
        (None, False, "(not calibrated)"),
    ],
)
def test_report_says_how_the_probabilities_were_computed(tmp_path: Path, temperature, carried, expected) -> None:
    result, images = _result("glioma", None, None)
    if temperature is not None:
        result["model"]["temperature"] = temperature
    result["model"]["temperature_carried_over"] = carried
    text = " ".join(_text(write_report(result, images, tmp_path / "r.pdf")).split())
    assert "Model probabilities: softmax of the model's outputs" in text
    assert expected in text
    assert ("roughly 90%" in text) is carried
    assert "not the probability that the patient has the disease" in text
