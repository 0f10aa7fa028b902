"""Receptive-field alignment of CAMs: the probed grid against geometry worked out by hand, and the
translation against the library's own resize convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.image import scale_cam_image
from torch import nn

from brainxai.explain.cam import CamGrid, GradCamExplainer, align_to_receptive_fields, cam_grid
from brainxai.models import create_model, get_target_layer, list_models


def _stack(*convs: tuple[int, int, int]) -> nn.Sequential:
    """Conv layers (kernel, stride, padding), each followed by a ReLU."""
    layers: list[nn.Module] = []
    for k, s, p in convs:
        layers += [nn.Conv2d(2, 2, k, s, p), nn.ReLU()]
    return nn.Sequential(*layers)


# Cell j of a layer (kernel k, stride s, padding p) is centred at s*j - p + (k-1)/2 of its input;
# composed over the stack that gives stride prod(s) and the offsets below.
@pytest.mark.parametrize(
    ("convs", "stride", "offset"),
    [
        (((3, 2, 1), (3, 2, 1)), 4, 0.0),  # symmetric "same" padding: cells at 4j
        (((2, 2, 0), (2, 2, 0)), 4, 1.5),  # 2x2 blocks: cells at 4j + 1.5, the resize convention
        (((5, 2, 2), (3, 1, 1), (3, 2, 1)), 4, 0.0),
        (((3, 2, 0),), 2, 1.0),  # no padding: cells at 2j + 1
    ],
)
def test_probed_grid_matches_the_geometry(convs, stride, offset) -> None:
    net = _stack(*convs)
    grid = cam_grid(net, net[-1], (32, 32), channels=2)
    assert (grid.stride_y, grid.stride_x) == pytest.approx((stride, stride), abs=0.02)
    assert (grid.offset_y, grid.offset_x) == pytest.approx((offset, offset), abs=0.05)


def test_unpadded_layer_gets_scale_and_shift() -> None:
    # 32 px -> 15 cells centred at 2j + 1; a resize would spread them at 32/15 (j + 0.5) - 0.5.
    net = _stack((3, 2, 0))
    grid = cam_grid(net, net[-1], (32, 32), channels=2)
    assert grid.resize_y == pytest.approx(32 / 15)
    low = np.zeros((1, 15, 15), dtype=np.float32)
    low[0, 11, 3] = 1.0
    aligned = align_to_receptive_fields(scale_cam_image(low, (32, 32)), grid)
    assert np.allclose(np.unravel_index(aligned[0].argmax(), (32, 32)), (2 * 11 + 1, 2 * 3 + 1), atol=0.5)


def test_max_pooling_ties_do_not_bias_the_probe() -> None:
    # A max pool's gradient on a constant input would all go to one corner of each window.
    net = nn.Sequential(nn.Conv2d(1, 2, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Conv2d(2, 2, 3, 2, 1))
    grid = cam_grid(net, net[-1], (32, 32), channels=1)
    assert (grid.offset_y, grid.offset_x) == pytest.approx((0.0, 0.0), abs=0.05)


@pytest.mark.parametrize("name", list_models())
def test_registered_cell_offsets_match_the_measurement(name) -> None:
    model = create_model(name, pretrained=False).eval()
    config = model.brainxai_config
    size = config.preprocess.img_size
    stated = cam_grid(
        model, get_target_layer(model), (size, size), config.preprocess.channels, map_size=_map_size(model)
    )
    # Without map_size the grid is measured by the probe, whatever the config says.
    measured = cam_grid(model, get_target_layer(model), (size, size), config.preprocess.channels)
    assert config.cam_cell_offset is not None
    for a, b in (
        (stated.stride_y, measured.stride_y),
        (stated.offset_y, measured.offset_y),
        (stated.offset_x, measured.offset_x),
    ):
        assert a == pytest.approx(b, abs=0.05)


def _map_size(model: nn.Module) -> tuple[int, int]:
    store = {}
    handle = get_target_layer(model).register_forward_hook(lambda _m, _i, out: store.__setitem__("shape", out.shape))
    p = model.brainxai_config.preprocess
    with torch.no_grad():
        model(torch.zeros(1, p.channels, p.img_size, p.img_size))
    handle.remove()
    return tuple(store["shape"][-2:])


@pytest.mark.parametrize("name", ["efficientnet-lite0", "resnet18"])
def test_registered_cnns_centre_cells_on_stride_multiples(name) -> None:
    model = create_model(name, pretrained=False).eval()
    grid = cam_grid(model, get_target_layer(model), (224, 224), map_size=(7, 7))
    assert (grid.stride_y, grid.stride_x, grid.offset_y, grid.offset_x) == (32.0, 32.0, 0.0, 0.0)
    # ... so a plain resize draws them 15.5 px down and to the right.
    (ay, by), (ax, bx) = grid.resize_to_receptive()
    assert (ay, ax, by, bx) == (1.0, 1.0, 15.5, 15.5)


@pytest.mark.parametrize(("offset", "cell"), [(0.0, (2, 5)), (3.0, (4, 1)), (7.5, (3, 3))])
def test_aligned_peak_sits_on_the_cell_centre(offset, cell) -> None:
    low = np.zeros((1, 7, 7), dtype=np.float32)
    low[0, cell[0], cell[1]] = 1.0
    resized = scale_cam_image(low, (224, 224))  # the library's own upsampling
    peak = np.unravel_index(resized[0].argmax(), resized[0].shape)
    assert np.allclose(peak, np.array(cell) * 32 + 15.5, atol=0.5)  # where the library draws it
    aligned = align_to_receptive_fields(resized, CamGrid(32.0, 32.0, offset, offset, 32.0, 32.0))
    peak = np.unravel_index(aligned[0].argmax(), aligned[0].shape)
    assert np.allclose(peak, np.array(cell) * 32 + offset, atol=0.5)
    assert aligned.min() == pytest.approx(0.0) and aligned.max() == pytest.approx(1.0)


def test_resize_convention_needs_no_shift() -> None:
    maps = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    assert align_to_receptive_fields(maps, CamGrid(4.0, 4.0, 1.5, 1.5, 4.0, 4.0)) is maps


def test_explainer_applies_the_alignment_and_can_leave_it_off() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", pretrained=False).eval()
    x = torch.randn(2, 3, 224, 224)
    raw = GradCamExplainer(model, align=False).explain(x)
    aligned = GradCamExplainer(model).explain(x)
    grid = cam_grid(model, get_target_layer(model), (224, 224))
    expected = align_to_receptive_fields(np.stack([e.relevance for e in raw]), grid)
    for e, ref in zip(aligned, expected, strict=True):
        np.testing.assert_allclose(e.relevance, ref, atol=1e-6)
    assert not np.allclose(raw[0].relevance, aligned[0].relevance)
