"""ResNet-18/50 variants built on torchvision, with the standard ImageNet weights API."""

from __future__ import annotations

import logging
import warnings
from typing import Any, cast

from torch import nn

from brainxai.data.preprocess import PreprocessConfig
from brainxai.models.registry import ModelConfig, register_model

logger = logging.getLogger(__name__)

_RESNET_STAGES = (("fc",), ("layer4",), ("layer3",))
_IMAGENET_224 = PreprocessConfig(img_size=224, channels=3, normalize="imagenet", crop=True)


def _torchvision_resnet(arch: str, pretrained: bool) -> nn.Module:
    """Builds a torchvision ResNet, using ImageNet weights when they can be had.

    The weights API loads them from the local torch hub cache or downloads them; offline and without
    a cache this fails, and we fall back to random initialisation with a warning instead of
    crashing.
    """
    # Imported here: torchvision costs ~160 MB of resident memory, which processes serving the
    # default EfficientNet-Lite0 need not pay.
    from torchvision import models as tvm

    builder = getattr(tvm, arch)
    if not pretrained:
        return builder(weights=None)
    weights = tvm.get_model_weights(arch).DEFAULT
    try:
        return builder(weights=weights)
    except Exception as exc:  # any download/cache failure means "no weights"
        warnings.warn(
            f"ImageNet weights for {arch} are unavailable ({type(exc).__name__}: {exc}); "
            "starting from random initialisation. Place the file in the torch hub cache "
            "(torch.hub.get_dir()/checkpoints) to use them offline.",
            RuntimeWarning,
            stacklevel=3,
        )
        return builder(weights=None)


def _fc_inputs(model: nn.Module) -> int:
    """Input features of a torchvision ResNet's final linear layer."""
    return cast(nn.Linear, model.fc).in_features


@register_model(
    ModelConfig(
        name="resnet18",
        preprocess=_IMAGENET_224,
        target_layer="layer4",
        cam_cell_offset=0.0,
        lrp_canonizers=("resnet-basic-block",),
        stages=_RESNET_STAGES,
        description="torchvision ResNet-18, final layer replaced by a 4-class linear layer",
    )
)
def resnet18(num_classes: int = 4, pretrained: bool = True, **_: Any) -> nn.Module:
    model = _torchvision_resnet("resnet18", pretrained)
    model.fc = nn.Linear(_fc_inputs(model), num_classes)
    return model


@register_model(
    ModelConfig(
        name="resnet50-mlp",
        preprocess=_IMAGENET_224,
        target_layer="layer4",
        cam_cell_offset=0.0,
        lrp_canonizers=("resnet-bottleneck",),
        stages=_RESNET_STAGES,
        description="torchvision ResNet-50 with head 2048->256->ReLU->Dropout(0.3)->4",
    )
)
def resnet50_mlp(num_classes: int = 4, pretrained: bool = True, **_: Any) -> nn.Module:
    model = _torchvision_resnet("resnet50", pretrained)
    model.fc = nn.Sequential(
        nn.Linear(_fc_inputs(model), 256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.3),
        nn.Linear(256, num_classes),
    )
    return model


@register_model(
    ModelConfig(
        name="resnet50-gap",
        preprocess=_IMAGENET_224,
        target_layer="layer4",
        cam_cell_offset=0.0,
        lrp_canonizers=("resnet-bottleneck",),
        stages=_RESNET_STAGES,
        description="torchvision ResNet-50, global average pooling -> Dropout(0.4) -> 4",
    )
)
def resnet50_gap(num_classes: int = 4, pretrained: bool = True, **_: Any) -> nn.Module:
    model = _torchvision_resnet("resnet50", pretrained)
    # torchvision's ResNet already ends in global average pooling; the head adds dropout.
    model.fc = nn.Sequential(nn.Dropout(0.4), nn.Linear(_fc_inputs(model), num_classes))
    return model
