"""``xai.md``'s grounding sections: the box (and mask) metrics per class, and the in-painting drop."""

from __future__ import annotations

from typing import Any

import numpy as np

from brainxai.xai_benchmark.reliance import INPAINT_DROP_GOAL, MIRROR_DROP_LIMIT

#: Grounding goals of issue 21 (on patients held out of training): the best method's pointing game.
GROUNDING_GOAL_OVERALL = 0.95
GROUNDING_GOAL_PER_CLASS = 0.90


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _cell(entry: dict[str, Any] | None, pg: str, energy: str) -> str:
    if not entry or not entry.get("n"):
        return "-"
    return f"{_fmt(entry[pg])} ({_fmt(entry[energy], 2)})"


def _verdict(results: dict[str, dict[str, Any]], with_masks: bool) -> list[str]:
    pg = "pointing_game_mask" if with_masks else "pointing_game"
    scored = {m: r for m, r in results.items() if r.get(pg) is not None}
    if not scored:
        return []
    best = max(scored, key=lambda m: scored[m][pg])
    worst_class = min(scored[best]["per_class"].items(), key=lambda kv: kv[1][pg])
    overall_ok = scored[best][pg] >= GROUNDING_GOAL_OVERALL
    class_ok = worst_class[1][pg] >= GROUNDING_GOAL_PER_CLASS
    return [
        "",
        (
            f"Best pointing game on the {'mask' if with_masks else 'box'}: **{best}**, {scored[best][pg]:.3f} overall "
            f"({'meets' if overall_ok else 'does not meet'} the grounding goal of ≥ {GROUNDING_GOAL_OVERALL:.2f}), "
            f"lowest class {worst_class[0]} {worst_class[1][pg]:.3f} "
            f"({'meets' if class_ok else 'does not meet'} ≥ {GROUNDING_GOAL_PER_CLASS:.2f} per class). The goals "
            "are set for patients held out of the model's training; on images the model was trained on they say "
            "less."
        ),
    ]


def per_class_section(results: dict[str, dict[str, Any]], with_masks: bool) -> list[str]:
    """Per method and class: pointing game (energy) on the box and, with masks, on the mask."""
    labels: dict[str, int] = {}
    for r in results.values():
        for label, entry in r.get("per_class", {}).items():
            labels.setdefault(label, entry["n"])
    if not labels:
        return []
    kinds = [("box", "pointing_game", "energy_in_box")]
    if with_masks:
        kinds.append(("mask", "pointing_game_mask", "energy_in_mask"))
    heads = [f"{label} {kind} (n={n})" for label, n in labels.items() for kind, _, _ in kinds]
    lines = [
        "",
        "## Per class",
        "",
        (
            "Pointing game (energy inside) per class, against the box"
            + (" and against the lesion mask (same tolerance, in original pixels)" if with_masks else "")
            + ":"
        ),
        "",
        "| method | " + " | ".join(heads) + " |",
        "|---|" + "---|" * len(heads),
    ]
    for method, r in results.items():
        per_class = r.get("per_class", {})
        cells = [_cell(per_class.get(label), pg, en) for label in labels for _, pg, en in kinds]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + _verdict(results, with_masks)


def _reliance_row(label: str, summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    drops = [r["inpaint_drop"] for r in rows if r.get("inpaint_drop") is not None]
    p = [r["label_probability"] for r in rows if r.get("inpaint_drop") is not None]
    median_p = float(np.median(p)) if p else None
    med, mirror = summary["median_drop"], summary["mirrored_median_drop"]
    ok = med is not None and mirror is not None and med >= INPAINT_DROP_GOAL and mirror <= MIRROR_DROP_LIMIT
    return (
        f"| {label} | {summary['n']} | {_fmt(median_p)} | {_fmt(med)} | "
        f"{sum(d >= INPAINT_DROP_GOAL for d in drops)} | {_fmt(mirror)} ({summary['mirrored_n']}) | "
        f"{_fmt(summary['mirrored_median_overlap'], 2)} | {'yes' if ok else 'no'} |"
    )


def inpaint_section(
    reliance: dict[str, dict[str, Any]] | None, image_info: list[dict[str, Any]], dilate_px: int
) -> list[str]:
    """The in-painting drop per class (``xai.json``'s ``reliance``), and what it means; empty without masks."""
    if not reliance:
        return []
    lines = [
        "",
        "## Does the model need the tumour? (in-painting drop)",
        "",
        (
            "This describes the model, not the maps. **In-painting drop**: the annotated class's probability minus "
            f"its probability once the lesion (its mask mapped into the model input, dilated by {dilate_px} px) "
            "is in-painted from the surrounding tissue (OpenCV Telea). The control in-paints the same dilated area "
            "mirrored left-right in the head-cropped model input, less any part of it on the lesion (the control "
            "never removes tumour). A large drop with a small control drop means the decision depends on the "
            "lesion's appearance; a drop near zero means the model decides from elsewhere (other parts of the "
            "slice carry the class for it); a negative drop means removing the lesion made the class more likely. "
            "A drop cannot exceed the probability the model gave the class in the first place (column 3). "
            "Unlike the box occlusion drop above, no black square is put in the image."
        ),
        "",
        (
            f"Goals (issue 21, for patients held out of training): median drop ≥ {INPAINT_DROP_GOAL:.2f} in every "
            f"tumour class, mirrored control ≤ {MIRROR_DROP_LIMIT:.2f}."
        ),
        "",
        (
            f"| label | n | median p(class) | median in-painting drop | images with drop ≥ {INPAINT_DROP_GOAL:.2f} | "
            "median mirrored drop (n) | median share of the mirrored area on the lesion | meets goals |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, summary in reliance.items():
        lines.append(_reliance_row(label, summary, [r for r in image_info if r["label"] == label]))
    lines += [
        "",
        (
            "n: images whose lesion falls inside the crop; the mirrored control's n is smaller where the whole "
            "mirrored area lies on the lesion (midline tumours). For pituitary tumours, which sit on the midline, "
            "the control is only the part of the mirrored area off the lesion, so it is a weaker control there."
        ),
    ]
    return lines


MASK_DEFINITIONS: tuple[str, ...] = (
    (
        "- **Pointing game / energy on the mask** (`pointing_game_mask`, `energy_in_mask`): as for the box, with the "
        "lesion mask (on the scan's pixel grid) in place of the box: the map maximum within the tolerance of a "
        "mask pixel (Euclidean distance), and the share of positive relevance on mask pixels."
    ),
    (
        "- **In-painting drop** (`inpaint_drop`, of the model): annotated-class probability minus that with the "
        "dilated lesion in-painted in the model input; `mirror_inpaint_drop` does the same with the mirrored "
        "area (less the lesion), `mirror_overlap` the share of that mirrored area dropped for lying on the lesion, "
        "`label_probability` the annotated class's probability before any change."
    ),
)
