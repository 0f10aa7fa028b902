"""1,000 explanations per method: no hooks left behind, memory flat."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.modules import module as torch_module

from brainxai.explain import create_explainer, list_explainers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def global_hooks() -> int:
    names = (
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
        "_global_backward_hooks",
        "_global_backward_pre_hooks",
    )
    return sum(len(getattr(torch_module, n, {})) for n in names)


def model_hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("method", list_explainers())
def test_many_explanations_leave_nothing_behind(method, tiny_model) -> None:
    # 64 px: a leaked autograd graph (~5 MB a call) or map (0.16 MB a call) would show in RSS.
    x = torch.rand(10, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    n_modules = len(list(tiny_model.modules()))
    hooks_before = global_hooks()
    with create_explainer(method, tiny_model) as explainer:
        for _ in range(10):  # warm-up: allocator pools, lazy imports
            explainer.explain(x)
        gc.collect()
        start = rss_mb()
        for i in range(100):  # 100 batches x 10 images = 1,000 explanations
            explainer.explain(x, target=i % 4)
            assert model_hooks(tiny_model) == 0
        gc.collect()
        grown = rss_mb() - start
    assert model_hooks(tiny_model) == 0
    assert global_hooks() == hooks_before
    assert len(list(tiny_model.modules())) == n_modules  # canonizer modules removed again
    assert all(p.grad is None for p in tiny_model.parameters())
    assert grown < 15, f"{method}: RSS grew by {grown:.1f} MB over 1,000 explanations"
