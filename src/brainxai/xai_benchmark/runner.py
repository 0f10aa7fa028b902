"""The per-method run: explain every image with one method (and on the randomised model), and score each map."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from brainxai.explain.base import Explainer, UnsupportedModelError, create_explainer
from brainxai.pipeline import steps
from brainxai.xai_benchmark.data import BoxImages, BoxRecord
from brainxai.xai_benchmark.metrics import image_metrics, not_run_summary, summarise

if TYPE_CHECKING:
    from brainxai.inference import Classifier

logger = logging.getLogger(__name__)


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
            elif callable(reset := getattr(module, "reset_parameters", None)):
                reset()
    return clone.eval()


def grid_rows(records: Sequence[BoxRecord], k: int) -> list[int]:
    """Up to ``k`` image indices for the figure, cycling through the labels so each class appears."""
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


@dataclass(frozen=True)
class RunSettings:
    """What every method's run shares.

    Attributes:
        targets: The explained class of each image.
        steps: Deletion/insertion steps.
        tolerance: Pointing-game tolerance in original pixels.
        batch_size: Images per explanation call.
        grid_rows: The images shown in the figure.
        random_model: The randomised model of the sanity check, or None (no check).
    """

    targets: np.ndarray
    steps: int
    tolerance: float
    batch_size: int
    grid_rows: list[int]
    random_model: nn.Module | None


@dataclass
class MethodRun:
    """One method's per-image rows, its explanation time (seconds) and its maps of the figure's images."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    grid_maps: list[np.ndarray | None] = field(default_factory=list)


def _explain_images(
    explainer: Explainer,
    random_explainer: Explainer | None,
    data: BoxImages,
    classifier: Classifier,
    settings: RunSettings,
    bar: tqdm,
) -> MethodRun:
    run = MethodRun(grid_maps=[None] * len(settings.grid_rows))
    n = len(data.records)
    base = np.zeros(data.prepared.shape[1:], np.float32)  # the deletion baseline: black, "no information"
    for start in range(0, n, settings.batch_size):
        idx = list(range(start, min(n, start + settings.batch_size)))
        batch = [data.images[i] for i in idx]
        targets = [int(settings.targets[i]) for i in idx]
        t0 = time.perf_counter()
        exps = steps.explain(explainer, classifier, batch, targets)
        run.elapsed += time.perf_counter() - t0
        rand_exps = (
            steps.explain(random_explainer, classifier, batch, targets)
            if random_explainer is not None
            else [None] * len(idx)
        )
        for i, e, re in zip(idx, exps, rand_exps, strict=True):
            target = settings.targets[i]
            metrics = image_metrics(
                i, e.relevance, re, data, target, classifier, settings.steps, settings.tolerance, base
            )
            run.rows.append(metrics)
            if i in settings.grid_rows:
                run.grid_maps[settings.grid_rows.index(i)] = e.relevance
        bar.update(len(idx))
    return run


def create_explainers(
    method: str, classifier: Classifier, random_model: nn.Module | None
) -> tuple[Explainer, Explainer | None]:
    """The method's explainer of the trained model and, for the sanity check, of the randomised one.

    Raises:
        UnsupportedModelError: The method cannot explain the model.
    """
    explainer = create_explainer(method, classifier.model)
    return explainer, (create_explainer(method, random_model) if random_model is not None else None)


def run_method(
    explainer: Explainer,
    random_explainer: Explainer | None,
    data: BoxImages,
    classifier: Classifier,
    settings: RunSettings,
    bar: tqdm,
) -> MethodRun:
    """Explains every image with one method and scores each map (:func:`~brainxai.xai_benchmark.metrics.image_metrics`).

    Only the explanation calls on the trained model are timed; the first call, which pays one-off costs
    (tracing, allocations), is made before and not timed. Closes both explainers.
    """
    try:
        with explainer:
            steps.explain(explainer, classifier, data.images[:1], [int(settings.targets[0])])
            return _explain_images(explainer, random_explainer, data, classifier, settings, bar)
    finally:  # hooks on the randomised copy are released even when a method fails mid-run
        if random_explainer is not None:
            random_explainer.close()


@dataclass
class BenchmarkRuns:
    """Every method's outcome.

    Attributes:
        results: ``{method: {metric: mean, ..., n, per_class}}`` (``xai.json``'s methods).
        notes: ``{method: why it was not run}``.
        per_image: Every method's per-image rows, with the image's model-level figures.
        grid_maps: ``{method: maps of the figure's images}`` for the methods that ran.
    """

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    grid_maps: dict[str, list[np.ndarray | None]] = field(default_factory=dict)


def run_methods(
    methods: Sequence[str],
    data: BoxImages,
    classifier: Classifier,
    settings: RunSettings,
    image_info: list[dict[str, Any]],
    progress: bool = True,
) -> BenchmarkRuns:
    """Runs every method in turn; a method that cannot explain the model is noted, with ``None`` figures and n = 0."""
    n = len(data.records)
    out = BenchmarkRuns()
    bar = tqdm(total=len(methods) * n, desc="xai-benchmark", unit="img", disable=not progress)
    for method in methods:
        bar.set_postfix_str(method)
        try:
            explainer, random_explainer = create_explainers(method, classifier, settings.random_model)
        except UnsupportedModelError as exc:
            logger.warning("%s", exc)
            out.notes[method] = str(exc)
            out.results[method] = not_run_summary(data.has_masks)
            bar.update(n)
            continue
        run = run_method(explainer, random_explainer, data, classifier, settings, bar)
        for row, info_row in zip(run.rows, image_info, strict=True):
            row.update(info_row, method=method)
        out.per_image.extend(run.rows)
        out.grid_maps[method] = run.grid_maps
        out.results[method] = summarise(run.rows, run.elapsed, n)
        if settings.random_model is None:
            out.results[method]["sanity_rank_corr"] = None
    bar.close()
    return out
