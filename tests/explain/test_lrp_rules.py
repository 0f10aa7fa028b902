"""Our LRP rule against zennit's and against a naive float64 implementation (zennit's test habit)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from zennit.rules import ZPlus

from brainxai.explain.lrp import NonNegativeZPlus


def _conv(seed: int) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(2, 3, 3, padding=1).double()


def _relevance(rule, conv: nn.Conv2d, x: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    handles = rule.register(conv)
    try:
        x = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(conv(x), x, grad_outputs=upper)
    finally:
        handles.remove()
    return grad


def _naive_zplus(conv: nn.Conv2d, x: torch.Tensor, upper: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """R_i = sum_j x_i w_ij^+ / (sum_i' x_i' w_i'j^+ + b_j^+) R_j, for x >= 0, by explicit loops."""
    w, b = conv.weight.clamp(min=0), conv.bias.clamp(min=0)
    xp = nn.functional.pad(x, (1, 1, 1, 1))
    h, wd = x.shape[-2:]
    cout, k = w.shape[0], w.shape[-1]
    relevance = torch.zeros_like(xp)
    for n, j, r, c in itertools.product(range(x.shape[0]), range(cout), range(h), range(wd)):
        patch = xp[n, :, r : r + k, c : c + k]
        z = (patch * w[j]).sum() + b[j]
        z = z + eps * (1.0 if z >= 0 else -1.0)
        relevance[n, :, r : r + k, c : c + k] += patch * w[j] * upper[n, j, r, c] / z
    return relevance[:, :, 1:-1, 1:-1]


def test_non_negative_zplus_matches_a_naive_reference() -> None:
    conv = _conv(0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 2, 5, 5, generator=g, dtype=torch.float64)
    x[0, 0, 2, :] = 0.0  # zeros, as after a ReLU
    upper = torch.rand(2, 3, 5, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(_relevance(NonNegativeZPlus(), conv, x, upper), _naive_zplus(conv, x, upper))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("signed", [False, True])
def test_non_negative_zplus_equals_zennits_zplus(signed, dtype, monkeypatch) -> None:
    conv = _conv(3).to(dtype)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 6, 6, generator=g, dtype=dtype)
    x = x if signed else x.clamp(min=0)
    x[0, 0, 0, :3] = 0.0  # zero outputs exercise the stabilizer's sign(0) = +1
    upper = torch.randn(2, 3, 6, 6, generator=g, dtype=dtype)
    reference = _relevance(ZPlus(), conv, x, upper)

    calls = []
    real = ZPlus.backward
    monkeypatch.setattr(ZPlus, "backward", lambda self, *a: calls.append(1) or real(self, *a))
    ours = _relevance(NonNegativeZPlus(), conv, x, upper)
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)  # bit for bit
    # The two-branch computation runs only when there is a negative input.
    assert calls == ([1] if signed else [])


def test_non_negative_zplus_copies_keep_their_stabiliser() -> None:
    # zennit gives every layer its own copy of a rule; the fast branch's epsilon must come along.
    rule = NonNegativeZPlus(stabilizer=1e-3)
    clone = rule.copy()
    assert type(clone) is NonNegativeZPlus and clone is not rule and clone.epsilon == 1e-3


def test_main_pass_flag_is_cleared_after_an_error() -> None:
    from brainxai.explain.lrp import fast

    with pytest.raises(RuntimeError):
        with fast.main_pass():
            assert fast._MAIN_PASS.active
            raise RuntimeError("forward failed")
    assert fast._MAIN_PASS.active is False


def _stem(seed: int = 0) -> nn.Conv2d:
    """Like EfficientNet's stem: 3x3, stride 2, padding 1 (kernel not a multiple of the stride)."""
    torch.manual_seed(seed)
    return nn.Conv2d(3, 4, 3, stride=2, padding=1).double()


def test_uniform_flat_spreads_even_relevance_evenly_where_flat_prints_a_lattice() -> None:
    from zennit.rules import Flat

    from brainxai.explain.lrp import UniformFlat

    conv = _stem()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    upper = torch.ones(1, 4, 8, 8, dtype=torch.float64)
    flat = _relevance(Flat(), conv, x, upper).sum(1)[0, 3:-3, 3:-3]  # interior, away from the padding
    uniform = _relevance(UniformFlat(), conv, x, upper).sum(1)[0, 3:-3, 3:-3]
    assert flat.max() / flat.min() == pytest.approx(4.0)  # the 1-2-2-4 coverage lattice
    assert torch.allclose(uniform, uniform.mean().expand_as(uniform))


def test_uniform_flat_conserves_relevance_and_keeps_its_stabiliser() -> None:
    from brainxai.explain.lrp import UniformFlat

    conv = _stem(1)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 15, 15, generator=g, dtype=torch.float64)
    upper = torch.rand(2, 4, 8, 8, generator=g, dtype=torch.float64)
    relevance = _relevance(UniformFlat(), conv, x, upper)
    assert torch.allclose(relevance.sum(dim=(1, 2, 3)), upper.sum(dim=(1, 2, 3)), rtol=1e-6)
    assert (relevance >= 0).all()
    assert UniformFlat(stabilizer=1e-3).copy().epsilon == 1e-3
