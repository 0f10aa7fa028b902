"""The explanation-quality benchmark behind ``brainxai xai-benchmark``.

For every image of a box CSV (``file,label,width,height,x0,y0,x1,y1``; ``x1``/``y1`` exclusive), every
method explains the classifier's decision on the image preprocessed exactly as in inference
(``prepare_with_box``). Box metrics are computed on the map placed back into the original scan
(:func:`~brainxai.explain.views.relevance_to_original`), so the pointing-game tolerance is in original
pixels. Faithfulness, sanity and sharpness are computed at model-input resolution.

Two checks separate a map's faults from the model's: the *box occlusion drop* (does the target
probability fall when the tumour box is blacked out, i.e. did the model use the lesion at all?) and,
given the training folder, which images the model was trained on (pHash twins). The box metrics are
also reported on those subsets.

Outputs in ``out_dir``: ``xai.json`` (``{method: {metric: mean}}``), ``xai_subsets.json`` (the box
metrics on the subsets), ``xai.md`` (tables, settings, definitions, sharpness vs localisation),
``xai_per_image.csv`` and ``xai_grid.png``.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from brainxai.analysis.region import brain_mask, relevance_region
from brainxai.constants import DISCLAIMER
from brainxai.data.audit import DEFAULT_MAX_DISTANCE, nearest_training_images
from brainxai.data.preprocess import prepare_with_box
from brainxai.evaluation.metrics import wilson_interval
from brainxai.explain.base import (
    UnsupportedModelError,
    create_explainer,
    list_explainers,
)
from brainxai.explain.quality import (
    POINTING_TOLERANCE,
    Box,
    blurred_baseline,
    box_to_input,
    centre_map,
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
from brainxai.explain.views import relevance_to_original
from brainxai.inference import Classifier
from brainxai.io import read_raster

logger = logging.getLogger(__name__)

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

#: Target of the pointing game: 0.90 for the best method.
POINTING_GOAL = 0.90

#: Box occlusion drop (target probability) from which an image counts as "the model uses the box".
USES_BOX_DROP = 0.10

#: Metrics reported on the subsets of images (the ones that compare a map with the box).
SUBSET_METRICS: tuple[str, ...] = ("pointing_game", "energy_in_box", "iou")


@dataclass(frozen=True)
class BoxRecord:
    """One annotated image."""

    path: Path
    label: str
    box: Box
    size: tuple[int, int] | None = None  # (width, height) the box refers to, when the CSV gives it


def read_boxes(csv_path: str | Path, images_root: str | Path | None = None) -> list[BoxRecord]:
    """Reads a box CSV; paths are relative to ``images_root`` or else to the CSV's folder.

    Raises:
        ValueError: A required column is missing or a row is malformed.
    """
    csv_path = Path(csv_path)
    root = Path(images_root) if images_root is not None else csv_path.parent
    records = []
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        required = {"file", "label", "x0", "y0", "x1", "y1"}
        missing = required - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                box = tuple(int(float(row[k])) for k in ("x0", "y0", "x1", "y1"))
            except ValueError as exc:
                raise ValueError(f"{csv_path}:{line}: bad box ({exc})") from exc
            if box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"{csv_path}:{line}: empty box {box}")
            size = (int(row["width"]), int(row["height"])) if row.get("width") and row.get("height") else None
            records.append(BoxRecord(path=root / row["file"], label=row["label"].strip(), box=box, size=size))
    return records


def _scaled_box(record: BoxRecord, shape: tuple[int, int]) -> Box:
    """The box in pixels of the image as read (scaled if the CSV declared another size)."""
    declared = record.size
    h, w = shape
    if declared is None or declared == (w, h):
        return record.box
    sx, sy = w / declared[0], h / declared[1]
    warnings.warn(f"{record.path.name}: CSV says {declared[0]}x{declared[1]}, image is {w}x{h}; box scaled", stacklevel=3)
    x0, y0, x1, y1 = record.box
    return (round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy))


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised (the sanity check's "random model").

    Convolutions and dense layers get He-normal weights and zero biases, batch norms their identity
    initialisation, anything else its own ``reset_parameters``. He scaling keeps the activations of
    the random network at a normal magnitude; PyTorch's default initialisation makes them shrink
    layer after layer into subnormal floats, which are both meaningless and very slow on CPUs.
    """
    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in clone.modules():
            if module is clone:
                continue
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return clone.eval()


