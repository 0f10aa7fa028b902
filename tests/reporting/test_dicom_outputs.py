"""DICOM outputs (``--dicom-out``): SR, parametric map or segmentation, overlay SC, encapsulated PDF.

An untrained model is enough: these tests check the objects, their references and units, not accuracy.
Every file is read back with pydicom/highdicom and, when Debian's ``dicom3tools`` is installed,
validated with ``dciodvfy`` (no "Error" lines allowed).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicomfiles import IDENTITY_WINDOW, content_items, deferred_and_eager, make_dicom, sr_numbers
from PIL import Image
from pydicom.uid import (
    ComprehensiveSRStorage,
    EncapsulatedPDFStorage,
    ParametricMapStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    generate_uid,
)
from typer.testing import CliRunner

from brainxai.cli import app
from brainxai.io import read_raster
from brainxai.pipeline import AnalysisOptions, AnalysisService, get_service, steps
from brainxai.reporting.dicom import AnalysisImages, build_dicom_outputs, write_dicom_outputs

SPACING = (0.5, 0.7)
UNIT_MM = {"mm", "mm2", "mm3"}


@pytest.fixture(scope="module")
def service(random_checkpoint: Path) -> AnalysisService:
    return get_service(random_checkpoint)


@pytest.fixture(scope="module")
def sample(samples_dir: Path) -> np.ndarray:
    return read_raster(samples_dir / "meningioma.jpg")


def source_dataset(pixels: np.ndarray) -> pydicom.Dataset:
    """An MR slice as a scanner writes it: known spacing, geometry, study, series and patient."""
    ds = pydicom.dcmread(io.BytesIO(make_dicom(pixels, spacing=SPACING, window=IDENTITY_WINDOW)))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (generate_uid() for _ in range(3))
    ds.ImagePositionPatient = [-100.0, -120.0, 30.0]
    ds.SliceThickness = 5.0
    ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "PAT-042", "19600102", "F"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240105", "101500", "7", "ACC9"
    ds.SeriesNumber, ds.InstanceNumber = 3, 12
    return ds


@pytest.fixture(scope="module")
def dicom_run(service: AnalysisService, sample: np.ndarray, tmp_path_factory: pytest.TempPathFactory):
    """The sample analysed as a DICOM file through the library call, with ``dicom_out``."""
    root = tmp_path_factory.mktemp("dicom-run")
    source = source_dataset(sample)
    path = root / "scan.dcm"
    source.save_as(path, enforce_file_format=True)
    options = AnalysisOptions(method="gradcam", agreement=False, dicom_out=root / "dicom")
    result = service.analyze(path, options, out_dir=root / "out")
    return result, source, path, by_kind(root / "dicom")


@pytest.fixture(scope="module")
def jpeg_run(random_checkpoint: Path, samples_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A JPEG analysed through ``brainxai analyze --dicom-out`` with typed patient details."""
    root = tmp_path_factory.mktemp("jpeg-run")
    shutil.copy(samples_dir / "glioma.jpg", root / "scan.jpg")
    args = ["analyze", str(root / "scan.jpg"), "--out", str(root / "out"), "--dicom-out", str(root / "dicom")]
    args += ["--checkpoint", str(random_checkpoint), "--method", "gradcam", "--no-agreement"]
    args += ["--patient-name", "Jane Roe", "--patient-id", "J-1", "--patient-age", "61", "--patient-sex", "F"]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert "DICOM results" in run.output
    return root, by_kind(root / "dicom")


#: The file name endings of an analysis' DICOM outputs, one per kind.
KINDS = ("source-sc.dcm", "overlay-sc.dcm", "sr.dcm", "pm.dcm", "seg.dcm", "pdf.dcm")


def by_kind(folder: Path) -> dict[str, Path]:
    """``{"sr.dcm": path, "overlay-sc.dcm": path, ...}``: the files of one analysis by their kind suffix."""
    files = sorted(folder.iterdir())
    out = {k: p for p in files for k in KINDS if p.name.endswith(f"-{k}")}
    assert len(out) == len(files), [p.name for p in files]
    return out


