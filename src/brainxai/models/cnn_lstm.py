"""A small CNN-LSTM for 64x64 grayscale slices.

Convolution + max-pooling blocks produce a feature map; each of its rows becomes one step of a
sequence read by an LSTM, whose last hidden state feeds dense layers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from brainxai.data.preprocess import PreprocessConfig
from brainxai.models.registry import ModelConfig, register_model


class CNNLSTM(nn.Module):
    """CNN feature extractor followed by a row-wise LSTM.

    Args:
        num_classes: Number of outputs.
        in_channels: Input channels (1 for grayscale).
        hidden: LSTM hidden size.
        img_size: Input side in pixels (a multiple of 8).
    """

    def __init__(self, num_classes: int = 4, in_channels: int = 1, hidden: int = 128, img_size: int = 64) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(block(in_channels, 32), block(32, 64), block(64, 128))
        if img_size % 8:
            raise ValueError(f"cnn-lstm needs an input side divisible by 8, got {img_size}")
        # Three 2x poolings: a 64x64 input gives a 128 x 8 x 8 map, read as 8 steps of 128*8 features.
        self.lstm = nn.LSTM(input_size=128 * (img_size // 8), hidden_size=hidden, batch_first=True)
        self.classifier = nn.Sequential(
            nn.Linear(hidden, 64), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.Linear(64, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # (N, C, H, W)
        n, c, h, w = f.shape
        seq = f.permute(0, 2, 1, 3).reshape(n, h, c * w)  # one step per feature-map row
        out, _ = self.lstm(seq)
        # Logits; softmax is applied by the loss in training and by the predictor at inference.
        return self.classifier(out[:, -1])


@register_model(
    ModelConfig(
        name="cnn-lstm",
        preprocess=PreprocessConfig(img_size=64, channels=1, normalize="unit", crop=True),
        target_layer="features.2",
        cam_cell_offset=3.5,
        stages=(("classifier",), ("lstm",), ("features.2",)),
        description="CNN + row-sequence LSTM on 64x64 grayscale",
        supports_lrp=False,
    )
)
def cnn_lstm(num_classes: int = 4, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    # No pretrained weights exist for this architecture; `pretrained` is accepted and ignored.
    return CNNLSTM(num_classes=num_classes, **kwargs)