@dataclass
class BoxImages:
    """The images of a box CSV, read and preprocessed once for every method."""

    records: list[BoxRecord]
    originals: list[np.ndarray]
    prepared: np.ndarray  # (N, S, S) uint8
    crops: list[Box]
    boxes: list[Box]
    brains: list[np.ndarray] = field(default_factory=list)


def load_box_images(records: Sequence[BoxRecord], classifier: Classifier) -> BoxImages:
    """Reads the scans, preprocesses them as inference does and scales their boxes to the scans."""
    originals, prepared, crops, boxes, brains = [], [], [], [], []
    for rec in records:
        img = read_raster(rec.path)
        p, crop = prepare_with_box(img, classifier.preprocess)
        originals.append(img)
        prepared.append(p)
        crops.append(crop)
        boxes.append(_scaled_box(rec, img.shape))
        brains.append(brain_mask(img))
    return BoxImages(list(records), originals, np.stack(prepared), crops, boxes, brains)


def _score_fn(classifier: Classifier, target: int, chunk: int = 64):
    """Target probability (softmax of the raw logits) of a batch of prepared (float, 0..255) images.

    Runs on the classifier's BatchNorm-folded copy: the same function, and the perturbation curves are
    most of the benchmark's time.
    """

    def score(batch: np.ndarray) -> np.ndarray:
        logits = torch.from_numpy(classifier.logits_prepared(batch, batch_size=chunk))
        return torch.softmax(logits, dim=1)[:, target].numpy()

    return score


