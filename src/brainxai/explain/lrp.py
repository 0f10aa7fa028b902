"""Layer-wise relevance propagation with zennit.

The output relevance is the target class's logit (all other outputs zero); it is propagated back
to the input and summed over the colour channels (the channels carry the same grayscale pixel), so
the map is in logit units and, for a bias-free network, sums to the logit (see the last paragraph
for networks with biases).

Composites (rule sets):

- ``"epsilon-plus-flat"`` (default): Flat rule for the first layer, z+ for convolutions, epsilon for
  dense layers: the usual recommendation for image CNNs.
- ``"epsilon-gamma-box"``: z^B (box) rule for the first layer with the bounds of the normalised input
  range, gamma for convolutions, epsilon for dense layers.
- ``"epsilon"``: epsilon everywhere (LRP-epsilon; with ``epsilon=0`` LRP-0, equal to gradient x input on
  ReLU networks). Mostly for checks.

Element-wise activations (ReLU, ReLU6) pass relevance through unchanged, average pooling is
normalised by its input contributions, batch norm is first merged into the preceding convolution.

Canonizers make the models LRP-ready without changing what they compute:

- torchvision ResNets: zennit's ResNet block canonizers (residual sum as a module) with the batch-norm
  merge below;
- EfficientNet-Lite0: batch-norm merge plus :class:`MBConvCanonizer`, which turns the residual
  ``out + x`` into zennit's ``Sum`` module so the relevance is split between the branches in
  proportion to their contributions (a plain ``+`` would copy it to both and break conservation);
- other models: the batch-norm merge only.

The batch-norm merge is zennit's ``SequentialMergeBatchNorm`` with one correction
(:class:`ExactMergeBatchNorm`): the emptied batch norm must compute the identity, which needs
``running_var = 1 - eps``, not 1; EfficientNet's ``eps = 1e-3`` would otherwise scale every block's
output by 0.9995.

Speed (``benchmarks/perf.md``; maps equal the plain zennit call, tested): the explainer prepares a
private copy of the model once (batch norm folded into the convolutions, canonizers applied, rule
hooks registered) and keeps it between calls, rebuilding it when a weight changes; ReLU/ReLU6 get
their ``Pass`` behaviour from an autograd function instead of a hook; the default composite uses
:class:`NonNegativeZPlus`, which skips the z+ branch that is exactly zero after a ReLU (and the sign
terms of the stabiliser, which are 1 there); and in the main pass the hooked convolutions do not
compute the input gradient that zennit's hooks replace by the rule's relevance anyway.

Models with recurrent layers (the CNN-LSTM) are refused: LRP through LSTM gates needs dedicated
rules that zennit does not provide.

Batch norm merged into a convolution becomes a bias, and biases absorb relevance: conservation is
exact only without biases (tested). On the shipped EfficientNet-Lite0 the effect is large: with the
default rules about 0.1 % of the logit reaches the pixels (measured on the figshare development
images; ``epsilon-gamma-box``: about 2 %), the rest is attributed to the batch-norm biases. The map's
*distribution* is what the views and metrics use (they normalise it); its absolute values are not a
decomposition of the logit on that model.
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from zennit.canonizers import (
    AttributeCanonizer,
    Canonizer,
    CompositeCanonizer,
    SequentialMergeBatchNorm,
)
from zennit.composites import (
    EpsilonGammaBox,
    EpsilonPlusFlat,
    LayerMapComposite,
    layer_map_base,
)
from zennit.core import Composite, Hook, ParamMod
from zennit.layer import Sum
from zennit.rules import Epsilon, ZPlus
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer
from zennit.types import Convolution
from zennit.types import Linear as AnyLinear

from brainxai.explain.base import Explainer, register_explainer
from brainxai.models.efficientnet_lite import MBConv
from brainxai.models.fusion import fold_batchnorm

COMPOSITES: tuple[str, ...] = ("epsilon-plus-flat", "epsilon-gamma-box", "epsilon")

# Modules whose relevance flow no zennit rule models.
_UNSUPPORTED: tuple[type[nn.Module], ...] = (nn.RNNBase, nn.MultiheadAttention)


class ExactMergeBatchNorm(SequentialMergeBatchNorm):
    """``SequentialMergeBatchNorm`` whose emptied batch norms are exactly the identity."""

    def register(self, linears: Any, batch_norm: nn.Module) -> None:
        super().register(linears, batch_norm)
        # (x - 0) / sqrt(var + eps) * 1 + 0 == x  requires  var == 1 - eps.
        batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data, 1.0 - batch_norm.eps)

    def copy(self) -> ExactMergeBatchNorm:
        return ExactMergeBatchNorm()


class MBConvCanonizer(AttributeCanonizer):
    """Routes the residual addition of EfficientNet-Lite ``MBConv`` blocks through a ``Sum`` module."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: nn.Module) -> dict[str, Any] | None:
        if isinstance(module, MBConv) and module.use_residual:
            return {"forward": cls.forward.__get__(module), "canonizer_sum": Sum()}
        return None

    @staticmethod
    def forward(block: MBConv, x: torch.Tensor) -> torch.Tensor:
        # Same computation as MBConv.forward, with the addition made visible to zennit.
        out = block.project(block.depthwise(block.expand(x)))
        return block.canonizer_sum(torch.stack([x, out], dim=-1))

    def copy(self) -> MBConvCanonizer:
        return MBConvCanonizer()


