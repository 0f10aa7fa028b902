"""Whole series and volumes: every brain slice classified and explained, one series-level finding.

::

    result = analyze_series("series_folder/", AnalysisOptions(dicom_out="dicom"), out_dir="out")
    results = analyze_study("study_folder/", out_dir="out")        # one result per DICOM series

The slices come from :func:`brainxai.io.series.read_volume` (DICOM series sorted along the slice
normal, multi-frame DICOM, NIfTI cut along its slice axis). Each slice goes through the same steps as
a single image (:mod:`brainxai.pipeline.steps`: brain check, prepare, classify, explain, map back)
with the service's classifier and explainers, in batches. Slices that are not brain (localisers,
empty or non-brain images per :func:`brainxai.io.check_brain_scan`) are skipped and listed with the
reason.

**Series-level finding** (:func:`aggregate`): for each tumour class, the mean of its ``k`` highest
slice probabilities (``k = min(3, slices analysed)``). The tumour class with the highest mean is the
finding when that mean reaches 0.5 (on average, the most probable class on its own ``k`` best
slices); otherwise the finding is "no tumour". The key slices are the ``k`` slices behind the
finding (for "no tumour": the ``k`` most suspicious, highest ``1 - P(no tumour)``), and the series'
probabilities are the mean class probabilities over the key slices. Out-of-domain slices take no
part while any slice is in domain. All slices are explained for the series' finding, so the heatmap
volume shows one class.

**Segmentation** (with a segmentation model, unless ``AnalysisOptions.segment`` is False; not for a
series outside the training domain): every analysed slice is segmented, in batches, into the tumour
mask volume (``<name>-tumour.nii.gz``), per-slice areas and the ``tumour_volume`` record
(:func:`tumour_volume`); the strongest key slice's lesion parameters are measured on its mask, as for
a single image (:func:`brainxai.pipeline.segment.segment`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from brainxai.analysis.lesion import MIN_LESION_AREA_MODEL_PX
from brainxai.constants import CLASS_TITLES, DISCLAIMER, NO_TUMOUR
from brainxai.io import ImageReadError, NotABrainScanError, ScanImage, check_brain_scan
from brainxai.io.series import DicomSeries, SeriesVolume, group_dicom_series, load_dicom_series, read_volume
from brainxai.models.domain import not_assessable_message
from brainxai.pipeline import measure, outputs, segment, steps
from brainxai.pipeline.options import AnalysisOptions
from brainxai.pipeline.result import TUMOUR_IMAGE, json_bytes
from brainxai.util.files import atomic_write_bytes
from brainxai.util.names import safe_stem
from brainxai.util.pools import shared_pool
from brainxai.version import __version__

if TYPE_CHECKING:
    from brainxai.pipeline.service import AnalysisService

logger = logging.getLogger(__name__)

#: Slices averaged per class for the series-level finding.
TOP_K = 3
#: The best tumour class is the finding when the mean of its top-k slice probabilities reaches this.
TUMOUR_THRESHOLD = 0.5

AGGREGATION_RULE = (
    f"Series finding: for each tumour class, the mean of its {TOP_K} highest slice probabilities (fewer when fewer "
    f"slices were analysed); the class with the highest mean is the finding when that mean is at least "
    f"{TUMOUR_THRESHOLD:g}, otherwise 'no tumour'. Key slices: the slices behind that mean (for 'no tumour', the "
    "most suspicious slices: highest 1 - P(no tumour)). Series probabilities: the mean class probabilities over "
    "the key slices. These are model outputs, not the probability that the patient has the disease."
)


@dataclass(frozen=True)
class Aggregate:
    """The series-level finding from per-slice probabilities (see :func:`aggregate`).

    Attributes:
        prediction: The finding.
        probabilities: Mean class probabilities over the key slices.
        class_scores: Per tumour class, the mean of its ``k`` highest slice probabilities.
        key_rows: Rows of the probability matrix that carry the finding, most probable first.
    """

    prediction: str
    probabilities: dict[str, float]
    class_scores: dict[str, float]
    key_rows: list[int]


def aggregate(
    probs: np.ndarray, classes: Sequence[str], k: int = TOP_K, threshold: float = TUMOUR_THRESHOLD
) -> Aggregate:
    """The series-level finding of ``(N, C)`` slice probabilities (the rule in the module docstring).

    Raises:
        ValueError: No slices, or the shapes disagree.
    """
    probs = np.asarray(probs, dtype=float)
    classes = list(classes)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] != len(classes):
        raise ValueError(f"need (N>0, {len(classes)}) slice probabilities, got {probs.shape}")
    k = max(1, min(k, probs.shape[0]))

    def top(column: np.ndarray) -> np.ndarray:
        return np.argsort(-column, kind="stable")[:k]

    tumours = [c for c in classes if c != NO_TUMOUR]
    scores = {c: float(probs[top(probs[:, classes.index(c)]), classes.index(c)].mean()) for c in tumours}
    best = max(tumours, key=lambda c: scores[c]) if tumours else None
    if best is not None and scores[best] >= threshold:
        prediction, rows = best, top(probs[:, classes.index(best)])
    else:
        suspicion = 1.0 - probs[:, classes.index(NO_TUMOUR)] if NO_TUMOUR in classes else probs.max(axis=1)
        prediction, rows = (NO_TUMOUR if NO_TUMOUR in classes else classes[int(probs.mean(0).argmax())]), top(suspicion)
    mean = probs[rows].mean(axis=0)
    return Aggregate(
        prediction, {c: float(p) for c, p in zip(classes, mean, strict=True)}, scores, [int(r) for r in rows]
    )


@dataclass
class SeriesResult:
    """Everything the analysis of one series produced; ``to_dict()`` is what its JSON file holds.

    ``per_slice`` lists every analysed slice (``index``, ``probabilities``, ``prediction``, plus position,
    out-of-domain score and, when segmented, ``tumour_area_px``/``tumour_area_mm2``); ``skipped`` every
    slice or instance not analysed (``index``, ``reason``; ``index`` is None for instances left out of the
    volume, e.g. localisers). When a segmentation model ran: ``tumour_nifti`` (the mask volume),
    ``tumour_volume`` (the series record, see :func:`tumour_volume`), ``segmentation`` (the strongest key
    slice's segmented tumour, as a single image's) and ``relevance_in_tumour`` (on that slice).
    """

    prediction: str
    probabilities: dict[str, float]
    key_slices: list[int]
    per_slice: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    report_pdf: Path | None
    report_json: Path
    heatmap_nifti: Path | None
    dicom_files: list[Path] = field(default_factory=list)
    study_uid: str | None = None
    series_uid: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    source_name: str = ""
    method: str = "lrp"
    class_scores: dict[str, float] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    key_images: dict[str, dict[str, Path]] = field(default_factory=dict)
    spatial_parameters: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    assessable: bool = True
    tumour_nifti: Path | None = None
    tumour_volume: dict[str, Any] | None = None
    segmentation: dict[str, Any] | None = None
    relevance_in_tumour: float | None = None

    @property
    def confidence(self) -> float:
        """The series probability of the finding."""
        return float(self.probabilities.get(self.prediction, 0.0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (paths as strings), with the rule, the disclaimer and the version."""
        d = asdict(self)
        for key in ("report_pdf", "report_json", "heatmap_nifti", "tumour_nifti"):
            d[key] = str(d[key]) if d[key] is not None else None
        d["dicom_files"] = [str(p) for p in self.dicom_files]
        d["key_images"] = {k: {kind: str(p) for kind, p in v.items()} for k, v in self.key_images.items()}
        d["confidence"] = self.confidence
        d["prediction_title"] = CLASS_TITLES.get(self.prediction, self.prediction)
        d["tumour"] = self.prediction != NO_TUMOUR
        d["aggregation_rule"] = AGGREGATION_RULE
        d["disclaimer"] = DISCLAIMER
        d["brainxai_version"] = __version__
        return d


