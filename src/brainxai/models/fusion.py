"""Inference-only graph simplifications that leave the model's function unchanged."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Returns an eval-mode copy with every ``Conv2d`` directly followed by ``BatchNorm2d`` fused.

    In eval mode BatchNorm is an affine map per channel, so it can be folded into the preceding
    convolution's weights and bias: same outputs (up to float rounding), one layer less to run.
    Only sibling pairs inside one container are fused (torchvision ResNets' ``conv1``/``bn1``,
    ``downsample``, and ``Sequential(conv, bn, ...)`` blocks); the original model is untouched so
    explanation methods can still hook its real layers.
    """
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        names = list(module._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = nn.Identity()
    return fused