class NonNegativeZPlus(ZPlus):
    """zennit's ``ZPlus`` that skips its negative-input branch when a layer's input has no negative entry.

    ``ZPlus`` evaluates two branches per layer: positive inputs with positive weights, and negative
    inputs with negative weights (bias zeroed). After a ReLU or ReLU6 the second branch's input is all
    zeros, so its output is exactly zero and it adds exactly nothing to the denominator or to the
    relevance; it still costs a convolution and its gradient. This rule returns the same relevance
    without it (tested against ``ZPlus``) and falls back to ``ZPlus`` for inputs with negative values.
    """

    def __init__(self, stabilizer: float = 1e-6, zero_params: Any = None) -> None:
        super().__init__(stabilizer=stabilizer, zero_params=zero_params)
        self.epsilon = float(stabilizer)

    def copy(self) -> NonNegativeZPlus:
        # zennit builds one rule instance per layer with copy(); BasicHook.copy would drop epsilon.
        clone = super().copy()
        clone.epsilon = self.epsilon
        return clone

    def backward(self, module: nn.Module, grad_input: Any, grad_output: Any) -> tuple[torch.Tensor | None, ...]:
        original = self.stored_tensors["input"][0]
        # amin is a single cheap reduction (``(x < 0).any()`` costs ~100x more here).
        if bool(original.amin() < 0):
            return super().backward(module, grad_input, grad_output)
        # zennit clones the stored input; nothing writes to it, so a detached view does.
        inputs = original.detach().requires_grad_()
        with ParamMod.ensure(self.param_modifiers[0])(module) as modified, torch.autograd.enable_grad():
            output = self.output_modifiers[0](modified.forward(inputs))
        # z = W+ x + b+ >= 0 here, where zennit's stabiliser z + (1[z == 0] + sign z) * eps is exactly z + eps.
        grad_out = grad_output[0] / (output + self.epsilon)
        (gradient,) = torch.autograd.grad(
            output, inputs, grad_outputs=grad_out, create_graph=grad_output[0].requires_grad
        )
        relevance = inputs * gradient
        return tuple(relevance if g.shape == relevance.shape else None for g in grad_input)


def canonizers_for(model: nn.Module) -> list[Canonizer]:
    """The canonizers that make ``model`` LRP-ready (see module docs)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    modules = list(model.modules())
    if any(isinstance(m, (BasicBlock, Bottleneck)) for m in modules):
        return [CompositeCanonizer([ExactMergeBatchNorm(), ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()])]
    if any(isinstance(m, MBConv) for m in modules):
        return [CompositeCanonizer([ExactMergeBatchNorm(), MBConvCanonizer()])]
    return [ExactMergeBatchNorm()]


def input_bounds(model: nn.Module, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lowest and highest normalised input values, ``(1, C, 1, 1)`` each, for the box rule."""
    from brainxai.data.preprocess import to_tensor

    config = getattr(model, "brainxai_config", None)
    if config is None:
        return torch.zeros(1, channels, 1, 1), torch.ones(1, channels, 1, 1)
    cfg = config.preprocess
    low = to_tensor(np.zeros((1, 1), np.uint8), cfg)[None]
    high = to_tensor(np.full((1, 1), 255, np.uint8), cfg)[None]
    return low, high


