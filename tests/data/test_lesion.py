from pathlib import Path

import cv2
import numpy as np
import pytest

from brainxai.data.lesion import (
    dilate_mask,
    fill_region,
    inpaint_lesion,
    mirrored_mask,
    read_mask,
    resize_mask,
    transplant_fill,
)


def _slice_with_lesion() -> tuple[np.ndarray, np.ndarray]:
    """A textured head (grey 90 +- noise) with a bright 20x16 lesion left of centre."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :128]
    img = np.zeros((96, 128), np.uint8)
    head = ((xx - 63.5) / 56) ** 2 + ((yy - 47.5) / 42) ** 2 <= 1
    img[head] = rng.integers(80, 100, size=int(head.sum()), dtype=np.uint8)
    mask = np.zeros_like(img, dtype=bool)
    mask[40:56, 30:50] = True
    img[mask] = 230
    return img, mask


def test_dilate_mask_disk_radius():
    mask = np.zeros((21, 21), bool)
    mask[10, 10] = True
    grown = dilate_mask(mask, 3)
    assert grown.dtype == bool and grown.shape == mask.shape
    assert int(grown.sum()) == 29  # pixels with dy^2 + dx^2 <= 9: a disk, not the 7x7 square (49)
    assert np.array_equal(grown, ((np.mgrid[:21, :21] - 10) ** 2).sum(0) <= 9)
    assert not grown[7, 7]  # corners of the square stay out
    assert np.array_equal(dilate_mask(mask, 0), mask)
    with pytest.raises(ValueError):
        dilate_mask(mask, -1)


def test_inpaint_changes_only_the_dilated_mask_and_removes_the_lesion():
    img, mask = _slice_with_lesion()
    out = inpaint_lesion(img, mask, dilate_px=4)
    region = dilate_mask(mask, 4)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(out[~region], img[~region])  # bit-identical outside
    assert np.count_nonzero(out[region] != img[region]) > 0.9 * region.sum()
    # The bright lesion (230) becomes tissue-like (the head is 80..99).
    assert 75 <= float(out[mask].mean()) <= 105
    assert np.array_equal(out, inpaint_lesion(img, mask, dilate_px=4))  # deterministic
    assert np.array_equal(inpaint_lesion(img, np.zeros_like(mask)), img)
    img_before = img.copy()
    inpaint_lesion(img, mask)
    assert np.array_equal(img, img_before)  # input not modified


def _textured_head(size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(60, 140, (size, size)).astype(np.uint8)  # tissue texture everywhere (no background)
    img[:, size // 2 :] += 20  # the right half brighter: the mean shift must match the surroundings
    return img


def test_transplant_moves_the_other_hemispheres_tissue_into_a_lateral_lesion():
    img = _textured_head()
    region = np.zeros(img.shape, bool)
    region[20:36, 44:60] = True  # right side; its left-right reflection (columns 4:20) is lesion-free
    out = transplant_fill(img, region, avoid=region, feather_px=3)
    assert np.array_equal(out[~region], img[~region])
    ring = dilate_mask(region, 3) & ~region
    shift = img[ring].mean() - img[:, ::-1][ring].mean()
    core = np.zeros_like(region)
    core[23:33, 47:57] = True  # deeper than the feather: pure transplant
    expected = np.clip(np.rint(img[:, ::-1].astype(np.float32) + shift), 0, 255)
    assert np.abs(out[core].astype(float) - expected[core]).max() <= 1
    assert 15 < shift < 25  # the left half is 20 darker


def test_transplant_never_copies_the_lesion_and_falls_back_to_telea():
    img = _textured_head()
    lesion = np.zeros(img.shape, bool)
    lesion[8:24, 40:56] = True
    img[lesion] = 250  # a bright lesion
    control = lesion[:, ::-1] & ~lesion  # its mirror, as the in-painting control
    out = fill_region(img, control, avoid=lesion, fill="transplant")
    assert out[control].max() < 200  # tissue from the top-bottom reflection, not the lesion
    assert np.array_equal(out[~control], img[~control])
    everywhere = np.ones(img.shape, bool)
    centre = np.zeros(img.shape, bool)
    centre[24:40, 24:40] = True  # every reflection of a centred square is itself
    assert np.array_equal(transplant_fill(img, centre, avoid=centre), inpaint_lesion(img, centre, dilate_px=0))
    assert np.array_equal(transplant_fill(img, ~everywhere, avoid=centre), img)
    with pytest.raises(ValueError, match="unknown fill"):
        fill_region(img, centre, centre, fill="blur")


def test_inpaint_rejects_bad_inputs():
    img, mask = _slice_with_lesion()
    with pytest.raises(ValueError, match="shape"):
        inpaint_lesion(img, mask[:, :-1])
    with pytest.raises(ValueError, match="uint8"):
        inpaint_lesion(img.astype(np.float32), mask)
    with pytest.raises(ValueError, match="2-D"):
        inpaint_lesion(np.dstack([img, img, img]), mask)


def test_mirrored_mask():
    mask = np.zeros((4, 6), bool)
    mask[1, 0:2] = True
    mirrored = mirrored_mask(mask)
    assert mirrored.dtype == bool
    assert np.array_equal(np.nonzero(mirrored)[1], [4, 5])
    assert np.array_equal(mirrored_mask(mirrored), mask)
    assert mirrored.sum() == mask.sum()


def test_resize_mask_stays_on_the_image_grid():
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = 255
    big = resize_mask(mask, (8, 8))
    assert big.shape == (8, 8) and big.dtype == bool
    assert big[:4, :4].all() and not big[4:, :].any() and not big[:, 4:].any()
    small = resize_mask(np.kron(mask, np.ones((3, 3), np.uint8)), (4, 4))  # 12 -> 4: back to the block
    assert np.array_equal(small, mask != 0)
    assert np.array_equal(resize_mask(mask, (4, 4)), mask != 0)


def test_read_mask_roundtrip_and_errors(tmp_path: Path):
    mask = np.zeros((5, 7), np.uint8)
    mask[1:3, 2:5] = 255
    ok = tmp_path / "m.png"
    cv2.imwrite(str(ok), mask)
    assert np.array_equal(read_mask(ok), mask != 0)
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_mask(missing)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="garbage.png"):
        read_mask(garbage)
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.arange(35, dtype=np.uint8).reshape(5, 7))
    with pytest.raises(ValueError, match="grey.png.*not binary"):
        read_mask(grey)
    colour = tmp_path / "colour.png"
    cv2.imwrite(str(colour), np.dstack([mask, mask, mask]))
    with pytest.raises(ValueError, match="colour.png.*single-channel"):
        read_mask(colour)


def test_real_mask_inpaint_touches_only_the_dilated_lesion(shared_data: Path):
    root = shared_data / "figshare-masks-dev"
    if not (root / "slices.csv").is_file():
        pytest.skip("figshare-masks-dev not available")
    img = cv2.imread(str(root / "images" / "glioma_1856.jpg"), cv2.IMREAD_GRAYSCALE)
    mask = read_mask(root / "masks" / "glioma_1856.png")
    out = inpaint_lesion(img, mask)
    region = dilate_mask(mask, 5)
    assert np.array_equal(out[~region], img[~region])
    assert np.abs(out[mask].astype(int) - img[mask]).mean() > 5