def run_xai_benchmark(
    boxes_csv: str | Path,
    out_dir: str | Path,
    classifier: Classifier,
    methods: Sequence[str] | None = None,
    images_root: str | Path | None = None,
    target: Literal["label", "predicted"] = "label",
    steps: int = 20,
    tolerance: float = POINTING_TOLERANCE,
    batch_size: int = 8,
    sanity: bool = True,
    grid_images: int = 4,
    seed: int = 0,
    train_data: str | Path | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Runs the benchmark and writes its reports.

    Args:
        boxes_csv: CSV with ``file,label,width,height,x0,y0,x1,y1``.
        out_dir: Output folder (created).
        classifier: The model to explain, with its preprocessing.
        methods: Method names (default: all registered).
        images_root: Folder the CSV's paths are relative to (default: the CSV's folder).
        target: Explain the annotated class (``"label"``, the pointing-game convention) or the
            predicted one.
        steps: Deletion/insertion steps.
        tolerance: Pointing-game tolerance in original pixels.
        batch_size: Images per explanation call.
        sanity: Run the model-randomisation check (doubles the explanation work).
        grid_images: Rows of the comparison figure.
        seed: Seed of the randomised model.
        train_data: The model's training images (one folder per class). When given, each image's
            nearest training image by pHash is recorded, and the box metrics are reported separately
            on the images the model was trained on (twin within ``DEFAULT_MAX_DISTANCE`` bits) and
            the others. Files the checkpoint records as left out (``excluded_twins``) are skipped.
        progress: Show a progress bar.
        command: The command line that ran the benchmark, written at the top of ``xai.md`` so the report
            says how to make it again (the CLI passes its own).

    Returns:
        ``{method: {pointing_game, energy_in_box, iou, deletion_auc, insertion_auc, sanity_rank_corr,
        sharpness, ms_per_image, n}}`` (means over images; ``None`` for a method that cannot explain
        the model, with ``n = 0``).
    """
    methods = list(methods) if methods else list_explainers()
    unknown = [m for m in methods if m not in list_explainers()]
    if unknown:
        raise KeyError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(list_explainers())}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = read_boxes(boxes_csv, images_root)
    if not records:
        raise ValueError(f"{boxes_csv} lists no images")
    bad = sorted({r.label for r in records} - set(classifier.classes))
    if bad:
        raise ValueError(f"label(s) {', '.join(bad)} are not classes of the model ({', '.join(classifier.classes)})")

    data = load_box_images(records, classifier)
    n = len(records)
    probs = classifier.predict_proba_prepared(data.prepared)
    predicted = probs.argmax(axis=1)
    labels = np.array([classifier.classes.index(r.label) for r in records])
    targets = labels if target == "label" else predicted
    random_model = randomized_copy(classifier.model, seed) if sanity else None
    deletion_base = np.zeros(data.prepared.shape[1:], np.float32)
    image_info = _box_reliance(data, classifier, targets)
    # A model trained with --exclude-twins-of never saw those files: they are no evidence of training on an image.
    excluded = list(classifier.checkpoint.meta.recipe.get("data_info", {}).get("excluded_twins", []))
    if train_data is not None:
        nearest = nearest_training_images([r.path for r in records], train_data, progress, exclude=excluded)
        for row, twin in zip(image_info, nearest):
            row["nearest_train"] = "" if twin is None else f"{twin.class_name}/{twin.path.name}"
            row["nearest_train_distance"] = None if twin is None else twin.distance

    results: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {}
    per_image: list[dict[str, Any]] = []
    grid_maps: dict[str, list[np.ndarray]] = {}
    grid_rows = _grid_rows(records, grid_images)
    bar = tqdm(total=len(methods) * n, desc="xai-benchmark", unit="img", disable=not progress)
    for method in methods:
        bar.set_postfix_str(method)
        try:
            explainer = create_explainer(method, classifier.model)
            rand_explainer = create_explainer(method, random_model) if random_model is not None else None
        except UnsupportedModelError as exc:
            logger.warning("%s", exc)
            notes[method] = str(exc)
            results[method] = {**{k: None for k in METRICS}, "n": 0}
            bar.update(n)
            continue
        with explainer:
            # The first call pays one-off costs (tracing, allocations); it is not timed.
            explainer.explain(classifier.tensor(data.prepared[:1]), [int(targets[0])])
            elapsed = 0.0
            rows: list[dict[str, Any]] = []
            for start in range(0, n, batch_size):
                idx = list(range(start, min(n, start + batch_size)))
                x = classifier.tensor(data.prepared[idx])
                t_batch = [int(targets[i]) for i in idx]
                t0 = time.perf_counter()
                exps = explainer.explain(x, t_batch)
                elapsed += time.perf_counter() - t0
                rand_exps = rand_explainer.explain(x, t_batch) if rand_explainer is not None else [None] * len(idx)
                for i, e, re in zip(idx, exps, rand_exps):
                    rows.append(_image_metrics(i, e.relevance, re, data, targets[i], classifier, steps, tolerance, deletion_base))
                    if i in grid_rows:
                        grid_maps.setdefault(method, [None] * len(grid_rows))[grid_rows.index(i)] = e.relevance
                bar.update(len(idx))
        if rand_explainer is not None:
            rand_explainer.close()
        for row, info_row in zip(rows, image_info):
            row.update(info_row, method=method)
        per_image.extend(rows)
        summary = {k: float(np.mean([r[k] for r in rows])) for k in METRICS if k != "ms_per_image"}
        summary["ms_per_image"] = 1000.0 * elapsed / n
        results[method] = {**{k: summary[k] for k in METRICS}, "n": n}
        if not sanity:
            results[method]["sanity_rank_corr"] = None
    bar.close()

    info = {
        "checkpoint": str(classifier.checkpoint.weights_path),
        "sha256": classifier.checkpoint.sha256,
        "model": classifier.name,
        "device": str(classifier.device),
        "threads": torch.get_num_threads(),
        "n": n,
        "labels": {c: int((labels == i).sum()) for i, c in enumerate(classifier.classes) if (labels == i).any()},
        "accuracy": float((predicted == labels).mean()),
        "target": target,
        "steps": steps,
        "tolerance": tolerance,
        "batch_size": batch_size,
        "sanity": sanity,
        "boxes_csv": str(boxes_csv),
        "train_data": None if train_data is None else str(train_data),
        "train_data_excluded": len(excluded) if train_data is not None else 0,
        "max_distance": DEFAULT_MAX_DISTANCE,
        "uses_box_drop": USES_BOX_DROP,
        "command": command,
    }
    centre = centre_map(data.prepared.shape[1])
    baseline = [_box_metrics(i, centre, data, tolerance) for i in range(n)]
    subsets = _subsets(image_info, per_image, results, info, [r.label for r in records], baseline)
    (out_dir / "xai.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "xai_subsets.json").write_text(json.dumps(subsets, indent=2) + "\n")
    _write_per_image(out_dir / "xai_per_image.csv", per_image)
    (out_dir / "xai.md").write_text(_markdown(results, notes, per_image, info, image_info, subsets, baseline))
    _write_grid(out_dir / "xai_grid.png", data, grid_rows, grid_maps, methods, notes, tolerance)
    return results


def _box_reliance(data: BoxImages, classifier: Classifier, targets: np.ndarray) -> list[dict[str, Any]]:
    """Per image: the box occlusion drop and its control, the mirrored box (other hemisphere)."""
    size = data.prepared.shape[1]
    out = []
    for i, t in enumerate(targets):
        image = data.prepared[i].astype(np.float32)
        box = box_to_input(data.boxes[i], data.crops[i], size)
        score = _score_fn(classifier, int(t))
        out.append(
            {
                "file": data.records[i].path.name,
                "label": data.records[i].label,
                "box_occlusion_drop": occlusion_drop(score, image, box),
                "mirror_occlusion_drop": occlusion_drop(score, image, mirrored_box(box, size)),
            }
        )
    return out


def _subset_masks(image_info: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, np.ndarray]:
    drop = np.array([r["box_occlusion_drop"] for r in image_info])
    masks = {"model uses the box": drop >= USES_BOX_DROP, "model does not use the box": drop < USES_BOX_DROP}
    if info["train_data"] is not None:
        # An unreadable image (no distance) counts as unseen: it cannot be shown to be a twin.
        dist = np.array([r["nearest_train_distance"] if r["nearest_train_distance"] is not None else 65 for r in image_info])
        masks["not in the training data"] = dist > info["max_distance"]
        masks["in the training data"] = dist <= info["max_distance"]
    return masks


def _mean_box_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {**{m: (float(np.mean([r[m] for r in rows])) if rows else None) for m in SUBSET_METRICS}, "n": len(rows)}


def _subsets(
    image_info: list[dict[str, Any]],
    per_image: list[dict[str, Any]],
    results: dict[str, dict[str, Any]],
    info: dict[str, Any],
    labels: list[str],
    baseline: list[dict[str, float]],
) -> dict[str, Any]:
    """``{subset: {definition, n, labels, methods: {method: {pointing_game, energy_in_box, iou, n}}, centre_baseline}}``."""
    definitions = {
        "model uses the box": f"box occlusion drop >= {USES_BOX_DROP:g}",
        "model does not use the box": f"box occlusion drop < {USES_BOX_DROP:g}",
        "not in the training data": f"nearest training image more than {info['max_distance']} pHash bits away",
        "in the training data": f"a training image within {info['max_distance']} pHash bits (the same slice)",
    }
    out: dict[str, Any] = {}
    for name, mask in _subset_masks(image_info, info).items():
        idx = set(np.flatnonzero(mask).tolist())
        per_method = {}
        for method in results:
            # A method's rows are in image order (the runner explains the images in order).
            rows = [row for k, row in enumerate(x for x in per_image if x["method"] == method) if k in idx]
            per_method[method] = _mean_box_metrics(rows)
        out[name] = {
            "definition": definitions[name],
            "n": len(idx),
            "labels": {c: sum(1 for k in idx if labels[k] == c) for c in dict.fromkeys(labels)},
            "methods": per_method,
            "centre_baseline": _mean_box_metrics([baseline[k] for k in sorted(idx)]),
        }
    return out


def _box_metrics(i: int, relevance: np.ndarray, data: BoxImages, tolerance: float) -> dict[str, float]:
    """Pointing game, energy in box and IoU of a model-input map, placed back into scan ``i``."""
    original = data.originals[i]
    box = data.boxes[i]
    mapped = relevance_to_original(relevance, data.crops[i], original.shape)
    region = relevance_region(mapped, data.brains[i])
    region_in_box, box_in_region = region_box_overlap(region, box)
    return {
        "pointing_game": float(pointing_game(mapped, box, tolerance)),
        "energy_in_box": energy_in_box(mapped, box),
        "iou": iou_with_box(region, box),
        "region_in_box": region_in_box,
        "box_in_region": box_in_region,
    }


def _image_metrics(
    i: int,
    relevance: np.ndarray,
    rand_exp: Any,
    data: BoxImages,
    target: int,
    classifier: Classifier,
    steps: int,
    tolerance: float,
    deletion_base: np.ndarray,
) -> dict[str, Any]:
    image = data.prepared[i].astype(np.float32)
    score = _score_fn(classifier, int(target))
    return {
        "file": data.records[i].path.name,
        "label": data.records[i].label,
        "target": classifier.classes[int(target)],
        **_box_metrics(i, relevance, data, tolerance),
        "deletion_auc": perturbation_auc(score, image, relevance, "deletion", deletion_base, steps),
        "insertion_auc": perturbation_auc(score, image, relevance, "insertion", blurred_baseline(image), steps),
        "sanity_rank_corr": rank_correlation(relevance, rand_exp.relevance) if rand_exp is not None else float("nan"),
        "sharpness": sharpness(relevance),
    }


def _grid_rows(records: Sequence[BoxRecord], k: int) -> list[int]:
    """Up to ``k`` image indices, cycling through the labels so each class appears."""
    by_label: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_label.setdefault(r.label, []).append(i)
    rows: list[int] = []
    depth = 0
    while len(rows) < min(k, len(records)):
        for idx in by_label.values():
            if depth < len(idx) and len(rows) < k:
                rows.append(idx[depth])
        depth += 1
    return rows


def _write_per_image(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = ["method", "file", "label", "target", *[k for k in METRICS if k != "ms_per_image"]]
    keys += ["region_in_box", "box_in_region", "box_occlusion_drop", "mirror_occlusion_drop"]
    if rows and "nearest_train" in rows[0]:
        keys += ["nearest_train", "nearest_train_distance"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _pointing_ci(r: dict[str, Any]) -> str:
    """95% Wilson interval of a method's pointing game, ``-`` when it was not run."""
    if r["pointing_game"] is None or not r["n"]:
        return "-"
    lo, hi = wilson_interval(round(r["pointing_game"] * r["n"]), r["n"])
    return f"[{lo:.3f}, {hi:.3f}]"


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    x, y = np.asarray(a, float), np.asarray(b, float)
    if len(x) < 3:
        return float("nan")
    return rank_correlation(x[None, :], y[None, :])