def relevance_on_scan(service: AnalysisService, path: Path) -> np.ndarray:
    """The Grad-CAM map of the predicted class placed back on the scan, recomputed with the shared steps."""
    scan = service.read(path)
    prepared = steps.prepare(scan.pixels, service.classifier)
    probs = steps.classify(service.classifier, [prepared])[0]
    explainer = service._explainer("gradcam")  # the service's own (cached) explainer: building one is slow
    (exp,) = steps.explain(explainer, service.classifier, [prepared], [int(np.argmax(probs))])
    return steps.map_back(exp.relevance, prepared)


def test_private_code_values_fit_short_strings(dicom_run) -> None:
    codes = [i.ConceptNameCodeSequence[0] for i in content_items(pydicom.dcmread(dicom_run[3]["sr.dcm"]))]
    assert all("CodeValue" in c and len(c.CodeValue) <= 16 for c in codes)


def texts(sr: pydicom.Dataset) -> list[str]:
    return [str(item.TextValue) for item in content_items(sr) if item.ValueType == "TEXT"]


def param(result: Any, key: str) -> dict[str, Any]:
    return next(p for p in result.spatial_parameters if p["key"] == key)


# -- DICOM input: the outputs join the source's study ---------------------------------------------


def test_dicom_input_writes_every_object_in_the_source_study(dicom_run) -> None:
    result, source, _, files = dicom_run
    # Beside the map, seg.dcm carries the tumour when the shipped segmentation model outlined one.
    tumour = {"seg.dcm"} if (result.segmentation or {}).get("area_px") else set()
    assert set(files) == {"sr.dcm", "pm.dcm", "overlay-sc.dcm", "pdf.dcm"} | tumour
    expected = {
        "sr.dcm": ComprehensiveSRStorage,
        "pm.dcm": ParametricMapStorage,
        "overlay-sc.dcm": SecondaryCaptureImageStorage,
        "pdf.dcm": EncapsulatedPDFStorage,
        "seg.dcm": SegmentationStorage,
    }
    series = set()
    for name, path in files.items():
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == expected[name]
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        # The patient module is the source's, not made up.
        assert (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate) == ("Secret^Person", "PAT-042", "19600102")
        assert ds.AccessionNumber == "ACC9"
        assert "RESEARCH USE ONLY" in ds.SeriesDescription
        model = ds.ContributingEquipmentSequence[0]
        assert model.ManufacturerModelName == result.model["name"]
        assert result.model["sha256"] in model.SoftwareVersions
        series.add(ds.SeriesInstanceUID)
    assert len(series) == len(files) and source.SeriesInstanceUID not in series


def test_sr_holds_the_finding_probabilities_and_sizes_in_mm(dicom_run) -> None:
    result, source, _, files = dicom_run
    sr = pydicom.dcmread(files["sr.dcm"])
    assert sr.VerificationFlag == "UNVERIFIED" and sr.CompletionFlag == "COMPLETE"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    ref = evidence.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == source.SeriesInstanceUID
    assert ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    (group,) = hd.sr.srread(files["sr.dcm"]).content.get_image_measurement_groups()
    assert group.finding_type.value == result.prediction
    got = sr_numbers(sr)
    for cls, p in result.probabilities.items():
        title = {"notumor": "No tumour", "pituitary": "Pituitary tumour"}.get(cls, cls.title())
        assert got[f"Probability of {title}"] == pytest.approx((p, "1"))
    sizes = param(result, "area_volume")
    # The seeded untrained model predicts a tumour class here, so the region has sizes.
    assert isinstance(sizes["value"], dict), (result.prediction, sizes)
    assert got["Area"] == (pytest.approx(sizes["value"]["area"]), "mm2")
    assert got["Estimated volume (ellipsoid from one slice)"] == (
        pytest.approx(sizes["value"]["estimated_volume"]),
        "mm3",
    )
    assert got["Long axis"] == (pytest.approx(param(result, "maximum_dimensions")["value"]["max_diameter"]), "mm")
    words = " ".join(texts(sr))
    assert "Research use only" in words and "unverified" in words
    assert "estimated volume" in words or sizes["status"] != "estimated"  # parameter texts are kept
    assert result.model["sha256"] in words  # algorithm identification parameters
    # The device observer is the model.
    observer = [i for i in content_items(sr) if i.ConceptNameCodeSequence[0].get("CodeValue") == "121015"]
    assert observer and observer[0].TextValue == result.model["name"]


