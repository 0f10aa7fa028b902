"""The fast path: a private, LRP-ready copy of the model that keeps its hooks between calls.

Speed (``benchmarks/perf.md``; maps equal the plain zennit call, tested): the explainer prepares a
private copy of the model once (batch norm folded into the convolutions, canonizers applied, rule
hooks registered) and keeps it between calls, rebuilding it when a weight changes; ReLU/ReLU6 get
their ``Pass`` behaviour from an autograd function instead of a hook; the default composite uses
:class:`~brainxai.explain.lrp.rules.NonNegativeZPlus`, which skips the z+ branch that is exactly zero
after a ReLU (and the sign terms of the stabiliser, which are 1 there); and in the main pass the
hooked convolutions do not compute the input gradient that zennit's hooks replace by the rule's
relevance anyway.
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn
from zennit.core import Composite, Hook

from brainxai.explain.lrp.composites import build_composite
from brainxai.models.fusion import fold_batchnorm


def prepare_copy(
    model: nn.Module, composite: str, channels: int, epsilon: float
) -> tuple[nn.Module, Composite, list[Hook]]:
    """An LRP-ready copy of ``model``: batch norm folded, activations passed through, rules hooked.

    Registering a composite canonizes the model (merges batch norms, swaps block forwards) and hooks
    every layer; doing that per call cost more than the rules themselves. The copy gets batch norm
    folded for good (:func:`~brainxai.models.fusion.fold_batchnorm`: the same merge the canonizer
    would do, minus the identity batch-norm layers left to run) and keeps its hooks until the
    composite is removed. ``model`` itself is never hooked or modified.

    Returns:
        The copy, the composite registered on it (``remove()`` releases it) and its rule hooks.
    """
    copy = fold_batchnorm(model)
    for p in copy.parameters():
        p.requires_grad_(False)
    _pass_through_activations(copy)
    registered = build_composite(composite, copy, channels, epsilon)
    registered.register(copy)
    hooks = _registered_hooks(copy)
    _skip_replaced_input_gradients(copy)
    return copy, registered, hooks


def relevance(
    lrp_model: nn.Module,
    hooks: list[Hook],
    x: torch.Tensor,
    output_relevance: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input relevance ``(N, C, H, W)`` and the output of one pass through a :func:`prepare_copy` copy.

    What zennit's ``Gradient`` attributor does, on the copy whose hooks stay registered.
    """
    try:
        with main_pass():
            output = lrp_model(x)
        (result,) = torch.autograd.grad(output, x, grad_outputs=output_relevance(output))
    finally:
        clear_call_state(hooks)
    return result, output


def clear_call_state(hooks: list[Hook]) -> None:
    """Drops what the rule hooks kept of the last pass (its inputs, one handle per autograd node).

    Hooks that persist across calls would otherwise hold activations and grow without bound; call
    it after every backward pass through a :func:`prepare_copy` copy.
    """
    for hook in hooks:
        hook.tensor_handles.remove()
        hook.stored_tensors.clear()


def weights_stamp(model: nn.Module) -> tuple[Any, ...]:
    """Changes when any parameter or buffer of ``model`` is replaced, moved or modified in place."""
    tensors = [*model.parameters(), *model.buffers()]
    return tuple((id(t), t._version, t.device) for t in tensors)


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
def main_pass() -> Iterator[None]:
    """Marks the forward pass whose input gradients the rule hooks replace (see below).

    Run the forward pass through a :func:`prepare_copy` copy inside it; the backward pass outside.
    """
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

    Only during :func:`main_pass`: the rules' own forward passes, run inside the backward pass, call
    the same module and need its real gradient.
    """
    for m in model.modules():
        if type(m) is nn.Conv2d and any(
            isinstance(getattr(fn, "__self__", None), Hook) for fn in m._forward_hooks.values()
        ):
            m.forward = types.MethodType(_conv_forward_for_lrp, m)  # type: ignore[method-assign]


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
