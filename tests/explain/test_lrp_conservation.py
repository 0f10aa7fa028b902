"""LRP: conservation where it must hold, and the canonizers that make it hold."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from brainxai.data.preprocess import PreprocessConfig
from brainxai.explain import create_explainer
from brainxai.explain.lrp import CANONIZERS, DEFAULT_COMPOSITE, MBConvCanonizer, build_composite
from brainxai.models import get_model_config, list_models
from brainxai.models.efficientnet_lite import MBConv
from brainxai.models.registry import ModelConfig

# Like EfficientNet-Lite0's config, the stack names the canonizer its residual blocks need.
MBCONV_CONFIG = ModelConfig(
    name="mbconv-stack",
    preprocess=PreprocessConfig(img_size=12, channels=1, normalize="unit", crop=False),
    target_layer="blocks",
    stages=(("classifier",),),
    classes=("a", "b", "c"),
    lrp_canonizers=("mbconv-residual",),
)


def _logit(model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    with torch.no_grad():
        return model(x)[:, target].numpy()


@pytest.mark.parametrize("composite", ["epsilon", "epsilon-plus-flat", "epsilon-plus-uniform-flat"])
def test_relevance_sums_to_the_logit_without_biases(composite, tiny_factory) -> None:
    model = tiny_factory(seed=5, bias=False, batchnorm=False)
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    for target in range(4):
        out = create_explainer("lrp", model, composite=composite, epsilon=1e-9).explain(x, target)
        sums = np.array([e.relevance.sum() for e in out])
        np.testing.assert_allclose(sums, _logit(model, x, target), rtol=1e-4, atol=1e-6)


def test_biases_absorb_relevance(tiny_factory) -> None:
    # The same check with biases fails: that is why conservation is only claimed for bias-free nets.
    model = tiny_factory(seed=5, bias=True, batchnorm=True)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.fill_(0.5)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    out = create_explainer("lrp", model, composite="epsilon").explain(x, 0)
    sums = np.array([e.relevance.sum() for e in out])
    assert not np.allclose(sums, _logit(model, x, 0), rtol=1e-2)


class MBConvStack(nn.Module):
    """Stem + two residual EfficientNet-Lite blocks (ReLU6, depthwise conv, residual add) + head."""

    def __init__(self, bias_free: bool) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.blocks = nn.Sequential(MBConv(8, 8, 3, 1, 2), MBConv(8, 8, 5, 1, 3))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(8, 3, bias=not bias_free)
        if not bias_free:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.3, 0.3)
                    m.running_var.uniform_(0.5, 2.0)
                    m.bias.data.uniform_(-0.3, 0.3)
        self.brainxai_config = MBCONV_CONFIG

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def test_mbconv_canonizer_keeps_the_function() -> None:
    torch.manual_seed(0)
    model = MBConvStack(bias_free=False).eval()
    x = torch.randn(2, 1, 12, 12)
    before = model(x).detach()
    composite = build_composite("epsilon-plus-flat", model, channels=1)
    composite.register(model)
    try:
        assert all(hasattr(b, "canonizer_sum") for b in model.blocks)
        torch.testing.assert_close(model(x).detach(), before, rtol=1e-4, atol=1e-5)
    finally:
        composite.remove()
    assert not any(hasattr(b, "canonizer_sum") for b in model.blocks)
    torch.testing.assert_close(model(x).detach(), before, rtol=0, atol=0)


def test_residual_blocks_conserve_only_with_the_canonizer(monkeypatch) -> None:
    torch.manual_seed(1)
    model = MBConvStack(bias_free=True).eval()  # batch norm at its identity initialisation: no biases
    x = torch.rand(3, 1, 12, 12)
    target = 1
    logits = _logit(model, x, target)
    out = create_explainer("lrp", model, composite="epsilon", epsilon=1e-9).explain(x, target)
    np.testing.assert_allclose([e.relevance.sum() for e in out], logits, rtol=1e-3, atol=1e-6)

    # Without the Sum module, "out + x" copies the relevance to both branches.
    monkeypatch.setattr(MBConvCanonizer, "_attribute_map", classmethod(lambda cls, name, module: None))
    broken = create_explainer("lrp", model, composite="epsilon", epsilon=1e-9).explain(x, target)
    assert not np.allclose([e.relevance.sum() for e in broken], logits, rtol=0.05)


def test_registered_models_name_known_canonizers() -> None:
    assert get_model_config("efficientnet-lite0").lrp_canonizers == ("mbconv-residual",)
    for name in list_models():
        assert set(get_model_config(name).lrp_canonizers) <= set(CANONIZERS), name


def test_an_unknown_canonizer_is_an_error(tiny_factory) -> None:
    model = tiny_factory()
    model.brainxai_config = replace(model.brainxai_config, lrp_canonizers=("no-such-canonizer",))
    with pytest.raises(ValueError, match="no-such-canonizer"):
        create_explainer("lrp", model).explain(torch.rand(1, 1, 16, 16))


def test_lrp_on_efficientnet_and_resnet(registered_factory) -> None:
    for name in ("efficientnet-lite0", "resnet18"):
        model = registered_factory(name)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        out = create_explainer("lrp", model).explain(x)
        for e in out:
            assert np.isfinite(e.relevance).all()
            # z+ rules send positive output relevance to positive input relevance.
            assert (e.relevance >= -1e-6 * np.abs(e.relevance).max()).mean() > 0.99
            assert e.relevance.max() > 0
        for k, v in model.state_dict().items():  # batch-norm merge undone
            torch.testing.assert_close(v, state[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["efficientnet-lite0", "resnet18"])
def test_canonized_registered_models_compute_the_same_logits(name, registered_factory) -> None:
    model = registered_factory(name)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
    composite = build_composite("epsilon-plus-flat", model, channels=3)
    composite.register(model)
    try:
        with torch.no_grad():
            torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-4)
    finally:
        composite.remove()


def _zennit_reference(model: nn.Module, x: torch.Tensor, composite: str, target: int | None = None) -> np.ndarray:
    """The plain library call: a composite registered on the model itself for one attribution."""
    from zennit.attribution import Gradient

    for p in model.parameters():
        p.requires_grad_(False)

    def output_relevance(out: torch.Tensor) -> torch.Tensor:
        t = out.argmax(1) if target is None else torch.full((len(out),), target)
        return out * torch.nn.functional.one_hot(t, out.shape[1]).to(out.dtype)

    from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
    from zennit.types import Linear as AnyLinear

    from brainxai.explain.lrp import UniformFlat, canonizers_for, input_bounds

    canonizers = canonizers_for(model)
    if composite == "epsilon-plus-flat":  # zennit's own rules, not ours
        reference = EpsilonPlusFlat(epsilon=1e-6, canonizers=canonizers)
    elif composite == "epsilon-plus-uniform-flat":  # zennit's, but our first-layer rule
        reference = EpsilonPlusFlat(epsilon=1e-6, first_map=[(AnyLinear, UniformFlat())], canonizers=canonizers)
    else:
        low, high = input_bounds(model, x.shape[1])
        reference = EpsilonGammaBox(low=low, high=high, epsilon=1e-6, canonizers=canonizers)
    with Gradient(model=model, composite=reference) as attributor:
        _, relevance = attributor(x.clone().requires_grad_(True), output_relevance)
    return relevance.sum(1).detach().numpy()


def _randomise_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
    return model


@pytest.mark.parametrize("name", ["efficientnet-lite0", "resnet18"])
@pytest.mark.parametrize("composite", ["epsilon-plus-uniform-flat", "epsilon-plus-flat", "epsilon-gamma-box"])
def test_cached_lrp_copy_matches_the_plain_zennit_call(name, composite, registered_factory) -> None:
    # The explainer folds batch norm into a private copy and keeps zennit's hooks on it between calls;
    # the maps must equal the library's own per-call canonize-register-attribute-remove sequence.
    model = _randomise_batchnorm(registered_factory(name), seed=3)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    explainer = create_explainer("lrp", model, composite=composite)
    for _ in range(2):  # the second call reuses the hooked copy
        fast = np.stack([e.relevance for e in explainer.explain(x)])
        ref = _zennit_reference(model, x, composite)
        np.testing.assert_allclose(fast, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())
    explainer.close()


def test_cached_lrp_copy_follows_weight_changes_and_leaves_the_model_alone(tiny_factory) -> None:
    model = tiny_factory(seed=2, bias=True, batchnorm=True)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    explainer = create_explainer("lrp", model)
    first = np.stack([e.relevance for e in explainer.explain(x, 1)])
    assert not model._forward_hooks and not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    with torch.no_grad():
        model.features[0].weight.mul_(-1.5)  # in place: the copy must notice
    second = np.stack([e.relevance for e in explainer.explain(x, 1)])
    assert not np.allclose(first, second)
    np.testing.assert_allclose(second, _zennit_reference(model, x, DEFAULT_COMPOSITE, 1), rtol=1e-4, atol=1e-7)
    # Nothing of a finished call is kept: no stored activations, no autograd-node handles piling up.
    assert explainer._hooks and all(not h.stored_tensors and not h.tensor_handles for h in explainer._hooks)
    explainer.close()
    assert explainer._lrp is None
    with pytest.raises(RuntimeError, match="closed"):
        explainer.explain(x)
