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

from typing import Any

import numpy as np
import torch
from torch import nn
from zennit.attribution import Gradient
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
from zennit.core import Composite
from zennit.layer import Sum
from zennit.rules import Epsilon
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer
from zennit.types import Convolution
from zennit.types import Linear as AnyLinear

from brainxai.explain.base import Explainer, register_explainer
from brainxai.models.efficientnet_lite import MBConv

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
        return EpsilonPlusFlat(epsilon=epsilon, canonizers=canonizers)
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

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
        composite = build_composite(self.composite_name, self.model, x.shape[1], self.epsilon)

        def output_relevance(output: torch.Tensor) -> torch.Tensor:
            target = self.select_targets(output, targets)
            one_hot = torch.zeros_like(output).scatter_(1, target[:, None], 1.0)
            return output * one_hot

        # Gradient registers the composite (hooks + canonizers) and removes it when the call ends.
        with Gradient(model=self.model, composite=composite) as attributor:
            output, relevance = attributor(x, output_relevance)
        return relevance.sum(dim=1).detach().cpu().numpy(), output.detach()
