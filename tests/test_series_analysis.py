"""Whole-series analysis (``brainxai.pipeline.series``): the aggregation rule, skipped slices, the heatmap
volume, the series DICOM outputs and the study runner.

An untrained model is enough: these tests check the plumbing, references and geometry, not accuracy.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import ComprehensiveSRStorage, EncapsulatedPDFStorage, ParametricMapStorage
from pypdf import PdfReader
from seriesfiles import series_datasets, write_datasets, write_series

from brainxai.constants import NO_TUMOUR
from brainxai.io import read_raster
from brainxai.io.series import SeriesSkipped, read_volume
from brainxai.pipeline import AnalysisOptions, AnalysisService, get_service
from brainxai.pipeline.series import AGGREGATION_RULE, aggregate, analyze_series, analyze_study

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


# -- the aggregation rule, on hand-made probabilities -----------------------------------------------------


def _probs(rows: list[tuple[float, float, float, float]]) -> np.ndarray:
    return np.array(rows, dtype=float)


def test_tumour_class_with_highest_top3_mean_wins() -> None:
    # Meningioma is high on three slices; glioma has one very high slice and two low ones.
    probs = _probs(
        [
            (0.99, 0.00, 0.01, 0.00),
            (0.10, 0.70, 0.20, 0.00),
            (0.10, 0.75, 0.15, 0.00),
            (0.05, 0.80, 0.15, 0.00),
            (0.10, 0.00, 0.90, 0.00),
        ]
    )
    agg = aggregate(probs, CLASSES)
    assert agg.class_scores["meningioma"] == pytest.approx((0.7 + 0.75 + 0.8) / 3)
    assert agg.class_scores["glioma"] == pytest.approx((0.99 + 0.10 + 0.10) / 3)
    assert agg.prediction == "meningioma"
    assert agg.key_rows == [3, 2, 1]
    assert agg.probabilities["meningioma"] == pytest.approx(0.75)
    assert sum(agg.probabilities.values()) == pytest.approx(1.0)
    assert "notumor" not in agg.class_scores


def test_no_tumour_only_when_no_tumour_class_reaches_the_threshold() -> None:
    probs = _probs([(0.45, 0.05, 0.45, 0.05), (0.40, 0.10, 0.45, 0.05), (0.10, 0.10, 0.70, 0.10), (0, 0, 1, 0)])
    agg = aggregate(probs, CLASSES)
    assert agg.class_scores["glioma"] == pytest.approx((0.45 + 0.40 + 0.10) / 3)
    assert agg.prediction == NO_TUMOUR
    # Key slices of "no tumour": the most suspicious ones (highest 1 - P(no tumour)).
    assert agg.key_rows == [0, 1, 2]
    # Just above the threshold, the tumour class is the finding.
    probs[2] = (0.65, 0.05, 0.25, 0.05)
    assert aggregate(probs, CLASSES).prediction == "glioma"


def test_k_shrinks_to_the_number_of_slices() -> None:
    agg = aggregate(_probs([(0.2, 0.6, 0.1, 0.1)]), CLASSES)
    assert agg.prediction == "meningioma" and agg.key_rows == [0]
    assert aggregate(_probs([(0.2, 0.6, 0.1, 0.1)]), CLASSES, k=1, threshold=0.61).prediction == NO_TUMOUR
    with pytest.raises(ValueError):
        aggregate(np.zeros((0, 4)), CLASSES)


# -- one series end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(random_checkpoint: Path) -> AnalysisService:
    return get_service(random_checkpoint)


@pytest.fixture(scope="module")
def samples(samples_dir: Path) -> list[np.ndarray]:
    return [read_raster(samples_dir / f"{c}.jpg") for c in ("notumor", "glioma", "meningioma", "pituitary")]


@pytest.fixture(scope="module")
def series_run(service: AnalysisService, samples: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory):
    """Five brain slices, an empty slice and a sagittal localiser in one series, with DICOM outputs."""
    root = tmp_path_factory.mktemp("series")
    slices = [samples[0], samples[1], np.zeros_like(samples[0]), samples[2], samples[3], samples[1]]
    datasets = series_datasets(slices)
    (scout,) = series_datasets(
        [samples[0]],
        orientation=(0, 1, 0, 0, 0, -1),
        study_uid=datasets[0].StudyInstanceUID,
        series_uid=datasets[0].SeriesInstanceUID,
        frame_of_reference_uid=datasets[0].FrameOfReferenceUID,
    )
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    write_datasets(root / "in", [*datasets, scout], order=[3, 6, 0, 5, 1, 4, 2])
    options = AnalysisOptions(method="gradcam", dicom_out=root / "dicom")
    result = analyze_series(root / "in", options, out_dir=root / "out", service=service, name="s")
    return result, datasets, root


def test_series_result_lists_slices_skipped_and_key_slices(series_run) -> None:
    result, datasets, _ = series_run
    assert [s["index"] for s in result.per_slice] == [0, 1, 3, 4, 5]
    skipped = {s["index"]: s["reason"] for s in result.skipped}
    assert "uniform" in skipped[2]
    assert skipped[None] == "localiser (ImageType LOCALIZER)"
    assert set(result.key_slices) <= {0, 1, 3, 4, 5} and len(result.key_slices) == 3
    # The series finding is the rule applied to the per-slice probabilities it reports.
    probs = np.array([[s["probabilities"][c] for c in CLASSES] for s in result.per_slice])
    agg = aggregate(probs, CLASSES)
    assert result.prediction == agg.prediction
    assert result.key_slices == [result.per_slice[r]["index"] for r in agg.key_rows]
    assert [s["position_mm"] for s in result.per_slice] == pytest.approx([-40, -35, -25, -20, -15])
    assert result.study_uid == datasets[0].StudyInstanceUID and result.series_uid == datasets[0].SeriesInstanceUID
    d = result.to_dict()
    assert d["aggregation_rule"] == AGGREGATION_RULE and "Research use only" in d["disclaimer"]
    assert result.report_pdf is not None and result.report_pdf.read_bytes().startswith(b"%PDF-")
    assert result.report_json.is_file() and len(result.spatial_parameters) == 10


def test_heatmap_volume_has_the_series_affine_and_zero_on_skipped_slices(series_run) -> None:
    result, datasets, root = series_run
    image = nib.load(result.heatmap_nifti)
    volume = read_volume([p for p in (root / "in").iterdir()])
    assert volume.affine is not None
    assert np.allclose(image.affine, volume.affine) and int(image.header["sform_code"]) == 1
    data = np.asarray(image.dataobj)
    assert data.shape == (224, 224, 6)
    assert not data[:, :, 2].any() and data[:, :, 1].any()
    # Voxel (0, 0, k) lies at slice k's ImagePositionPatient (LPS -> RAS).
    ipp = [float(v) for v in datasets[4].ImagePositionPatient]
    assert image.affine @ [0, 0, 4, 1] == pytest.approx([-ipp[0], -ipp[1], ipp[2], 1])


def _dicom_outputs(result) -> dict[str, pydicom.Dataset]:
    return {Path(p).name.removeprefix("s-").removesuffix(".dcm"): pydicom.dcmread(p) for p in result.dicom_files}


def test_dicom_outputs_reference_every_source_instance(series_run) -> None:
    result, datasets, _ = series_run
    objects = _dicom_outputs(result)
    overlays = sorted(k for k in objects if k.startswith("overlay-sc-"))
    assert set(objects) - {"seg"} == {"sr", "pm", "pdf", *overlays} and len(overlays) == 3
    # The segmented tumour's Segmentation (tests/test_series_segmentation.py) when the shipped model outlined one.
    assert ("seg" in objects) == bool((result.tumour_volume or {}).get("voxels"))
    analysed = {datasets[i].SOPInstanceUID for i in (0, 1, 3, 4, 5)}
    every = [d.SOPInstanceUID for d in datasets]
    assert {o.StudyInstanceUID for o in objects.values()} == {datasets[0].StudyInstanceUID}
    assert all(o.SeriesInstanceUID != datasets[0].SeriesInstanceUID for o in objects.values())

    sr = objects["sr"]
    assert sr.SOPClassUID == ComprehensiveSRStorage and sr.VerificationFlag == "UNVERIFIED"
    evidence = {
        i.ReferencedSOPInstanceUID
        for s in sr.CurrentRequestedProcedureEvidenceSequence
        for r in s.ReferencedSeriesSequence
        for i in r.ReferencedSOPSequence
    }
    assert evidence == analysed
    assert sr.PatientID == datasets[0].PatientID

    pm = objects["pm"]
    assert pm.SOPClassUID == ParametricMapStorage and int(pm.NumberOfFrames) == 6
    # Each frame derives from one source slice, lies at its position and holds its relevance map.
    heat = np.asarray(nib.load(result.heatmap_nifti).dataobj)
    frames = pm.pixel_array
    derived = []
    for j, frame in enumerate(pm.PerFrameFunctionalGroupsSequence):
        (item,) = frame.DerivationImageSequence
        k = every.index(item.SourceImageSequence[0].ReferencedSOPInstanceUID)
        derived.append(k)
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert position == pytest.approx([float(v) for v in datasets[k].ImagePositionPatient])
        assert np.allclose(frames[j], heat[:, :, k].T, atol=1e-6)
    assert sorted(derived) == list(range(6))

    pdf = objects["pdf"]
    assert pdf.SOPClassUID == EncapsulatedPDFStorage
    assert {r.ReferencedSOPInstanceUID for r in pdf.SourceInstanceSequence} == analysed
    assert bytes(pdf.EncapsulatedDocument).startswith(b"%PDF-")

    captures = [objects[k] for k in overlays]
    assert len({c.SeriesInstanceUID for c in captures}) == 1
    assert sorted(int(c.InstanceNumber) for c in captures) == [1, 2, 3]
    key_uids = {datasets[i].SOPInstanceUID for i in result.key_slices}
    assert {c.SourceImageSequence[0].ReferencedSOPInstanceUID for c in captures} == key_uids


def test_dicom_outputs_pass_dciodvfy(series_run) -> None:
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools); DICOM validation skipped")
    for path in series_run[0].dicom_files:
        run = subprocess.run([dciodvfy, str(path)], capture_output=True, timeout=60)
        errors = [line for line in (run.stdout + run.stderr).decode("utf-8", "replace").splitlines() if "Error" in line]
        assert not errors, f"{Path(path).name}:\n" + "\n".join(errors)


def test_nifti_heatmap_affine_equals_the_source_affine(service, samples, tmp_path) -> None:
    # An oblique, flipped acquisition with thick slices along voxel axis 1.
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.array([[-0.9 * c, 0, 0.9 * s, 80], [0, 4.0, 0, -60], [0.9 * s, 0, 0.9 * c, -20], [0, 0, 0, 1]])
    vol = np.stack([samples[i].astype(np.float32) for i in (1, 2, 3)], axis=1)  # (224, 3, 224)
    img = nib.Nifti1Image(vol, affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, tmp_path / "vol.nii.gz")
    options = AnalysisOptions(method="gradcam", dicom_out=tmp_path / "dicom", report=False)
    result = analyze_series(tmp_path / "vol.nii.gz", options, out_dir=tmp_path / "out", service=service)
    heat = nib.load(result.heatmap_nifti)
    assert np.array_equal(heat.affine, nib.load(tmp_path / "vol.nii.gz").affine)
    assert heat.shape == vol.shape and np.asarray(heat.dataobj)[:, 1, :].any()
    assert result.series["slice_axis_selection"].startswith("voxel axis 1") and result.series_uid is None
    assert result.dicom_files == [] and any("No DICOM outputs" in n for n in result.notes)
    assert result.report_pdf is None and len(result.per_slice) == 3


def test_study_gives_one_result_per_series_and_skips_localisers(service, samples, tmp_path) -> None:
    study = pydicom.uid.generate_uid()
    write_series(tmp_path / "in" / "t1", samples[:3], study_uid=study, series_number=4, description="AX T1")
    write_series(tmp_path / "in" / "t2", samples[1:3], study_uid=study, series_number=6, description="AX T2")
    loc = "3-plane localizer"
    write_series(tmp_path / "in" / "loc", samples[:1], study_uid=study, series_number=1, description=loc)
    errors: list[tuple[str, Exception]] = []
    results = analyze_study(
        tmp_path / "in",
        AnalysisOptions(method="gradcam", report=False),
        out_dir=tmp_path / "out",
        service=service,
        on_error=lambda s, e: errors.append((s.description, e)),
    )
    assert [len(r.per_slice) for r in results] == [3, 2]
    assert [r.report_json.parent.name for r in results] == ["004-AX_T1", "006-AX_T2"]
    assert {r.study_uid for r in results} == {study}
    ((description, error),) = errors
    assert description == "3-plane localizer" and isinstance(error, SeriesSkipped)


@pytest.mark.parametrize("n", [1, 7, 24, 61])
def test_series_report_lays_out_any_number_of_slices(n: int) -> None:
    from brainxai.reporting.series_pdf import build_series_report

    per_slice = [
        {"index": i, "position_mm": 5.0 * i, "prediction": "glioma", "probabilities": dict.fromkeys(CLASSES, 0.25)}
        for i in range(n)
    ]
    result = {
        "id": "abc",
        "created": "2026-01-01T00:00:00+00:00",
        "prediction": "notumor" if n % 2 else "glioma",
        "probabilities": dict.fromkeys(CLASSES, 0.25),
        "confidence": 0.25,
        "method": "gradcam",
        "key_slices": list(range(min(3, n))),
        "per_slice": per_slice,
        "skipped": [{"index": None, "file": "scout.dcm", "reason": "localiser (ImageType LOCALIZER)"}],
        "series": {"file": "AX T1", "format": "dicom-series", "n_slices": n + 1, "pixel_spacing_mm": [0.5, 0.5]},
        "notes": ["a note"] * 3,
        "warnings": ["a warning"],
        "aggregation_rule": AGGREGATION_RULE,
        "disclaimer": "Research use only.",
        "model": {"name": "m", "sha256": "0" * 64},
    }
    images = {k: {"original": np.zeros((64, 64), np.uint8)} for k in result["key_slices"]}
    pdf = build_series_report(result, images)
    pages = len(PdfReader(io.BytesIO(pdf)).pages)
    assert pdf.startswith(b"%PDF-") and (pages >= 2 if n > 30 else pages >= 1)
