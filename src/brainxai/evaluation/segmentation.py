"""``brainxai evaluate-seg``: the segmenter against expert tumour masks, on each slice's own pixel grid.

Per slice: Dice, IoU and HD95 (95th percentile of the symmetric boundary-to-boundary distances, in
pixels of the original slice) of the thresholded probability map against the expert mask, and the
relative error of the segmented area. Summaries are over tumour slices; the 95% intervals come from a
percentile bootstrap over patients (a patient's slices are resampled together: they are near-copies).

No-tumour slices (label :data:`~brainxai.constants.NO_TUMOUR`, empty masks) are measured as the analysis
pipeline measures a segmentation: the mask's area on the classifier's input grid, and whether the pipeline's
disagreement rule (:func:`brainxai.analysis.lesion.disagreement`) would call it a sizeable lesion. The share
of no-tumour slices where it would is the ``false_positive_rate`` (bootstrap over patients/groups).

Outputs in ``out``: ``seg.json`` (keys below), ``per_slice.csv``, ``cases.png`` (best, median and worst
slices with the expert outline in green and the segmentation's in red) and ``report.md``, which names the
command that made it. Nothing is written when the data or the checkpoint is unusable.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from brainxai.analysis.lesion import MIN_LESION_AREA_MODEL_PX, disagreement, measure_lesion
from brainxai.constants import NO_TUMOUR
from brainxai.data.preprocess import PreprocessConfig, prepare_with_box
from brainxai.data.seg_dataset import SegSlice, data_fingerprint, load_pair, read_sources
from brainxai.inference import default_checkpoint_path
from brainxai.models.checkpoint import read_checkpoint_json
from brainxai.segmentation import Segmenter, default_segmenter_path
from brainxai.util.files import atomic_write, atomic_write_text

logger = logging.getLogger(__name__)

#: A slice counts as detected when its Dice reaches this.
DETECTED_DICE = 0.5
_KERNEL = np.ones((3, 3), np.uint8)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """``2|A n B| / (|A| + |B|)``; 1.0 when both masks are empty."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    total = int(pred.sum() + truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """``|A n B| / |A u B|``; 1.0 when both masks are empty."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    union = int((pred | truth).sum())
    return 1.0 if union == 0 else int((pred & truth).sum()) / union


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 8-neighbour outside it (or on the image edge)."""
    m = np.asarray(mask, bool).astype(np.uint8)
    eroded = cv2.erode(m, _KERNEL, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m > 0) & (eroded == 0)


def _distances_to(edge: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) of every pixel to the nearest pixel of ``edge``."""
    return cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """95th percentile of the boundary distances of two masks, both directions pooled, in pixels.

    0.0 when both masks are empty, ``inf`` when exactly one is (the distance is undefined).
    """
    a, b = boundary(pred), boundary(truth)
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return float("inf")
    d = np.concatenate([_distances_to(b)[a], _distances_to(a)[b]])
    return float(np.percentile(d, 95))


def slice_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice, IoU, HD95 (px) and areas (px) of one predicted mask against the expert's."""
    area_pred, area_true = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
    return {
        "dice": dice(pred, truth),
        "iou": iou(pred, truth),
        "hd95_px": hd95(pred, truth),
        "area_pred_px": area_pred,
        "area_true_px": area_true,
        "area_rel_error": abs(area_pred - area_true) / area_true if area_true else float("nan"),
    }


def classifier_grid_scale(image: np.ndarray, preprocess: PreprocessConfig) -> float:
    """Area of one slice pixel on the classifier's input grid: ``(S / crop width) x (S / crop height)``.

    The classifier's crop of the slice, as the pipeline's prepare step makes it (``model_scale`` there).
    """
    _, (x0, y0, x1, y1) = prepare_with_box(image, preprocess)
    return (preprocess.img_size / max(x1 - x0, 1)) * (preprocess.img_size / max(y1 - y0, 1))


def flags_lesion(mask: np.ndarray, scale: float) -> bool:
    """Whether the pipeline would warn on this mask for a "no tumour" finding (its disagreement rule, reused)."""
    return disagreement(False, measure_lesion(mask, None, scale)) is not None


