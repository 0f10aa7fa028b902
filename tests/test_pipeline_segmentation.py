"""The segmented tumour in the analysis: parameters measured on it, the disagreement warning, old outputs kept.

The segmentation model is a stub returning a fixed mask (the expert outline of a figshare development
slice), and the classifier's verdict is forced, so each case is constructed exactly; the classifier is
an untrained checkpoint (plumbing and numbers, not accuracy).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from dicomfiles import deferred_and_eager
from pypdf import PdfReader

from brainxai.analysis.lesion import MIN_LESION_AREA_MODEL_PX
from brainxai.analysis.spatial import feret_diameters
from brainxai.analysis.spatial.geometry import Spacing
from brainxai.pipeline import AnalysisOptions, AnalysisResult, AnalysisService
from brainxai.pipeline import segment as segment_step
from brainxai.pipeline.segment import SegmenterUnavailableError, TumourSegmenter

SLICE = "glioma_1854"
QUICK = AnalysisOptions(method="gradcam", agreement=False, report=False)
LESION_KEYS = (
    "anatomical_region",
    "hemisphere",
    "spatial_relation",
    "area_volume",
    "maximum_dimensions",
    "texture",
    "peritumoral_oedema",
)


class StubSegmenter:
    """Returns ``mask`` for every slice (set it per test); counts its calls."""

    name = "stub-seg"
    sha256 = "0" * 64
    threshold = 0.5

    def __init__(self, mask: np.ndarray) -> None:
        self.planted = mask
        self.calls = 0

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "checkpoint": "stub.safetensors", "sha256": self.sha256, "threshold": 0.5}

    def probability(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
        return [self.planted.astype(np.float32) for _ in images]

    def mask(self, prob: np.ndarray) -> np.ndarray:
        return prob >= self.threshold

    def segment(self, image: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.last_shape = image.shape
        self.thread = threading.current_thread().name
        return self.planted.copy()


class WorkerStub(StubSegmenter):
    """A stub that, like the ONNX-served Segmenter, may run in a worker thread."""

    def can_run_in_worker(self) -> bool:
        return True


@pytest.fixture(scope="module")
def dev_slice(shared_data: Path) -> tuple[Path, np.ndarray]:
    root = shared_data / "figshare-masks-dev"
    if not (root / "slices.csv").is_file():
        pytest.skip(f"{root} not present")
    mask = cv2.imread(str(root / "masks" / f"{SLICE}.png"), cv2.IMREAD_GRAYSCALE) > 0
    return root / "images" / f"{SLICE}.jpg", mask


@pytest.fixture(scope="module")
def stub(dev_slice: tuple[Path, np.ndarray]) -> StubSegmenter:
    return StubSegmenter(dev_slice[1])


@pytest.fixture(scope="module")
def service(random_checkpoint: Path, stub: StubSegmenter) -> AnalysisService:
    return AnalysisService(random_checkpoint, device="cpu", segmenter=stub)


def force(monkeypatch: pytest.MonkeyPatch, service: AnalysisService, prediction: str) -> None:
    """Makes the classifier predict ``prediction`` with probability 0.9 (in domain)."""
    classes = list(service.classifier.classes)
    probs = np.full((1, len(classes)), 0.1 / (len(classes) - 1), np.float32)
    probs[0, classes.index(prediction)] = 0.9
    monkeypatch.setattr(service.classifier, "assess_outputs", lambda logits, features: (probs, None))


def param(result: Any, key: str) -> dict[str, Any]:
    return next(p for p in result.spatial_parameters if p["key"] == key)


def test_parameters_are_measured_on_the_segmented_tumour(
    service: AnalysisService, dev_slice: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, mask = dev_slice
    force(monkeypatch, service, "glioma")
    result = service.analyze(path, QUICK, out_dir=tmp_path)
    pixels = int(mask.sum())
    assert result.prediction == "glioma" and not result.warnings
    assert service._segmenter.get(None).last_shape == mask.shape  # the decoded slice as it is
    expected = {**dict.fromkeys(LESION_KEYS, "segmentation"), "midline_shift": "slice", "confidence": "classifier"}
    for p in result.spatial_parameters:
        # What was not measured (e.g. rCBV without a perfusion map) names no source.
        measured = p["status"] not in ("not_applicable", "not_assessable")
        assert p["source"] == (expected.get(p["key"], "segmentation") if measured else None), p["key"]
    assert param(result, "area_volume")["source"] == "segmentation"
    # A JPEG has no pixel spacing: the area is the mask's pixel count, the diameters its Feret diameters.
    area = param(result, "area_volume")
    assert area["value"]["area"] == pixels and area["details"]["pixels"] == pixels
    longest, across = feret_diameters(mask, Spacing())
    assert param(result, "maximum_dimensions")["value"] == {
        "max_diameter": round(longest, 2),
        "perpendicular_diameter": round(across, 2),
    }
    assert param(result, "area_volume")["method"].startswith("Region = the segmented tumour")
    seg = result.segmentation
    assert seg is not None
    assert (seg["area_px"], seg["area_mm2"], seg["status"], seg["used_for_parameters"]) == (
        pixels,
        None,
        "measured",
        True,
    )
    assert seg["model"]["name"] == "stub-seg" and seg["model"]["sha256"] == "0" * 64 and seg["threshold"] == 0.5
    assert 0.0 <= result.relevance_in_tumour <= 1.0
    assert seg["relevance_in_tumour"] == pytest.approx(result.relevance_in_tumour, abs=1e-4)
    # The outline image: the scan, with green only on the tumour's border.
    outline = cv2.cvtColor(cv2.imread(str(result.images["tumour"])), cv2.COLOR_BGR2RGB)
    green = (outline[..., 1] > 200) & (outline[..., 0] < 80) & (outline[..., 2] < 120)
    assert green.any()
    near = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert not (green & ~near).any()
    data = json.loads(result.report_json.read_text())
    assert data["segmentation"]["area_px"] == pixels and data["relevance_in_tumour"] == result.relevance_in_tumour
    assert data["images"]["tumour"].endswith("-tumour.png")


def test_area_in_mm2_with_a_known_spacing(
    service: AnalysisService, dev_slice: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, mask = dev_slice
    force(monkeypatch, service, "meningioma")
    result = service.analyze(
        path, AnalysisOptions(method="gradcam", agreement=False, assumed_pixel_spacing_mm=0.5), out_dir=tmp_path
    )
    assert param(result, "area_volume")["value"]["area"] == pytest.approx(mask.sum() * 0.25)
    assert result.segmentation["area_mm2"] == pytest.approx(mask.sum() * 0.25)
    assert result.segmentation["area_px"] == int(mask.sum())
    assert result.segmentation["pixel_spacing_source"] == "assumed"
    text = "".join(page.extract_text() for page in PdfReader(str(result.report_pdf)).pages)
    assert "Segmented tumour" in text and "Relevance in tumour" in text and "stub-seg" in text
    assert "pixel spacing ASSUMED" in " ".join(text.split())
    assert "tumour probability ≥ 0.5" in " ".join(text.split())  # a segmenter that does not name its rule


def test_no_tumour_prediction_with_a_sizeable_lesion_warns(
    service: AnalysisService, dev_slice: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, mask = dev_slice
    force(monkeypatch, service, "notumor")
    result = service.analyze(path, AnalysisOptions(method="gradcam", agreement=False), out_dir=tmp_path)
    assert len(result.warnings) == 1 and "the classifier found no tumour" in result.warnings[0]
    assert result.segmentation["disagreement"] is True
    assert result.segmentation["area_model_grid_px"] >= MIN_LESION_AREA_MODEL_PX
    # No tumour predicted: the lesion parameters stay not applicable, the lesion is shown and sized.
    assert param(result, "area_volume")["status"] == "not_applicable"
    assert param(result, "area_volume")["source"] is None  # nothing measured
    assert result.relevance_in_tumour is None and "tumour" in result.images
    text = " ".join("".join(page.extract_text() for page in PdfReader(str(result.report_pdf)).pages).split())
    assert "two models disagree" in text
    # The images' note says why the heatmap is empty and what the green outline is (not the tumour-finding note).
    assert "no relevance region is drawn (heatmap and relevance outline left empty)" in text
    assert "The heatmap is the explanation" not in text


def test_tumour_prediction_with_an_empty_segmentation_warns(
    service: AnalysisService,
    stub: StubSegmenter,
    dev_slice: tuple[Path, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    path, mask = dev_slice
    force(monkeypatch, service, "pituitary")
    monkeypatch.setattr(stub, "planted", np.zeros_like(mask))
    result = service.analyze(path, QUICK, out_dir=tmp_path)
    assert len(result.warnings) == 1 and "outlines no tumour" in result.warnings[0]
    assert result.segmentation["status"] == "empty" and result.segmentation["used_for_parameters"] is False
    # Back to the relevance region, said so by the source.
    assert param(result, "area_volume")["source"] == "relevance"
    assert param(result, "area_volume")["value"]["area"] > 0
    assert "tumour" not in result.images


def test_small_lesion_below_the_threshold_does_not_warn(
    service: AnalysisService,
    stub: StubSegmenter,
    dev_slice: tuple[Path, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    path, mask = dev_slice
    force(monkeypatch, service, "notumor")
    small = np.zeros_like(mask)
    small[250:254, 250:254] = True  # 16 px on a 512 slice: a few pixels on the 224 grid
    monkeypatch.setattr(stub, "planted", small)
    result = service.analyze(path, replace(QUICK, report=True), out_dir=tmp_path)
    assert not result.warnings
    assert result.segmentation["area_px"] == 16 and result.segmentation["disagreement"] is False
    # The report says why a small outline beside a "no tumour" finding is neither measured nor flagged.
    text = " ".join(" ".join(page.extract_text() for page in PdfReader(str(result.report_pdf)).pages).split())
    assert "is below the 100 px² at which the two models are reported to disagree" in text


def test_without_a_segmenter_the_outputs_are_the_old_ones(
    random_checkpoint: Path,
    service: AnalysisService,
    dev_slice: tuple[Path, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    path, _ = dev_slice
    monkeypatch.setattr(segment_step, "_shipped_available", lambda: False)
    plain = AnalysisService(random_checkpoint, device="cpu")
    for s in (plain, service):
        force(monkeypatch, s, "glioma")
    off = service.analyze(
        path, AnalysisOptions(method="gradcam", agreement=False, report=False, segment=False), out_dir=tmp_path / "off"
    )
    none = plain.analyze(path, QUICK, out_dir=tmp_path / "none")
    for result in (off, none):
        assert result.segmentation is None and result.relevance_in_tumour is None
        assert "tumour" not in result.images and not result.warnings
        assert {p["source"] for p in result.spatial_parameters} <= {"relevance", "slice", "classifier", None}
        assert param(result, "area_volume")["source"] == "relevance"
    # The same parameters as before segmentation existed: only ``source`` was added.
    strip = [{k: v for k, v in p.items() if k != "source"} for p in off.spatial_parameters]
    assert strip == [{k: v for k, v in p.items() if k != "source"} for p in none.spatial_parameters]
    assert not any(p["method"].startswith("Region = the segmented") for p in off.spatial_parameters)
    with pytest.raises(SegmenterUnavailableError, match="no segmentation model is installed"):
        plain.analyze(path, AnalysisOptions(segment=True), out_dir=tmp_path / "required")


def test_out_of_domain_image_is_not_segmented(
    service: AnalysisService,
    stub: StubSegmenter,
    dev_slice: tuple[Path, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    path, _ = dev_slice
    force(monkeypatch, service, "glioma")
    probs, _ = service.classifier.assess_outputs(None, None)
    monkeypatch.setattr(service.classifier, "assess_outputs", lambda logits, features: (probs, np.array([9.0])))
    monkeypatch.setattr(type(service.classifier), "domain_threshold", property(lambda self: 1.0))
    calls = stub.calls
    result = service.analyze(path, QUICK, out_dir=tmp_path)
    assert result.in_domain is False and stub.calls == calls
    assert result.segmentation is None and "tumour" not in result.images
    assert all(p["status"] == "not_assessable" for p in result.spatial_parameters)


def test_slot_loads_once_and_checks_the_contract() -> None:
    mask = np.zeros((8, 8), bool)
    stub = StubSegmenter(mask)
    assert isinstance(stub, TumourSegmenter)
    slot = segment_step.SegmenterSlot(stub)
    assert slot.get(None) is stub and slot.get(True) is stub and slot.get(False) is None
    with pytest.raises(TypeError, match="lacks the TumourSegmenter methods"):
        segment_step.SegmenterSlot(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not match the slice"):
        slot.segment(stub, np.zeros((4, 4), np.uint8))


def test_dicom_segmentation_carries_the_tumour_as_a_second_segment(
    service: AnalysisService, dev_slice: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import highdicom as hd
    import pydicom

    path, mask = dev_slice
    force(monkeypatch, service, "glioma")
    options = AnalysisOptions(method="gradcam", agreement=False, report=False, dicom_out=tmp_path / "dicom")
    result = service.analyze(path, options, out_dir=tmp_path)
    (seg_file,) = (tmp_path / "dicom").glob("*-seg.dcm")
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(seg_file))
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert labels[0].startswith("relevance region") and labels[1] == "tumour (automatic segmentation)"
    tumour = seg.get_pixels_by_source_instance(
        [(seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID)], segment_numbers=[2]
    )
    np.testing.assert_array_equal(tumour.reshape(mask.shape).astype(bool), mask)
    assert result.segmentation["area_px"] == int(mask.sum())


def test_deferred_dicom_outputs_keep_the_tumour_segment(
    service: AnalysisService, dev_slice: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, _ = dev_slice
    force(monkeypatch, service, "glioma")
    options = AnalysisOptions(method="gradcam", agreement=False, report=False)
    later, eager = deferred_and_eager(service, path, options, tmp_path, monkeypatch)
    assert any(name.endswith("-seg.dcm") for name in eager) and later == eager  # the tumour is the second segment


def test_the_real_segmenter_class_fits_the_pipeline(
    random_checkpoint: Path, dev_slice: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An untrained ``unet-lite0`` checkpoint through ``brainxai.segmentation.Segmenter``, loaded lazily by path."""
    segmentation = pytest.importorskip("brainxai.segmentation")
    import torch

    from brainxai.models import create_model
    from brainxai.models.checkpoint import CheckpointMeta, save_checkpoint, update_checkpoint_meta

    torch.manual_seed(0)
    net = create_model("unet-lite0", pretrained=False)
    ckpt = tmp_path / "seg"
    save_checkpoint(ckpt, net, CheckpointMeta("unet-lite0", ["tumour"], net.brainxai_config.preprocess))
    update_checkpoint_meta(ckpt, task="segmentation", threshold=0.5)
    assert isinstance(segmentation.Segmenter.load(ckpt, device="cpu"), TumourSegmenter)

    path, _ = dev_slice
    service = AnalysisService(random_checkpoint, device="cpu", segmenter=ckpt)
    force(monkeypatch, service, "glioma")
    result = service.analyze(path, QUICK, out_dir=tmp_path / "out")
    seg = result.segmentation
    assert seg is not None and seg["model"]["name"] == "unet-lite0" and seg["threshold"] == 0.5
    assert seg["model"]["sha256"] == segmentation.Segmenter.load(ckpt, device="cpu").sha256
    source = "segmentation" if seg["area_px"] else "relevance"
    assert param(result, "area_volume")["source"] == source
    assert service._segmenter.get(None) is service._segmenter.get(True)  # loaded once


