"""Class activation maps from pytorch-grad-cam: Grad-CAM, Grad-CAM++ and HiResCAM.

The CAM is computed at the model's target layer (``brainxai.models.get_target_layer``), rectified,
upsampled bilinearly to the input size and min-max scaled to [0, 1] per image by the library.

Receptive-field alignment (on by default, ``align=False`` gives the library's map unchanged). The
library's resize puts cell ``j`` of an ``h x w`` map at input pixel ``s * j + (s - 1) / 2`` (stride
``s``), the centre of the ``j``-th block of pixels. A convolutional network's cell ``j`` is centred
where its receptive field is: with the symmetric ``kernel // 2`` padding of EfficientNet-Lite0 and
torchvision's ResNets that is ``s * j``, half a cell (15.5 px at 224 px) up and to the left of where
the library draws it. Every CAM of those models was therefore displaced down and to the right; on
the 512 px figshare development images that is about 35 px, more than the pointing game's 15 px
tolerance. :func:`cam_grid` measures the grid (stride and centre of cell 0, per axis) once per
architecture, on a copy whose weights are made uniform and positive so that the input gradient of a
cell traces its receptive field, and the upsampled map is resampled accordingly (for those models a
pure translation; layers without padding also need a small rescale). No parameter is fitted; the
maps of the three methods keep their shape and values.

For models whose target layer feeds straight into global average pooling and one linear layer
(EfficientNet-Lite0, ResNet-18, ResNet-50-GAP), the Grad-CAM channel weights are known without a
backward pass: d y_c / d A_k(i, j) = W[c, k] / (h * w). :class:`GradCamExplainer` then uses them
(one forward pass instead of forward + backward; the result equals the library's).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import cv2
import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from brainxai.explain.base import Explainer
from brainxai.models.registry import find_model_config, get_target_layer


def _target_layer(explainer: Explainer) -> nn.Module:
    if find_model_config(explainer.model) is None:
        raise explainer.unsupported("the model has no brainxai_config naming its CAM target layer")
    return get_target_layer(explainer.model)


@dataclass(frozen=True)
class CamGrid:
    """Where the cells of a layer's map sit on the input.

    Cell ``(i, j)`` is centred at ``(offset_y + stride_y * i, offset_x + stride_x * j)`` input pixels;
    ``resize_y``/``resize_x`` are input size over map size, the scale a plain resize uses (it draws
    cell ``j`` at ``resize * (j + 0.5) - 0.5``).
    """

    stride_y: float
    stride_x: float
    offset_y: float
    offset_x: float
    resize_y: float
    resize_x: float

    def resize_to_receptive(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Per axis ``(a, b)`` such that the resized map's value for input pixel ``p`` is at ``a * p + b``."""

        def axis(stride: float, offset: float, resize: float) -> tuple[float, float]:
            # pixel p -> cell u = (p - offset) / stride -> resized position resize * (u + 0.5) - 0.5
            return resize / stride, resize * (0.5 - offset / stride) - 0.5

        return axis(self.stride_y, self.offset_y, self.resize_y), axis(self.stride_x, self.offset_x, self.resize_x)


_GRIDS: dict[tuple[Any, ...], CamGrid] = {}
#: Cells per side of the probe input: the central cell's receptive field must fit inside it (the
#: receptive fields of the registered CNNs' CAM layers do at 32; at 16 EfficientNet-Lite0's do not).
_PROBE_CELLS = 32


class _StopForward(Exception):
    """Ends the probe's forward pass at the target layer."""


def _architecture_key(model: nn.Module, layer: nn.Module, size: tuple[int, int]) -> tuple[Any, ...]:
    # Weights do not matter for the geometry; the layer sequence and the input size do.
    layers = tuple(
        (
            name,
            type(m).__name__,
            getattr(m, "kernel_size", None),
            getattr(m, "stride", None),
            getattr(m, "padding", None),
            getattr(m, "dilation", None),
            m is layer,
        )
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) or m is layer
    )
    return (type(model).__qualname__, size, layers)


