"""Composites (rule sets) by name, each with the model's canonizers.

- ``"epsilon-plus-uniform-flat"`` (default): ``epsilon-plus-flat`` with :class:`UniformFlat` on the first
  layer, which spreads relevance as Flat does without printing a strided stem's window-coverage lattice
  into the map (EfficientNet's 3x3, stride-2 stem: a 2-pixel checkerboard). Chosen by a rule fixed before
  its run on 4,395 slices with expert masks: pointing game +0.0007 [-0.0040, +0.0056], energy in the mask
  +0.0001, stride-2 grid energy 0.18 -> 0.0001 (``experiments/stride_pooled``).
- ``"epsilon-plus-flat"``: zennit's: Flat rule for the first layer, z+ for convolutions, epsilon for
  dense layers: the usual recommendation for image CNNs (the default before 2026-12-01).
- ``"epsilon-gamma-box"``: z^B (box) rule for the first layer with the bounds of the normalised input
  range, gamma for convolutions, epsilon for dense layers.
- ``"epsilon"``: epsilon everywhere (LRP-epsilon; with ``epsilon=0`` LRP-0, equal to gradient x input on
  ReLU networks). Mostly for checks.

Element-wise activations (ReLU, ReLU6) pass relevance through unchanged, average pooling is
normalised by its input contributions, batch norm is first merged into the preceding convolution.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat, LayerMapComposite, layer_map_base
from zennit.core import Composite
from zennit.rules import Epsilon
from zennit.types import Convolution
from zennit.types import Linear as AnyLinear

from brainxai.explain.lrp.canonizers import canonizers_for
from brainxai.explain.lrp.rules import NonNegativeZPlus, UniformFlat
from brainxai.models.registry import find_model_config

COMPOSITES: tuple[str, ...] = ("epsilon-plus-uniform-flat", "epsilon-plus-flat", "epsilon-gamma-box", "epsilon")
#: The ``lrp`` explainer's rule set unless one is named.
DEFAULT_COMPOSITE = "epsilon-plus-uniform-flat"


def check_composite(name: str) -> None:
    """Raises ``ValueError`` unless ``name`` is one of :data:`COMPOSITES`."""
    if name not in COMPOSITES:
        raise ValueError(f"unknown LRP composite {name!r}; choose one of {', '.join(COMPOSITES)}")


def input_bounds(model: nn.Module, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lowest and highest normalised input values, ``(1, C, 1, 1)`` each, for the box rule."""
    from brainxai.data.preprocess import to_tensor

    config = find_model_config(model)
    if config is None:
        return torch.zeros(1, channels, 1, 1), torch.ones(1, channels, 1, 1)
    cfg = config.preprocess
    low = to_tensor(np.zeros((1, 1), np.uint8), cfg)[None]
    high = to_tensor(np.full((1, 1), 255, np.uint8), cfg)[None]
    return low, high


def build_composite(name: str, model: nn.Module, channels: int, epsilon: float = 1e-6) -> Composite:
    """A zennit composite by name (one of :data:`COMPOSITES`), with the model's canonizers."""
    check_composite(name)
    canonizers = canonizers_for(model)
    if name in ("epsilon-plus-flat", "epsilon-plus-uniform-flat"):
        # zennit's composite with its z+ rule swapped for the equivalent NonNegativeZPlus; a first_map
        # entry takes precedence over zennit's own Flat for the first layer.
        fast_zplus = [(Convolution, NonNegativeZPlus(stabilizer=1e-6))]
        first = [(AnyLinear, UniformFlat())] if name == "epsilon-plus-uniform-flat" else None
        return EpsilonPlusFlat(epsilon=epsilon, layer_map=fast_zplus, first_map=first, canonizers=canonizers)
    if name == "epsilon-gamma-box":
        low, high = input_bounds(model, channels)
        return EpsilonGammaBox(low=low, high=high, epsilon=epsilon, canonizers=canonizers)
    layer_map = layer_map_base() + [(AnyLinear, Epsilon(epsilon=epsilon))]
    return LayerMapComposite(layer_map=layer_map, canonizers=canonizers)
