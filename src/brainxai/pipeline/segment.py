"""The segment step: the tumour outlined by a segmentation model, next to the classifier's finding.

The segmentation model (:class:`brainxai.segmentation.Segmenter`, or anything with its methods, see
:class:`TumourSegmenter`) gets the decoded slice as it is and returns a mask on the same pixel grid, so
the scan is neither decoded nor prepared a second time here. :class:`SegmenterSlot` loads the model
lazily, once, and serialises its use; :func:`segment` measures the mask, the share of relevance inside
it, and whether the two models disagree.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from brainxai.analysis.lesion import (
    MIN_LESION_AREA_MODEL_PX,
    Lesion,
    disagreement,
    disagreement_rule,
    measure_lesion,
    relevance_in_tumour,
)
from brainxai.pipeline.steps import PreparedImage
from brainxai.util.pools import shared_pool

logger = logging.getLogger(__name__)


@runtime_checkable
class TumourSegmenter(Protocol):
    """What the pipeline needs from a segmentation model (the contract of :class:`brainxai.segmentation.Segmenter`).

    Optional: ``can_run_in_worker() -> bool``, True when :meth:`segment` may run in a worker thread
    (:meth:`SegmenterSlot.start`).
    """

    name: str
    sha256: str
    threshold: float

    def info(self) -> dict[str, Any]:
        """Name, checkpoint file name, version, created, sha256, input_size, threshold."""
        ...

    def probability(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
        """Tumour probability ``(H, W)`` float32 per original slice, on that slice's grid."""
        ...

    def mask(self, prob: np.ndarray) -> np.ndarray:
        """``(H, W)`` bool tumour mask of a probability map: threshold, then the model's post-processing."""
        ...

    def segment(self, image: np.ndarray) -> np.ndarray:
        """``(H, W)`` bool mask of one original slice: :meth:`mask` of its probability."""
        ...


class SegmenterUnavailableError(RuntimeError):
    """Segmentation was required (``AnalysisOptions.segment=True``) but no segmentation model is available."""


def _shipped_available() -> bool:
    """Whether the default segmentation model ships with this installation."""
    try:
        from brainxai.segmentation import default_segmenter_available
    except ModuleNotFoundError as exc:  # a build without the segmentation package
        if exc.name and exc.name.startswith("brainxai.segmentation"):
            return False
        raise
    return bool(default_segmenter_available())


class SegmenterSlot:
    """The service's segmentation model: given (an object or a checkpoint path) or the shipped default.

    Loaded at first use, once; :meth:`segment` runs under a lock of its own, so segmentation does not wait
    for the classifier's lock (explanations modify the classifier temporarily, the segmenter is untouched).

    Args:
        segmenter: A :class:`TumourSegmenter`, a checkpoint path, or None for the shipped default.
        device: Device to load a checkpoint on.
    """

    def __init__(self, segmenter: TumourSegmenter | str | Path | None = None, device: str = "auto") -> None:
        self._given: TumourSegmenter | None = None
        self._checkpoint: str | Path | None = None
        if isinstance(segmenter, (str, Path)):
            self._checkpoint = segmenter
        elif segmenter is not None:
            if not isinstance(segmenter, TumourSegmenter):
                raise TypeError(f"segmenter {type(segmenter).__name__} lacks the TumourSegmenter methods")
            self._given = segmenter
        self._device = device
        self._loaded: TumourSegmenter | None = self._given
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """Whether a segmenter object or checkpoint was given explicitly."""
        return self._given is not None or self._checkpoint is not None

    def get(self, wanted: bool | None) -> TumourSegmenter | None:
        """The segmenter for an analysis with ``AnalysisOptions.segment == wanted``, loading it on first use.

        None: the given one, else the shipped default when installed, else none. True: the same, but
        raises :class:`SegmenterUnavailableError` when there is none. False: none.
        """
        if wanted is False:
            return None
        if self._loaded is not None:
            return self._loaded
        if not self.configured and not _shipped_available():
            if wanted:
                raise SegmenterUnavailableError(
                    "segmentation was requested, but no segmentation model is installed "
                    f"({_default_path_text()}); pass segmenter=PATH or turn segmentation off"
                )
            return None
        with self._lock:
            if self._loaded is None:
                from brainxai.segmentation import Segmenter

                self._loaded = Segmenter.load(self._checkpoint, device=self._device)
                logger.info("segmentation model %s loaded (sha256 %s)", self._loaded.name, self._loaded.sha256[:12])
        return self._loaded

    def segment(self, segmenter: TumourSegmenter, image: np.ndarray) -> np.ndarray:
        """The segmenter's mask of one slice, checked to be on the slice's grid."""
        with self._lock:
            mask = np.asarray(segmenter.segment(image), dtype=bool)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"segmentation mask {mask.shape} does not match the slice {image.shape[:2]}")
        return mask

    def start(self, segmenter: TumourSegmenter, image: np.ndarray) -> Future[np.ndarray]:
        """:meth:`segment` of one slice, begun in a worker thread when the segmenter allows it, else done now.

        A segmenter whose ``can_run_in_worker()`` (optional; :class:`brainxai.segmentation.Segmenter` has it)
        answers True runs without torch and releases the GIL in its network, so the caller's NumPy work
        (the analysis's agreement) overlaps it; others (torch, or without the method) run here and now.
        """
        can_run_in_worker = getattr(segmenter, "can_run_in_worker", None)
        if callable(can_run_in_worker) and can_run_in_worker():
            return shared_pool("segment", 1).submit(self.segment, segmenter, image)
        done: Future[np.ndarray] = Future()
        done.set_result(self.segment(segmenter, image))
        return done


