"""Grad-CAM and HiResCAM against references computed by hand; the exact linear-head shortcut."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from brainxai.data.preprocess import PreprocessConfig
from brainxai.explain import create_explainer
from brainxai.explain.cam import GradCamExplainer, gap_linear_head
from brainxai.models import get_target_layer, list_models
from brainxai.models.registry import ModelConfig


class TwoLayer(nn.Module):
    """conv + ReLU (the CAM layer), then one linear layer on the flattened map."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())
        self.classifier = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@pytest.fixture()
def two_layer() -> TwoLayer:
    torch.manual_seed(3)
    model = TwoLayer().eval()
    model.brainxai_config = ModelConfig(
        name="two-layer",
        preprocess=PreprocessConfig(img_size=8, channels=1, normalize="unit", crop=False),
        target_layer="features",
        stages=(),
    )
    return model


def _minmax(cam: np.ndarray) -> np.ndarray:
    """ReLU, then min-max scaling as pytorch-grad-cam does it: once per layer, once after averaging
    the layers (with its 1e-7 guard, which matters for small raw CAMs)."""
    cam = np.maximum(cam, 0)
    for _ in range(2):
        cam = cam - cam.min()
        cam = cam / (cam.max() + 1e-7)
    return cam


def test_gradcam_matches_hand_computation(two_layer) -> None:
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        acts = two_layer.features(x).numpy()  # (2, 3, 8, 8)
    w = two_layer.classifier.weight.detach().numpy().reshape(4, 3, 8, 8)
    for target in range(4):
        # For a linear layer on the flattened map, d y_c / d A_k(i, j) is simply W[c, k, i, j].
        alpha = w[target].mean(axis=(1, 2))  # (3,)
        expected = [_minmax(np.einsum("k,kij->ij", alpha, acts[n])) for n in range(2)]
        got = create_explainer("gradcam", two_layer).explain(x, target=target)
        for e, ref in zip(got, expected, strict=True):
            np.testing.assert_allclose(e.relevance, ref, atol=1e-5)
        # HiResCAM keeps the gradient per position instead of averaging it.
        hires = create_explainer("hirescam", two_layer).explain(x, target=target)
        for n, e in enumerate(hires):
            np.testing.assert_allclose(e.relevance, _minmax((w[target] * acts[n]).sum(axis=0)), atol=1e-5)


def test_shortcut_detection_on_registered_models() -> None:
    from brainxai.models import create_model

    found = {}
    for name in list_models():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = create_model(name, pretrained=False, img_size=64)
        head = gap_linear_head(model, get_target_layer(model))
        found[name] = head is not None
    assert found == {
        "cnn-lstm": False,
        "efficientnet-lite0": True,
        "resnet18": True,
        "resnet50-gap": True,
        "resnet50-mlp": False,
    }


def test_shortcut_not_taken_for_other_heads(two_layer) -> None:
    assert gap_linear_head(two_layer, two_layer.features) is None


@pytest.mark.parametrize("name", ["efficientnet-lite0", "resnet18"])
def test_shortcut_equals_library(name, registered_factory) -> None:
    model = registered_factory(name)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    fast = GradCamExplainer(model, shortcut=True)
    slow = GradCamExplainer(model, shortcut=False)
    assert fast.head is not None and slow.head is None
    for target in (None, [0, 2, 3]):
        a, b = fast.explain(x, target), slow.explain(x, target)
        for ea, eb in zip(a, b, strict=True):
            assert ea.target == eb.target and ea.score == pytest.approx(eb.score, abs=1e-6)
            np.testing.assert_allclose(ea.relevance, eb.relevance, atol=1e-5)
