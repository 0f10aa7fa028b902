"""The four views, the 'no tumour' rule and mapping maps back to the scan."""

from __future__ import annotations

import numpy as np
import pytest

from brainxai.explain.views import (
    BORDER_COLOUR,
    heatmap_image,
    mask_image,
    normalise_relevance,
    outline_image,
    overlay_image,
    relevance_to_original,
    render_views,
)


@pytest.fixture()
def scan() -> np.ndarray:
    yy, xx = np.mgrid[:120, :100]
    img = np.zeros((120, 100), np.uint8)
    img[((xx - 50) / 40.0) ** 2 + ((yy - 60) / 50.0) ** 2 <= 1] = 100
    return img


@pytest.fixture()
def relevance() -> np.ndarray:
    yy, xx = np.mgrid[:120, :100]
    return np.exp(-((xx - 40) ** 2 + (yy - 70) ** 2) / 50.0).astype(np.float32)


def test_relevance_to_original_places_the_map_in_the_box() -> None:
    rel = np.ones((8, 8), np.float32)
    out = relevance_to_original(rel, (10, 20, 30, 60), (100, 50))
    assert out.shape == (100, 50) and out.dtype == np.float32
    assert out[20:60, 10:30].min() == 1.0
    assert out.sum() == 20 * 40
    with pytest.raises(ValueError):
        relevance_to_original(rel, (10, 20, 60, 60), (100, 50))


def test_relevance_to_original_keeps_positions() -> None:
    rel = np.zeros((10, 10), np.float32)
    rel[2, 7] = 1.0  # row 2, column 7 of a 10x10 map of a 40x20 (w x h) crop at (5, 5)
    out = relevance_to_original(rel, (5, 5, 45, 25), (40, 60))
    y, x = np.unravel_index(out.argmax(), out.shape)
    assert abs(x - (5 + 7.5 * 4 - 0.5)) <= 2 and abs(y - (5 + 2.5 * 2 - 0.5)) <= 1


def test_normalise_ignores_negative_and_outliers() -> None:
    r = np.array([[-5.0, 0.0, 1.0, 2.0, 1000.0]])
    n = normalise_relevance(r, percentile=50)
    assert n.min() == 0 and n.max() == 1 and n[0, 0] == 0 and n[0, 3] == 1.0


def test_heatmap_is_warm_and_black_without_relevance(relevance) -> None:
    heat = heatmap_image(relevance)
    assert heat.shape == (120, 100, 3) and heat.dtype == np.uint8
    peak = heat[70, 40]
    assert peak[0] >= peak[1] >= peak[2] and peak[0] > 200  # red >= green >= blue
    assert (heat[0, 0] == 0).all()
    assert (heatmap_image(np.zeros((5, 5))) == 0).all()


def test_overlay_opacity(scan, relevance) -> None:
    plain = overlay_image(scan, relevance, alpha=0.0)
    assert (plain == np.repeat(scan[..., None], 3, 2)).all()
    strong = overlay_image(scan, relevance, alpha=1.0)
    assert (strong[70, 40] == heatmap_image(relevance)[70, 40]).all()
    assert (strong[5, 5] == scan[5, 5]).all()  # no relevance: scan unchanged
    with pytest.raises(ValueError):
        overlay_image(scan, relevance, alpha=1.5)


def test_overlay_resizes_the_map(scan) -> None:
    small = np.zeros((12, 10), np.float32)
    small[7, 4] = 1
    assert overlay_image(scan, small).shape == (120, 100, 3)


def test_mask_colours(scan) -> None:
    brain = scan > 0
    region = np.zeros_like(brain)
    region[50:80, 30:60] = True
    img = mask_image(scan, region, brain)
    inside, rest, border, outside = img[65, 45], img[20, 50], img[50, 45], img[2, 2]
    assert inside[2] > inside[0] and inside[2] > inside[1]  # blue
    assert rest[1] > rest[0] and rest[1] > rest[2]  # green
    assert tuple(border) == BORDER_COLOUR  # red border
    assert (outside == 0).all()  # background untouched


def test_outline_draws_only_the_contour(scan) -> None:
    region = np.zeros(scan.shape, bool)
    region[50:80, 30:60] = True
    img = outline_image(scan, region)
    assert img[50, 45, 0] > 200 and img[50, 45, 1] < 100  # red line on the edge
    assert (img[65, 45] == scan[65, 45]).all()  # inside unchanged


def test_render_views_for_a_tumour(scan, relevance) -> None:
    views = render_views(scan, relevance, "glioma")
    assert set(views) == {"heatmap", "overlay", "mask", "outline"}
    assert all(v.shape == (120, 100, 3) and v.dtype == np.uint8 for v in views.values())
    assert views.region_drawn and not views.evidence_for_no_tumour
    assert "Glioma" in views.caption


def test_no_tumour_draws_no_region_unless_asked(scan, relevance) -> None:
    views = render_views(scan, relevance, "notumor")
    assert not views.region_drawn and not views.evidence_for_no_tumour
    assert (views["heatmap"] == 0).all()
    assert (views["outline"] == np.repeat(scan[..., None], 3, 2)).all()
    assert not (views["mask"] == np.array(BORDER_COLOUR)).all(axis=2).any()
    assert "no tumour" in views.caption.lower()

    shown = render_views(scan, relevance, "notumor", show_evidence=True)
    assert shown.evidence_for_no_tumour and shown.region_drawn
    assert "evidence for 'no tumour'" in shown.caption.lower()
    assert shown["heatmap"].max() > 0
    # A banner with white text marks every picture; the tumour views have none.
    plain = render_views(scan, relevance, "glioma")
    for key in shown:
        assert (shown[key][:20] >= 200).all(axis=2).any(), key
    assert not (plain["heatmap"][:20] >= 200).all(axis=2).any()
