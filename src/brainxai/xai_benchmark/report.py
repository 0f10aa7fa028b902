"""The benchmark's reports: ``xai.md`` section by section, and ``xai_per_image.csv``."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainxai.constants import DISCLAIMER
from brainxai.evaluation.metrics import wilson_interval
from brainxai.xai_benchmark.masks import MASK_METRICS
from brainxai.xai_benchmark.metrics import METRICS, USES_BOX_DROP, mean_box_metrics, rank_agreement
from brainxai.xai_benchmark.reliance import RELIANCE_KEYS
from brainxai.xai_benchmark.report_grounding import MASK_DEFINITIONS, inpaint_section, per_class_section

#: Target of the pointing game: 0.90 for the best method.
POINTING_GOAL = 0.90


@dataclass(frozen=True)
class ReportData:
    """Everything ``xai.md`` is written from.

    Attributes:
        results: ``{method: {metric: mean, ..., n}}``.
        notes: ``{method: why it was not run}``.
        per_image: Every method's per-image rows.
        info: The run's settings and the model (``xai.md``'s header).
        image_info: Per image, the model-level figures (box occlusion drop, nearest training image).
        subsets: The box metrics on subsets of the images (``xai_subsets.json``).
        baseline: The centre baseline's box metrics per image.
        reliance: ``xai.json``'s ``reliance`` (the in-painting drop per class), None without masks.
    """

    results: dict[str, dict[str, Any]]
    notes: dict[str, str]
    per_image: list[dict[str, Any]]
    info: dict[str, Any]
    image_info: list[dict[str, Any]]
    subsets: dict[str, Any]
    baseline: list[dict[str, Any]]
    reliance: dict[str, dict[str, Any]] | None = None


def fmt(v: Any, digits: int = 3) -> str:
    """A figure with ``digits`` decimals, ``n/a`` for None or NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def pointing_ci(r: dict[str, Any]) -> str:
    """95% Wilson interval of a method's pointing game, ``-`` when it was not run."""
    if r["pointing_game"] is None or not r["n"]:
        return "-"
    lo, hi = wilson_interval(round(r["pointing_game"] * r["n"]), r["n"])
    return f"[{lo:.3f}, {hi:.3f}]"


def _pg_energy(r: dict[str, Any]) -> str:
    return "-" if not r["n"] else f"{fmt(r['pointing_game'])} ({fmt(r['energy_in_box'], 2)})"


def _header(info: dict[str, Any]) -> list[str]:
    return [
        "# Explanation quality (`brainxai xai-benchmark`)",
        "",
        f"> {DISCLAIMER}",
        "",
        *([f"- Command: `{info['command']}`"] if info.get("command") else []),
        f"- Model: `{info['model']}`, checkpoint `{Path(info['checkpoint']).name}` (sha256 `{info['sha256'][:12]}`)",
        (
            f"- Images: {info['n']} from `{Path(info['boxes_csv']).name}` ("
            + ", ".join(f"{c}: {k}" for c, k in info["labels"].items())
            + f"); classifier accuracy on them: {info['accuracy']:.3f}"
        ),
        f"- Explained class: the {'annotated label' if info['target'] == 'label' else 'predicted class'} of each image",
        (
            f"- Pointing-game tolerance: {info['tolerance']:g} px at the original resolution; deletion/insertion: "
            f"{info['steps']} steps"
        ),
        (
            f"- Timing: {info['device']}, {info['threads']} thread(s), batches of {info['batch_size']} images, "
            "explanation call only (no preprocessing, no metrics), first call excluded"
        ),
    ]