def shipped_classifier_preprocess() -> PreprocessConfig:
    """The shipped classifier's preprocessing (its crop defines the input grid of the disagreement rule)."""
    try:
        return PreprocessConfig.from_dict(read_checkpoint_json(default_checkpoint_path())["preprocess"])
    except (OSError, ValueError, KeyError):  # no shipped classifier: the default grid
        logger.warning("no shipped classifier found: the lesion-size rule uses the default 224-px crop")
        return PreprocessConfig()


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def is_no_tumour(row: dict[str, Any]) -> bool:
    """Whether a per-slice row is a no-tumour slice (measured by the false-positive rate, not by Dice)."""
    return bool(row["label"] == NO_TUMOUR)


def _flag(value: Any) -> bool:
    """A boolean cell, also as read back from ``per_slice.csv`` (``"True"``/``"False"``)."""
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1")


def _tumour_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        keys = ("dice_mean", "dice_median", "iou_mean", "hd95_px_median", "detected", "area_rel_error_median")
        return {"n": 0, **dict.fromkeys(keys), "hd95_undefined": 0, "per_class": {}}
    d = np.array([r["dice"] for r in rows])
    hd = np.array([r["hd95_px"] for r in rows])
    per_class = {}
    for label in sorted({r["label"] for r in rows}):
        sel = np.array([r["label"] == label for r in rows])
        per_class[label] = {
            "n": int(sel.sum()),
            "dice_mean": float(d[sel].mean()),
            "dice_median": float(np.median(d[sel])),
            "detected": float((d[sel] >= DETECTED_DICE).mean()),
        }
    return {
        "n": len(rows),
        "dice_mean": float(d.mean()),
        "dice_median": float(np.median(d)),
        "iou_mean": float(np.mean([r["iou"] for r in rows])),
        "hd95_px_median": _finite_or_none(float(np.median(hd))),
        "hd95_undefined": int((~np.isfinite(hd)).sum()),
        "detected": float((d >= DETECTED_DICE).mean()),
        "area_rel_error_median": float(np.nanmedian([r["area_rel_error"] for r in rows])),
        "per_class": per_class,
    }


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The headline figures of per-slice rows (``dice``, ``iou``, ``hd95_px``, ``area_rel_error``, ``label``).

    Dice, IoU, HD95, detected and area error are over the tumour slices (``n`` counts them; None when there
    are none). No-tumour rows (with ``sizeable_lesion``) give ``n_no_tumour``, ``false_positive_rate`` (None
    without them) and ``per_class[NO_TUMOUR] = {n, false_positive_rate}``.
    """
    result = _tumour_summary([r for r in rows if not is_no_tumour(r)])
    negatives = [r for r in rows if is_no_tumour(r)]
    fp = float(np.mean([_flag(r["sizeable_lesion"]) for r in negatives])) if negatives else None
    result["n_no_tumour"] = len(negatives)
    result["false_positive_rate"] = fp
    if negatives:
        result["per_class"][NO_TUMOUR] = {"n": len(negatives), "false_positive_rate": fp}
    return result


def _class_mean(values: np.ndarray, labels: np.ndarray, label: str) -> Callable[[np.ndarray], float]:
    def mean(i: np.ndarray) -> float:
        sel = labels[i] == label
        return float(values[i][sel].mean()) if sel.any() else float("nan")

    return mean


def group_bootstrap(
    rows: Sequence[dict[str, Any]],
    stats: dict[str, Callable[[np.ndarray], float]],
    n_boot: int,
    seed: int,
    alpha: float,
) -> dict[str, list[float]]:
    """Percentile intervals of ``stats`` (functions of row indices), resampling patients with all their rows.

    Each resample draws ``row["patient"]`` groups with replacement and takes all rows of each drawn group.
    """
    patients = sorted({r["patient"] for r in rows})
    by_patient: dict[str, list[int]] = {p: [] for p in patients}
    for i, r in enumerate(rows):
        by_patient[r["patient"]].append(i)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in stats}
    for _ in range(n_boot):
        pick = rng.integers(0, len(patients), len(patients))
        idx = np.concatenate([by_patient[patients[p]] for p in pick])
        for key, fn in stats.items():
            draws[key].append(fn(idx))
    q = (100 * alpha / 2, 100 * (1 - alpha / 2))
    return {k: [float(v) for v in np.nanpercentile(np.array(v), q)] for k, v in draws.items()}


def patient_bootstrap(
    rows: Sequence[dict[str, Any]], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, Any]:
    """Percentile intervals of the mean Dice, mean IoU, detected share, area error and per-class Dice.

    Each resample draws patients with replacement and takes all slices of each drawn patient. The tumour
    figures come from the tumour slices; ``false_positive_rate`` from the no-tumour slices, resampling their
    patients (or groups) the same way.
    """
    tumour = [r for r in rows if not is_no_tumour(r)]
    out: dict[str, Any] = {}
    if tumour:
        d = np.array([r["dice"] for r in tumour])
        stats: dict[str, Callable[[np.ndarray], float]] = {
            "dice_mean": lambda i: float(d[i].mean()),
            "iou_mean": lambda i: float(np.mean([tumour[j]["iou"] for j in i])),
            "detected": lambda i: float((d[i] >= DETECTED_DICE).mean()),
            "area_rel_error_median": lambda i: float(np.nanmedian([tumour[j]["area_rel_error"] for j in i])),
        }
        labels = np.array([r["label"] for r in tumour])
        for label in sorted(set(labels.tolist())):
            stats[f"dice_mean[{label}]"] = _class_mean(d, labels, label)
        out |= group_bootstrap(tumour, stats, n_boot, seed, alpha)
    negatives = [r for r in rows if is_no_tumour(r)]
    if negatives:
        fp = np.array([_flag(r["sizeable_lesion"]) for r in negatives], float)
        out |= group_bootstrap(negatives, {"false_positive_rate": lambda i: float(fp[i].mean())}, n_boot, seed, alpha)
    return out


def _slices_to_evaluate(
    slices: list[SegSlice], checkpoint_json: dict[str, Any], only_validation: bool, data: Path
) -> list[SegSlice]:
    if not only_validation:
        return slices
    val = set((checkpoint_json.get("split") or {}).get("val_patients") or [])
    if not val:
        raise ValueError("--only-validation: the checkpoint records no validation patients (trained on all?)")
    chosen = [s for s in slices if s.patient in val]
    if not chosen:
        raise ValueError(f"--only-validation: none of the checkpoint's validation patients is in {data}")
    return chosen


def _predict_all(
    seg: Segmenter, slices: list[SegSlice], classifier_preprocess: PreprocessConfig, chunk: int = 16
) -> list[dict[str, Any]]:
    """Per-slice metrics; every slice is read and checked (a bad one raises before anything is written)."""
    rows = []
    for start in tqdm(range(0, len(slices), chunk), desc="segmenting", leave=False):
        part = slices[start : start + chunk]
        pairs = [load_pair(s) for s in part]
        probs = seg.probability([img for img, _ in pairs])
        for s, (image, truth), prob in zip(part, pairs, probs):
            pred = seg.mask(prob)
            scale = classifier_grid_scale(image, classifier_preprocess)
            rows.append(
                {
                    "file": s.image.name,
                    "label": s.label,
                    "patient": s.patient,
                    **slice_metrics(pred, truth),
                    "area_model_grid_px": round(int(np.count_nonzero(pred)) * scale, 1),
                    "sizeable_lesion": flags_lesion(pred, scale),
                }
            )
    return rows


def evaluate_segmenter(
    data: str | Path,
    out: str | Path,
    checkpoint: str | Path | None = None,
    only_validation: bool = False,
    n_boot: int = 1000,
    device: str = "auto",
    command: str = "",
    validation_of: str | Path | None = None,
    extra_data: Sequence[str | Path] = (),
    extra_labels: Sequence[str] | None = None,
    classifier_preprocess: PreprocessConfig | None = None,
) -> dict[str, Any]:
    """Evaluates a segmenter on a ``slices.csv`` folder (writes seg.json, per_slice.csv, cases.png, report.md).

    Args:
        validation_of: Evaluate the validation patients recorded by this checkpoint (implies
            ``only_validation``); default with ``only_validation``: the evaluated checkpoint's own.
        extra_data: More folders (see :func:`brainxai.data.seg_dataset.read_sources`), filtered to ``extra_labels``.
        classifier_preprocess: The classifier's preprocessing, which defines the input grid of the
            disagreement rule; default: the shipped classifier's.

    Returns:
        The ``seg.json`` content: ``n`` (tumour slices), ``patients``, ``dice_mean``, ``dice_median``,
        ``iou_mean``, ``hd95_px_median``, ``hd95_undefined``, ``detected``, ``area_rel_error_median``,
        ``per_class`` (label -> ``n``, ``dice_mean``, ...; ``notumor`` -> ``n``, ``false_positive_rate``),
        ``n_no_tumour``, ``false_positive_rate``, ``ci95`` (patient bootstrap), ``model``, ``data``.
    """
    data, out = Path(data), Path(out)
    seg = Segmenter.load(checkpoint, device=device)
    meta = json.loads(seg.checkpoint.weights_path.with_suffix(".json").read_text())
    if validation_of is not None:
        meta, only_validation = read_checkpoint_json(validation_of), True
    slices = _slices_to_evaluate(read_sources(data, extra_data, extra_labels), meta, only_validation, data)
    rows = _predict_all(seg, slices, classifier_preprocess or shipped_classifier_preprocess())
    result = summarise(rows)
    result["patients"] = len({r["patient"] for r in rows if not is_no_tumour(r)})
    result["no_tumour_groups"] = len({r["patient"] for r in rows if is_no_tumour(r)})
    result["ci95"] = patient_bootstrap(rows, n_boot)
    result["model"] = seg.info() | {"checkpoint_path": str(checkpoint or default_segmenter_path())}
    result["data"] = {
        "folder": str(data),
        "extra_data": [str(x) for x in extra_data],
        "extra_labels": list(extra_labels) if extra_labels else None,
        "fingerprint": data_fingerprint(slices, data),
        "subset": "all slices"
        if not only_validation
        else f"validation patients of {validation_of or 'the checkpoint'}",
    }
    result["disagreement_min_area_model_grid_px"] = MIN_LESION_AREA_MODEL_PX
    result["definitions"] = _DEFINITIONS
    result["command"] = command
    figure = cases_figure(seg, slices, rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "seg.json", json.dumps(result, indent=2))
    atomic_write_text(out / "per_slice.csv", _csv(rows))
    atomic_write(out / "cases.png", lambda tmp: tmp.write_bytes(figure))
    atomic_write_text(out / "report.md", report_markdown(result))
    return result


_DEFINITIONS = {
    "grid": "metrics on each slice's original pixel grid; segmentation thresholded at the checkpoint's threshold",
    "dice": "2|A n B| / (|A| + |B|) per slice, then mean or median over slices",
    "iou": "|A n B| / |A u B| per slice, mean over slices",
    "hd95_px": "95th percentile of pooled boundary-to-boundary distances (both directions), pixels; "
    "undefined (counted in hd95_undefined, treated as infinite in the median) when the segmentation is empty",
    "detected": f"share of slices with Dice >= {DETECTED_DICE}",
    "area_rel_error_median": "median over slices of |segmented area - expert area| / expert area",
    "ci95": "2.5th and 97.5th percentiles of a bootstrap over patients (all slices of a drawn patient)",
    "tumour_slices": "Dice, IoU, HD95, detected and area error are over the tumour slices only (n)",
    "false_positive_rate": f"share of the {NO_TUMOUR} slices whose segmentation the analysis pipeline would call a "
    f"sizeable lesion: area on the classifier's input grid >= {MIN_LESION_AREA_MODEL_PX:g} px² (its disagreement "
    "rule, brainxai.analysis.lesion); 95% CI from a bootstrap over their patients or groups",
}


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def pick_cases(rows: Sequence[dict[str, Any]], per_group: int = 3) -> list[tuple[str, int]]:
    """``(group, row index)`` of the best, median and worst slices by Dice."""
    order = np.argsort([r["dice"] for r in rows], kind="stable")
    n = len(order)
    k = min(per_group, n)
    mid = max(0, n // 2 - k // 2)
    groups = {"best": order[::-1][:k], "median": order[mid : mid + k], "worst": order[:k]}
    return [(name, int(i)) for name, idx in groups.items() for i in idx]


def _figure_cases(rows: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    """Best, median, worst tumour slices by Dice; without tumour slices the 3 largest no-tumour false segmentations."""
    tumour = [i for i, r in enumerate(rows) if not is_no_tumour(r)]
    if tumour:
        return [(g, tumour[i]) for g, i in pick_cases([rows[i] for i in tumour])]
    order = np.argsort([-float(r["area_model_grid_px"]) for r in rows], kind="stable")
    return [("largest false segmentation", int(i)) for i in order[:3]]


def outline_overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB slice with the expert outline in green and the segmentation's in red (2 px lines)."""
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    width = max(1, round(max(image.shape) / 256))
    for mask, colour in ((truth, (0, 220, 0)), (pred, (255, 40, 40))):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, colour, width)
    return rgb


