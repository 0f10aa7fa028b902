"""The analysis pipeline end to end, with an untrained model (plumbing and numbers, not accuracy)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicomfiles import IDENTITY_WINDOW, make_dicom
from PIL import Image
from pypdf import PdfReader

import brainxai
from brainxai.constants import DISCLAIMER
from brainxai.io import ImageReadError, NotABrainScanError, read_raster
from brainxai.pipeline import AnalysisOptions, AnalysisService, PatientInfo, get_service
from brainxai.pipeline.batch import analyze_batch
from brainxai.pipeline.result import AnalysisResult
from brainxai.pipeline.service import ScanInput

SPACING = (0.5, 0.7)
#: Quick options: one explanation method, no agreement check.
GRADCAM_ONLY = AnalysisOptions(method="gradcam", agreement=False)


@pytest.fixture(scope="module")
def service(random_checkpoint: Path) -> AnalysisService:
    return get_service(random_checkpoint)


@pytest.fixture(scope="module")
def sample(samples_dir: Path) -> np.ndarray:
    return read_raster(samples_dir / "meningioma.jpg")


def dicom_bytes(pixels: np.ndarray, spacing: tuple[float, float]) -> bytes:
    """An MR DICOM whose display pixels equal ``pixels`` (identity window), with the given PixelSpacing."""
    return make_dicom(pixels, spacing=spacing, window=IDENTITY_WINDOW)


@pytest.fixture(scope="module")
def dicom_and_png(
    service: AnalysisService, sample: np.ndarray, random_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
):
    """The same pixels analysed once as DICOM (with spacing, full report) and once as PNG (no spacing)."""
    out = tmp_path_factory.mktemp("analysis")
    dcm = out / "scan.dcm"
    dcm.write_bytes(dicom_bytes(sample, SPACING))
    png = out / "scan.png"
    Image.fromarray(sample).save(png)
    with_spacing = service.analyze(dcm, out_dir=out / "dcm", patient=PatientInfo(name="Jane Roe", age=61, sex="F"))
    # The public library call, sharing the cached service.
    without = brainxai.analyze(png, out_dir=out / "png", report=False, checkpoint=random_checkpoint, agreement=False)
    return with_spacing, without, out


def param(result, key: str) -> dict:
    return next(p for p in result.spatial_parameters if p["key"] == key)


def test_dicom_area_in_mm2_matches_hand_computation(dicom_and_png) -> None:
    dcm, png, _ = dicom_and_png
    assert dcm.scan["pixel_spacing_mm"] == list(SPACING)
    assert png.scan["pixel_spacing_mm"] is None
    # Same pixels, same model, same region: area in mm² = area in px² x row spacing x column spacing.
    assert dcm.prediction == png.prediction
    px_area = param(png, "area_volume")["value"]["area"]
    assert param(png, "area_volume")["unit"] == "px², px³"
    assert px_area > 0
    assert param(dcm, "area_volume")["value"]["area"] == pytest.approx(px_area * SPACING[0] * SPACING[1], rel=1e-6)
    assert param(dcm, "area_volume")["unit"] == "mm², mm³"
    assert "no pixel spacing" in " ".join(png.notes)


def test_result_files_json_and_images(dicom_and_png) -> None:
    dcm, png, out = dicom_and_png
    data = json.loads(dcm.report_json.read_text())
    assert data["prediction"] == dcm.prediction
    assert set(data["probabilities"]) == {"glioma", "meningioma", "notumor", "pituitary"}
    assert sum(data["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert len(data["spatial_parameters"]) == 10
    for p in data["spatial_parameters"]:
        assert {"name", "value", "unit", "method"} <= p.keys()
    assert data["model"]["sha256"] == dcm.model["sha256"] and len(data["model"]["sha256"]) == 64
    assert data["patient"] == {"name": "Jane Roe", "age": 61, "sex": "F"}
    assert data["disclaimer"] == DISCLAIMER
    assert data["warnings"] == [] and data["scan"]["model_input_crop"]["area_fraction"] > 0.2
    assert data["agreement"]["second_method"] == "gradcam"
    assert 0.0 <= param(dcm, "confidence")["details"]["agreement"] <= 1.0
    for kind in ("original", "heatmap", "overlay", "outline", "mask"):
        img = np.asarray(Image.open(dcm.images[kind]))
        assert img.shape[:2] == (224, 224)
    assert png.report_pdf is None and png.agreement is None
    assert not list(out.rglob("*.tmp")), "atomic writes leave no temporary files"


def test_pdf_report_content_and_rendering(dicom_and_png, tmp_path: Path) -> None:
    dcm, _, _ = dicom_and_png
    reader = PdfReader(dcm.report_pdf)
    assert 1 <= len(reader.pages) <= 2
    text = " ".join(page.extract_text() for page in reader.pages)
    flat = " ".join(text.split())
    assert "Tumour pattern" in flat or "No tumour pattern" in flat
    assert "Jane Roe" in flat
    for p in dcm.spatial_parameters:
        assert p["name"].split(" (")[0] in flat
    assert "not a diagnosis" in flat.lower()
    assert "0.5 x 0.7 mm" in flat
    assert dcm.model["sha256"] in flat.replace(" ", "")
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed")
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(dcm.report_pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert pages
    first = np.asarray(Image.open(pages[0]).convert("L"))
    assert first.std() > 20  # not a blank page


def test_nifti_analyses_the_most_suspicious_slice(
    service: AnalysisService, sample: np.ndarray, samples_dir: Path
) -> None:
    # Axial slices of a volume: the meningioma slice, the no-tumour slice and darker copies of them.
    other = read_raster(samples_dir / "notumor.jpg")
    slices = [sample, other, (sample * 0.8).astype(np.uint8), (other * 0.8).astype(np.uint8)]
    # Undo the radiological display flip so that axial slice k reads back as slices[k].
    vol = np.stack([s[::-1, ::-1].T for s in slices], axis=-1).astype(np.float32)
    img = nib.Nifti1Image(vol, np.diag([0.9, 0.9, 5.0, 1.0]))
    img.header.set_xyzt_units("mm")
    scan = service.read(img.to_bytes(), filename="vol.nii")
    scores = service.score_slices([scan_slice for scan_slice in _display_slices(img)])
    assert scan.slice_index == int(np.argmax(scores))
    assert scan.meta["slice_scores"][str(scan.slice_index)] == pytest.approx(max(scores), abs=1e-4)
    assert scan.pixel_spacing_mm == pytest.approx((0.9, 0.9))


def _display_slices(img: nib.Nifti1Image) -> list[np.ndarray]:
    from brainxai.io.nifti import axial_slice, volume_to_uint8

    vol8 = volume_to_uint8(np.asarray(img.dataobj, dtype=np.float32))
    return [axial_slice(vol8, k) for k in range(vol8.shape[2])]


def test_bad_inputs_raise_clear_errors(service: AnalysisService, sample: np.ndarray, tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(sample).save(buf, format="JPEG")
    with pytest.raises(ImageReadError, match="cut.jpg"):
        service.analyze(buf.getvalue()[:300], filename="cut.jpg", out_dir=tmp_path)
    blank = io.BytesIO()
    Image.fromarray(np.full((128, 128), 240, np.uint8)).save(blank, format="PNG")
    with pytest.raises(NotABrainScanError, match="uniform"):
        service.analyze(blank.getvalue(), filename="blank.png", out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown patient fields"):
        service.analyze(b"", patient={"nmae": "x"}, out_dir=tmp_path)
    assert not any(tmp_path.iterdir()), "nothing is written for a failed analysis"


def test_no_tumour_prediction(
    service: AnalysisService, sample: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    classes = list(service.classifier.classes)
    fixed = np.full(len(classes), 0.02)
    fixed[classes.index("notumor")] = 1 - 0.02 * (len(classes) - 1)
    monkeypatch.setattr(
        service.classifier, "assess_outputs", lambda logits, features: (np.tile(fixed, (len(logits), 1)), None)
    )
    result = service.analyze(_png(sample), GRADCAM_ONLY, filename="n.png", out_dir=tmp_path)
    assert result.prediction == "notumor" and not result.is_tumour
    assert param(result, "area_volume")["value"] == "not applicable (no tumour region)"
    assert param(result, "confidence")["value"] == pytest.approx(fixed.max(), abs=1e-4)
    text = " ".join(p.extract_text() for p in PdfReader(result.report_pdf).pages)
    assert "No tumour pattern found" in " ".join(text.split())
    heat = np.asarray(Image.open(result.images["heatmap"]))
    assert heat.max() == 0  # no tumour region is drawn for a no-tumour prediction


def test_failed_crop_is_retried_or_reported(
    service: AnalysisService, dark_scan: np.ndarray, failed_crop_scan: np.ndarray, tmp_path: Path
) -> None:
    recovered = service.analyze(  # no segmentation: its disagreement warning on a synthetic slice is not tested here
        _png(dark_scan), replace(GRADCAM_ONLY, report=False, segment=False), filename="dark.png", out_dir=tmp_path
    )
    assert recovered.warnings == [] and recovered.scan["model_input_crop"]["area_fraction"] > 0.5
    # Without the segmentation model: its disagreement warning on this synthetic slice is not what is tested here.
    result = service.analyze(
        _png(failed_crop_scan), replace(GRADCAM_ONLY, segment=False), filename="dark.png", out_dir=tmp_path
    )
    crop = result.scan["model_input_crop"]
    assert crop["area_fraction"] < 0.05 and len(crop["box_xyxy"]) == 4
    assert len(result.warnings) == 1 and "automatic head crop kept only" in result.warnings[0]
    saved = json.loads(result.report_json.read_text())
    assert saved["warnings"] == result.warnings and saved["scan"]["model_input_crop"] == crop
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(result.report_pdf).pages).split())
    assert "Warning: The automatic head crop kept only" in text


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_module_level_analyze_reuses_the_service(random_checkpoint: Path, service: AnalysisService) -> None:
    assert get_service(random_checkpoint) is service
    assert brainxai.analyze is not None


def test_a_batch_gives_each_scan_the_result_it_gets_alone(samples_dir: Path, tmp_path: Path) -> None:
    # The shipped model: its four samples give tumour and no-tumour predictions, so the agreement's
    # second method runs for part of the batch only.
    service = get_service(None, device="cpu")
    files = sorted(samples_dir.glob("*.jpg"))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(files[0].read_bytes()[:300])
    options = AnalysisOptions(report=False)
    scans = [ScanInput(f, name=f"batch-{f.stem}") for f in files]
    outcomes = service.analyze_many([*scans[:2], ScanInput(cut), *scans[2:]], options, out_dir=tmp_path / "b")
    assert isinstance(outcomes[2], ImageReadError) and "cut.jpg" in str(outcomes[2])
    batched = [o for i, o in enumerate(outcomes) if i != 2]
    assert all(isinstance(r, AnalysisResult) for r in batched)
    assert {r.prediction for r in batched} >= {"glioma", "notumor"}  # type: ignore[union-attr]
    for f, got in zip(files, batched, strict=True):
        assert isinstance(got, AnalysisResult)
        alone = service.analyze(f, options, out_dir=tmp_path / "a", name=f"alone-{f.stem}")
        assert got.source_name == alone.source_name and got.prediction == alone.prediction
        assert got.probabilities == pytest.approx(alone.probabilities, abs=1e-5)
        assert got.domain_score == pytest.approx(alone.domain_score, abs=1e-4)
        assert (got.agreement is None) == (alone.agreement is None) == (alone.prediction == "notumor")
        if alone.agreement is not None:
            assert got.agreement is not None and got.agreement["iou"] == pytest.approx(alone.agreement["iou"], abs=1e-3)
        assert [(p["key"], p["status"], p["source"]) for p in got.spatial_parameters] == [
            (p["key"], p["status"], p["source"]) for p in alone.spatial_parameters
        ]
        assert got.images.keys() == alone.images.keys() and got.report_json.name == f"batch-{f.stem}.json"


def test_a_batch_writes_each_scan_where_its_input_says(
    service: AnalysisService, samples_dir: Path, tmp_path: Path
) -> None:
    own, shared = tmp_path / "own", tmp_path / "shared"
    files = sorted(samples_dir.glob("*.jpg"))[:2]
    scans = [ScanInput(files[0], out_dir=own, dicom_out=own / "dicom"), ScanInput(files[1])]
    first, second = service.analyze_many(scans, AnalysisOptions(report=False), out_dir=shared)
    assert isinstance(first, AnalysisResult) and isinstance(second, AnalysisResult)
    assert first.report_json.parent == own and all(p.parent == own for p in first.images.values())
    assert second.report_json.parent == shared and all(p.parent == shared for p in second.images.values())
    dicoms = list((own / "dicom").iterdir())
    assert len(dicoms) >= 3 and all(p.suffix == ".dcm" for p in dicoms)  # SR, map, overlay (+ PDF with a report)
    assert not (shared / "dicom").exists()


def test_an_analysis_without_files_gives_the_same_result_and_writes_nothing(
    service: AnalysisService, samples_dir: Path, tmp_path: Path
) -> None:
    scan = sorted(samples_dir.glob("*.jpg"))[0]
    with_files = service.analyze(scan, AnalysisOptions(report=False), out_dir=tmp_path / "files")
    bare = service.analyze(scan, AnalysisOptions(report=False, write_files=False), out_dir=tmp_path / "none")
    assert not (tmp_path / "none").exists()
    assert bare.images == {} and bare.report_json is None and bare.report_pdf is None
    assert bare.to_dict()["report_json"] is None
    assert bare.prediction == with_files.prediction
    assert bare.probabilities == pytest.approx(with_files.probabilities, abs=1e-6)
    assert [(p["key"], p["status"], p["value"]) for p in bare.spatial_parameters] == [
        (p["key"], p["status"], p["value"]) for p in with_files.spatial_parameters
    ]
    for bad in ({"report": True}, {"report": False, "dicom_out": tmp_path / "dicom"}):
        with pytest.raises(ValueError, match="writes nothing"):
            AnalysisOptions(write_files=False, **bad)


def test_analyze_batch_goes_in_batches_and_keeps_going_past_failures(
    service: AnalysisService, samples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sorted(samples_dir.glob("*.jpg"))
    missing = tmp_path / "missing.jpg"
    chunks: list[int] = []
    real = service.analyze_many

    def counted(scans, *args, **kwargs):  # type: ignore[no-untyped-def]
        chunks.append(len(scans))
        if len(chunks) == 2:
            raise RuntimeError("the batch's shared step failed")
        return real(scans, *args, **kwargs)

    monkeypatch.setattr(service, "analyze_many", counted)
    seen: list[str] = []
    items = analyze_batch(
        service,
        [files[0], missing, files[1], files[2], files[3]],
        GRADCAM_ONLY,
        out_dir=tmp_path,
        report_path=None,
        progress=lambda item: seen.append(item.file),
        batch_size=3,
    )
    assert chunks == [3, 2]
    assert seen == [item.file for item in items] == [str(files[0]), str(missing), *map(str, files[1:])]
    assert [item.status for item in items] == ["ok", "failed", "ok", "failed", "failed"]
    assert "missing.jpg" in (items[1].error or "")
    assert items[3].error == items[4].error == "internal error (RuntimeError): the batch's shared step failed"
    assert all(item.seconds > 0 for item in items) and items[0].result is not None
    with pytest.raises(ValueError, match="batch_size"):
        analyze_batch(service, files, GRADCAM_ONLY, out_dir=tmp_path, batch_size=0)