def _results_table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "",
        (
            "| method | pointing game ↑ | 95% CI | energy in box ↑ | IoU ↑ | deletion AUC ↓ | insertion AUC ↑ | "
            "sanity rank corr ↓ | sharpness | ms / image | n |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, r in results.items():
        lines.append(
            f"| {method} | {fmt(r['pointing_game'])} | {pointing_ci(r)} | {fmt(r['energy_in_box'])} | "
            f"{fmt(r['iou'])} | {fmt(r['deletion_auc'])} | {fmt(r['insertion_auc'])} | {fmt(r['sanity_rank_corr'])} | "
            f"{fmt(r['sharpness'], 5)} | {fmt(r['ms_per_image'], 1)} | {r['n']} |"
        )
    return lines


def _best_method(results: dict[str, dict[str, Any]]) -> list[str]:
    scored = {m: r["pointing_game"] for m, r in results.items() if r["pointing_game"] is not None}
    if not scored:
        return []
    best = max(scored, key=lambda m: scored[m])
    verdict = "meets" if scored[best] >= POINTING_GOAL else "does not meet"
    return [
        "",
        (
            f"Best pointing game: **{best}** ({scored[best]:.3f}, 95% CI {pointing_ci(results[best])}), which "
            f"{verdict} the goal of {POINTING_GOAL:.2f}. CI: Wilson score interval over the images, which treats "
            "them as independent draws; it says how far another set of the same kind may move the figure."
        ),
    ]


def _centre_baseline(centre: dict[str, Any], notes: dict[str, str]) -> list[str]:
    lines = [
        "",
        (
            f"Centre baseline (a map that ignores the image: a Gaussian at the centre of the model input, sigma a "
            f"quarter of its side): pointing game {centre['pointing_game']:.3f}, 95% CI {pointing_ci(centre)}, "
            f"energy in box {centre['energy_in_box']:.3f}, IoU {centre['iou']:.3f}. A method is only as good as its "
            "margin over it."
        ),
    ]
    for method, note in notes.items():
        lines += ["", f"- `{method}` not run: {note}"]
    return lines


def _model_use(image_info: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Did the model use the tumour?",
        "",
        (
            "This describes the model, not the maps. **Box occlusion drop**: the explained class's probability minus "
            "its probability once the tumour box is set to black (the deletion baseline) in the model input; the "
            "control blacks out the same box mirrored left-right (the other hemisphere). Where hiding the lesion "
            "costs almost nothing, the model decided from elsewhere, and a faithful map has no reason to point at "
            "the box: a pointing-game miss there is the model's as much as the method's. A black square is itself "
            "unusual input, so compare the box with its control."
        ),
        "",
        f"| label | n | median box drop | median mirror drop | images with box drop ≥ {USES_BOX_DROP:g} |",
        "|---|---|---|---|---|",
    ]
    for label in dict.fromkeys(r["label"] for r in image_info):
        rows = [r for r in image_info if r["label"] == label]
        box = [r["box_occlusion_drop"] for r in rows]
        mirror = [r["mirror_occlusion_drop"] for r in rows]
        lines.append(
            f"| {label} | {len(rows)} | {np.median(box):.3f} | {np.median(mirror):.3f} | "
            f"{sum(d >= USES_BOX_DROP for d in box)} |"
        )
    return lines


def _training_data(subsets: dict[str, Any], info: dict[str, Any]) -> list[str]:
    if info["train_data"] is None:
        return []
    seen = subsets["in the training data"]
    excluded = (
        " Files the checkpoint records as left out of its training (`excluded_twins`: "
        f"{info['train_data_excluded']}) are not counted as training images."
        if info["train_data_excluded"]
        else ""
    )
    return [
        "",
        (
            f"**Images the model was trained on**: {seen['n']} of {info['n']} have a twin within "
            f"{info['max_distance']} pHash bits in `{info['train_data']}` ("
            + ", ".join(f"{c}: {k}" for c, k in seen["labels"].items())
            + "; the nearest training image of each is in `xai_per_image.csv`). Figures on them explain "
            "images the model has learnt, not new ones." + excluded
        ),
    ]


def _subset_table(results: dict[str, dict[str, Any]], subsets: dict[str, Any], centre: dict[str, Any]) -> list[str]:
    names = list(subsets)
    lines = [
        "",
        "Pointing game (energy in box) on subsets of the images:",
        "",
        "| method | all | " + " | ".join(f"{name} (n={subsets[name]['n']})" for name in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for method, r in results.items():
        cells = [_pg_energy(r)] + [_pg_energy(subsets[name]["methods"][method]) for name in names]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    cells = [_pg_energy(centre)] + [_pg_energy(subsets[name]["centre_baseline"]) for name in names]
    lines.append("| *centre baseline* | " + " | ".join(cells) + " |")
    return lines


def _region_cell(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "-"
    inside = [r["region_in_box"] for r in rows if r["region_in_box"] is not None]
    empty = len(rows) - len(inside)
    covered = float(np.median([r["box_in_region"] for r in rows]))
    return f"{fmt(float(np.median(inside)) if inside else None, 2)} / {fmt(covered, 2)}" + (
        f" ({empty})" if empty else ""
    )


def _region_section(results: dict[str, dict[str, Any]], per_image: list[dict[str, Any]]) -> list[str]:
    """Per method and class: how much of the relevance region lies in the box, and how much of the box it covers."""
    labels = list(dict.fromkeys(r["label"] for r in per_image))
    lines = [
        "",
        "## The relevance region against the box",
        "",
        (
            "The region `analyze` draws as the tumour mask and measures (IoU above), split in two. Median over "
            "the images of the share of the region inside the box, then of the share of the box the region "
            "covers; in brackets, images with an empty region. A high first figure with a low second one is a "
            "small core of the lesion; two low figures, a region beside it."
        ),
        "",
        "| method | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for method in results:
        cells = [
            _region_cell([r for r in per_image if r["method"] == method and r["label"] == label]) for label in labels
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _sharpness_within(results: dict[str, dict[str, Any]], per_image: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Does sharpness agree with localisation?",
        "",
        (
            "Spearman rank correlation, over the images of each method, between the map's sharpness and its "
            "energy in the box, and between sharpness and the pointing-game hit:"
        ),
        "",
        "| method | ρ(sharpness, energy in box) | ρ(sharpness, pointing hit) |",
        "|---|---|---|",
    ]
    within = []
    for method in results:
        rows = [r for r in per_image if r["method"] == method]
        if not rows:
            continue
        s = [r["sharpness"] for r in rows]
        rho = rank_agreement(s, [r["energy_in_box"] for r in rows])
        if not math.isnan(rho):
            within.append(rho)
        lines.append(f"| {method} | {fmt(rho, 2)} | {fmt(rank_agreement(s, [r['pointing_game'] for r in rows]), 2)} |")
    if within:
        median = float(np.median(within))
        if median < -0.1:
            trend = "sharper maps tend to be *worse* placed"
        elif median > 0.1:
            trend = "sharper maps tend to be better placed"
        else:
            trend = "sharpness and placement are unrelated"
        lines += ["", f"Within a method, {trend} (median ρ with energy in box: {median:.2f})."]
    return lines


def _sharpness_across(results: dict[str, dict[str, Any]]) -> list[str]:
    ran = [m for m, r in results.items() if r["sharpness"] is not None]
    if len(ran) < 3:
        return []
    sharp = [results[m]["sharpness"] for m in ran]
    across = rank_agreement(sharp, [results[m]["pointing_game"] for m in ran])
    across_e = rank_agreement(sharp, [results[m]["energy_in_box"] for m in ran])
    return [
        (
            f"Across the {len(ran)} methods, ranking by mean sharpness vs by pointing game: ρ = {fmt(across, 2)}; "
            f"vs by energy in box: ρ = {fmt(across_e, 2)} (only {len(ran)} points, and CAM variants share one "
            "resolution, so this mostly separates pixel-level from layer-level methods)."
        ),
        "",
        (
            "Sharpness (variance of the Laplacian) rewards edges and fine detail wherever they are, so it cannot "
            "stand in for localisation; use the box metrics for that and deletion/insertion for faithfulness."
        ),
    ]


_DEFINITIONS: tuple[str, ...] = (
    (
        "- **Pointing game**: share of images whose map maximum (at original resolution) lies within the tolerance "
        "of the tumour box (Zhang et al., 2018)."
    ),
    "- **Energy in box**: share of the positive relevance inside the box (Wang et al., 2020, Score-CAM).",
    (
        "- **IoU**: intersection over union of the relevance region (`brainxai.analysis.relevance_region`: positive "
        "relevance, smoothed, restricted to the head, thresholded at max(95th percentile in the head, half the peak), "
        "strongest connected component(s)) with the box."
    ),
    (
        "- **Region in box / box in region** (`xai_per_image.csv`: `region_in_box`, `box_in_region`): the "
        "share of that region's pixels inside the box, and the share of the box's pixels inside the region."
    ),
    (
        "- **Deletion / insertion AUC**: area under the target probability while the most relevant pixels of the "
        "model input are set to black (deletion) or revealed on a blurred copy (insertion), in equal steps from "
        "0 % to 100 % of the pixels (Petsiuk et al., 2018). Deletion: lower is better; insertion: higher is better."
    ),
    (
        "- **Sanity rank corr**: Spearman correlation between the maps of the trained model and of a copy with "
        "all layers re-initialised, same target (Adebayo et al., 2018). Near 1 means the map ignores the weights; "
        "a trustworthy method gives a low value."
    ),
    (
        "- **Sharpness**: variance of the Laplacian of the positive map scaled to [0, 1] at model-input resolution "
        '(Pech-Pacheco et al., 2000): the usual number behind "sharper maps".'
    ),
    "- **ms / image**: wall time of the explanation call divided by the number of images.",
    (
        "- **Box occlusion drop** (of the model, not of a map): target probability minus target probability with "
        "the tumour box (mapped into the model input, rounded outwards) set to black; the mirror control does the "
        f'same with the box reflected left-right. "Model uses the box": drop ≥ {USES_BOX_DROP:g}.'
    ),
)


def _definitions(info: dict[str, Any]) -> list[str]:
    return [
        "",
        "## Definitions",
        "",
        *_DEFINITIONS,
        *(MASK_DEFINITIONS if info.get("masks") else ()),
        (
            "- **In the training data**: a training image within "
            f"{info['max_distance']} bits of the 64-bit pHash of the image or of its left-right mirror image "
            "(the same slice, re-encoded, resized or mirrored; `brainxai.data.audit`), only when `--train-data` "
            "is given."
        ),
        "",
        "Per-image values: `xai_per_image.csv`; the figure: `xai_grid.png`.",
        "",
    ]


def markdown(report: ReportData) -> str:
    """``xai.md``: settings, the results table, the baselines, the subsets, the in-painting drop (with masks),
    per class, the region, sharpness, definitions."""
    centre = mean_box_metrics(report.baseline)
    sections = [
        _header(report.info),
        _results_table(report.results),
        _best_method(report.results),
        _centre_baseline(centre, report.notes),
        _model_use(report.image_info),
        _training_data(report.subsets, report.info),
        _subset_table(report.results, report.subsets, centre),
        inpaint_section(report.reliance, report.image_info, report.info.get("inpaint_dilate_px") or 0),
        per_class_section(report.results, bool(report.info.get("masks"))),
        _region_section(report.results, report.per_image),
        _sharpness_within(report.results, report.per_image),
        _sharpness_across(report.results),
        _definitions(report.info),
    ]
    return "\n".join(line for section in sections for line in section)


def write_per_image(path: Path, rows: list[dict[str, Any]], with_masks: bool = False) -> None:
    """Writes ``xai_per_image.csv``: one row per method and image, floats to 6 significant digits; with
    masks, the mask metrics and the in-painting drops are appended as further columns."""
    keys = ["method", "file", "label", "target", *[k for k in METRICS if k != "ms_per_image"]]
    keys += ["region_in_box", "box_in_region", "box_occlusion_drop", "mirror_occlusion_drop"]
    if with_masks:
        keys += [*MASK_METRICS, *RELIANCE_KEYS]
    if rows and "nearest_train" in rows[0]:
        keys += ["nearest_train", "nearest_train_distance"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