def _subset_markdown(
    results: dict[str, dict[str, Any]],
    image_info: list[dict[str, Any]],
    subsets: dict[str, Any],
    info: dict[str, Any],
    centre: dict[str, Any],
) -> list[str]:
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
    if info["train_data"] is not None:
        seen = subsets["in the training data"]
        lines += [
            "",
            (
                f"**Images the model was trained on**: {seen['n']} of {info['n']} have a twin within "
                f"{info['max_distance']} pHash bits in `{info['train_data']}` ("
                + ", ".join(f"{c}: {k}" for c, k in seen["labels"].items())
                + "; the nearest training image of each is in `xai_per_image.csv`). Figures on them explain "
                "images the model has learnt, not new ones."
                + (
                    " Files the checkpoint records as left out of its training (`excluded_twins`: "
                    f"{info['train_data_excluded']}) are not counted as training images."
                    if info["train_data_excluded"]
                    else ""
                )
            ),
        ]
    names = list(subsets)
    lines += [
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


def _region_markdown(results: dict[str, dict[str, Any]], per_image: list[dict[str, Any]]) -> list[str]:
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
        cells = []
        for label in labels:
            rows = [r for r in per_image if r["method"] == method and r["label"] == label]
            if not rows:
                cells.append("-")
                continue
            inside = [r["region_in_box"] for r in rows if r["region_in_box"] is not None]
            empty = len(rows) - len(inside)
            covered = float(np.median([r["box_in_region"] for r in rows]))
            cells.append(
                f"{_fmt(float(np.median(inside)) if inside else None, 2)} / {_fmt(covered, 2)}"
                + (f" ({empty})" if empty else "")
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _pg_energy(r: dict[str, Any]) -> str:
    return "-" if not r["n"] else f"{_fmt(r['pointing_game'])} ({_fmt(r['energy_in_box'], 2)})"


def _markdown(
    results: dict[str, dict[str, Any]],
    notes: dict[str, str],
    per_image: list[dict[str, Any]],
    info: dict[str, Any],
    image_info: list[dict[str, Any]],
    subsets: dict[str, Any],
    baseline: list[dict[str, float]],
) -> str:
    lines = [
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
        "",
        (
            "| method | pointing game ↑ | 95% CI | energy in box ↑ | IoU ↑ | deletion AUC ↓ | insertion AUC ↑ | "
            "sanity rank corr ↓ | sharpness | ms / image | n |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, r in results.items():
        lines.append(
            f"| {method} | {_fmt(r['pointing_game'])} | {_pointing_ci(r)} | {_fmt(r['energy_in_box'])} | {_fmt(r['iou'])} | "
            f"{_fmt(r['deletion_auc'])} | {_fmt(r['insertion_auc'])} | {_fmt(r['sanity_rank_corr'])} | "
            f"{_fmt(r['sharpness'], 5)} | {_fmt(r['ms_per_image'], 1)} | {r['n']} |"
        )
    scored = {m: r["pointing_game"] for m, r in results.items() if r["pointing_game"] is not None}
    if scored:
        best = max(scored, key=scored.get)
        verdict = "meets" if scored[best] >= POINTING_GOAL else "does not meet"
        lines += [
            "",
            f"Best pointing game: **{best}** ({scored[best]:.3f}, 95% CI {_pointing_ci(results[best])}), which "
            f"{verdict} the goal of {POINTING_GOAL:.2f}. CI: Wilson score interval over the images, which treats "
            "them as independent draws; it says how far another set of the same kind may move the figure.",
        ]
    centre = _mean_box_metrics(baseline)
    lines += [
        "",
        (
            f"Centre baseline (a map that ignores the image: a Gaussian at the centre of the model input, sigma a "
            f"quarter of its side): pointing game {centre['pointing_game']:.3f}, 95% CI {_pointing_ci(centre)}, "
            f"energy in box {centre['energy_in_box']:.3f}, IoU {centre['iou']:.3f}. A method is only as good as its "
            "margin over it."
        ),
    ]
    for method, note in notes.items():
        lines += ["", f"- `{method}` not run: {note}"]
    lines += _subset_markdown(results, image_info, subsets, info, centre)
    lines += _region_markdown(results, per_image)

    lines += ["", "## Does sharpness agree with localisation?", ""]
    lines.append(
        "Spearman rank correlation, over the images of each method, between the map's sharpness and its "
        "energy in the box, and between sharpness and the pointing-game hit:"
    )
    lines += ["", "| method | ρ(sharpness, energy in box) | ρ(sharpness, pointing hit) |", "|---|---|---|"]
    within = []
    for method in results:
        rows = [r for r in per_image if r["method"] == method]
        if not rows:
            continue
        s = [r["sharpness"] for r in rows]
        rho = _spearman(s, [r["energy_in_box"] for r in rows])
        if not math.isnan(rho):
            within.append(rho)
        lines.append(f"| {method} | {_fmt(rho, 2)} | {_fmt(_spearman(s, [r['pointing_game'] for r in rows]), 2)} |")
    ran = [m for m, r in results.items() if r["sharpness"] is not None]
    if within:
        median = float(np.median(within))
        if median < -0.1:
            trend = "sharper maps tend to be *worse* placed"
        elif median > 0.1:
            trend = "sharper maps tend to be better placed"
        else:
            trend = "sharpness and placement are unrelated"
        lines += ["", f"Within a method, {trend} (median ρ with energy in box: {median:.2f})."]
    if len(ran) >= 3:
        across = _spearman([results[m]["sharpness"] for m in ran], [results[m]["pointing_game"] for m in ran])
        across_e = _spearman([results[m]["sharpness"] for m in ran], [results[m]["energy_in_box"] for m in ran])
        lines += [
            (
                f"Across the {len(ran)} methods, ranking by mean sharpness vs by pointing game: ρ = {_fmt(across, 2)}; "
                f"vs by energy in box: ρ = {_fmt(across_e, 2)} (only {len(ran)} points, and CAM variants share one "
                "resolution, so this mostly separates pixel-level from layer-level methods)."
            ),
            "",
            (
                "Sharpness (variance of the Laplacian) rewards edges and fine detail wherever they are, so it cannot "
                "stand in for localisation; use the box metrics for that and deletion/insertion for faithfulness."
            ),
        ]
    lines += ["", "## Definitions", ""]
    lines += [
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
            "(Pech-Pacheco et al., 2000): the usual number behind \"sharper maps\"."
        ),
        "- **ms / image**: wall time of the explanation call divided by the number of images.",
        (
            "- **Box occlusion drop** (of the model, not of a map): target probability minus target probability with "
            "the tumour box (mapped into the model input, rounded outwards) set to black; the mirror control does the "
            f"same with the box reflected left-right. \"Model uses the box\": drop ≥ {USES_BOX_DROP:g}."
        ),
        (
            "- **In the training data**: a training image within "
            f"{info['max_distance']} bits of the image's 64-bit pHash (the same slice, re-encoded or resized; "
            "`brainxai.data.audit`), only when `--train-data` is given."
        ),
        "",
        "Per-image values: `xai_per_image.csv`; the figure: `xai_grid.png`.",
        "",
    ]
    return "\n".join(lines)


def _write_grid(
    path: Path,
    data: BoxImages,
    rows: list[int],
    maps: dict[str, list[np.ndarray]],
    methods: Sequence[str],
    notes: dict[str, str],
    tolerance: float,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from brainxai.explain.views import overlay_image

    cols = 1 + len(methods)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols, 2.3 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        original = data.originals[i]
        x0, y0, x1, y1 = data.crops[i]
        bx0, by0, bx1, by1 = data.boxes[i]
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.imshow(original[y0:y1, x0:x1], cmap="gray", vmin=0, vmax=255)
                ax.set_ylabel(f"{data.records[i].label}\n{data.records[i].path.stem}", fontsize=7)
                if r == 0:
                    ax.set_title("scan + box", fontsize=8)
            else:
                method = methods[c - 1]
                if r == 0:
                    ax.set_title(method, fontsize=8)
                rel = maps.get(method, [None] * len(rows))[r]
                if rel is None:
                    ax.imshow(original[y0:y1, x0:x1], cmap="gray", vmin=0, vmax=255, alpha=0.3)
                    ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, fontsize=9)
                    continue
                mapped = relevance_to_original(rel, data.crops[i], original.shape)
                ax.imshow(overlay_image(original, mapped, alpha=0.7)[y0:y1, x0:x1])
                if mapped.max() > 0:
                    py, px = np.unravel_index(int(np.argmax(mapped)), mapped.shape)
                    hit = pointing_game(mapped, data.boxes[i], tolerance)
                    ax.plot(px - x0, py - y0, marker="x", color="cyan" if hit else "magenta", markersize=7, mew=2)
                else:
                    ax.text(0.5, 0.05, "empty map", ha="center", transform=ax.transAxes, fontsize=7, color="white")
            ax.set_xlim(-0.5, x1 - x0 - 0.5)
            ax.set_ylim(y1 - y0 - 0.5, -0.5)
            ax.add_patch(Rectangle((bx0 - x0 - 0.5, by0 - y0 - 0.5), bx1 - bx0, by1 - by0, fill=False, edgecolor="lime", lw=1))
    fig.suptitle("Relevance overlays; green: tumour box; x: map maximum (cyan hit, magenta miss)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
