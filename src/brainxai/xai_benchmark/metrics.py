"""The benchmark's per-image figures: box metrics of a map, faithfulness, and the model's use of the box.

Box metrics are computed on the map placed back into the original scan
(:func:`brainxai.pipeline.steps.map_back`), so the pointing-game tolerance is in original pixels.
Faithfulness (deletion/insertion), sanity and sharpness are computed at model-input resolution. When
the CSV has lesion masks, the mask metrics (:mod:`.masks`) join the box metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from brainxai.analysis.region import relevance_region
from brainxai.explain.quality import (
    POINTING_TOLERANCE,
    Box,
    blurred_baseline,
    box_to_input,
    energy_in_box,
    iou_with_box,
    mirrored_box,
    occlusion_drop,
    perturbation_auc,
    pointing_game,
    rank_correlation,
    region_box_overlap,
    sharpness,
)
from brainxai.pipeline.steps import map_back
from brainxai.util.stats import spearman
from brainxai.xai_benchmark.data import BoxImages
from brainxai.xai_benchmark.masks import MASK_METRICS, mask_metrics

if TYPE_CHECKING:
    from brainxai.explain.base import Explanation
    from brainxai.inference import Classifier

#: The figures of ``xai.json``, per method (means over the images).
METRICS: tuple[str, ...] = (
    "pointing_game",
    "energy_in_box",
    "iou",
    "deletion_auc",
    "insertion_auc",
    "sanity_rank_corr",
    "sharpness",
    "ms_per_image",
)

#: Metrics reported on the subsets of images (the ones that compare a map with the box).
SUBSET_METRICS: tuple[str, ...] = ("pointing_game", "energy_in_box", "iou")

#: The figures of each class's entry in a method's ``per_class`` (with :data:`MASK_METRICS` when masks exist).
PER_CLASS_METRICS: tuple[str, ...] = ("pointing_game", "energy_in_box")

#: Box occlusion drop (target probability) from which an image counts as "the model uses the box".
USES_BOX_DROP = 0.10


def score_fn(classifier: Classifier, target: int, chunk: int = 64) -> Callable[[np.ndarray], np.ndarray]:
    """Target probability (softmax of the raw logits) of a batch of prepared (float, 0..255) images.

    Runs on the classifier's BatchNorm-folded copy: the same function, and the perturbation curves are
    most of the benchmark's time.
    """

    def score(batch: np.ndarray) -> np.ndarray:
        logits = torch.from_numpy(classifier.logits_prepared(batch, batch_size=chunk))
        return torch.softmax(logits, dim=1)[:, target].numpy()

    return score


def placed_box_metrics(
    mapped: np.ndarray, box: Box, brain: np.ndarray, tolerance: float = POINTING_TOLERANCE
) -> dict[str, Any]:
    """Box metrics of a map on the scan's own pixel grid.

    Args:
        mapped: ``(H, W)`` relevance placed back into the scan.
        box: Tumour box in pixels of the scan.
        brain: ``(H, W)`` head mask; the relevance region is restricted to it.
        tolerance: Pointing-game tolerance in pixels.

    Returns:
        ``pointing_game`` (1.0 hit, 0.0 miss), ``energy_in_box``, ``iou`` (relevance region vs box),
        ``region_in_box`` (None for an empty region) and ``box_in_region``.
    """
    region = relevance_region(mapped, brain)
    region_in_box, box_in_region = region_box_overlap(region, box)
    return {
        "pointing_game": float(pointing_game(mapped, box, tolerance)),
        "energy_in_box": energy_in_box(mapped, box),
        "iou": iou_with_box(region, box),
        "region_in_box": region_in_box,
        "box_in_region": box_in_region,
    }


def box_metrics(
    i: int, relevance: np.ndarray, data: BoxImages, tolerance: float = POINTING_TOLERANCE
) -> dict[str, Any]:
    """Pointing game, energy in box and IoU of a model-input map, placed back into scan ``i`` of ``data``.

    See :func:`placed_box_metrics` for the keys.
    """
    mapped = map_back(relevance, data.images[i])
    return placed_box_metrics(mapped, data.boxes[i], data.brains[i], tolerance)


def image_metrics(
    i: int,
    relevance: np.ndarray,
    random_explanation: Explanation | None,
    data: BoxImages,
    target: int,
    classifier: Classifier,
    steps: int,
    tolerance: float,
    deletion_base: np.ndarray,
) -> dict[str, Any]:
    """Every per-image figure of one map: box (and mask) metrics, deletion/insertion AUC, sanity and sharpness.

    Args:
        i: Index of the image in ``data``.
        relevance: The map at model-input resolution.
        random_explanation: The same method's explanation on the randomised model, or None (no sanity
            check: ``sanity_rank_corr`` is NaN).
        data: The benchmark's images.
        target: The explained class.
        classifier: The explained model.
        steps: Deletion/insertion steps.
        tolerance: Pointing-game tolerance in original pixels.
        deletion_base: The deletion baseline (black) at model-input size.
    """
    image = data.prepared[i].astype(np.float32)
    score = score_fn(classifier, int(target))
    sanity = rank_correlation(relevance, random_explanation.relevance) if random_explanation is not None else math.nan
    return {
        "file": data.records[i].path.name,
        "label": data.records[i].label,
        "target": classifier.classes[int(target)],
        **box_metrics(i, relevance, data, tolerance),
        **mask_metrics(i, relevance, data, tolerance),
        "deletion_auc": perturbation_auc(score, image, relevance, "deletion", deletion_base, steps),
        "insertion_auc": perturbation_auc(score, image, relevance, "insertion", blurred_baseline(image), steps),
        "sanity_rank_corr": sanity,
        "sharpness": sharpness(relevance),
    }


def box_reliance(data: BoxImages, classifier: Classifier, targets: np.ndarray) -> list[dict[str, Any]]:
    """Per image: the box occlusion drop (does the model use the lesion?) and its control, the mirrored box."""
    size = data.prepared.shape[1]
    out = []
    for i, t in enumerate(targets):
        image = data.prepared[i].astype(np.float32)
        box = box_to_input(data.boxes[i], data.crops[i], size)
        score = score_fn(classifier, int(t))
        out.append(
            {
                "file": data.records[i].path.name,
                "label": data.records[i].label,
                "box_occlusion_drop": occlusion_drop(score, image, box),
                "mirror_occlusion_drop": occlusion_drop(score, image, mirrored_box(box, size)),
            }
        )
    return out


def mean_box_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means of :data:`SUBSET_METRICS` over per-image rows (None when there are none), with ``n``."""
    return {**{m: (float(np.mean([r[m] for r in rows])) if rows else None) for m in SUBSET_METRICS}, "n": len(rows)}


