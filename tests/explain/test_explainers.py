"""Every explainer: shapes, finite values, determinism, targets, batches, hooks, refusals."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from brainxai.explain import (
    Explainer,
    Explanation,
    UnsupportedModelError,
    create_explainer,
    list_explainers,
    register_explainer,
)
from brainxai.models import list_models

METHODS = ["lrp", "gradcam", "gradcam++", "hirescam", "guided-backprop", "guided-gradcam"]


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


def test_registry_lists_the_methods_in_order() -> None:
    assert list_explainers() == METHODS


def test_the_builtin_classes_are_the_named_methods() -> None:
    from brainxai.explain import builtin_explainers
    from brainxai.explain.methods import METHODS as NAMED

    assert sorted(cls.name for cls in builtin_explainers()) == sorted(NAMED) == sorted(METHODS)


def test_explain_imports_no_model_architecture() -> None:
    # Models declare what explanation methods need (target layer, LRP canonizers) in their ModelConfig;
    # explain reads the config and never guesses the architecture from a model module.
    import brainxai.explain

    allowed = {"brainxai.models.registry", "brainxai.models.fusion"}
    for path in Path(brainxai.explain.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            bad = [n for n in names if n.startswith("brainxai.models") and n not in allowed]
            assert not bad, f"{path.name} imports {bad}"


def test_unknown_method_names_the_alternatives(tiny_model) -> None:
    with pytest.raises(KeyError, match="gradcam"):
        create_explainer("smoothgrad", tiny_model)


def test_unknown_option_is_an_error(tiny_model) -> None:
    with pytest.raises(TypeError, match="unknown options"):
        create_explainer("gradcam++", tiny_model, colour="red")


@pytest.mark.parametrize("method", METHODS)
def test_output_shape_finite_metadata_and_determinism(method, tiny_model, tiny_batch) -> None:
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    with create_explainer(method, tiny_model) as explainer:
        first = explainer.explain(tiny_batch)
        second = explainer.explain(tiny_batch)
    assert len(first) == 3
    with torch.no_grad():
        logits = tiny_model(tiny_batch)
    probs = torch.softmax(logits, 1)
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        assert isinstance(a, Explanation)
        assert a.relevance.shape == (16, 16) and a.relevance.dtype == np.float32
        assert np.isfinite(a.relevance).all()
        assert np.abs(a.relevance).max() > 0
        np.testing.assert_array_equal(a.relevance, b.relevance)
        assert a.method == method
        assert a.target == int(logits[i].argmax())
        assert a.target_label == ("glioma", "meningioma", "notumor", "pituitary")[a.target]
        assert a.score == pytest.approx(float(probs[i, a.target]), abs=1e-6)
    # The model comes back exactly as it was: weights (LRP merges batch norm temporarily), hooks,
    # requires_grad, eval mode.
    for k, v in tiny_model.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    assert hook_count(tiny_model) == 0
    assert all(p.requires_grad for p in tiny_model.parameters())
    assert all(p.grad is None for p in tiny_model.parameters())


@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_one_image_at_a_time(method, tiny_model, tiny_batch) -> None:
    explainer = create_explainer(method, tiny_model)
    batched = explainer.explain(tiny_batch, target=[0, 1, 3])
    for i, t in enumerate([0, 1, 3]):
        (single,) = explainer.explain(tiny_batch[i : i + 1], target=t)
        assert single.target == batched[i].target == t
        np.testing.assert_allclose(
            single.relevance, batched[i].relevance, rtol=1e-4, atol=1e-6 * np.abs(single.relevance).max()
        )


@pytest.mark.parametrize("method", METHODS)
def test_requested_target_changes_the_map(method, tiny_model, tiny_batch) -> None:
    explainer = create_explainer(method, tiny_model)
    maps = [explainer.explain(tiny_batch[:1], target=t)[0] for t in range(4)]
    assert [m.target for m in maps] == [0, 1, 2, 3]
    assert sum(m.score for m in maps) == pytest.approx(1.0, abs=1e-5)
    assert any(not np.allclose(maps[0].relevance, m.relevance) for m in maps[1:])


def test_bad_targets_are_rejected(tiny_model, tiny_batch) -> None:
    explainer = create_explainer("gradcam", tiny_model)
    with pytest.raises(ValueError, match="out of range"):
        explainer.explain(tiny_batch, target=4)
    with pytest.raises(ValueError, match="3 images"):
        explainer.explain(tiny_batch, target=[0, 1])
    with pytest.raises(ValueError, match="N, C, H, W"):
        explainer.explain(tiny_batch[0])


def test_closed_explainer_refuses(tiny_model, tiny_batch) -> None:
    with create_explainer("lrp", tiny_model) as explainer:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        explainer.explain(tiny_batch)


def test_training_mode_and_inference_mode_inputs(tiny_model, tiny_batch) -> None:
    tiny_model.train()
    with torch.inference_mode():
        x = tiny_batch.clone()  # an inference tensor cannot normally enter autograd
    out = create_explainer("guided-backprop", tiny_model).explain(x)
    assert np.isfinite(out[0].relevance).all()
    assert tiny_model.training  # restored


def test_guided_backprop_only_passes_positive_gradients() -> None:
    # y = w2 . relu(W1 x): guided backprop zeroes the path through w2's negative entry.
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        model[3].weight.copy_(torch.tensor([[2.0, -3.0]]))
    x = torch.tensor([[[[1.0, 1.0]]]])  # (1, 1, 1, 2): both hidden units active
    (e,) = create_explainer("guided-backprop", model).explain(x, target=0)
    # Plain gradient would be [2, -3]; guided keeps only the positive path.
    np.testing.assert_allclose(e.relevance, [[2.0, 0.0]])


def test_guided_gradcam_is_the_product(tiny_model, tiny_batch) -> None:
    gg = create_explainer("guided-gradcam", tiny_model).explain(tiny_batch, target=2)
    gb = create_explainer("guided-backprop", tiny_model).explain(tiny_batch, target=2)
    gc = create_explainer("gradcam", tiny_model).explain(tiny_batch, target=2)
    for a, b, c in zip(gg, gb, gc, strict=True):
        np.testing.assert_allclose(a.relevance, b.relevance * c.relevance, rtol=1e-5, atol=1e-9)


def test_lrp_refuses_the_lstm_naming_method_and_model(registered_factory) -> None:
    model = registered_factory("cnn-lstm")
    with pytest.raises(UnsupportedModelError, match=r"lrp cannot explain model 'cnn-lstm'.*LSTM"):
        create_explainer("lrp", model)


def test_lrp_composite_choice(tiny_model, tiny_batch) -> None:
    with pytest.raises(ValueError, match="epsilon-gamma-box"):
        create_explainer("lrp", tiny_model, composite="alpha-beta")
    a = create_explainer("lrp", tiny_model).explain(tiny_batch[:1])[0].relevance
    b = create_explainer("lrp", tiny_model, composite="epsilon-gamma-box").explain(tiny_batch[:1])[0].relevance
    assert np.isfinite(b).all() and not np.allclose(a, b)


@pytest.mark.parametrize("model_name", list_models())
def test_every_method_on_every_registered_model(model_name, registered_factory) -> None:
    model = registered_factory(model_name)
    cfg = model.brainxai_config.preprocess
    x = torch.rand(2, cfg.channels, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(0))
    for method in METHODS:
        try:
            explainer = create_explainer(method, model)
        except UnsupportedModelError as exc:
            # The only refusal among the built-ins: LRP through the LSTM.
            assert (method, model_name) == ("lrp", "cnn-lstm"), str(exc)
            continue
        out = explainer.explain(x)
        assert [e.relevance.shape for e in out] == [(cfg.img_size, cfg.img_size)] * 2
        assert all(np.isfinite(e.relevance).all() for e in out), method
        assert hook_count(model) == 0, method


def test_register_a_custom_method(tiny_model, tiny_batch, monkeypatch) -> None:
    from brainxai.explain import base

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # keep the global registry clean

    @register_explainer
    class Constant(Explainer):
        name = "test-constant"

        def _attribute(self, x, targets):
            logits = self.model(x).detach()
            return np.ones((x.shape[0], *x.shape[-2:]), np.float32), logits

    assert "test-constant" in list_explainers()
    (e,) = create_explainer("test-constant", tiny_model).explain(tiny_batch[:1], target=1)
    assert e.target == 1 and e.relevance.sum() == 256
