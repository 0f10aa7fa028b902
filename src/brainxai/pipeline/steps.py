"""The steps shared by every analysis: read -> prepare -> classify -> explain -> map back.

Each step is a small function over plain data, so the analysis service, ``brainxai explain`` and
the XAI benchmark compose the same code instead of three copies of it::

    scan = read(path)                                   # any format; checked to look like a brain
    prepared = prepare(scan.pixels, classifier)         # crop box + model input, decoded once
    probs = classify(classifier, [prepared])            # (N, C) calibrated probabilities
    (exp,) = explain(explainer, classifier, [prepared], targets=[int(probs[0].argmax())])
    relevance = map_back(exp.relevance, prepared)       # the map on the scan's own pixel grid
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from brainxai.constants import NO_TUMOUR
from brainxai.data.preprocess import crop_warning, prepare_with_box
from brainxai.io import ScanImage, check_brain_scan, read_scan
from brainxai.io.scan import SliceScorer

if TYPE_CHECKING:  # the explainers are imported only by callers that explain
    from brainxai.explain.base import Explainer, Explanation
    from brainxai.inference import Classifier


#: Images per batched explanation pass: the analysis of many scans (``AnalysisService.analyze_many`` through
#: ``pipeline.batch.analyze_batch``) and of a series' slices. LRP per image on the 2-core CPU: 59 ms in 4s, 56 in
#: 8s, 64 in 16s, 83 alone; larger batches' tensors pass glibc's mmap ceiling and are faulted in again every
#: pass (24 slices in one batch: over a million page faults, twice the time of 4s;
#: ``benchmarks/batch_analysis.md``). Not measured on a GPU, where larger batches are likely faster.
EXPLAIN_BATCH = 4


@dataclass(frozen=True)
class PreparedImage:
    """One image as the model sees it, with what is needed to place results back on the original.

    Attributes:
        original: ``(H, W)`` ``uint8`` image as decoded.
        model_input: ``(S, S)`` ``uint8`` crop resized to the model's input size.
        box: Crop box ``(x0, y0, x1, y1)`` in original pixels (x1, y1 exclusive).
        crop_warning: Why the crop is unreliable (it kept too little of the image), or None.
    """

    original: np.ndarray
    model_input: np.ndarray
    box: tuple[int, int, int, int]
    crop_warning: str | None

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the original image."""
        return (int(self.original.shape[0]), int(self.original.shape[1]))


def read(
    source: str | Path | bytes,
    *,
    filename: str | None = None,
    slice_index: int | None = None,
    scorer: SliceScorer | None = None,
) -> ScanImage:
    """Decodes any supported scan (raster, DICOM, NIfTI) and checks that it looks like a brain scan.

    Args:
        source: Path or file bytes; the content decides the format.
        filename: Name shown in reports (needed for bytes).
        slice_index: For volumes, the slice to take (default: the one ``scorer`` ranks highest).
        scorer: Ranks a volume's slices (e.g. the classifier's tumour probability).

    Raises:
        ImageReadError: Unreadable, truncated, or not a brain scan (``NotABrainScanError``).
    """
    scan = read_scan(source, filename=filename, slice_index=slice_index, scorer=scorer)
    check_brain_scan(scan.pixels, scan.source_name)
    return scan


def suspicion_scores(classifier: Classifier, slices: Sequence[np.ndarray]) -> list[float]:
    """Per-slice tumour suspicion for picking a volume's slice: ``1 - P(notumor)``.

    For a model without a "no tumour" class, the top class probability. Pass it (bound to a
    classifier) as :func:`read`'s ``scorer`` so every command picks the same slice of a volume.
    """
    prepared = np.stack([classifier.prepare(s) for s in slices])
    probs = classifier.predict_proba_prepared(prepared)
    classes = list(classifier.classes)
    if NO_TUMOUR in classes:
        return [float(v) for v in 1.0 - probs[:, classes.index(NO_TUMOUR)]]
    return [float(v) for v in probs.max(axis=1)]


def prepare(image: np.ndarray, classifier: Classifier) -> PreparedImage:
    """Crops and resizes a decoded image the way the classifier's checkpoint was trained."""
    model_input, box = prepare_with_box(image, classifier.preprocess)
    return PreparedImage(image, model_input, box, crop_warning(box, image.shape[:2]))


def _stack(prepared: Sequence[PreparedImage]) -> np.ndarray:
    return np.stack([p.model_input for p in prepared])


def classify(classifier: Classifier, prepared: Sequence[PreparedImage], batch_size: int = 32) -> np.ndarray:
    """``(N, C)`` probabilities (with the checkpoint's temperature) for prepared images."""
    return classifier.predict_proba_prepared(_stack(prepared), batch_size=batch_size)


