"""Class activation maps from pytorch-grad-cam: Grad-CAM, Grad-CAM++ and HiResCAM.

The CAM is computed at the model's target layer (``brainxai.models.get_target_layer``), rectified,
upsampled bilinearly to the input size and min-max scaled to [0, 1] per image by the library.

For models whose target layer feeds straight into global average pooling and one linear layer
(EfficientNet-Lite0, ResNet-18, ResNet-50-GAP), the Grad-CAM channel weights are known without a
backward pass: d y_c / d A_k(i, j) = W[c, k] / (h * w). :class:`GradCamExplainer` then uses them
(one forward pass instead of forward + backward; the result equals the library's).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from brainxai.explain.base import Explainer, register_explainer


def _target_layer(explainer: Explainer) -> nn.Module:
    from brainxai.models import get_target_layer

    if getattr(explainer.model, "brainxai_config", None) is None:
        raise explainer.unsupported("the model has no brainxai_config naming its CAM target layer")
    return get_target_layer(explainer.model)


class _CamExplainer(Explainer):
    """Runs one pytorch-grad-cam class; subclasses only name it."""

    cam_class: ClassVar[type[BaseCAM]]

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.target_layer = _target_layer(self)

    def _make_cam(self) -> BaseCAM:
        return self.cam_class(model=self.model, target_layers=[self.target_layer])

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
        cam_targets = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets.tolist()]
        # The context manager removes the library's hooks when the call ends, also on error.
        with self._make_cam() as cam:
            maps = cam(input_tensor=x, targets=cam_targets)
            logits = cam.outputs.detach()
        return maps, logits


@register_explainer
class GradCamPlusPlusExplainer(_CamExplainer):
    """Grad-CAM++ (Chattopadhay et al., 2018): second-order weighting of positive gradients."""

    name = "gradcam++"
    cam_class = GradCAMPlusPlus


@register_explainer
class HiResCamExplainer(_CamExplainer):
    """HiResCAM (Draelos & Carin, 2020): element-wise gradient x activation, summed over channels."""

    name = "hirescam"
    cam_class = HiResCAM


class _LinearHeadGradCAM(GradCAM):
    """Grad-CAM whose channel weights come from the final linear layer instead of a backward pass."""

    def __init__(self, model: nn.Module, target_layers: list[nn.Module], weight: torch.Tensor) -> None:
        BaseCAM.__init__(self, model, target_layers, uses_gradients=False)
        self.linear_weight = weight.detach().cpu().numpy()

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads) -> np.ndarray:
        categories = [t.category for t in targets]
        h, w = activations.shape[-2:]
        return self.linear_weight[categories] / float(h * w)


@register_explainer
class GradCamExplainer(_CamExplainer):
    """Grad-CAM (Selvaraju et al., 2017): channel weights are spatially averaged gradients.

    Args:
        model: The classifier.
        shortcut: Use the exact linear-head weights when the architecture allows it (see module docs).
    """

    name = "gradcam"
    cam_class = GradCAM

    def __init__(self, model: nn.Module, shortcut: bool = True, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.head = gap_linear_head(model, self.target_layer) if shortcut else None

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
        if self.head is None:
            return super()._attribute(x, targets)
        with torch.no_grad(), _LinearHeadGradCAM(self.model, [self.target_layer], self.head.weight) as cam:
            # The library would pick the arg-max itself; we need the logits first to pass explicit targets.
            activations = cam.activations_and_grads(x)
            logits = activations.detach()
            chosen = self.select_targets(logits, targets)
            cam_targets = [ClassifierOutputTarget(int(t)) for t in chosen.tolist()]
            per_layer = cam.compute_cam_per_layer(x, cam_targets, eigen_smooth=False)
            maps = cam.aggregate_multi_layers(per_layer)
        return maps, logits


def gap_linear_head(model: nn.Module, target_layer: nn.Module) -> nn.Linear | None:
    """The final linear layer if the model computes ``linear(dropout*(flatten(avgpool1(target))))``.

    Found by tracing the model with ``torch.fx``; any model that cannot be traced or has another
    head returns ``None``.
    """
    import torch.fx

    class _Tracer(torch.fx.Tracer):
        # Keep the target layer as one node even when it is a container.
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return m is target_layer or super().is_leaf_module(m, qualname)

    try:
        graph = _Tracer().trace(model)
    except Exception:  # noqa: BLE001 - untraceable models simply do not get the shortcut
        return None
    modules = dict(model.named_modules())
    target_names = {name for name, m in modules.items() if m is target_layer}

    def single_user(node: torch.fx.Node) -> torch.fx.Node | None:
        users = list(node.users)
        return users[0] if len(users) == 1 else None

    start = next((n for n in graph.nodes if n.op == "call_module" and n.target in target_names), None)
    node = single_user(start) if start is not None else None
    # global average pooling to 1x1
    if node is None or node.op != "call_module" or not isinstance(modules[node.target], nn.AdaptiveAvgPool2d):
        return None
    if modules[node.target].output_size not in (1, (1, 1)):
        return None
    # flatten
    node = single_user(node)
    flatten_fns = {torch.flatten}
    if node is None or not (
        (node.op == "call_function" and node.target in flatten_fns)
        or (node.op == "call_method" and node.target in ("flatten", "view", "reshape"))
    ):
        return None
    # dropout layers (identity in eval mode), then exactly one linear layer producing the output
    node = single_user(node)
    while node is not None and node.op == "call_module" and isinstance(modules[node.target], nn.Dropout):
        node = single_user(node)
    if node is None or node.op != "call_module" or not isinstance(modules[node.target], nn.Linear):
        return None
    after = single_user(node)
    if after is None or after.op != "output":
        return None
    return modules[node.target]