def test_slot_segments_in_a_worker_only_when_the_segmenter_allows_it() -> None:
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:6] = True
    image = np.zeros((8, 8), np.uint8)
    for stub, in_worker in ((StubSegmenter(mask), False), (WorkerStub(mask), True)):
        slot = segment_step.SegmenterSlot(stub)
        np.testing.assert_array_equal(slot.start(stub, image).result(timeout=10), mask)
        assert stub.thread.startswith("brainxai-segment") is in_worker
        assert (stub.thread == threading.current_thread().name) is not in_worker
        # A wrong mask raises where the caller waits for it.
        with pytest.raises(ValueError, match="does not match the slice"):
            slot.start(stub, np.zeros((4, 4), np.uint8)).result(timeout=10)


def test_analysis_with_the_segmenter_in_a_worker_gives_the_same_result(
    service: AnalysisService,
    random_checkpoint: Path,
    dev_slice: tuple[Path, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    path, mask = dev_slice
    worker = WorkerStub(mask)
    beside = AnalysisService(random_checkpoint, device="cpu", segmenter=worker)
    options = AnalysisOptions(method="gradcam", agreement=True, report=False)
    results = []
    for svc in (service, beside):
        force(monkeypatch, svc, "glioma")
        results.append(svc.analyze(path, options, out_dir=tmp_path / str(len(results)), name="x"))
    assert worker.thread.startswith("brainxai-segment")
    inline, threaded = results
    assert threaded.segmentation is not None and threaded.segmentation["area_px"] == int(mask.sum())
    assert {**threaded.segmentation, "model": None} == {**inline.segmentation, "model": None}
    assert threaded.spatial_parameters == inline.spatial_parameters and threaded.agreement == inline.agreement


def test_a_batch_queues_every_segmentation_before_finishing_its_first_scan(
    random_checkpoint: Path, dev_slice: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The worker segments the next scans while the first is measured; an out-of-domain scan is not segmented."""
    from brainxai.pipeline.service import ScanInput

    path, mask = dev_slice
    svc = AnalysisService(random_checkpoint, device="cpu", segmenter=WorkerStub(mask))
    force(monkeypatch, svc, "glioma")
    probs, _ = svc.classifier.assess_outputs(None, None)
    scores = np.array([0.0, 0.0, 9.0])  # the third scan is out of domain
    monkeypatch.setattr(
        svc.classifier, "assess_outputs", lambda logits, features: (np.repeat(probs, len(logits), 0), scores)
    )
    monkeypatch.setattr(type(svc.classifier), "domain_threshold", property(lambda self: 1.0))
    events: list[str] = []
    start, finish = svc._segmenter.start, svc._finish

    def logged(name: str, call: Any) -> Any:
        def run(*args: Any) -> Any:
            events.append(name)
            return call(*args)

        return run

    monkeypatch.setattr(svc._segmenter, "start", logged("start", start))
    monkeypatch.setattr(svc, "_finish", logged("finish", finish))
    scans = [ScanInput(path, name=f"s{i}") for i in range(3)]
    results = svc.analyze_many(scans, QUICK, out_dir=tmp_path)
    assert events == ["start", "start", "finish", "finish", "finish"]
    done = [r for r in results if isinstance(r, AnalysisResult)]
    assert len(done) == 3 and [r.segmentation is not None for r in done] == [True, True, False]
    assert done[0].segmentation == done[1].segmentation and done[0].segmentation["area_px"] == int(mask.sum())
