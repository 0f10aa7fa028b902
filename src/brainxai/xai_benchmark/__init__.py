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

With a ``mask`` column in the CSV (``figshare-masks-dev/slices.csv``), the maps are also scored against
the lesion masks (:mod:`.masks`), per class as well, and the model's reliance on the lesion is measured
by in-painting it against in-painting the same area mirrored (:mod:`.reliance`); the box occlusion
drop stays as it was.

Outputs in ``out_dir``: ``xai.json`` (``{method: {metric: mean, ..., n, per_class}}``, plus ``reliance``
with masks), ``xai_subsets.json`` (the box
metrics on the subsets), ``xai.md`` (tables, settings, definitions, sharpness vs localisation),
``xai_per_image.csv`` and ``xai_grid.png``.

Modules: :mod:`.data` (the box CSV and its images), :mod:`.metrics` (per-image figures, the box
metrics, per-class means), :mod:`.masks` (the mask metrics), :mod:`.reliance` (the in-painting drop),
:mod:`.runner` (the per-method run), :mod:`.subsets`, :mod:`.report` and :mod:`.report_grounding`
(``xai.md`` section by section), :mod:`.figure` and :mod:`.benchmark` (:func:`run_xai_benchmark`).
"""

from brainxai.data.lesion import inpaint_regions
from brainxai.xai_benchmark.benchmark import run_xai_benchmark
from brainxai.xai_benchmark.data import BoxImages, BoxRecord, load_box_images, read_boxes, scaled_box, scaled_mask
from brainxai.xai_benchmark.masks import (
    MASK_METRICS,
    energy_in_mask,
    mask_to_input,
    placed_mask_metrics,
    pointing_game_mask,
)
from brainxai.xai_benchmark.metrics import (
    METRICS,
    SUBSET_METRICS,
    USES_BOX_DROP,
    box_metrics,
    box_reliance,
    image_metrics,
    mean_box_metrics,
    per_class_summary,
    placed_box_metrics,
    score_fn,
)
from brainxai.xai_benchmark.reliance import (
    INPAINT_DILATE_PX,
    INPAINT_DROP_GOAL,
    MIRROR_DROP_LIMIT,
    inpaint_reliance,
    reliance_summary,
)
from brainxai.xai_benchmark.report import POINTING_GOAL
from brainxai.xai_benchmark.runner import randomized_copy

__all__ = [
    "INPAINT_DILATE_PX",
    "INPAINT_DROP_GOAL",
    "MASK_METRICS",
    "METRICS",
    "MIRROR_DROP_LIMIT",
    "POINTING_GOAL",
    "SUBSET_METRICS",
    "USES_BOX_DROP",
    "BoxImages",
    "BoxRecord",
    "box_metrics",
    "box_reliance",
    "energy_in_mask",
    "image_metrics",
    "inpaint_regions",
    "inpaint_reliance",
    "load_box_images",
    "mask_to_input",
    "mean_box_metrics",
    "per_class_summary",
    "placed_box_metrics",
    "placed_mask_metrics",
    "pointing_game_mask",
    "randomized_copy",
    "read_boxes",
    "reliance_summary",
    "run_xai_benchmark",
    "scaled_box",
    "scaled_mask",
    "score_fn",
]
