"""Canonizers: make a model LRP-ready without changing what it computes.

Every model gets the batch-norm merge; a model adds the canonizers its blocks need by naming them in
its ``ModelConfig.lrp_canonizers`` (keys of :data:`CANONIZERS`):

- ``"resnet-basic-block"``, ``"resnet-bottleneck"``: zennit's canonizers for torchvision's ResNet
  blocks (the residual sum as a module);
- ``"mbconv-residual"``: :class:`MBConvCanonizer`, which turns the residual ``out + x`` of
  EfficientNet-Lite's ``MBConv`` blocks into zennit's ``Sum`` module so the relevance is split between
  the branches in proportion to their contributions (a plain ``+`` would copy it to both and break
  conservation).

The batch-norm merge is zennit's ``SequentialMergeBatchNorm`` with one correction
(:class:`ExactMergeBatchNorm`): the emptied batch norm must compute the identity, which needs
``running_var = 1 - eps``, not 1; EfficientNet's ``eps = 1e-3`` would otherwise scale every block's
output by 0.9995.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from zennit.canonizers import AttributeCanonizer, Canonizer, SequentialMergeBatchNorm
from zennit.layer import Sum
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

from brainxai.models.registry import find_model_config


class ExactMergeBatchNorm(SequentialMergeBatchNorm):
    """``SequentialMergeBatchNorm`` whose emptied batch norms are exactly the identity."""

    def register(self, linears: Any, batch_norm: Any) -> None:
        super().register(linears, batch_norm)
        # (x - 0) / sqrt(var + eps) * 1 + 0 == x  requires  var == 1 - eps.
        batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data, 1.0 - batch_norm.eps)

    def copy(self) -> ExactMergeBatchNorm:
        return ExactMergeBatchNorm()


class MBConvCanonizer(AttributeCanonizer):
    """Routes the residual addition of EfficientNet-Lite ``MBConv`` blocks through a ``Sum`` module.

    A block is recognised by what it offers, not by its class (``explain`` does not import model
    modules): a ``use_residual`` flag that is true and a ``branch(x)`` method computing the block
    without its skip connection, so that the block's output is ``branch(x) + x``.
    """

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: nn.Module) -> dict[str, Any] | None:
        if getattr(module, "use_residual", False) is True and callable(getattr(module, "branch", None)):
            return {"forward": cls.forward.__get__(module), "canonizer_sum": Sum()}
        return None

    @staticmethod
    def forward(block: Any, x: torch.Tensor) -> torch.Tensor:
        # Same computation as the block's own forward, with the addition made visible to zennit.
        out = block.branch(x)
        return block.canonizer_sum(torch.stack([x, out], dim=-1))

    def copy(self) -> MBConvCanonizer:
        return MBConvCanonizer()


#: The canonizers a ``ModelConfig`` can name, each a factory of a fresh instance.
CANONIZERS: dict[str, Callable[[], Canonizer]] = {
    "resnet-basic-block": ResNetBasicBlockCanonizer,
    "resnet-bottleneck": ResNetBottleneckCanonizer,
    "mbconv-residual": MBConvCanonizer,
}


def canonizers_for(model: nn.Module) -> list[Canonizer]:
    """The canonizers that make ``model`` LRP-ready: the batch-norm merge, then those its config names.

    Raises:
        ValueError: The model's config names a canonizer that :data:`CANONIZERS` does not know.
    """
    config = find_model_config(model)
    names: tuple[str, ...] = config.lrp_canonizers if config is not None else ()
    unknown = [n for n in names if n not in CANONIZERS]
    if unknown:
        raise ValueError(f"unknown LRP canonizer {unknown[0]!r}; choose from {', '.join(CANONIZERS)}")
    return [ExactMergeBatchNorm(), *(CANONIZERS[n]() for n in names)]
