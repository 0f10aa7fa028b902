"""The explanation-quality benchmark behind ``brainxai xai-benchmark``.

For every image of a box CSV (``file,label,width,height,x0,y0,x1,y1``; ``x1``/``y1`` exclusive), every
method explains the classifier's decision on the image read and prepared by the analysis core
(:mod:`brainxai.pipeline.steps`), exactly as in inference. Box metrics are computed on the map placed
back into the original scan, so the pointing-game tolerance is in original pixels. Faithfulness, sanity
and sharpness are computed at model-input resolution.

Two checks separate a map's faults from the model's: the *box occlusion drop* (does the target
probability fall when the tumour box is blacked out, i.e. did the model use the lesion at all?) and,
given the training folder, which images the model was trained on (pHash twins). The box metrics are
also reported on those subsets.

Outputs in ``out_dir``: ``xai.json`` (``{method: {metric: mean}}``), ``xai_subsets.json`` (the box
metrics on the subsets), ``xai.md`` (tables, settings, definitions, sharpness vs localisation),
``xai_per_image.csv`` and ``xai_grid.png``.

Modules: :mod:`.data` (the box CSV and its images), :mod:`.metrics` (per-image figures, the box
metrics), :mod:`.runner` (the per-method run), :mod:`.subsets`, :mod:`.report` (``xai.md`` section by
section), :mod:`.figure` and :mod:`.benchmark` (:func:`run_xai_benchmark`).
"""

from brainxai.xai_benchmark.benchmark import run_xai_benchmark
from brainxai.xai_benchmark.data import BoxImages, BoxRecord, load_box_images, read_boxes, scaled_box
from brainxai.xai_benchmark.metrics import (
    METRICS,
    SUBSET_METRICS,
    USES_BOX_DROP,
    box_metrics,
    box_reliance,
    image_metrics,
    mean_box_metrics,
    placed_box_metrics,
    score_fn,
)
from brainxai.xai_benchmark.report import POINTING_GOAL
from brainxai.xai_benchmark.runner import randomized_copy

__all__ = [
    "METRICS",
    "POINTING_GOAL",
    "SUBSET_METRICS",
    "USES_BOX_DROP",
    "BoxImages",
    "BoxRecord",
    "box_metrics",
    "box_reliance",
    "image_metrics",
    "load_box_images",
    "mean_box_metrics",
    "placed_box_metrics",
    "randomized_copy",
    "read_boxes",
    "run_xai_benchmark",
    "scaled_box",
    "score_fn",
]