def test_parametric_map_is_the_relevance_map_on_the_source_grid(dicom_run, service: AnalysisService) -> None:
    _, source, path, files = dicom_run
    pm = pydicom.dcmread(files["pm.dcm"])
    values = pm.pixel_array.astype(np.float64)
    assert values.shape == (int(source.Rows), int(source.Columns))
    expected = relevance_on_scan(service, path)
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert pm.FrameOfReferenceUID == source.FrameOfReferenceUID
    derivation = pm.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert derivation.ReferencedSOPInstanceUID == source.SOPInstanceUID
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0].CodeMeaning == "Saliency"
    assert [float(v) for v in pm.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing] == list(
        SPACING
    )


def test_overlay_and_pdf_refer_to_the_source(dicom_run) -> None:
    result, source, _, files = dicom_run
    sc = pydicom.dcmread(files["overlay-sc.dcm"])
    assert sc.PhotometricInterpretation == "RGB" and sc.pixel_array.shape == (source.Rows, source.Columns, 3)
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    overlay = np.asarray(Image.open(result.images["overlay"]).convert("RGB"))
    top = sc.pixel_array[: source.Rows // 2]
    assert np.array_equal(top, overlay[: source.Rows // 2])  # only the bottom strip carries the banner
    doc = pydicom.dcmread(files["pdf.dcm"])
    pdf = result.report_pdf.read_bytes()
    assert doc.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert bytes(doc.EncapsulatedDocument)[: doc.EncapsulatedDocumentLength] == pdf
    assert doc.SourceInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


# -- non-DICOM input: a new study -------------------------------------------------------------------


def test_jpeg_input_opens_a_new_study_without_mm_units(jpeg_run) -> None:
    root, files = jpeg_run
    assert set(files) == {"source-sc.dcm", "sr.dcm", "seg.dcm", "overlay-sc.dcm", "pdf.dcm"}
    datasets = {name: pydicom.dcmread(path) for name, path in files.items()}
    capture = datasets["source-sc.dcm"]
    assert capture.SOPClassUID == SecondaryCaptureImageStorage
    assert np.array_equal(capture.pixel_array, read_raster(root / "scan.jpg"))
    assert {ds.StudyInstanceUID for ds in datasets.values()} == {capture.StudyInstanceUID}
    for ds in datasets.values():
        assert (str(ds.PatientName), ds.PatientID, ds.PatientSex) == ("Jane Roe^", "J-1", "F")
    sr = datasets["sr.dcm"]
    units = {unit for _, unit in sr_numbers(sr).values()}
    assert not units & UNIT_MM
    assert sr_numbers(sr)["Area"][1] == "{pixels}"  # the seeded model predicts a tumour class: the region has an area
    assert not any("volume" in k for k in sr_numbers(sr))  # a volume in pixel units would mean nothing
    assert any("not DICOM" in t and "new study" in t for t in texts(sr))
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == capture.SOPInstanceUID
    seg = hd.seg.segread(files["seg.dcm"])
    assert seg.SOPClassUID == SegmentationStorage
    # Segment 1: the relevance region; segment 2 only when the shipped segmentation model outlined a tumour.
    assert seg.get_segment_numbers() in ([1], [1, 2])
    assert seg.pixel_array.shape[-2:] == capture.pixel_array.shape


# -- the builders with plain data ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(dicom_run) -> tuple[dict[str, Any], AnalysisImages, pydicom.Dataset]:
    result, source, _, _ = dicom_run
    rng = np.random.default_rng(1)
    shape = (int(source.Rows), int(source.Columns))
    relevance = rng.normal(size=shape).astype(np.float32)
    region = np.zeros(shape, bool)
    region[40:80, 50:100] = True
    overlay = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    images = AnalysisImages(np.zeros(shape, np.uint8), relevance, region, overlay)
    return result.to_dict(), images, pydicom.dcmread(io.BytesIO(_bytes(source)), stop_before_pixels=True)


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_uids_are_deterministic_per_source_model_and_method(plain) -> None:
    result, images, source = plain
    first, _ = build_dicom_outputs(result, images, None, source)
    again, _ = build_dicom_outputs(result, images, None, source)
    other, _ = build_dicom_outputs({**result, "method": "lrp"}, images, None, source)
    assert {k: d.SOPInstanceUID for k, d in first.items()} == {k: d.SOPInstanceUID for k, d in again.items()}
    assert not {d.SOPInstanceUID for d in first.values()} & {d.SOPInstanceUID for d in other.values()}
    np.testing.assert_array_equal(first["pm"].pixel_array, images.relevance)  # float32, stored exactly


def test_assumed_spacing_is_never_coded_as_mm(plain) -> None:
    result, images, source = plain
    scan = {**result["scan"], "pixel_spacing_mm": None, "assumed_pixel_spacing_mm": [0.5, 0.5]}
    objects, _ = build_dicom_outputs({**result, "scan": scan}, images, None, source)
    got = sr_numbers(objects["sr"])
    assert not {unit for _, unit in got.values()} & (UNIT_MM | {"{pixels}"})
    assert {"Area", "Estimated volume (ellipsoid from one slice)", "Long axis"}.isdisjoint(got)
    assert any("ASSUMED by the user" in t for t in texts(objects["sr"]))


def test_source_without_geometry_gets_no_map_and_says_why(plain, tmp_path: Path) -> None:
    result, images, source = plain
    bare = copy.deepcopy(source)
    for keyword in ("FrameOfReferenceUID", "ImagePositionPatient", "StudyInstanceUID", "SeriesInstanceUID"):
        del bare[keyword]
    written = write_dicom_outputs(result, images, out_dir=tmp_path, base="bare", source=bare)
    # An MR image without a frame of reference is broken: neither a map nor a segmentation can refer to it.
    assert set(written.files) == {"sr", "overlay"}
    assert any("no patient geometry" in n for n in written.notes)
    assert any("Segmentation not written" in n for n in written.notes)
    sr = pydicom.dcmread(written.files["sr"])
    assert any("has no StudyInstanceUID" in t for t in texts(sr))  # a derived UID, said so
    _assert_valid(written.files.values())


def test_non_dicom_source_gets_an_exact_segmentation_of_the_region(plain) -> None:
    result, images, _ = plain
    scan = {**result["scan"], "format": "png", "pixel_spacing_mm": None}
    original = np.random.default_rng(2).integers(0, 256, images.region.shape, dtype=np.uint8)
    objects, summary = build_dicom_outputs(
        {**result, "scan": scan}, dataclasses.replace(images, original=original), None, None
    )
    assert summary.new_study and set(objects) == {"source", "sr", "seg", "overlay"}
    np.testing.assert_array_equal(objects["source"].pixel_array, original)
    seg = hd.seg.Segmentation.from_dataset(objects["seg"])
    np.testing.assert_array_equal(seg.pixel_array.reshape(images.region.shape).astype(bool), images.region)
    assert seg.SegmentSequence[0].SegmentLabel.startswith("relevance region (not a tumour")
    assert any("stored as a Segmentation" in t for t in texts(objects["sr"]))
    assert objects["seg"].StudyInstanceUID == objects["source"].StudyInstanceUID == summary.study_uid


def test_source_without_slice_thickness_still_gets_a_valid_map(plain, tmp_path: Path) -> None:
    result, images, source = plain
    thin = copy.deepcopy(source)
    del thin.SliceThickness  # Type 2, yet often missing
    written = write_dicom_outputs(result, images, out_dir=tmp_path, base="thin", source=thin)
    assert {"sr", "pm", "overlay"} <= set(written.files)
    assert "SliceThickness" not in source or source.SliceThickness == 5.0  # the caller's data set is untouched
    _assert_valid([written.files["pm"]])


def test_frame_of_a_single_frame_class_is_not_referenced_as_a_frame(plain) -> None:
    result, images, source = plain
    odd = copy.deepcopy(source)
    odd.NumberOfFrames = 3  # an MR Image (single-frame IOD) that holds frames anyway
    objects, summary = build_dicom_outputs({**result, "scan": {**result["scan"], "slice_index": 1}}, images, None, odd)
    assert any("Frame 2 of the source was analysed" in n for n in summary.notes)
    refs = [i for i in content_items(objects["sr"]) if "ReferencedSOPSequence" in i]
    assert refs and all("ReferencedFrameNumber" not in r.ReferencedSOPSequence[0] for r in refs)


def test_out_of_domain_finding_is_not_assessable(plain) -> None:
    result, images, source = plain
    objects, _ = build_dicom_outputs({**result, "assessable": False}, images, None, source)
    (group,) = hd.sr.ComprehensiveSR.from_dataset(objects["sr"]).content.get_image_measurement_groups()
    assert group.finding_type.value == "not-assessable"
    assert len([m for m in sr_numbers(objects["sr"]) if m.startswith("Probability of")]) == len(result["probabilities"])


def test_no_pdf_no_encapsulated_pdf_and_a_non_pdf_is_refused(plain) -> None:
    result, images, source = plain
    objects, _ = build_dicom_outputs(result, images, None, source)
    assert "pdf" not in objects
    with pytest.raises(ValueError, match="not a PDF"):
        build_dicom_outputs(result, images, b"GIF89a", source)


# -- dciodvfy ------------------------------------------------------------------------------------------


DCIODVFY_MISSING = "dciodvfy not installed (Debian package dicom3tools); DICOM validation skipped"


def _assert_valid(paths, *, skip: bool = False) -> None:
    """No "Error" line from dciodvfy for any file; without dciodvfy, skip (``skip``) or check nothing."""
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        if skip:
            pytest.skip(DCIODVFY_MISSING)
        return
    for path in paths:
        run = subprocess.run([dciodvfy, str(path)], capture_output=True, timeout=60)
        report = (run.stdout + run.stderr).decode("utf-8", "replace")
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert not errors, f"{Path(path).name}:\n" + "\n".join(errors)


def test_dciodvfy_finds_no_errors(dicom_run, jpeg_run) -> None:
    _assert_valid([*dicom_run[3].values(), *jpeg_run[1].values()], skip=True)


def test_options_carry_dicom_out() -> None:
    options = dataclasses.replace(AnalysisOptions(), dicom_out="x")
    assert options.dicom_out == "x" and AnalysisOptions().dicom_out is None


@pytest.mark.parametrize("kind", ["dicom", "jpeg"])
def test_deferred_outputs_are_the_files_written_at_once(
    kind: str, service: AnalysisService, sample: np.ndarray, samples_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """Saved inputs build byte for byte what the analysis writes at once: for a DICOM slice (parametric map, in
    the source's study) and a JPEG (new study, region as a Segmentation), from the result as the web stores it."""
    if kind == "dicom":
        source = tmp_path / "scan.dcm"
        source_dataset(sample).save_as(source, enforce_file_format=True)
    else:
        source = samples_dir / "glioma.jpg"
    options = AnalysisOptions(method="gradcam", agreement=False)
    later, eager = deferred_and_eager(service, source, options, tmp_path, monkeypatch)
    kinds = {k.removesuffix(".dcm") for name in eager for k in KINDS if name.endswith(f"-{k}")}
    if kind == "dicom":  # a segmented tumour adds a Segmentation beside the map
        assert {"sr", "pm", "overlay-sc", "pdf"} <= kinds and "source-sc" not in kinds
    else:
        assert kinds == {"source-sc", "sr", "seg", "overlay-sc", "pdf"}
    assert later.keys() == eager.keys()
    for name, data in eager.items():
        assert later[name] == data, name
