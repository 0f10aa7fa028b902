"""``run_xai_benchmark``: read the box images, run every method, score the maps and write the reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from brainxai.data.audit import DEFAULT_MAX_DISTANCE, nearest_training_images
from brainxai.explain.base import list_explainers
from brainxai.explain.quality import POINTING_TOLERANCE, centre_map
from brainxai.pipeline.steps import classify
from brainxai.xai_benchmark.data import BoxImages, BoxRecord, load_box_images, read_boxes
from brainxai.xai_benchmark.figure import write_grid
from brainxai.xai_benchmark.metrics import USES_BOX_DROP, box_metrics, box_reliance
from brainxai.xai_benchmark.reliance import INPAINT_DILATE_PX, inpaint_reliance, reliance_summary
from brainxai.xai_benchmark.report import ReportData, markdown, write_per_image
from brainxai.xai_benchmark.runner import BenchmarkRuns, RunSettings, grid_rows, randomized_copy, run_methods
from brainxai.xai_benchmark.subsets import subset_summaries

if TYPE_CHECKING:
    from brainxai.inference import Classifier


@dataclass(frozen=True)
class _Options:
    """The options of one run that the reports record (see :func:`run_xai_benchmark`)."""

    boxes_csv: str
    target: str
    steps: int
    tolerance: float
    batch_size: int
    sanity: bool
    seed: int
    train_data: str | Path | None
    progress: bool
    command: str | None


@dataclass(frozen=True)
class _ModelView:
    """What the model makes of the images, before any map: labels, predictions, targets, use of the box."""

    labels: np.ndarray
    predicted: np.ndarray
    targets: np.ndarray
    random_model: nn.Module | None
    image_info: list[dict[str, Any]]
    excluded: list[str]
    has_masks: bool


def _checked_methods(methods: Sequence[str] | None) -> list[str]:
    names = list(methods) if methods else list_explainers()
    unknown = [m for m in names if m not in list_explainers()]
    if unknown:
        raise KeyError(f"unknown method(s) {', '.join(unknown)}; available: {', '.join(list_explainers())}")
    return names


def _checked_records(boxes_csv: str | Path, images_root: str | Path | None, classifier: Classifier) -> list[BoxRecord]:
    records = read_boxes(boxes_csv, images_root)
    if not records:
        raise ValueError(f"{boxes_csv} lists no images")
    bad = sorted({r.label for r in records} - set(classifier.classes))
    if bad:
        raise ValueError(f"label(s) {', '.join(bad)} are not classes of the model ({', '.join(classifier.classes)})")
    return records


def _add_nearest_training_images(
    image_info: list[dict[str, Any]], records: Sequence[BoxRecord], opts: _Options, excluded: list[str]
) -> None:
    assert opts.train_data is not None
    nearest = nearest_training_images([r.path for r in records], opts.train_data, opts.progress, exclude=excluded)
    for row, twin in zip(image_info, nearest, strict=True):
        row["nearest_train"] = "" if twin is None else f"{twin.class_name}/{twin.path.name}"
        row["nearest_train_distance"] = None if twin is None else twin.distance


def _model_view(data: BoxImages, classifier: Classifier, opts: _Options) -> _ModelView:
    predicted = classify(classifier, data.images).argmax(axis=1)
    labels = np.array([classifier.classes.index(r.label) for r in data.records])
    targets = labels if opts.target == "label" else predicted
    random_model = randomized_copy(classifier.model, opts.seed) if opts.sanity else None
    image_info = box_reliance(data, classifier, targets)
    if data.has_masks:  # the in-painting drop follows the annotated class, whatever the explained target
        for row, extra in zip(image_info, inpaint_reliance(data, classifier, labels), strict=True):
            row.update(extra)
    # A model trained with --exclude-twins-of never saw those files: they are no evidence of training on an image.
    data_info = classifier.checkpoint.meta.recipe.get("data_info", {})
    excluded = list(data_info.get("excluded_twins", [])) + list(data_info.get("excluded_by_source", []))
    if opts.train_data is not None:
        _add_nearest_training_images(image_info, data.records, opts, excluded)
    return _ModelView(labels, predicted, targets, random_model, image_info, excluded, data.has_masks)


def _info(classifier: Classifier, view: _ModelView, opts: _Options) -> dict[str, Any]:
    labels = view.labels
    return {
        "checkpoint": str(classifier.checkpoint.weights_path),
        "sha256": classifier.checkpoint.sha256,
        "model": classifier.name,
        "device": str(classifier.device),
        "threads": torch.get_num_threads(),
        "n": len(labels),
        "labels": {c: int((labels == i).sum()) for i, c in enumerate(classifier.classes) if (labels == i).any()},
        "accuracy": float((view.predicted == labels).mean()),
        "target": opts.target,
        "steps": opts.steps,
        "tolerance": opts.tolerance,
        "batch_size": opts.batch_size,
        "sanity": opts.sanity,
        "boxes_csv": opts.boxes_csv,
        "train_data": None if opts.train_data is None else str(opts.train_data),
        "train_data_excluded": len(view.excluded) if opts.train_data is not None else 0,
        "max_distance": DEFAULT_MAX_DISTANCE,
        "uses_box_drop": USES_BOX_DROP,
        "masks": view.has_masks,
        "inpaint_dilate_px": INPAINT_DILATE_PX if view.has_masks else None,
        "command": opts.command,
    }


def _write_reports(
    out_dir: Path,
    data: BoxImages,
    runs: BenchmarkRuns,
    info: dict[str, Any],
    image_info: list[dict[str, Any]],
    settings: RunSettings,
    methods: Sequence[str],
) -> None:
    centre = centre_map(data.prepared.shape[1])
    baseline = [box_metrics(i, centre, data, settings.tolerance) for i in range(len(data.records))]
    labels = [r.label for r in data.records]
    subsets = subset_summaries(image_info, runs.per_image, runs.results, info, labels, baseline)
    xai: dict[str, Any] = dict(runs.results)
    if data.has_masks:
        xai["reliance"] = reliance_summary(image_info)
    (out_dir / "xai.json").write_text(json.dumps(xai, indent=2) + "\n")
    (out_dir / "xai_subsets.json").write_text(json.dumps(subsets, indent=2) + "\n")
    write_per_image(out_dir / "xai_per_image.csv", runs.per_image, data.has_masks)
    report = ReportData(
        runs.results, runs.notes, runs.per_image, info, image_info, subsets, baseline, xai.get("reliance")
    )
    (out_dir / "xai.md").write_text(markdown(report))
    write_grid(out_dir / "xai_grid.png", data, settings.grid_rows, runs.grid_maps, methods, settings.tolerance)


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
    """Runs the benchmark and writes its reports (``xai.json``, ``xai_subsets.json``, ``xai.md``,
    ``xai_per_image.csv``, ``xai_grid.png``) into ``out_dir``.

    With a ``mask`` column in the CSV (``file,mask,label,...``), the maps are also scored against the
    lesion masks (``pointing_game_mask``, ``energy_in_mask``, overall and per class) and the model's
    reliance on the lesion is measured by in-painting it (:mod:`brainxai.xai_benchmark.reliance`):
    ``xai.json`` then also has a top-level ``reliance`` entry, ``{class: {median_drop,
    mirrored_median_drop, n, mirrored_n, mirrored_median_overlap}}``. Without masks those keys are absent
    and every other figure is computed exactly as before.

    Args:
        boxes_csv: CSV with ``file,label,width,height,x0,y0,x1,y1`` and optionally ``mask``; ``images_root``:
            the folder its paths are relative to (default: the CSV's folder).
        classifier: The model to explain, with its preprocessing; ``methods``: default all registered.
        target: Explain the annotated class (``"label"``, the pointing-game convention) or the predicted one.
        steps, tolerance, batch_size: Deletion/insertion steps; pointing-game tolerance in original
            pixels; images per explanation call.
        sanity, seed: Run the model-randomisation check (doubles the explanation work), with this seed.
        grid_images: Rows of the comparison figure.
        train_data: The model's training images (one folder per class). When given, each image's nearest
            training image by pHash is recorded, and the box metrics are reported separately on the images
            the model was trained on (twin within ``DEFAULT_MAX_DISTANCE`` bits) and the others. Files the
            checkpoint records as left out (``excluded_twins``) are skipped.
        progress: Show a progress bar; ``command``: the command line that ran the benchmark, written at
            the top of ``xai.md`` so the report says how to make it again (the CLI passes its own).

    Returns:
        ``{method: {pointing_game, energy_in_box, iou, deletion_auc, insertion_auc, sanity_rank_corr,
        sharpness, ms_per_image[, pointing_game_mask, energy_in_mask], n, per_class}}`` (means over images;
        ``per_class``: ``{label: {n, pointing_game, energy_in_box[, pointing_game_mask, energy_in_mask]}}``;
        ``None`` figures, ``n = 0`` and an empty ``per_class`` for a method that cannot explain the
        model). ``xai.json`` holds this plus ``reliance`` when there are masks.
    """
    methods = _checked_methods(methods)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    opts = _Options(str(boxes_csv), target, steps, tolerance, batch_size, sanity, seed, train_data, progress, command)
    data = load_box_images(_checked_records(boxes_csv, images_root, classifier), classifier)
    view = _model_view(data, classifier, opts)
    settings = RunSettings(
        view.targets, steps, tolerance, batch_size, grid_rows(data.records, grid_images), view.random_model
    )
    runs = run_methods(methods, data, classifier, settings, view.image_info, progress)
    _write_reports(Path(out_dir), data, runs, _info(classifier, view, opts), view.image_info, settings, methods)
    return runs.results