def build_composite(name: str, model: nn.Module, channels: int, epsilon: float = 1e-6) -> Composite:
    """A zennit composite by name (one of :data:`COMPOSITES`), with the model's canonizers."""
    canonizers = canonizers_for(model)
    if name == "epsilon-plus-flat":
        # zennit's composite with its z+ rule swapped for the equivalent NonNegativeZPlus.
        fast_zplus = [(Convolution, NonNegativeZPlus(stabilizer=1e-6))]
        return EpsilonPlusFlat(epsilon=epsilon, layer_map=fast_zplus, canonizers=canonizers)
    if name == "epsilon-gamma-box":
        low, high = input_bounds(model, channels)
        return EpsilonGammaBox(low=low, high=high, epsilon=epsilon, canonizers=canonizers)
    if name == "epsilon":
        layer_map = layer_map_base() + [(AnyLinear, Epsilon(epsilon=epsilon))]
        return LayerMapComposite(layer_map=layer_map, canonizers=canonizers)
    raise ValueError(f"unknown LRP composite {name!r}; choose one of {', '.join(COMPOSITES)}")


@register_explainer
class LrpExplainer(Explainer):
    """Layer-wise relevance propagation (Bach et al., 2015) through zennit.

    Args:
        model: The classifier.
        composite: One of :data:`COMPOSITES`.
        epsilon: Stabiliser of the epsilon rule.
    """

    name = "lrp"

    def __init__(self, model: nn.Module, composite: str = "epsilon-plus-flat", epsilon: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if composite not in COMPOSITES:
            raise ValueError(f"unknown LRP composite {composite!r}; choose one of {', '.join(COMPOSITES)}")
        config = getattr(model, "brainxai_config", None)
        blocking = next((m for m in model.modules() if isinstance(m, _UNSUPPORTED)), None)
        if blocking is not None:
            raise self.unsupported(
                f"it contains a {type(blocking).__name__} layer and zennit has no LRP rules for recurrent "
                "or attention layers; use gradcam, gradcam++, hirescam or guided-backprop instead"
            )
        if config is not None and not config.supports_lrp:
            raise self.unsupported("the model's config marks it as not supporting LRP")
        if not any(isinstance(m, (Convolution, nn.Linear)) for m in model.modules()):
            raise self.unsupported("it has no convolutional or linear layers for LRP rules")
        self.composite_name = composite
        self.epsilon = epsilon
        self._lrp: tuple[nn.Module, Composite] | None = None
        self._lrp_stamp: tuple[Any, ...] | None = None
        self._hooks: list[Hook] = []

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
        lrp_model = self._prepared_model()

        def output_relevance(output: torch.Tensor) -> torch.Tensor:
            target = self.select_targets(output, targets)
            one_hot = torch.zeros_like(output).scatter_(1, target[:, None], 1.0)
            return output * one_hot

        # What zennit's Gradient attributor does, on the copy whose hooks stay registered.
        try:
            with _main_pass():
                output = lrp_model(x)
            (relevance,) = torch.autograd.grad(output, x, grad_outputs=output_relevance(output))
        finally:
            # Registered hooks keep this call's inputs and a handle per autograd node until removed;
            # with hooks that persist across calls that would hold activations and grow without bound.
            for hook in self._hooks:
                hook.tensor_handles.remove()
                hook.stored_tensors.clear()
        return relevance.sum(dim=1).detach().cpu().numpy(), output.detach()

    def _prepared_model(self) -> nn.Module:
        """The LRP-ready copy of the model, rebuilt whenever the model's weights or device change.

        Registering a composite canonizes the model (merges batch norms, swaps block forwards) and
        hooks every layer; doing that per call cost more than the rules themselves. The copy gets
        batch norm folded for good (:func:`~brainxai.models.fusion.fold_batchnorm`: the same
        merge the canonizer would do, minus the identity batch-norm layers left to run) and keeps
        its hooks until :meth:`close`. The caller's model is never hooked or modified.
        """
        stamp = _weights_stamp(self.model)
        if self._lrp is not None and self._lrp_stamp == stamp:
            return self._lrp[0]
        self._release()
        copy = fold_batchnorm(self.model)
        for p in copy.parameters():
            p.requires_grad_(False)
        _pass_through_activations(copy)
        composite = build_composite(self.composite_name, copy, self._channels(), self.epsilon)
        composite.register(copy)
        self._hooks = _registered_hooks(copy)
        _skip_replaced_input_gradients(copy)
        self._lrp, self._lrp_stamp = (copy, composite), stamp
        return copy

    def _channels(self) -> int:
        config = getattr(self.model, "brainxai_config", None)
        if config is not None:
            return config.preprocess.channels
        first = next((m for m in self.model.modules() if isinstance(m, nn.Conv2d)), None)
        return first.in_channels if first is not None else 1

    def _release(self) -> None:
        if self._lrp is not None:
            self._lrp[1].remove()
            self._lrp, self._lrp_stamp, self._hooks = None, None, []

    def close(self) -> None:
        """Removes the hooks of the LRP copy and marks the explainer unusable."""
        self._release()
        super().close()


class _PassThroughGradient(torch.autograd.Function):
    """Applies an activation in the forward pass and hands the gradient back unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fn: Any) -> torch.Tensor:
        return fn(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class PassThroughActivation(nn.Module):
    """ReLU or ReLU6 whose backward is the identity: zennit's ``Pass`` rule without a hook.

    Every composite here maps activations to ``Pass`` (relevance goes through unchanged). As a hook
    that costs an input copy, two autograd wrappers and Python calls per activation and call; as an
    autograd function it costs nothing. The activation is not a submodule, so no rule is attached.
    """

    _FUNCTIONS: ClassVar[dict[type[nn.Module], Any]] = {nn.ReLU: torch.relu, nn.ReLU6: nn.functional.relu6}

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.fn = self._FUNCTIONS[type(activation)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PassThroughGradient.apply(x, self.fn)


def _pass_through_activations(model: nn.Module) -> None:
    """Swaps every ReLU and ReLU6 of ``model`` (in place) for :class:`PassThroughActivation`."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in PassThroughActivation._FUNCTIONS:
                setattr(parent, name, PassThroughActivation(child))


_MAIN_PASS = threading.local()


@contextlib.contextmanager
def _main_pass() -> Iterator[None]:
    """Marks the forward pass whose input gradients the rule hooks replace (see below)."""
    _MAIN_PASS.active = True
    try:
        yield
    finally:
        _MAIN_PASS.active = False


class _ReplacedInputGradient(torch.autograd.Function):
    """A convolution whose input gradient is not computed: a zennit rule hook replaces it anyway.

    zennit stores the gradient arriving at a hooked layer's output, lets autograd compute the layer's
    input gradient, and then substitutes the rule's relevance for it at the layer's input. That
    input gradient (a transposed convolution per layer and call) is thrown away; this function hands
    autograd a free, expanded zero instead. The relevance is unchanged (tested against plain zennit).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        ctx.input_shape = x.shape
        return nn.Conv2d.forward(conv, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.new_zeros(()).expand(ctx.input_shape), None


def _skip_replaced_input_gradients(model: nn.Module) -> None:
    """Gives every rule-hooked ``Conv2d`` of ``model`` the cheap backward of the main pass (in place).

    Only during :func:`_main_pass`: the rules' own forward passes, run inside the backward pass, call
    the same module and need its real gradient.
    """
    for m in model.modules():
        if type(m) is nn.Conv2d and any(isinstance(getattr(fn, "__self__", None), Hook) for fn in m._forward_hooks.values()):
            m.forward = types.MethodType(_conv_forward_for_lrp, m)


def _conv_forward_for_lrp(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    if getattr(_MAIN_PASS, "active", False) and x.requires_grad:
        return _ReplacedInputGradient.apply(x, conv)
    return nn.Conv2d.forward(conv, x)


def _registered_hooks(model: nn.Module) -> list[Hook]:
    """The zennit rule instances hooked into ``model`` (each registers bound methods as module hooks)."""
    found = {
        id(hook): hook
        for m in model.modules()
        for fn in m._forward_hooks.values()
        if isinstance(hook := getattr(fn, "__self__", None), Hook)
    }
    return list(found.values())


def _weights_stamp(model: nn.Module) -> tuple[Any, ...]:
    """Changes when any parameter or buffer of ``model`` is replaced, moved or modified in place."""
    tensors = [*model.parameters(), *model.buffers()]
    return tuple((id(t), t._version, t.device) for t in tensors)