def cam_grid(
    model: nn.Module,
    layer: nn.Module,
    input_size: tuple[int, int],
    channels: int = 3,
    map_size: tuple[int, int] | None = None,
) -> CamGrid:
    """The grid of ``layer``'s output for inputs of ``input_size`` (height, width).

    A registered model states its cell offset (``ModelConfig.cam_cell_offset``, cells one
    ``input / map`` stride apart); with ``map_size`` given that is all it takes. Otherwise the grid is
    measured by :func:`_measure_grid` and cached per architecture.
    """
    config = find_model_config(model)
    offset = getattr(config, "cam_cell_offset", None)
    if offset is not None and map_size is not None and layer is _registered_target(model):
        ry, rx = input_size[0] / map_size[0], input_size[1] / map_size[1]
        return CamGrid(ry, rx, offset, offset, ry, rx)
    key = _architecture_key(model, layer, input_size)
    if key not in _GRIDS:
        # The probe needs autograd even when called from a no_grad or inference_mode caller.
        with torch.inference_mode(False), torch.enable_grad():
            _GRIDS[key] = _measure_grid(model, layer, input_size, channels)
    return _GRIDS[key]


def _measure_grid(model: nn.Module, layer: nn.Module, input_size: tuple[int, int], channels: int) -> CamGrid:
    """Receptive-field probe: where two neighbouring cells of ``layer`` are centred on the input.

    A copy of the model gets convolutions that average their inputs, batch norms that are the identity
    and average instead of max pooling (ties would send the gradient to one corner of each window). On
    a small constant input every activation is then in its linear range, and the input gradient of a
    cell is a positive weight over its receptive field, whose centroid is the cell's centre. The probe
    input is ``_PROBE_CELLS`` cells a side so that a central cell's receptive field lies inside it.
    """
    probe = _probe_copy(model)
    path = next(name for name, m in model.named_modules() if m is layer)
    store: dict[str, torch.Tensor] = {}

    def capture(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        store["a"] = out
        raise _StopForward  # the layers after the target (heads of any input size) are not needed

    def run(x: torch.Tensor) -> torch.Tensor:
        try:
            probe(x)
        except _StopForward:
            pass
        return store["a"]

    handle = dict(probe.named_modules())[path].register_forward_hook(capture)
    try:
        with torch.no_grad():
            h, w = run(torch.zeros(1, channels, *input_size)).shape[-2:]
        resize_y, resize_x = input_size[0] / h, input_size[1] / w
        x = torch.full(
            (1, channels, round(resize_y * _PROBE_CELLS), round(resize_x * _PROBE_CELLS)), 0.01, requires_grad=True
        )
        out = run(x)
        c = _PROBE_CELLS // 2
        centres = []
        for cell in (c, c + 1):  # two neighbouring cells give the stride, one of them the offset
            (grad,) = torch.autograd.grad(out[0, :, cell, cell].sum(), x, retain_graph=True)
            g = grad[0].abs().sum(0).double().numpy()
            ys, xs = np.indices(g.shape)
            centres.append(((g * ys).sum() / g.sum(), (g * xs).sum() / g.sum()))
    finally:
        handle.remove()
    stride_y, stride_x = centres[1][0] - centres[0][0], centres[1][1] - centres[0][1]
    return CamGrid(
        round(float(stride_y), 2),
        round(float(stride_x), 2),
        round(float(centres[0][0] - stride_y * c), 2),
        round(float(centres[0][1] - stride_x * c), 2),
        resize_y,
        resize_x,
    )


def _probe_copy(model: nn.Module) -> nn.Module:
    """A float32 CPU copy with averaging convolutions, identity batch norms and average pooling."""
    probe = copy.deepcopy(model).eval().float().cpu()
    for m in list(probe.modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(m, child_name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
    with torch.no_grad():
        for m in probe.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.running_mean is not None and m.running_var is not None:
                    m.running_mean.zero_()
                    m.running_var.fill_(1.0 - m.eps)
                if m.affine:  # without affine parameters the normalisation alone is the identity here
                    m.weight.fill_(1.0)
                    m.bias.fill_(0.0)
    return probe


def _registered_target(model: nn.Module) -> nn.Module | None:
    try:
        return get_target_layer(model)
    except (AttributeError, KeyError, ValueError):
        return None


def align_to_receptive_fields(maps: np.ndarray, grid: CamGrid) -> np.ndarray:
    """Resamples resized maps ``(N, H, W)`` so every cell sits on its receptive-field centre; [0, 1] kept."""
    (ay, by), (ax, bx) = grid.resize_to_receptive()
    if max(abs(ay - 1), abs(ax - 1), abs(by), abs(bx)) < 1e-3:
        return maps
    # dst(x, y) = src(ax * x + bx, ay * y + by); for the registered CNNs a pure translation. Edges continued.
    m = np.array([[ax, 0.0, bx], [0.0, ay, by]])
    out = np.empty_like(maps)
    for i, cam in enumerate(maps):
        shifted = cv2.warpAffine(
            cam.astype(np.float32),
            m,
            (cam.shape[1], cam.shape[0]),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        lo, hi = float(shifted.min()), float(shifted.max())
        out[i] = (shifted - lo) / (hi - lo) if hi > lo else shifted
    return out


def aligned_maps(maps: np.ndarray, cam: BaseCAM, model: nn.Module, layer: nn.Module, x: torch.Tensor) -> np.ndarray:
    """A pytorch-grad-cam result for input ``x``, moved onto ``layer``'s receptive-field centres.

    Call it inside the CAM's context, while ``cam`` still holds the layer's activations.
    """
    map_size = tuple(cam.activations_and_grads.activations[0].shape[-2:])
    input_size = (int(x.shape[-2]), int(x.shape[-1]))
    return align_to_receptive_fields(maps, cam_grid(model, layer, input_size, x.shape[1], map_size))


class _CamExplainer(Explainer):
    """Runs one pytorch-grad-cam class; subclasses only name it.

    Args:
        model: The classifier.
        align: Translate the map onto the layer's receptive-field centres (see the module docs).
        shifts: Sub-cell positions per axis to average over (1: the plain map). With ``n`` > 1 the input
            is translated by ``n`` offsets per axis, one cell (``input / map`` pixels) apart divided by
            ``n`` and centred on no shift (for ``n`` = 4 on a 32 px cell: -12, -4, 4 and 12 px), the
            vacated pixels filled with each image's minimum per channel (the black background of a
            scan). Each shifted map explains the class chosen on the unshifted input and is translated
            back; the mean over the shifts covering each pixel is scaled to [0, 1]. That gives a finer
            effective grid ("augmented Grad-CAM", Morbidelli et al., 2020, without their
            super-resolution step) for ``n * n`` more forward (and, without a shortcut, backward) passes.
    """

    cam_class: ClassVar[type[BaseCAM]]

    def __init__(self, model: nn.Module, align: bool = True, shifts: int = 1, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if isinstance(shifts, bool) or not isinstance(shifts, int) or shifts < 1:
            raise ValueError(f"{self.name}: shifts must be a positive integer, got {shifts!r}")
        self.target_layer = _target_layer(self)
        self.align = align
        self.shifts = shifts

    def _make_cam(self) -> BaseCAM:
        return self.cam_class(model=self.model, target_layers=[self.target_layer])

    def _aligned(self, maps: np.ndarray, x: torch.Tensor, cam: BaseCAM) -> np.ndarray:
        return aligned_maps(maps, cam, self.model, self.target_layer, x) if self.align else maps

    def _attribute(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
        # With shifts the unshifted pass only supplies the logits, the chosen class and the grid size (its map
        # is not among the averaged ones); that costs one pass and keeps one code path for both cases.
        maps, logits, map_size = self._cam(x, targets)
        if self.shifts == 1:
            return maps, logits
        chosen = self.select_targets(logits, targets)
        return self._shift_averaged(x, chosen, map_size), logits

    def _cam(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor, tuple[int, int]]:
        """One CAM pass: ``(N, H, W)`` maps, the logits and the layer's map size."""
        cam_targets = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets.tolist()]
        # The context manager removes the library's hooks when the call ends, also on error.
        with self._make_cam() as cam:
            maps = cam(input_tensor=x, targets=cam_targets)
            logits = cam.outputs.detach()
            map_size = _map_size(cam)
            maps = self._aligned(maps, x, cam)
        return maps, logits, map_size

    def _shift_averaged(self, x: torch.Tensor, chosen: torch.Tensor, map_size: tuple[int, int]) -> np.ndarray:
        h, w = x.shape[-2:]
        x = x.detach()
        fill = x.amin(dim=(2, 3), keepdim=True)
        total = np.zeros((x.shape[0], h, w), np.float64)
        count = np.zeros((h, w), np.float64)
        for dy in sub_cell_offsets(h / map_size[0], self.shifts):
            for dx in sub_cell_offsets(w / map_size[1], self.shifts):
                shifted = translate(x, dy, dx, fill).requires_grad_(True)
                maps, _, _ = self._cam(shifted, chosen)
                # The shifted map at p + d explains the original pixel p.
                total += translate(maps, -dy, -dx, 0.0)
                count += translate(np.ones((h, w)), -dy, -dx, 0.0)
        mean = total / np.maximum(count, 1.0)
        lo = mean.min(axis=(1, 2), keepdims=True)
        span = mean.max(axis=(1, 2), keepdims=True) - lo
        return ((mean - lo) / np.where(span > 0, span, 1.0)).astype(np.float32)


def _map_size(cam: BaseCAM) -> tuple[int, int]:
    return _map_size_of(cam.activations_and_grads.activations[0])


def sub_cell_offsets(cell: float, n: int) -> list[int]:
    """``n`` integer offsets ``cell / n`` pixels apart, centred on zero (``[0]`` for ``n`` = 1)."""
    step = cell / n
    return [round(step * (k - (n - 1) / 2)) for k in range(n)]


_Array = TypeVar("_Array", np.ndarray, torch.Tensor)


def translate(a: _Array, dy: int, dx: int, fill: float | torch.Tensor) -> _Array:
    """``a`` moved by ``(dy, dx)`` pixels along its last two axes; vacated pixels take ``fill``."""
    h, w = a.shape[-2:]
    if isinstance(a, torch.Tensor):
        out = torch.empty_like(a)
        out[...] = fill
    else:
        out = np.full_like(a, fill)
    if abs(dy) < h and abs(dx) < w:
        out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = a[
            ..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
        ]
    return out


class GradCamPlusPlusExplainer(_CamExplainer):
    """Grad-CAM++ (Chattopadhay et al., 2018): second-order weighting of positive gradients."""

    name = "gradcam++"
    cam_class = GradCAMPlusPlus


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


class GradCamExplainer(_CamExplainer):
    """Grad-CAM (Selvaraju et al., 2017): channel weights are spatially averaged gradients.

    Args:
        model: The classifier.
        shortcut: Use the exact linear-head weights when the architecture allows it (see module docs).
        align: As for every CAM explainer.
        shifts: As for every CAM explainer (sub-cell shift averaging; 1: off).
    """

    name = "gradcam"
    cam_class = GradCAM

    def __init__(
        self, model: nn.Module, shortcut: bool = True, align: bool = True, shifts: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(model, align=align, shifts=shifts, **kwargs)
        self.head = gap_linear_head(model, self.target_layer) if shortcut else None

    def _cam(self, x: torch.Tensor, targets: torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor, tuple[int, int]]:
        if self.head is None:
            return super()._cam(x, targets)
        with torch.no_grad(), self.capturing(self.target_layer) as captured:
            logits = self.model(x).detach()
        (activations,) = captured
        chosen = self.select_targets(logits, targets)
        return self._linear_head_maps(activations, chosen.tolist(), x), logits, _map_size_of(activations)

    @property
    def reuses_activations(self) -> bool:
        """Whether :meth:`maps_from_activations` applies: the linear-head shortcut, one shift."""
        return self.head is not None and self.shifts == 1

    def maps_from_activations(self, activations: torch.Tensor, targets: Sequence[int], x: torch.Tensor) -> np.ndarray:
        """Grad-CAM maps ``(N, H, W)`` of ``targets`` from target-layer activations of a forward pass made elsewhere.

        E.g. captured from an LRP pass (:meth:`~brainxai.explain.base.Explainer.capturing`): with the linear-head
        shortcut the channel weights need no backward pass, so the map costs no pass of its own. Equal to
        :meth:`explain` on ``x`` for the same targets. ``x`` (the input) is read for its shape only.

        Raises:
            UnsupportedModelError: The model has no global-average-pooled linear head (or ``shifts`` > 1).
        """
        if not self.reuses_activations:
            raise self.unsupported("maps from activations need a linear head after global pooling and shifts=1")
        return self._linear_head_maps(activations, targets, x)

    def _linear_head_maps(self, activations: torch.Tensor, targets: Sequence[int], x: torch.Tensor) -> np.ndarray:
        """The library's Grad-CAM (aligned) from given activations, channel weights from the linear head."""
        if self.head is None:
            raise self.unsupported("the model has no linear head after global pooling")
        with _LinearHeadGradCAM(self.model, [self.target_layer], self.head.weight) as cam:
            cam.activations_and_grads.activations = [activations.detach().float()]
            cam_targets = [ClassifierOutputTarget(int(t)) for t in targets]
            per_layer = cam.compute_cam_per_layer(x, cam_targets, eigen_smooth=False)
            return self._aligned(cam.aggregate_multi_layers(per_layer), x, cam)


def _map_size_of(activations: torch.Tensor) -> tuple[int, int]:
    return (int(activations.shape[-2]), int(activations.shape[-1]))


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
    except Exception:  # untraceable models simply do not get the shortcut
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
