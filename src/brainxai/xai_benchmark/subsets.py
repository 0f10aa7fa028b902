"""The box metrics on subsets of the images: does the model use the box, was the image in its training data."""

from __future__ import annotations

from typing import Any

import numpy as np

from brainxai.xai_benchmark.metrics import USES_BOX_DROP, mean_box_metrics

#: pHash distance standing for "no training image found" (a 64-bit hash is never further than 64 bits).
_UNSEEN_DISTANCE = 65


def subset_definitions(max_distance: int) -> dict[str, str]:
    """``{subset: its definition}`` as written to ``xai_subsets.json``."""
    return {
        "model uses the box": f"box occlusion drop >= {USES_BOX_DROP:g}",
        "model does not use the box": f"box occlusion drop < {USES_BOX_DROP:g}",
        "not in the training data": f"nearest training image more than {max_distance} pHash bits away",
        "in the training data": f"a training image within {max_distance} pHash bits (the same slice)",
    }


def subset_masks(image_info: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, np.ndarray]:
    """``{subset: bool mask over the images}``; the training-data subsets only when ``--train-data`` was given."""
    drop = np.array([r["box_occlusion_drop"] for r in image_info])
    masks = {"model uses the box": drop >= USES_BOX_DROP, "model does not use the box": drop < USES_BOX_DROP}
    if info["train_data"] is not None:
        # An unreadable image (no distance) counts as unseen: it cannot be shown to be a twin.
        dist = np.array(
            [
                r["nearest_train_distance"] if r["nearest_train_distance"] is not None else _UNSEEN_DISTANCE
                for r in image_info
            ]
        )
        masks["not in the training data"] = dist > info["max_distance"]
        masks["in the training data"] = dist <= info["max_distance"]
    return masks


def subset_summaries(
    image_info: list[dict[str, Any]],
    per_image: list[dict[str, Any]],
    results: dict[str, dict[str, Any]],
    info: dict[str, Any],
    labels: list[str],
    baseline: list[dict[str, Any]],
) -> dict[str, Any]:
    """The box metrics on each subset of the images (``xai_subsets.json``).

    ``{subset: {definition, n, labels, methods: {method: {pointing_game, energy_in_box, iou, n}}, centre_baseline}}``.

    Args:
        image_info: Per image, the model-level figures (box occlusion drop, nearest training image).
        per_image: Every method's per-image rows, each method's in image order.
        results: The methods (their order is kept).
        info: The run's settings (``train_data``, ``max_distance``).
        labels: Each image's label.
        baseline: The centre baseline's box metrics per image.
    """
    definitions = subset_definitions(info["max_distance"])
    out: dict[str, Any] = {}
    for name, mask in subset_masks(image_info, info).items():
        idx = set(np.flatnonzero(mask).tolist())
        per_method = {}
        for method in results:
            # A method's rows are in image order (the runner explains the images in order).
            rows = [row for k, row in enumerate(x for x in per_image if x["method"] == method) if k in idx]
            per_method[method] = mean_box_metrics(rows)
        out[name] = {
            "definition": definitions[name],
            "n": len(idx),
            "labels": {c: sum(1 for k in idx if labels[k] == c) for c in dict.fromkeys(labels)},
            "methods": per_method,
            "centre_baseline": mean_box_metrics([baseline[k] for k in sorted(idx)]),
        }
    return out
