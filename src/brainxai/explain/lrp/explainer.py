"""The ``lrp`` explainer: layer-wise relevance propagation through zennit, on the fast path.

The output relevance is the target class's logit (all other outputs zero); it is propagated back
to the input and summed over the colour channels (the channels carry the same grayscale pixel), so
the map is in logit units and, for a bias-free network, sums to the logit (see the last paragraph
for networks with biases).

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
from zennit.core import Composite, Hook
from zennit.types import Convolution

from brainxai.explain.base import Explainer
from brainxai.explain.lrp import fast
from brainxai.explain.lrp.composites import DEFAULT_COMPOSITE, check_composite
from brainxai.models.registry import find_model_config

# Modules whose relevance flow no zennit rule models.
_UNSUPPORTED: tuple[type[nn.Module], ...] = (nn.RNNBase, nn.MultiheadAttention)


class LrpExplainer(Explainer):
    """Layer-wise relevance propagation (Bach et al., 2015) through zennit.

    Args:
        model: The classifier.
        composite: One of :data:`~brainxai.explain.lrp.composites.COMPOSITES` (default
            :data:`~brainxai.explain.lrp.composites.DEFAULT_COMPOSITE`).
        epsilon: Stabiliser of the epsilon rule.
    """

    name = "lrp"

    def __init__(
        self, model: nn.Module, composite: str = DEFAULT_COMPOSITE, epsilon: float = 1e-6, **kwargs: Any
    ) -> None:
        super().__init__(model, **kwargs)
        check_composite(composite)
        self._check_model(model)
        self.composite_name = composite
        self.epsilon = epsilon
        self._lrp: tuple[nn.Module, Composite] | None = None
        self._lrp_stamp: tuple[Any, ...] | None = None
        self._hooks: list[Hook] = []
        self._names: dict[int, str] = {}  # qualified names of layers looked up by _run_module

    def _check_model(self, model: nn.Module) -> None:
        """Refuses models that LRP cannot explain (``UnsupportedModelError``)."""
        config = find_model_config(model)
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

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
        lrp_model = self.prepared_model()

        def output_relevance(output: torch.Tensor) -> torch.Tensor:
            target = self.select_targets(output, targets)
            one_hot = torch.zeros_like(output).scatter_(1, target[:, None], 1.0)
            return output * one_hot

        relevance, output = fast.relevance(lrp_model, self._hooks, x, output_relevance)
        return relevance.sum(dim=1).detach().cpu().numpy(), output.detach()

    def prepared_model(self) -> nn.Module:
        """The LRP-ready copy of the model (:func:`~brainxai.explain.lrp.fast.prepare_copy`), rebuilt
        whenever the model's weights or device change; its hooks stay until :meth:`close`."""
        stamp = fast.weights_stamp(self.model)
        if self._lrp is not None and self._lrp_stamp == stamp:
            return self._lrp[0]
        self._release()
        copy, composite, self._hooks = fast.prepare_copy(
            self.model, self.composite_name, self._channels(), self.epsilon
        )
        self._lrp, self._lrp_stamp = (copy, composite), stamp
        return copy

    def _run_module(self, layer: nn.Module) -> nn.Module:
        """``layer``'s counterpart in :meth:`prepared_model` (same qualified name; the copy keeps the module tree)."""
        if id(layer) not in self._names:
            name = next((n for n, m in self.model.named_modules() if m is layer), None)
            if name is None:
                raise ValueError(f"{type(layer).__name__} is not a module of the explained model")
            self._names[id(layer)] = name
        return self.prepared_model().get_submodule(self._names[id(layer)])

    @property
    def hooks(self) -> list[Hook]:
        """The rule hooks on :meth:`prepared_model` (for :func:`~brainxai.explain.lrp.fast.clear_call_state`)."""
        return self._hooks

    def _channels(self) -> int:
        config = find_model_config(self.model)
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
