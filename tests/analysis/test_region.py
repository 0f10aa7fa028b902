"""Head mask and relevance region on synthetic and real scans."""

from __future__ import annotations

import numpy as np
import pytest

from brainxai.analysis import brain_mask, relevance_region
from brainxai.analysis.region import fill_holes
from brainxai.io import read_raster


def synthetic_head(size: int = 200) -> np.ndarray:
    """A bright elliptic 'head' with a dark ventricle hole and noisy dark background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    img = rng.integers(0, 12, (size, size)).astype(np.float32)
    head = ((xx - size / 2) / (0.35 * size)) ** 2 + ((yy - size / 2) / (0.42 * size)) ** 2 <= 1
    img[head] = 110
    hole = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) <= (0.06 * size) ** 2
    img[hole] = 5  # as dark as the background, but inside the head
    return img.astype(np.uint8), head


def test_brain_mask_finds_the_head_and_fills_holes() -> None:
    img, head = synthetic_head()
    mask = brain_mask(img)
    assert mask.dtype == bool and mask.shape == img.shape
    iou = (mask & head).sum() / (mask | head).sum()
    assert iou > 0.95
    assert mask[100, 100]  # the dark hole is inside the head
    assert not mask[2, 2]


def test_brain_mask_keeps_only_the_largest_component() -> None:
    img, _ = synthetic_head()
    img[5:15, 5:15] = 200  # a bright label in the corner
    mask = brain_mask(img)
    assert not mask[10, 10]


def test_brain_mask_of_an_empty_image() -> None:
    assert not brain_mask(np.zeros((50, 50), np.uint8)).any()
    assert not brain_mask(np.full((50, 50), 80, np.uint8)).any()
    with pytest.raises(ValueError):
        brain_mask(np.zeros((5, 5, 3), np.uint8))


def test_brain_mask_on_real_scans(samples_dir) -> None:
    for name in ("glioma", "notumor"):
        img = read_raster(samples_dir / f"{name}.jpg")
        mask = brain_mask(img)
        share = mask.mean()
        assert 0.2 < share < 0.95, (name, share)
        # One connected piece without holes.
        assert (fill_holes(mask) == mask).all()
        # The head is brighter than what is left out.
        assert img[mask].mean() > 3 * img[~mask].mean()


def test_fill_holes() -> None:
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False
    assert fill_holes(ring)[4, 4]
    edge = np.zeros((5, 5), bool)
    edge[0, :] = True  # touches the border: nothing to fill
    assert (fill_holes(edge) == edge).all()


def blob_map(size: int = 100, centres=((30, 60, 1.0),), sigma: float = 5.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return sum(a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) for x, y, a in centres).astype(np.float32)


def test_region_covers_the_peak() -> None:
    rel = blob_map()
    region = relevance_region(rel)
    assert region[60, 30] and not region[10, 90]
    ys, xs = np.nonzero(region)
    assert abs(xs.mean() - 30) < 1 and abs(ys.mean() - 60) < 1


def test_region_drops_weak_components_and_keeps_strong_ones() -> None:
    weak = blob_map(centres=((30, 60, 1.0), (75, 20, 0.55)))
    region = relevance_region(weak, quantile=0.5, min_fraction=0.5, keep_fraction=0.5)
    assert region[60, 30] and not region[20, 75]
    twin = blob_map(centres=((30, 60, 1.0), (75, 20, 0.95)))
    region = relevance_region(twin, quantile=0.5, min_fraction=0.5, keep_fraction=0.5)
    assert region[60, 30] and region[20, 75]


def test_region_respects_the_brain_mask_and_the_area_cap() -> None:
    rel = blob_map(sigma=30)  # very wide blob
    brain = np.zeros((100, 100), bool)
    brain[:, 50:] = True
    region = relevance_region(rel, brain, quantile=0.9, min_fraction=0.0)
    assert not (region & ~brain).any()
    assert region.sum() <= 0.1 * brain.sum() + 50  # quantile caps the area (connected-component slack)


def test_region_of_maps_without_evidence_is_empty() -> None:
    assert not relevance_region(np.zeros((40, 40))).any()
    assert not relevance_region(-blob_map(40, ((20, 20, 1.0),))).any()
    brain = np.zeros((100, 100), bool)
    brain[:, 80:] = True
    assert not relevance_region(blob_map(sigma=3), brain, smooth=0).any()  # evidence only outside the head
    with pytest.raises(ValueError):
        relevance_region(np.zeros((10, 10)), np.zeros((5, 5), bool))