def _mask_keys(rows: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    return MASK_METRICS if rows and MASK_METRICS[0] in rows[0] else ()


def per_class_summary(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{label: {n, pointing_game, energy_in_box[, pointing_game_mask, energy_in_mask]}}``: means over each
    class's rows, classes in order of first appearance; the mask figures only when the rows have them."""
    keys = PER_CLASS_METRICS + _mask_keys(rows)
    out: dict[str, dict[str, Any]] = {}
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        out[label] = {"n": len(mine), **{k: float(np.mean([r[k] for r in mine])) for k in keys}}
    return out


def summarise(rows: Sequence[dict[str, Any]], elapsed: float, n: int) -> dict[str, Any]:
    """A method's entry of ``xai.json``: the mean of each metric over its images, ``ms_per_image``, ``n``
    and ``per_class`` (:func:`per_class_summary`); with masks, also the mean mask metrics (before ``n``)."""
    summary = {k: float(np.mean([r[k] for r in rows])) for k in METRICS if k != "ms_per_image"}
    summary["ms_per_image"] = 1000.0 * elapsed / n
    masks = {k: float(np.mean([r[k] for r in rows])) for k in _mask_keys(rows)}
    return {**{k: summary[k] for k in METRICS}, **masks, "n": n, "per_class": per_class_summary(rows)}


def not_run_summary(with_masks: bool) -> dict[str, Any]:
    """The entry of a method that could not explain the model: every figure None, ``n`` 0, no classes."""
    keys = METRICS + (MASK_METRICS if with_masks else ())
    return {**dict.fromkeys(keys), "n": 0, "per_class": {}}


def rank_agreement(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman correlation of two lists of figures: NaN under three values, 0.0 when either is constant."""
    if len(a) < 3:
        return math.nan
    x = np.nan_to_num(np.asarray(a, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    y = np.nan_to_num(np.asarray(b, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    rho = spearman(x, y)
    return 0.0 if rho is None else rho