@dataclass
class _Slices:
    """The analysed slices of a volume: their indices, prepared images and model outputs."""

    indices: list[int]
    prepared: list[steps.PreparedImage]
    probs: np.ndarray
    domain: np.ndarray | None
    skipped: list[dict[str, Any]]


def analyze_series(
    source: str | Path | Sequence[str | Path],
    options: AnalysisOptions | None = None,
    *,
    out_dir: str | Path,
    service: AnalysisService | None = None,
    name: str | None = None,
) -> SeriesResult:
    """Analyses ONE series: a folder or file list of one DICOM series, a multi-frame DICOM, or a NIfTI volume.

    Writes ``<name>.json``, ``<name>.pdf`` (unless ``options.report`` is False), the heatmap volume
    ``<name>-heatmap.nii.gz``, the key slices' overlays and, with ``options.dicom_out``, the DICOM outputs.

    Raises:
        ImageReadError: Unreadable input, a series that cannot be stacked, or no brain slice in it.
    """
    return analyze_volume(read_volume(source), options, out_dir=out_dir, service=service, name=name)


def analyze_study(
    source: str | Path | Sequence[str | Path],
    options: AnalysisOptions | None = None,
    *,
    out_dir: str | Path,
    service: AnalysisService | None = None,
    on_error: Callable[[DicomSeries, Exception], None] | None = None,
) -> list[SeriesResult]:
    """Analyses every image series of a folder (or file list) of DICOM files: one result per series.

    Each series writes into its own subfolder of ``out_dir`` (and of ``options.dicom_out``), named
    after its series number and description. Series that hold no images or are localisers are
    skipped (logged). ``on_error`` receives any series that fails (including those skipped, as
    :class:`~brainxai.io.series.SeriesSkipped`); without it, the first failure is raised.
    """
    import dataclasses

    options = options or AnalysisOptions()
    series_list = group_dicom_series([source] if isinstance(source, (str, Path)) else source)
    if not series_list:
        raise ImageReadError(f"{source}: no DICOM files found")
    results = []
    for number, series in enumerate(series_list, 1):
        folder = series_name(series, number)
        dicom_out = Path(options.dicom_out) / folder if options.dicom_out is not None else None
        try:
            volume = load_dicom_series(series)
            one = dataclasses.replace(options, dicom_out=dicom_out)
            results.append(analyze_volume(volume, one, out_dir=Path(out_dir) / folder, service=service, name=folder))
        except Exception as exc:  # one bad series must not hide the others; the caller decides
            logger.warning("series %s (%s) not analysed: %s", series.series_uid, series.description, exc)
            if on_error is None:
                raise
            on_error(series, exc)
    return results


