"""LRP rules beyond zennit's: a z+ rule that skips the branch a ReLU makes exactly zero."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from zennit.core import ParamMod
from zennit.rules import ZPlus


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