def assess(
    classifier: Classifier, prepared: Sequence[PreparedImage], batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`classify` plus the out-of-domain score per image from the same forward pass.

    Returns ``(probabilities (N, C), scores (N,) or None when the checkpoint has no domain statistics)``.
    """
    return classifier.assess_prepared(_stack(prepared), batch_size=batch_size)


def explain(
    explainer: Explainer,
    classifier: Classifier,
    prepared: Sequence[PreparedImage],
    targets: Sequence[int] | int | None = None,
) -> list[Explanation]:
    """Explains prepared images with ``explainer``; ``targets`` default to the predicted classes."""
    x = classifier.tensor(_stack(prepared))
    return explainer.explain(x, list(targets) if isinstance(targets, Sequence) else targets)


@dataclass(frozen=True)
class Assessment:
    """Classification and explanation of prepared images (:func:`assess_and_explain`).

    Attributes:
        probabilities: ``(N, C)`` calibrated probabilities.
        domain: ``(N,)`` out-of-domain scores, or None without domain statistics.
        explanations: One per image, of its predicted class (the arg-max of ``probabilities``).
        activations: The model's CAM target-layer activations from the explanations' forward pass, for
            methods that reuse them (:func:`explain_again`); None when they were not captured.
    """

    probabilities: np.ndarray
    domain: np.ndarray | None
    explanations: list[Explanation]
    activations: torch.Tensor | None = None

    def subset(self, indices: Sequence[int]) -> Assessment:
        """The assessment of the images at ``indices`` only, in that order."""
        rows = list(indices)
        return Assessment(
            self.probabilities[rows],
            None if self.domain is None else self.domain[rows],
            [self.explanations[i] for i in rows],
            None if self.activations is None else self.activations[rows],
        )


def assess_and_explain(classifier: Classifier, explainer: Explainer, prepared: Sequence[PreparedImage]) -> Assessment:
    """:func:`assess` and :func:`explain` of each image's predicted class, from one forward pass where possible.

    When the model ends in global average pooling and one linear layer, the pooled target-layer
    activations of the explanation's forward pass are the head's features and give the logits, so no
    separate classification pass is needed (the probabilities equal :func:`assess`'s to float rounding,
    tested). Otherwise, or if the method ran more than one forward pass, it classifies first. An image
    whose explained class is not the arg-max of the probabilities (a tie within rounding) is explained again.
    """
    head, layer = _pooled_linear_head(classifier)
    if head is None or layer is None:
        probs, domain = assess(classifier, prepared)
        return Assessment(probs, domain, explain(explainer, classifier, prepared, [int(i) for i in probs.argmax(1)]))
    with explainer.capturing(layer) as captured:
        explanations = explain(explainer, classifier, prepared)
    if len(captured) != 1:
        probs, domain = assess(classifier, prepared)
        activations = None
    else:
        (activations,) = captured
        with torch.no_grad():
            features = activations.float().mean(dim=(2, 3))
            logits = head(features.to(head.weight.device))
        probs, domain = classifier.assess_outputs(logits.float().cpu().numpy(), features.cpu().numpy())
    chosen = [int(i) for i in probs.argmax(1)]
    redo = [i for i, e in enumerate(explanations) if e.target != chosen[i]]
    if redo:
        again = explain(explainer, classifier, [prepared[i] for i in redo], [chosen[i] for i in redo])
        for i, e in zip(redo, again, strict=True):
            explanations[i] = e
    return Assessment(probs, domain, explanations, activations)


def explain_again(
    explainer: Explainer,
    classifier: Classifier,
    prepared: Sequence[PreparedImage],
    targets: Sequence[int],
    assessment: Assessment,
) -> list[np.ndarray]:
    """Maps of a second method for the same images; Grad-CAM reuses ``assessment``'s activations (no pass)."""
    if assessment.activations is not None and getattr(explainer, "reuses_activations", False):
        x = classifier.tensor(_stack(prepared))
        maps = explainer.maps_from_activations(assessment.activations, targets, x)  # type: ignore[attr-defined]
        return list(maps)
    return [e.relevance for e in explain(explainer, classifier, prepared, targets)]


_HEADS: weakref.WeakKeyDictionary[nn.Module, tuple[nn.Linear | None, nn.Module | None]] = weakref.WeakKeyDictionary()


def _pooled_linear_head(classifier: Classifier) -> tuple[nn.Linear | None, nn.Module | None]:
    """The model's linear head and CAM target layer when the head is ``linear(avgpool(target))``; else Nones.

    Traced once per model (``gap_linear_head``) and remembered.
    """
    model = classifier.model
    if model not in _HEADS:
        from brainxai.explain.cam import gap_linear_head
        from brainxai.models.registry import find_model_config, get_target_layer

        layer = get_target_layer(model) if find_model_config(model) is not None else None
        head = gap_linear_head(model, layer) if layer is not None else None
        _HEADS[model] = (head, layer if head is not None else None)
    return _HEADS[model]


def map_back(relevance: np.ndarray, prepared: PreparedImage) -> np.ndarray:
    """A model-input-sized map placed on the original image's pixel grid (zero outside the crop)."""
    from brainxai.explain.views import relevance_to_original

    return relevance_to_original(relevance, prepared.box, prepared.shape)
