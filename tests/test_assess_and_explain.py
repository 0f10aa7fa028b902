"""One forward pass classifies and explains: the fused step equals classifying and explaining apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainxai.explain import create_explainer
from brainxai.inference import Classifier
from brainxai.io import read_scan
from brainxai.pipeline import steps

SAMPLES = ("glioma", "meningioma", "notumor", "pituitary")


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(None, device="cpu")


@pytest.fixture(scope="module")
def prepared(classifier: Classifier, samples_dir: Path) -> list[steps.PreparedImage]:
    return [steps.prepare(read_scan(samples_dir / f"{name}.jpg").pixels, classifier) for name in SAMPLES]


def _apart(
    classifier: Classifier, method: str, prepared: list[steps.PreparedImage]
) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
    """The reference: the ONNX classification pass, then the explanation of each predicted class."""
    probs, domain = steps.assess(classifier, prepared)
    explainer = create_explainer(method, classifier.model)
    try:
        maps = [e.relevance for e in steps.explain(explainer, classifier, prepared, [int(i) for i in probs.argmax(1)])]
    finally:
        explainer.close()
    return probs, domain, maps


@pytest.mark.parametrize("method", ["lrp", "gradcam"])
def test_one_pass_equals_classify_then_explain(
    classifier: Classifier, prepared: list[steps.PreparedImage], method: str
) -> None:
    probs, domain, maps = _apart(classifier, method, prepared)
    with create_explainer(method, classifier.model) as explainer:
        fused = steps.assess_and_explain(classifier, explainer, prepared)
    assert fused.activations is not None  # the explanation's own pass classified
    np.testing.assert_allclose(fused.probabilities, probs, atol=1e-5)
    assert domain is not None and fused.domain is not None
    np.testing.assert_allclose(fused.domain, domain, rtol=1e-4, atol=1e-4)
    assert [e.target for e in fused.explanations] == [int(i) for i in probs.argmax(1)]
    assert [e.target_label for e in fused.explanations] == list(SAMPLES)  # the shipped model gets the samples right
    for e, ref in zip(fused.explanations, maps, strict=True):
        np.testing.assert_allclose(e.relevance, ref, rtol=1e-5, atol=1e-6 * float(np.abs(ref).max()))


def test_gradcam_from_the_lrp_pass_equals_its_own_pass(
    classifier: Classifier, prepared: list[steps.PreparedImage]
) -> None:
    with create_explainer("lrp", classifier.model) as lrp, create_explainer("gradcam", classifier.model) as cam:
        fused = steps.assess_and_explain(classifier, lrp, prepared)
        targets = [e.target for e in fused.explanations]
        reused = steps.explain_again(cam, classifier, prepared, targets, fused)
        own = [e.relevance for e in steps.explain(cam, classifier, prepared, targets)]
    for a, b in zip(reused, own, strict=True):
        assert a.shape == (224, 224) and b.max() == pytest.approx(1.0)
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_method_with_several_passes_classifies_apart(
    classifier: Classifier, prepared: list[steps.PreparedImage]
) -> None:
    probs, _, _ = _apart(classifier, "gradcam", prepared)
    # Shift averaging runs one forward pass per shift: no single pass to take the classification from.
    with create_explainer("gradcam", classifier.model, shifts=2) as explainer:
        fused = steps.assess_and_explain(classifier, explainer, prepared)
        assert fused.activations is None
        with pytest.raises(ValueError, match="shifts=1"):
            explainer.maps_from_activations(np.zeros(1), [0], np.zeros((1, 3, 224, 224)))  # type: ignore[arg-type]
    np.testing.assert_allclose(fused.probabilities, probs, atol=1e-6)


def test_the_explained_class_is_the_reported_one(
    classifier: Classifier, prepared: list[steps.PreparedImage], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Probabilities that rank another class first (as a tie within rounding could): that class is explained.
    forced = np.tile(np.eye(len(classifier.classes))[[1]], (len(prepared), 1))
    monkeypatch.setattr(classifier, "assess_outputs", lambda logits, features: (forced, None))
    with create_explainer("lrp", classifier.model) as explainer:
        fused = steps.assess_and_explain(classifier, explainer, prepared)
        direct = steps.explain(explainer, classifier, prepared, [1] * len(prepared))
    assert [e.target for e in fused.explanations] == [1] * len(prepared)
    for e, ref in zip(fused.explanations, direct, strict=True):
        np.testing.assert_allclose(e.relevance, ref.relevance, rtol=1e-6)
