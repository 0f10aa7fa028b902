"""Tiny models for the explanation tests."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from brainxai.data.preprocess import PreprocessConfig
from brainxai.models.registry import ModelConfig


@pytest.fixture(autouse=True)
def _one_thread():
    # The tests use tiny tensors; one thread avoids thread-pool stalls on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyNet(nn.Module):
    """conv-BN-ReLU, conv-ReLU, global average pooling, linear: a miniature of the real models."""

    def __init__(self, num_classes: int = 4, bias: bool = True, batchnorm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, 6, 3, padding=1, bias=bias)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(6))
        layers += [nn.ReLU(inplace=True), nn.Conv2d(6, 8, 3, padding=1, bias=bias), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(8, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


TINY_CONFIG = ModelConfig(
    name="tiny-cnn",
    preprocess=PreprocessConfig(img_size=16, channels=1, normalize="unit", crop=False),
    target_layer="features",
    stages=("classifier",),
)


def make_tiny(seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    model = TinyNet(**kwargs)
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        # Non-trivial running statistics so that merging them into the convolution matters.
        bn = model.features[1]
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.1, 0.1)
    model.brainxai_config = TINY_CONFIG
    return model.eval()


@pytest.fixture()
def tiny_model() -> nn.Module:
    return make_tiny()


@pytest.fixture()
def tiny_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 1, 16, 16, generator=g)


def small_registered(name: str) -> nn.Module:
    """A registered model at a small input size (EfficientNet with its real ImageNet backbone:
    PyTorch's default initialisation leaves it with subnormal activations, which are very slow)."""
    from brainxai.models import create_model

    size = 64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model(name, pretrained=name == "efficientnet-lite0", img_size=size)
    return model.eval()


@pytest.fixture()
def tiny_factory():
    """``make_tiny`` as a fixture (test modules do not import conftest)."""
    return make_tiny


@pytest.fixture()
def registered_factory():
    """``small_registered`` as a fixture."""
    return small_registered