def cases_figure(seg: Segmenter, slices: Sequence[SegSlice], rows: Sequence[dict[str, Any]]) -> bytes:
    """PNG bytes of a grid: rows best / median / worst, three slices each, outlines over the slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = _figure_cases(rows)
    groups = list(dict.fromkeys(g for g, _ in cases))
    ncol = max(sum(1 for g, _ in cases if g == name) for name in groups)
    fig, axes = plt.subplots(len(groups), ncol, figsize=(3.2 * ncol, 3.5 * len(groups)), dpi=110, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, name in enumerate(groups):
        for c, i in enumerate(i for g, i in cases if g == name):
            image, truth = load_pair(slices[i])
            pred = seg.segment(image)
            axes[r, c].imshow(outline_overlay(image, truth, pred))
            row = rows[i]
            score = (
                f"Dice {row['dice']:.2f}" if not is_no_tumour(row) else f"{row['area_model_grid_px']:.0f} px² (grid)"
            )
            axes[r, c].set_title(f"{name}: {row['label']}\n{row['file']}  {score}", fontsize=8)
    fig.suptitle("green: expert outline, red: segmentation (research use only)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _ci(result: dict[str, Any], key: str) -> str:
    lo, hi = result["ci95"].get(key, [float("nan")] * 2)
    return f"{lo:.3f}-{hi:.3f}"


def _tumour_lines(result: dict[str, Any]) -> list[str]:
    if not result["n"]:
        return ["No tumour slices in this data: Dice, IoU and HD95 are not defined.", ""]
    hd = result["hd95_px_median"]
    lines = [
        f"Tumour slices: {result['n']} of {result['patients']} patients.",
        "",
        "| figure | value | 95% CI (bootstrap over patients) |",
        "|---|---|---|",
        f"| mean Dice | {result['dice_mean']:.3f} | {_ci(result, 'dice_mean')} |",
        f"| median Dice | {result['dice_median']:.3f} | |",
        f"| mean IoU | {result['iou_mean']:.3f} | {_ci(result, 'iou_mean')} |",
        f"| median HD95 (px) | {'undefined' if hd is None else f'{hd:.1f}'} | |",
        f"| detected (Dice >= {DETECTED_DICE}) | {result['detected']:.3f} | {_ci(result, 'detected')} |",
        f"| median relative area error | {result['area_rel_error_median']:.3f} "
        f"| {_ci(result, 'area_rel_error_median')} |",
        "",
        f"Slices with an empty segmentation (HD95 undefined): {result['hd95_undefined']}.",
        "",
        "| class | slices | mean Dice | 95% CI | median Dice | detected |",
        "|---|---|---|---|---|---|",
    ]
    for label, pc in result["per_class"].items():
        if label != NO_TUMOUR:
            lines.append(
                f"| {label} | {pc['n']} | {pc['dice_mean']:.3f} | {_ci(result, f'dice_mean[{label}]')} | "
                f"{pc['dice_median']:.3f} | {pc['detected']:.3f} |"
            )
    return [*lines, ""]


def no_tumour_lines(result: dict[str, Any]) -> list[str]:
    """The false-positive paragraph of a report (empty without no-tumour slices)."""
    if result.get("false_positive_rate") is None:
        return []
    return [
        f"No-tumour slices: {result['n_no_tumour']} ({result.get('no_tumour_groups', '?')} patients or groups). "
        f"False-positive rate (segmentation >= {MIN_LESION_AREA_MODEL_PX:g} px² on the classifier's input grid, "
        f"the pipeline's disagreement rule): **{result['false_positive_rate']:.3f}** "
        f"(95% CI {_ci(result, 'false_positive_rate')}).",
        "",
    ]


def report_markdown(result: dict[str, Any]) -> str:
    """``report.md``: the command, the figures with patient-bootstrap intervals, per class, the definitions."""
    lines = [
        "# Tumour segmentation: evaluation against expert masks",
        "",
        "Research use only, not a diagnostic device.",
        "",
        f"Command: `{result['command'] or 'brainxai evaluate-seg'}`",
        "",
        f"Model: {result['model']['name']} `{result['model']['checkpoint']}` (sha256 {result['model']['sha256'][:12]}, "
        f"input {result['model']['input_size']} px, threshold {result['model']['threshold']}).",
        f"Data: `{result['data']['folder']}` ({result['data']['subset']}; "
        f"fingerprint {result['data']['fingerprint']}).",
        "",
        *_tumour_lines(result),
        *no_tumour_lines(result),
    ]
    lines += ["![cases](cases.png)", "", "## Definitions", ""]
    lines += [f"- **{k}**: {v}" for k, v in result["definitions"].items()]
    return "\n".join(lines) + "\n"