def _default_path_text() -> str:
    try:
        from brainxai.segmentation import default_segmenter_path
    except ModuleNotFoundError:
        return "the brainxai.segmentation package is missing"
    return f"{default_segmenter_path()} is missing"


@dataclass(frozen=True)
class TumourSegmentation:
    """The segmented tumour of one analysis.

    Attributes:
        lesion: The mask on the scan's grid and its size.
        model: The segmentation model's identity (:meth:`TumourSegmenter.info`).
        threshold: Probability threshold of the mask.
        relevance_in_tumour: Share of positive relevance inside the mask (None: no tumour predicted, empty mask).
        used_for_parameters: Whether the lesion-describing spatial parameters are measured on it.
        warning: The disagreement warning, when the two models disagree.
        spacing_source: Where the mm sizes' pixel spacing came from: ``file``, ``assumed`` (by the user) or None.
    """

    lesion: Lesion
    model: dict[str, Any]
    threshold: float
    relevance_in_tumour: float | None
    used_for_parameters: bool
    warning: str | None
    spacing_source: str | None = None

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool mask of the tumour on the scan's grid."""
        return self.lesion.mask

    def region(self) -> np.ndarray | None:
        """The mask the lesion parameters are measured on; None when they are not measured on this tumour."""
        return self.mask if self.used_for_parameters else None

    def to_dict(self) -> dict[str, Any]:
        """The result's ``segmentation`` block."""
        return {
            "status": "empty" if self.lesion.empty else "measured",
            "source": "segmentation",
            **self.lesion.to_dict(),
            "pixel_spacing_source": self.spacing_source,
            "threshold": self.threshold,
            "model": self.model,
            "used_for_parameters": self.used_for_parameters,
            "relevance_in_tumour": None if self.relevance_in_tumour is None else round(self.relevance_in_tumour, 4),
            "disagreement": self.warning is not None,
            "disagreement_min_area_model_grid_px": MIN_LESION_AREA_MODEL_PX,
            "method": SEGMENTATION_METHOD,
            "disagreement_rule": disagreement_rule(),
        }


#: How the segmentation block's figures are obtained (the method note of the JSON and the reports).
SEGMENTATION_METHOD = (
    "Tumour mask: pixels where the segmentation model's tumour probability reaches its threshold, on the "
    "scan's own pixel grid, then the post-processing its checkpoint names (model.postprocess; e.g. hysteresis: "
    "grown into connected pixels down to a lower probability, then only the largest connected component kept). "
    "Area = pixel count (x pixel area in mm² when the spacing is known); diameters = "
    "maximum Feret diameter and the width perpendicular to it. Relevance in tumour = the explanation's "
    "positive relevance inside the mask divided by all of its positive relevance (mapped onto the scan). "
    "An automatic segmentation, not an expert delineation."
)


def model_scale(prepared: PreparedImage) -> float:
    """Area of one scan pixel on the classifier's input grid: ``(S / crop width) x (S / crop height)``."""
    x0, y0, x1, y1 = prepared.box
    rows, cols = prepared.model_input.shape[:2]
    return (cols / max(x1 - x0, 1)) * (rows / max(y1 - y0, 1))


def segment(
    slot: SegmenterSlot,
    segmenter: TumourSegmenter,
    prepared: PreparedImage,
    relevance: np.ndarray,
    tumour_predicted: bool,
    spacing_mm: tuple[float, float] | None,
    spacing_assumed: bool = False,
    mask: np.ndarray | None = None,
) -> TumourSegmentation:
    """Segments the decoded slice and measures the tumour.

    Args:
        slot: Serialises the segmenter's use.
        segmenter: The model.
        prepared: The classifier's prepared image (its ``original`` is the decoded slice, its box the crop).
        relevance: The explanation mapped onto the scan's grid.
        tumour_predicted: Whether the classifier predicted a tumour class.
        spacing_mm: Pixel spacing (file or assumed), or None.
        spacing_assumed: The spacing was assumed by the user, not read from the file.
        mask: The slice's mask when already computed (a series segments its slices in batches); None segments
            the slice here.
    """
    if mask is None:
        mask = slot.segment(segmenter, prepared.original)
    lesion = measure_lesion(mask, spacing_mm, model_scale(prepared))
    inside = relevance_in_tumour(relevance, mask) if tumour_predicted else None
    model = {**segmenter.info(), "name": segmenter.name, "sha256": segmenter.sha256}
    used = tumour_predicted and not lesion.empty
    spacing_source = None if spacing_mm is None else "assumed" if spacing_assumed else "file"
    warning = disagreement(tumour_predicted, lesion)
    return TumourSegmentation(lesion, model, float(segmenter.threshold), inside, used, warning, spacing_source)
