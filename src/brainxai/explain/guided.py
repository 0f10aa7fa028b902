"""Guided backpropagation and Guided Grad-CAM, batched.

Guided backprop (Springenberg et al., 2015) is the input gradient with every ReLU's backward pass
additionally zeroing negative incoming gradients. We get that by appending, through a forward hook,
a gate to every ``ReLU``/``ReLU6`` module output whose backward clamps the gradient at zero; the
module's own backward then applies its usual ``x > 0`` (``0 < x < 6``) mask. This works on whole
batches in one backward pass (pytorch-grad-cam's version handles one image at a time).

The map is the magnitude of the guided gradient with respect to the grayscale intensity of each
pixel (the model sees that intensity repeated and normalised per channel, so the channel gradients
are combined with the chain rule). Guided backprop has no sign convention for "evidence", so its map
is non-negative sensitivity, not signed relevance.

Guided Grad-CAM (Selvaraju et al., 2017) is that map multiplied element-wise by the Grad-CAM map.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from brainxai.explain.base import Explainer
from brainxai.explain.cam import GradCamExplainer
from brainxai.models.registry import find_model_config

_GUIDED_ACTIVATIONS = (nn.ReLU, nn.ReLU6)


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward lets only positive gradients through."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        # A copy, not a view: later in-place operations on it must not touch the ReLU's output.
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


def _gate(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    return _PositiveGradient.apply(output)


@contextlib.contextmanager
def guided_relus(model: nn.Module) -> Iterator[int]:
    """Makes every ReLU/ReLU6 module of ``model`` guided inside the block; yields how many there are."""
    handles = [m.register_forward_hook(_gate) for m in model.modules() if isinstance(m, _GUIDED_ACTIVATIONS)]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


def intensity_weights(model: nn.Module, channels: int) -> torch.Tensor:
    """d(input channel c) / d(grayscale intensity), per channel: 1/std_c for ImageNet normalisation."""
    from brainxai.data.preprocess import to_tensor

    config = find_model_config(model)
    if config is None or config.preprocess.channels != channels:
        return torch.ones(channels)
    cfg = config.preprocess
    # The normalisation is affine, so two constant images give its slope.
    lo = to_tensor(np.zeros((1, 1), np.uint8), cfg)[:, 0, 0]
    hi = to_tensor(np.full((1, 1), 255, np.uint8), cfg)[:, 0, 0]
    return hi - lo


class GuidedBackpropExplainer(Explainer):
    """Guided backpropagation, whole batches at once."""

    name = "guided-backprop"

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if not any(isinstance(m, _GUIDED_ACTIVATIONS) for m in model.modules()):
            raise self.unsupported("the model has no ReLU/ReLU6 modules to guide (functional activations are not seen)")

    def guided_gradient(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
        """``(N, H, W)`` guided-gradient magnitudes and the logits."""
        x = x.detach().requires_grad_(True)
        with guided_relus(self.model):
            logits = self.model(x)
            chosen = self.select_targets(logits, targets)
            selected = logits.gather(1, chosen[:, None]).sum()
            (grad,) = torch.autograd.grad(selected, x)
        weights = intensity_weights(self.model, x.shape[1]).to(grad)
        per_pixel = (grad * weights[None, :, None, None]).sum(dim=1).abs()
        return per_pixel.cpu().numpy(), logits.detach()

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
        return self.guided_gradient(x, targets)


class GuidedGradCamExplainer(Explainer):
    """Guided Grad-CAM: guided-backprop magnitude x Grad-CAM (both at input resolution).

    Args:
        model: The classifier.
        shifts: Sub-cell shift averaging of the Grad-CAM factor (see the CAM explainers; 1: off).
    """

    name = "guided-gradcam"

    def __init__(self, model: nn.Module, shifts: int = 1, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.gradcam = GradCamExplainer(model, shifts=shifts)
        self.guided = GuidedBackpropExplainer(model)

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
        cams, logits = self.gradcam._attribute(x, targets)
        # Both factors must explain the same class, so the Grad-CAM choice is passed on explicitly.
        chosen = self.select_targets(logits, targets)
        guided, _ = self.guided.guided_gradient(x, chosen)
        return guided * cams, logits
