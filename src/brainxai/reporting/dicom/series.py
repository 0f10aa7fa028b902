"""DICOM outputs of a whole-series analysis, in the source study, built with the single-image writers.

- ``<base>-sr.dcm``: Comprehensive SR (TID 1500): the series finding, its measurement group referring
  to every analysed instance, the series probabilities to the key slices (they are the mean over
  them), the spatial parameters measured on the strongest key slice to it; the evidence lists every
  analysed instance, the image library the key slices;
- ``<base>-pm.dcm``: the relevance volume as a multi-frame Parametric Map, one frame per source slice
  (zero on skipped slices), derived from every source instance (each frame's position from its source);
- ``<base>-seg.dcm`` (when the series was segmented): the segmentation model's tumour as a binary
  Segmentation with one segment, one frame per segmented source slice where the tumour mask has pixels
  (highdicom's ``omit_empty_frames``: a slice without a frame holds no tumour; every segmented instance is
  still referenced). No frame is written for slices left unsegmented (skipped, out of domain), so none is
  claimed tumour-free; when no slice has tumour pixels, or the source lacks what highdicom needs (a patient
  geometry for several frames), no Segmentation is written and a note says why;
- ``<base>-overlay-sc-<slice>.dcm``: an RGB Secondary Capture of each key slice's overlay, one series;
- ``<base>-pdf.dcm``: the series report as Encapsulated PDF, referring to every analysed instance.

UIDs are deterministic (see :mod:`~brainxai.reporting.dicom.source`), seeded with the source series
UID so that they differ from those of a single-image analysis of one of its slices.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from brainxai.reporting.dicom import source as src
from brainxai.util.files import atomic_write_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesImages:
    """The arrays and source headers of a series analysis.

    Attributes:
        headers: The source instances' data sets (headers are enough).
        refs: Per slice: ``(index into headers, 1-based frame number or None)``.
        used: Indices of the analysed slices.
        relevance: ``(slices, H, W)`` relevance of the finding (zero on skipped slices).
        overlays: Key slice index -> ``(H, W, 3)`` RGB overlay.
        originals: Key slice index -> ``(H, W)`` display image.
        tumour_masks: Segmented slice index -> ``(H, W)`` bool tumour mask (only slices the model segmented;
            empty: no tumour Segmentation).
    """

    headers: Sequence[Dataset]
    refs: Sequence[tuple[int, int | None]]
    used: Sequence[int]
    relevance: np.ndarray
    overlays: Mapping[int, np.ndarray]
    originals: Mapping[int, np.ndarray] = field(default_factory=dict)
    tumour_masks: Mapping[int, np.ndarray] = field(default_factory=dict)


@dataclass
class SeriesDicomOutputs:
    """The DICOM files of one series analysis, their study, and what could not be written."""

    files: list[Path] = field(default_factory=list)
    study_uid: str = ""
    notes: list[str] = field(default_factory=list)


def _slice_result(result: Mapping[str, Any], frame: int | None) -> dict[str, Any]:
    """The series result in the single-image form the object builders read."""
    series = result.get("series") or {}
    key = (result.get("key_slices") or [None])[0]
    scan = {
        "file": f"series {series.get('file', '?')} ({series.get('n_slices', '?')} slices; measured on slice {key})",
        "format": "dicom",
        "slice_index": frame - 1 if frame is not None else None,
        "pixel_spacing_mm": series.get("pixel_spacing_mm"),
    }
    return {**result, "scan": scan}


def _context(result: Mapping[str, Any], images: SeriesImages, index: int) -> tuple[src.DicomSource, dict[str, Any]]:
    """The object context of one slice (its instance and frame), seeded with the series UID and the slice."""
    header, frame = images.headers[images.refs[index][0]], images.refs[index][1]
    single = _slice_result(result, frame)
    context = src.from_dicom(header, single)
    seed = f"series|{result.get('series_uid')}|slice {index}|{context.seed}"
    return dataclasses.replace(context, seed=seed, notes=[]), single


def _once(headers: Sequence[Dataset], images: SeriesImages, slices: Sequence[int]) -> list[Dataset]:
    """The instances of ``slices``, each once, in slice order."""
    seen: dict[int, Dataset] = {}
    for i in slices:
        h = images.refs[i][0]
        seen.setdefault(h, headers[h])
    return list(seen.values())


def _frame_sources(
    headers: list[Dataset], images: SeriesImages, values: np.ndarray, keep: Sequence[int] | None = None
) -> tuple[list[Dataset], np.ndarray]:
    """The source images of a derived multi-frame object and ``values`` (one per slice) in their frame order.

    A multi-frame source is one image: the values go in its file frame order, all of them (highdicom pairs
    them with its frames). Single-frame sources: one per slice, only the slices in ``keep`` when given.
    """
    if len(headers) == 1 and images.refs and images.refs[0][1] is not None:
        frames = np.zeros_like(values)
        for i, (_, frame) in enumerate(images.refs):
            frames[int(frame or 1) - 1] = values[i]
        return headers, frames
    rows = list(range(len(images.refs))) if keep is None else list(keep)
    return [headers[images.refs[i][0]] for i in rows], values[rows]


def _tumour_segmentation(
    result: Mapping[str, Any], images: SeriesImages, headers: list[Dataset], series: src.DicomSource
) -> Any:
    """The segmented tumour as a binary Segmentation (one segment), frames only where the tumour is."""
    from brainxai.reporting.dicom.segmentation import binary_segmentation, tumour_segment

    model = (result.get("tumour_volume") or {}).get("model") or {}
    volume = np.zeros(images.relevance.shape, dtype=np.uint8)
    for i, mask in images.tumour_masks.items():
        volume[i] = np.asarray(mask, dtype=bool)  # a mask off the slice's grid fails here: a note, not a SEG
    sources, frames = _frame_sources(headers, images, volume, keep=sorted(images.tumour_masks))
    return binary_segmentation(
        sources,
        frames,
        [tumour_segment(series, result, number=1, model=model)],
        series,
        result,
        key="tumour-seg",
        label="TUMOUR",
        description=f"tumour outlined by {model.get('name', 'a segmentation model')} (estimate)",
        series_kind="tumour segmentation",
        omit_empty_frames=True,
    )


def _add_tumour_segmentation(
    objects: dict[str, Dataset],
    result: Mapping[str, Any],
    images: SeriesImages,
    headers: list[Dataset],
    series: src.DicomSource,
) -> None:
    """Adds the tumour Segmentation as ``objects["seg"]`` when the series was segmented, or a note why not."""
    if not images.tumour_masks:
        return
    if not any(np.any(m) for m in images.tumour_masks.values()):
        # An all-empty SEG would need empty frames (or, for a multi-frame source, frames never segmented).
        n = len(images.tumour_masks)
        series.notes.append(
            f"No DICOM Segmentation: the segmentation model outlined no tumour on the {n} segmented slice(s)."
        )
        return
    try:
        objects["seg"] = _tumour_segmentation(result, images, headers, series)
    except (ValueError, TypeError, AttributeError, KeyError, RuntimeError) as exc:
        logger.warning("series tumour segmentation not possible: %s", exc)
        series.notes.append(
            f"The segmented tumour was not written as a DICOM Segmentation ({exc}); see the NIfTI file."
        )


def build_series_dicom(
    result: Mapping[str, Any], images: SeriesImages, pdf: bytes | None
) -> tuple[dict[str, Dataset], SeriesDicomOutputs]:
    """Builds every object of a series analysis (not written); returns them by file suffix with the summary."""
    from brainxai.reporting.dicom.encapsulated_pdf import encapsulated_pdf
    from brainxai.reporting.dicom.parametric_map import parametric_map
    from brainxai.reporting.dicom.secondary_capture import overlay_capture
    from brainxai.reporting.dicom.sr import measurement_report

    keys = [int(k) for k in result.get("key_slices") or []]
    if not keys:
        raise ValueError("a series result without key slices has nothing to report")
    key_context, key_result = _context(result, images, keys[0])
    series = dataclasses.replace(key_context, seed=f"series|{result.get('series_uid')}|{src.model_seed(result)}")
    headers = [src.from_dicom(h, {}).image for h in images.headers]  # copies with the Type 2 attributes present
    used = _once(headers, images, images.used)
    objects: dict[str, Dataset] = {}
    summary = SeriesDicomOutputs(study_uid=series.study_uid, notes=series.notes)
    try:
        pm_sources, frames = _frame_sources(headers, images, images.relevance)
        objects["pm"] = parametric_map(frames, dataclasses.replace(series, frame=None), result, pm_sources)
    except (ValueError, TypeError, AttributeError, KeyError, RuntimeError) as exc:
        logger.warning("series parametric map not possible: %s", exc)
        series.notes.append(f"The relevance volume was not written as a Parametric Map ({exc}); see the NIfTI file.")
    _add_tumour_segmentation(objects, result, images, headers, dataclasses.replace(series, frame=None))
    sr_context = dataclasses.replace(key_context, notes=series.notes)
    objects["sr"] = measurement_report(key_result, sr_context, used, _once(headers, images, keys))
    overlay_series = series.uid("overlay-series")
    for rank, index in enumerate(keys, 1):
        if index in images.overlays:
            context, single = _context(result, images, index)
            overlay = overlay_capture(images.overlays[index], context, single, overlay_series, rank)
            objects[f"overlay-sc-{index:03d}"] = overlay
    if pdf is not None:
        objects["pdf"] = encapsulated_pdf(pdf, series, key_result, references=used)
    return objects, summary


def write_series_dicom(
    result: Mapping[str, Any], images: SeriesImages, *, out_dir: str | Path, base: str, pdf: bytes | None = None
) -> SeriesDicomOutputs:
    """Builds the DICOM objects of a series analysis and writes them as ``out_dir/<base>-<kind>.dcm``.

    Args:
        result: The series result as :meth:`~brainxai.pipeline.series.SeriesResult.to_dict` gives it.
        images: The source headers, slice references, relevance volume and key overlays.
        out_dir: Folder for the files (created if missing).
        base: Common start of the file names.
        pdf: The series report's bytes, to encapsulate (None: no Encapsulated PDF).
    """
    objects, summary = build_series_dicom(result, images, pdf)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for kind, ds in objects.items():
        path = out / f"{base}-{kind}.dcm"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        atomic_write_bytes(path, buf.getvalue())
        summary.files.append(path)
    return summary