def series_name(series: DicomSeries | Path, number: int) -> str:
    """Output name of a series (series number and description) or volume file (its stem)."""
    if isinstance(series, Path):
        return safe_stem(series.name)[:60]
    label = series.description or series.modality or "series"
    prefix = f"{series.series_number:03d}" if series.series_number is not None else f"s{number:03d}"
    return safe_stem(f"{prefix}-{label}")[:60]


def analyze_volume(
    volume: SeriesVolume,
    options: AnalysisOptions | None = None,
    *,
    out_dir: str | Path,
    service: AnalysisService | None = None,
    name: str | None = None,
) -> SeriesResult:
    """Analyses the slices of an already decoded :class:`SeriesVolume` (see :func:`analyze_series`)."""
    from brainxai.pipeline.service import get_service

    options = options or AnalysisOptions()
    service = service or get_service()
    segmenter = service.segmenter_slot.get(options.segment)  # before any work: segment=True fails here
    classes = list(service.classifier.classes)
    result = SeriesResult("", {}, [], [], [], None, Path(), None, method=options.method, source_name=volume.source_name)
    result.model = service.model_info
    slices = _classify_slices(volume, service)
    result.skipped = slices.skipped
    agg = _finding(slices, classes, service.classifier.domain_threshold, result)
    key_slices = [slices.indices[r] for r in agg.key_rows]
    relevance = service.explain_prepared(
        slices.prepared, [classes.index(agg.prediction)] * len(slices.indices), options.method
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = safe_stem(name) if name else f"{safe_stem(volume.source_name)}-{result.id[:8]}"
    maps = _maps_on_slices(volume, slices, relevance)
    result.heatmap_nifti = out / f"{base}-heatmap.nii.gz"
    heatmap = write_heatmap_nifti(volume, maps, result.heatmap_nifti, result)
    threshold = service.classifier.domain_threshold
    tumour = _segment_slices(volume, slices, service.segmenter_slot, segmenter, threshold, result)
    if tumour is not None:
        result.tumour_nifti = write_mask_nifti(volume, tumour.masks, out / f"{base}-tumour.nii.gz", tumour.model.name)
        result.tumour_volume = _tumour_record(volume, tumour)
    keys = _key_slice_outputs(volume, slices, relevance, key_slices, agg.prediction, options, out, base, result, tumour)
    if tumour is not None and agg.prediction == NO_TUMOUR:
        _lesions_beside_no_tumour(slices, tumour, result)
    result.prediction, result.probabilities, result.class_scores = agg.prediction, agg.probabilities, agg.class_scores
    result.key_slices = key_slices
    result.per_slice = _per_slice(volume, slices, classes, service.classifier.domain_threshold, tumour)
    result.series = _series_info(volume)
    result.study_uid, result.series_uid = volume.study_uid, volume.series_uid
    result.report_json = out / f"{base}.json"
    result.report_pdf = out / f"{base}.pdf" if options.report else None
    _write_report_and_json(result, keys)
    if options.dicom_out is not None:
        result.dicom_files = _write_dicom(result, volume, slices, maps, keys, options.dicom_out, base, tumour)
        atomic_write_bytes(result.report_json, json_bytes(result.to_dict()))
    heatmap.result()  # written (or its error raised) before the result is handed over
    return result


def _classify_slices(volume: SeriesVolume, service: AnalysisService) -> _Slices:
    """Brain check, prepare and classify every slice (one batch); non-brain slices are skipped with the reason."""
    skipped: list[dict[str, Any]] = [
        {"index": None, "file": item.get("file"), "reason": item.get("reason")}
        for item in volume.meta.get("excluded_instances") or []
    ]
    indices, prepared = [], []
    for i, pixels in enumerate(volume.slices):
        try:
            check_brain_scan(pixels, f"slice {i}")
        except NotABrainScanError as exc:
            skipped.append({"index": i, "reason": str(exc).removeprefix(f"slice {i}: ")})
            continue
        indices.append(i)
        prepared.append(steps.prepare(pixels, service.classifier))
    if not indices:
        raise ImageReadError(
            f"{volume.source_name}: none of its {len(volume)} slices looks like a brain scan "
            f"(first reason: {skipped[-1]['reason'] if skipped else 'none'})"
        )
    probs, domain = service.assess_prepared(prepared)
    return _Slices(indices, prepared, np.asarray(probs), None if domain is None else np.asarray(domain), skipped)


def _finding(slices: _Slices, classes: list[str], threshold: float | None, result: SeriesResult) -> Aggregate:
    """The series finding over the in-domain slices (all slices, not assessable, when none is in domain)."""
    rows = list(range(len(slices.indices)))
    if slices.domain is not None and threshold is not None:
        inside = [r for r in rows if slices.domain[r] <= threshold]
        if not inside:
            result.assessable = False
            result.warnings.append(not_assessable_message(float(np.min(slices.domain)), threshold))
        elif len(inside) < len(rows):
            result.notes.append(
                f"{len(rows) - len(inside)} slice(s) outside the model's training domain take no part in the finding."
            )
            rows = inside
    agg = aggregate(slices.probs[rows], classes)
    best = max(agg.class_scores, key=lambda c: agg.class_scores[c]) if agg.class_scores else None
    if agg.prediction == NO_TUMOUR and best is not None:
        result.notes.append(
            f"No tumour class reached {TUMOUR_THRESHOLD:g} on its top slices (highest: "
            f"{CLASS_TITLES.get(best, best)}, {agg.class_scores[best]:.2f})."
        )
    return Aggregate(agg.prediction, agg.probabilities, agg.class_scores, [rows[r] for r in agg.key_rows])


def _maps_on_slices(volume: SeriesVolume, slices: _Slices, relevance: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Every slice's relevance on its own pixel grid (zero on skipped slices)."""
    maps = [np.zeros(s.shape, dtype=np.float32) for s in volume.slices]
    for row, i in enumerate(slices.indices):
        maps[i] = steps.map_back(relevance[row], slices.prepared[row]).astype(np.float32)
    return maps


def write_heatmap_nifti(
    volume: SeriesVolume, maps: Sequence[np.ndarray], path: Path, result: SeriesResult
) -> Future[Path]:
    """Starts writing the relevance volume as NIfTI (gzip) with the source's affine; without geometry, voxel sizes
    only (code 0).

    The compression and the write run in a worker thread (both release the GIL: about 0.3 s for a 24-slice
    512-px series, overlapping the rest of the analysis, ``benchmarks/series.md``); the future gives the path.
    """
    if volume.affine is None:
        result.notes.append("The source records no patient geometry: the NIfTI volumes have voxel sizes only.")
    data = volume.voxel_array(maps).astype(np.float32)
    description = f"brainxai {result.method} relevance, research use only"
    return shared_pool("nifti", 1).submit(_write_nifti, volume, data, path, description)


def write_mask_nifti(volume: SeriesVolume, masks: Sequence[np.ndarray], path: Path, model_name: str) -> Path:
    """The segmented tumour as a ``uint8`` 0/1 NIfTI volume (gzip), with the same geometry as the heatmap volume."""
    data = volume.voxel_array([np.asarray(m, dtype=np.uint8) for m in masks])
    return _write_nifti(volume, data, path, f"brainxai tumour mask ({model_name}), estimate, research use only")


def _write_nifti(volume: SeriesVolume, data: np.ndarray, path: Path, description: str) -> Path:
    """``data`` (the :meth:`SeriesVolume.voxel_array` layout) as gzipped NIfTI with the source's affine, atomically."""
    import gzip

    import nibabel as nib

    if volume.affine is not None:
        affine, code = volume.affine, int(volume.meta.get("nifti_code", 1))
    else:
        sizes = [*(volume.pixel_spacing_mm or (1.0, 1.0))[::-1], volume.slice_spacing_mm or 1.0]
        affine, code = np.diag([*sizes, 1.0]), 0
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=code)
    image.set_sform(affine, code=code)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = description[:79].encode()
    atomic_write_bytes(path, gzip.compress(image.to_bytes(), compresslevel=1))
    return path


#: Slices per call to the segmentation model (its batch size, too).
SEGMENT_BATCH = 16

TUMOUR_VOLUME_METHOD = (
    "Tumour volume = number of tumour-mask voxels over all analysed slices x voxel volume (row x column pixel "
    "spacing x distance between slice centres, all read from the source), in mL (1 mL = 1000 mm³). Each slice's "
    "mask: the pixels where the segmentation model's tumour probability reaches its threshold, then the "
    "post-processing its checkpoint names (model.postprocess); skipped slices count "
    "as tumour-free. The segmentation model's estimate, not an expert outline."
)


@dataclass(frozen=True)
class _Tumour:
    """The series' segmentation: one bool mask per volume slice (empty where not segmented), the model, its slot."""

    masks: list[np.ndarray]
    model: segment.TumourSegmenter
    slot: segment.SegmenterSlot
    segmented: list[int]  # the slice indices segmented (in domain)


def _segment_slices(
    volume: SeriesVolume,
    slices: _Slices,
    slot: segment.SegmenterSlot,
    segmenter: segment.TumourSegmenter | None,
    domain_threshold: float | None,
    result: SeriesResult,
) -> _Tumour | None:
    """Segments every analysed in-domain slice (decoded slices, in batches); None without a segmenter or when
    the series is not assessable. Out-of-domain slices stay unsegmented (tumour-free in the volume, with a note)."""
    if segmenter is None:
        return None
    if not result.assessable:
        result.notes.append("The tumour was not segmented: the series is outside what the models were trained on.")
        return None
    rows = list(range(len(slices.indices)))
    if slices.domain is not None and domain_threshold is not None:
        rows = [r for r in rows if slices.domain[r] <= domain_threshold]
        if len(rows) < len(slices.indices):
            result.notes.append(
                f"{len(slices.indices) - len(rows)} slice(s) outside the model's training domain were not segmented: "
                "they count as tumour-free in the tumour volume."
            )
    masks = [np.zeros(s.shape[:2], dtype=bool) for s in volume.slices]
    # No lock: inference does not modify the segmentation model (the slot's lock guards loading and single use).
    for start in range(0, len(rows), SEGMENT_BATCH):
        chunk = rows[start : start + SEGMENT_BATCH]
        images = [slices.prepared[r].original for r in chunk]
        probs = segmenter.probability(images, batch_size=SEGMENT_BATCH)
        for r, image, prob in zip(chunk, images, probs, strict=True):
            i = slices.indices[r]
            if prob.shape != image.shape[:2]:
                raise ValueError(f"segmentation of slice {i}: map {prob.shape} does not match the slice {image.shape}")
            masks[i] = np.asarray(segmenter.mask(prob), dtype=bool)
    return _Tumour(masks, segmenter, slot, [slices.indices[r] for r in rows])


def _tumour_record(volume: SeriesVolume, tumour: _Tumour) -> dict[str, Any]:
    """The series' ``tumour_volume`` record: the model, then :func:`tumour_volume` of the segmented slices' masks."""
    areas = {i: int(np.count_nonzero(tumour.masks[i])) for i in tumour.segmented}
    model = {**tumour.model.info(), "name": tumour.model.name, "sha256": tumour.model.sha256}
    return {
        **tumour_volume(areas, volume.pixel_spacing_mm, volume.slice_spacing_mm),
        "model": model,
        "threshold": float(tumour.model.threshold),
    }


def _lesions_beside_no_tumour(slices: _Slices, tumour: _Tumour, result: SeriesResult) -> None:
    """The disagreement warning of a "no tumour" series whose sizeable lesions lie off the measured key slice."""
    if (result.segmentation or {}).get("disagreement"):
        return  # the key slice already says so
    sizeable = [
        i
        for row, i in enumerate(slices.indices)
        if np.count_nonzero(tumour.masks[i]) * segment.model_scale(slices.prepared[row]) >= MIN_LESION_AREA_MODEL_PX
    ]
    if sizeable:
        result.warnings.append(
            "The two models disagree: the series finding is no tumour, but the segmentation model outlines a lesion "
            f"of at least {MIN_LESION_AREA_MODEL_PX:g} px² on the classifier's input grid on slice(s) "
            f"{', '.join(map(str, sizeable))}. Review the images."
        )


def tumour_volume(
    areas_px: Mapping[int, int], pixel_spacing_mm: tuple[float, float] | None, slice_spacing_mm: float | None
) -> dict[str, Any]:
    """Slices with tumour, voxel count and volume of a segmented tumour, from each analysed slice's mask area.

    Args:
        areas_px: Slice index -> tumour pixels on that slice (every analysed slice).
        pixel_spacing_mm: ``(row, column)`` spacing read from the source, or None.
        slice_spacing_mm: Distance between slice centres read from the source, or None.

    Returns:
        ``status``, ``source``, slice counts, ``voxels``, ``voxel_volume_mm3`` and ``volume_ml`` (None, with a
        ``note`` why, unless both spacings are known) and the ``method``.
    """
    voxels = int(sum(areas_px.values()))
    with_tumour = sorted(i for i, a in areas_px.items() if a > 0)
    record: dict[str, Any] = {
        "status": "measured" if voxels else "empty",
        "source": "segmentation",
        "n_slices_segmented": len(areas_px),
        "n_slices_with_tumour": len(with_tumour),
        "slices_with_tumour": with_tumour,
        "voxels": voxels,
        "voxel_volume_mm3": None,
        "volume_ml": None,
        "method": TUMOUR_VOLUME_METHOD,
    }
    if pixel_spacing_mm is not None and slice_spacing_mm:
        voxel_mm3 = float(pixel_spacing_mm[0]) * float(pixel_spacing_mm[1]) * float(slice_spacing_mm)
        record.update(voxel_volume_mm3=round(voxel_mm3, 6), volume_ml=round(voxels * voxel_mm3 / 1000.0, 4))
    else:
        missing = [
            name
            for name, known in (
                ("pixel spacing", pixel_spacing_mm is not None),
                ("slice spacing", bool(slice_spacing_mm)),
            )
            if not known
        ]
        record["note"] = (
            f"No tumour volume: the source records no {' and no '.join(missing)}, so the voxel size is unknown; "
            "the tumour's size is given in voxels only."
        )
    return record


@dataclass(frozen=True)
class KeySlice:
    """One key slice's rendered images and relevance regions."""

    index: int
    rendered: outputs.Rendered
    regions: measure.Regions
    probability: float


def _key_slice_outputs(
    volume: SeriesVolume,
    slices: _Slices,
    relevance: Sequence[np.ndarray],
    key_slices: list[int],
    prediction: str,
    options: AnalysisOptions,
    out: Path,
    base: str,
    result: SeriesResult,
    tumour: _Tumour | None = None,
) -> list[KeySlice]:
    """Renders the key slices (with the tumour's outline when segmented), writes their images, measures the first."""
    keys, pending = [], []
    column = list(result.model.get("classes") or []) or None
    for i in key_slices:
        row = slices.indices.index(i)
        regions = measure.locate(relevance[row], slices.prepared[row])
        rendered = outputs.render(volume.slices[i], regions, prediction, tumour.masks[i] if tumour else None)
        arrays = {k: rendered.arrays[k] for k in ("overlay", "heatmap", TUMOUR_IMAGE) if k in rendered.arrays}
        pending.append(outputs.start_writing_images(arrays, out, f"{base}-slice{i:03d}"))
        p = float(slices.probs[row].max()) if column is None else float(slices.probs[row][column.index(prediction)])
        keys.append(KeySlice(i, rendered, regions, p))
    for i, images in zip(key_slices, pending, strict=True):
        images.wait()
        result.key_images[str(i)] = images.paths
    if keys:
        result.spatial_parameters = _parameters(volume, keys[0], slices, prediction, options, result, tumour)
    return keys


def _parameters(
    volume: SeriesVolume,
    key: KeySlice,
    slices: _Slices,
    prediction: str,
    options: AnalysisOptions,
    result: SeriesResult,
    tumour: _Tumour | None = None,
) -> list[dict[str, Any]]:
    """The spatial parameters of the strongest key slice, on its segmented tumour when there is one."""
    scan = ScanImage(
        pixels=volume.slices[key.index],
        pixel_spacing_mm=volume.pixel_spacing_mm,
        format=volume.format,
        source_name=volume.source_name,
        slice_index=key.index,
        meta={k: v for k, v in volume.meta.items() if k in ("modality", "sequence", "plane", "series_description")},
    )
    spacing = measure.pixel_spacing(scan, options, result.notes)
    on_tumour = None
    if tumour is not None:
        segmented = _segment_key_slice(tumour, key, slices, prediction, spacing)
        result.segmentation = {**segmented.to_dict(), "slice_index": key.index}
        result.relevance_in_tumour = segmented.relevance_in_tumour
        if segmented.warning:
            result.warnings.append(f"Key slice {key.index}: {segmented.warning}")
        on_tumour = segmented.region()
    params = measure.spatial_parameters(
        scan, key.regions, prediction, key.probability, None, spacing, options, on_tumour
    )
    result.notes.append(f"Spatial parameters measured on key slice {key.index}, the finding's strongest slice.")
    return measure.withhold_out_of_domain(params) if not result.assessable else params


def _segment_key_slice(
    tumour: _Tumour, key: KeySlice, slices: _Slices, prediction: str, spacing: measure.Spacing
) -> segment.TumourSegmentation:
    """The key slice's segmented tumour, measured as a single image's (relevance inside, disagreement)."""
    row = slices.indices.index(key.index)
    return segment.segment(
        tumour.slot,
        tumour.model,
        slices.prepared[row],
        key.regions.relevance,
        prediction != NO_TUMOUR,
        spacing.mm,
        spacing.assumed,
        mask=tumour.masks[key.index],  # segmented with the other slices: not run again
    )


def _per_slice(
    volume: SeriesVolume,
    slices: _Slices,
    classes: list[str],
    threshold: float | None,
    tumour: _Tumour | None = None,
) -> list[dict[str, Any]]:
    out = []
    spacing = volume.pixel_spacing_mm
    for row, i in enumerate(slices.indices):
        probs = {c: round(float(p), 5) for c, p in zip(classes, slices.probs[row], strict=True)}
        item: dict[str, Any] = {"index": i, "probabilities": probs, "prediction": max(probs, key=lambda c: probs[c])}
        if volume.positions_mm is not None:
            item["position_mm"] = round(volume.positions_mm[i], 3)
        if slices.domain is not None:
            item["domain_score"] = round(float(slices.domain[row]), 4)
            item["in_domain"] = threshold is None or bool(slices.domain[row] <= threshold)
        if tumour is not None and i in tumour.segmented:
            item["tumour_area_px"] = int(np.count_nonzero(tumour.masks[i]))
            if spacing is not None:
                item["tumour_area_mm2"] = round(item["tumour_area_px"] * spacing[0] * spacing[1], 2)
        if slices.prepared[row].crop_warning:
            item["warning"] = slices.prepared[row].crop_warning
        out.append(item)
    return out


def _series_info(volume: SeriesVolume) -> dict[str, Any]:
    """The ``series`` record: format, slice count, geometry and the technical attributes read."""
    info: dict[str, Any] = {
        "file": volume.source_name,
        "format": volume.format,
        "n_slices": len(volume),
        "shape": list(volume.slices[0].shape),
        "pixel_spacing_mm": list(volume.pixel_spacing_mm) if volume.pixel_spacing_mm else None,
        "slice_spacing_mm": volume.slice_spacing_mm,
        "affine_ras": volume.affine.round(6).tolist() if volume.affine is not None else None,
    }
    keep = ("modality", "series_description", "sequence", "plane", "window", "slice_axis_selection", "n_frames")
    info.update({k: volume.meta[k] for k in keep if volume.meta.get(k) is not None})
    for key in ("geometry_notes", "geometry_note", "spacing_note", "volume_note"):
        if volume.meta.get(key):
            info[key] = volume.meta[key]
    return info


def _write_report_and_json(result: SeriesResult, keys: Sequence[KeySlice]) -> None:
    """The series report PDF (when asked for), then the JSON."""
    payload = result.to_dict()
    if result.report_pdf is not None:
        from brainxai.reporting.series_pdf import write_series_report

        write_series_report(payload, {k.index: k.rendered.report_images() for k in keys}, result.report_pdf)
    atomic_write_bytes(result.report_json, json_bytes(payload))


def _write_dicom(
    result: SeriesResult,
    volume: SeriesVolume,
    slices: _Slices,
    maps: Sequence[np.ndarray],
    keys: Sequence[KeySlice],
    out_dir: str | Path,
    base: str,
    tumour: _Tumour | None = None,
) -> list[Path]:
    """The series' DICOM outputs (DICOM sources only; a NIfTI volume has no instances to refer to), with the
    segmented tumour of the slices the model segmented when ``tumour`` is given."""
    if not volume.headers:
        result.notes.append(
            "No DICOM outputs: the input is not DICOM, so there are no instances for them to refer to; "
            "the heatmap volume is in the NIfTI file."
        )
        return []
    from brainxai.reporting.dicom.series import SeriesImages, write_series_dicom

    pdf = result.report_pdf.read_bytes() if result.report_pdf is not None and result.report_pdf.is_file() else None
    images = SeriesImages(
        headers=volume.headers,
        refs=volume.refs,
        used=list(slices.indices),
        relevance=np.stack(maps),
        overlays={k.index: k.rendered.arrays["overlay"] for k in keys},
        originals={k.index: k.rendered.arrays["original"] for k in keys},
        tumour_masks={i: tumour.masks[i] for i in tumour.segmented} if tumour is not None else {},
    )
    written = write_series_dicom(result.to_dict(), images, out_dir=out_dir, base=base, pdf=pdf)
    result.notes.extend(written.notes)
    return list(written.files)


@dataclass
class InputPlan:
    """What ``brainxai analyze`` does with its inputs.

    Attributes:
        files: Single images, analysed one by one as before (raster files, single DICOM slices, and
            every input when a slice was chosen with ``--slice``).
        series: DICOM series of several slices, multi-frame DICOM files and NIfTI volumes: one series analysis each.
    """

    files: list[Path] = field(default_factory=list)
    series: list[DicomSeries | Path] = field(default_factory=list)


def plan_inputs(paths: Sequence[Path], files: Sequence[Path], slice_index: int | None = None) -> InputPlan:
    """Sorts the collected input ``files`` (from ``paths``) into single images and series.

    DICOM files are grouped by series (a folder of DICOM files is a study: one result per series); a
    series of one single-frame instance stays a single image. A multi-frame DICOM or a NIfTI volume
    with more than one slice is a series, unless ``slice_index`` asks for one slice of it.
    """
    from brainxai.io.series import is_dicom_file, is_nifti_volume

    plan = InputPlan()
    if slice_index is not None:
        plan.files = list(files)
        return plan
    dicom = []
    for f in files:
        if is_dicom_file(f):
            dicom.append(f)
        elif is_nifti_volume(f):
            plan.series.append(f)
        else:
            plan.files.append(f)
    for series in group_dicom_series(dicom):
        if len(series.paths) == 1 and series.n_frames <= 1:
            plan.files.append(series.paths[0])
        else:
            plan.series.append(series)
    return plan
