"""Lesion masks for Kaggle-style training images from BRISC twins and mirrored figshare slices (synthetic sets)."""

import csv
from typing import Any

import cv2
import numpy as np
import pytest

from brainxai.data.augment import RandomAffine, RandomHorizontalFlip, default_augmentation
from brainxai.data.dataset import discover_samples
from brainxai.data.lesion import dilate_mask, inpaint_regions, resize_mask
from brainxai.data.masks import (
    MaskedMRIDataset,
    load_lesion_masks,
    prepared_masks,
)
from brainxai.data.preprocess import PreprocessConfig, prepare

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def _slice(seed: int, size: int = 96):
    """A head with a textured interior (so pHash and correlation tell slices apart) and a bright lesion."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    head = ((xx - 50) / 36) ** 2 + ((yy - 48) / 42) ** 2 <= 1
    texture = cv2.GaussianBlur(rng.uniform(40, 140, (size, size)).astype(np.float32), (0, 0), 3)
    img = np.where(head, texture, 0).astype(np.uint8)
    cy, cx = rng.integers(30, 60), rng.integers(25, 45)  # off-centre (left): a flip moves it
    lesion = ((xx - cx) / 9) ** 2 + ((yy - cy) / 7) ** 2 <= 1
    img[lesion] = 230
    return img, lesion


def _up(mask, size):
    return cv2.resize(mask.astype(np.uint8) * 255, (size, size), interpolation=cv2.INTER_NEAREST)


@pytest.fixture()
def mask_sets(tmp_path):
    """Training/ (4 classes x 3), a BRISC-like set (256 px twins of glioma 0, 1) and a figshare-like set
    (512 px mirrored twins of meningioma 0 and glioma 1, plus an unrelated slice); one BRISC twin is wrong."""
    train, brisc, fig = tmp_path / "Training", tmp_path / "brisc", tmp_path / "fig"
    truth = {}
    for c, cls in enumerate(CLASSES):
        (train / cls).mkdir(parents=True)
        for i in range(3):
            img, lesion = _slice(10 * c + i)
            cv2.imwrite(str(train / cls / f"{cls}_{i}.png"), img)
            truth[f"{cls}/{cls}_{i}.png"] = lesion
    for d in (brisc / "images", brisc / "masks", fig / "images", fig / "masks"):
        d.mkdir(parents=True)
    rows = []
    for i, twin in ((0, "glioma/glioma_0.png"), (1, "glioma/glioma_1.png"), (2, "glioma/glioma_2.png")):
        src = truth[twin] if i < 2 else truth["glioma/glioma_0.png"]
        img = cv2.imread(str(train / twin), 0) if i < 2 else _slice(99)[0]  # i == 2: not the named image
        cv2.imwrite(str(brisc / "images" / f"b{i}.jpg"), cv2.resize(img, (256, 256)), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(brisc / "masks" / f"b{i}.png"), _up(src, 256))
        rows.append([f"images/b{i}.jpg", f"masks/b{i}.png", "glioma", "axial", "train", 256, 256, f"Training/{twin}"])
    with open(brisc / "slices.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["file", "mask", "label", "plane", "brisc_split", "width", "height", "kaggle_twin"]])
        csv.writer(fh).writerows(rows)
    frows = []
    for name, key in (("meningioma_7", "meningioma/meningioma_0.png"), ("glioma_8", "glioma/glioma_1.png")):
        flipped = cv2.imread(str(train / key), 0)[:, ::-1]
        cv2.imwrite(str(fig / "images" / f"{name}.png"), cv2.resize(flipped, (512, 512)))
        cv2.imwrite(str(fig / "masks" / f"{name}.png"), _up(truth[key][:, ::-1], 512))
        frows.append([f"images/{name}.png", f"masks/{name}.png", name.split("_")[0], "P1", 512, 512, 0, 0, 1, 1])
    other, other_mask = _slice(77)
    cv2.imwrite(str(fig / "images" / "pituitary_9.png"), cv2.resize(other, (512, 512)))
    cv2.imwrite(str(fig / "masks" / "pituitary_9.png"), _up(other_mask, 512))
    frows.append(["images/pituitary_9.png", "masks/pituitary_9.png", "pituitary", "P2", 512, 512, 0, 0, 1, 1])
    with open(fig / "slices.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["file", "mask", "label", "patient", "width", "height", "x0", "y0", "x1", "y1"]])
        csv.writer(fh).writerows(frows)
    return train, brisc, fig, truth


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_masks_come_from_brisc_twins_and_mirrored_figshare_slices_aligned(mask_sets, tmp_path):
    train, brisc, fig, truth = mask_sets
    found = load_lesion_masks(train, brisc, fig, cache_dir=tmp_path / "cache")
    assert set(found.masks) == {"glioma/glioma_0.png", "glioma/glioma_1.png", "meningioma/meningioma_0.png"}
    assert found.source == {
        "glioma/glioma_0.png": "brisc",
        "glioma/glioma_1.png": "brisc",  # in both sets: BRISC's mask is kept, the two are compared
        "meningioma/meningioma_0.png": "figshare",  # mirrored back: the lesion is on the left again
    }
    assert found.rejected["brisc"] == 1  # the twin that is not the named image fails the correlation check
    assert found.agreement["n"] == 1 and found.agreement["median_dice"] > 0.9
    for key, mask in found.masks.items():
        assert mask.shape == (96, 96) and _dice(mask, truth[key]) > 0.9
    assert found.counts() == {"brisc": {"glioma": 2}, "figshare": {"meningioma": 1}}
    again = load_lesion_masks(train, brisc, fig, cache_dir=tmp_path / "cache")  # from the cache
    assert again.source == found.source and all(np.array_equal(again.masks[k], found.masks[k]) for k in found.masks)


def test_prepared_masks_follow_the_head_crop(mask_sets):
    train, brisc, _, truth = mask_sets
    found = load_lesion_masks(train, brisc)
    cfg = PreprocessConfig(img_size=48, channels=1, normalize="unit", crop=True)
    samples = discover_samples(train)
    masks, has = prepared_masks(samples, train, found.masks, cfg)
    assert has.sum() == 2 and masks.shape == (12, 48, 48)
    for i in np.flatnonzero(has):
        prepared = prepare(cv2.imread(str(samples[i].path), 0), cfg)
        assert _dice(prepared >= 200, masks[i]) > 0.8  # the lesion (value 230) is where the mask is


def test_resize_mask_keeps_the_centre():
    m = np.zeros((10, 10), bool)
    m[2:6, 2:6] = True
    ys, xs = np.nonzero(resize_mask(m, (20, 20)))
    assert ys.mean() == pytest.approx(7.5) and xs.mean() == pytest.approx(7.5)  # (3.5 + 0.5) * 2 - 0.5


def test_masked_dataset_moves_the_mask_with_the_image_and_inpaints_inside_the_dilated_mask():
    cfg = PreprocessConfig(img_size=64, channels=1, normalize="unit", crop=False)
    img = np.full((2, 64, 64), 60, np.uint8)
    masks = np.zeros((2, 64, 64), bool)
    img[0, 10:26, 40:56] = 250
    masks[0, 10:26, 40:56] = True  # item 0: a planted square; item 1: no mask
    aug = default_augmentation(hflip=True)
    ds = MaskedMRIDataset(img, np.array([0, 2]), cfg, masks, np.array([True, False]), augment=aug, seed=3)
    for epoch in range(3):
        ds.set_epoch(epoch)
        x, y, m, has, inpainted = ds[0]
        assert y == 0 and has == 1.0 and inpainted == 0.0 and m.shape == (1, 64, 64)
        bright = x[0].numpy() > 200 / 255
        assert (bright & (m[0].numpy() > 0)).sum() / max((bright | (m[0].numpy() > 0)).sum(), 1) > 0.85
        assert ds[1][2].sum() == 0 and ds[1][3] == 0.0
        plain = aug(img[0], np.random.default_rng((3, epoch, 0)))  # the same draws as MRIDataset's
        assert np.allclose(x[0].numpy(), plain / 255.0)
    filling = MaskedMRIDataset(img, np.array([0, 2]), cfg, masks, np.array([True, False]), inpaint_p=1.0)
    x, _, _, _, inpainted = filling[0]
    changed = np.abs(x[0].numpy() * 255 - img[0]) > 0.5
    assert inpainted == 1.0 and changed.any() and not (changed & ~dilate_mask(masks[0], 5)).any()
    assert x[0].numpy().max() < 200 / 255  # the bright lesion is gone


@pytest.mark.parametrize("fill", ["telea", "transplant"])
def test_control_inpainting_fills_only_the_mirrored_area_and_keeps_the_label(fill: str):
    cfg = PreprocessConfig(img_size=64, channels=1, normalize="unit", crop=False)
    img = np.full((1, 64, 64), 60, np.uint8)
    img[0, 20:40, 20:40] = 120  # a textured head: the fill must have something to change
    img[0, ::2] += 10
    masks = np.zeros((1, 64, 64), bool)
    img[0, 10:26, 40:56] = 250
    masks[0, 10:26, 40:56] = True
    ds = MaskedMRIDataset(img, np.array([0]), cfg, masks, np.array([True]), control_p=1.0, fill=fill)
    x, y, m, has, inpainted = ds[0]
    assert y == 0 and inpainted == 0.0 and has == 1.0
    _, control, _ = inpaint_regions(masks[0], 5)
    changed = np.abs(x[0].numpy() * 255 - img[0]) > 0.5
    assert changed.any() and not (changed & ~control).any()  # only the mirrored area, never the lesion
    assert x[0].numpy()[10:26, 40:56].min() > 240 / 255  # the lesion is still there
    # One draw decides: a share of images gets the lesion filled, another the control, the rest nothing.
    n = 200

    def copies(**kw: Any) -> MaskedMRIDataset:
        return MaskedMRIDataset(
            np.repeat(img, n, 0), np.zeros(n, int), cfg, np.repeat(masks, n, 0), np.ones(n, bool), **kw
        )

    many = copies(inpaint_p=0.3, control_p=0.3, fill=fill)
    items = [many[i] for i in range(n)]
    lesion = sum(int(item[4]) for item in items)
    controls = [bool((np.abs(item[0][0].numpy() * 255 - img[0]) > 0.5)[control].any()) for item in items]
    assert 40 <= lesion <= 80 and 40 <= sum(controls) <= 80
    assert not any(c and item[4] for c, item in zip(controls, items))  # never both on one image
    only_label_1 = copies(inpaint_p=0.5, control_p=0.5, inpaint_labels=[1])  # all would be filled, but label 0
    assert all(np.allclose(only_label_1[i][0][0].numpy() * 255, img[0], atol=0.5) for i in range(5))
    with pytest.raises(ValueError, match="sum to <= 1"):
        MaskedMRIDataset(img, np.array([0]), cfg, masks, np.array([True]), inpaint_p=0.6, control_p=0.6)


def test_geometric_transforms_carry_the_mask_through_the_dataset_exactly():
    cfg = PreprocessConfig(img_size=32, channels=1, normalize="unit", crop=False)
    img = np.zeros((1, 32, 32), np.uint8)
    img[0, 4:12, 20:28] = 255
    ds = MaskedMRIDataset(img, np.array([1]), cfg, img > 0, np.array([True]), augment=RandomHorizontalFlip(p=1.0))
    x, _, m, _, _ = ds[0]
    assert np.array_equal(m[0].numpy() > 0, x[0].numpy() > 0.5)
    ds = MaskedMRIDataset(img, np.array([1]), cfg, img > 0, np.array([True]), augment=RandomAffine(max_rotation=0))
    x, _, m, _, _ = ds[0]
    differ = (m[0].numpy() > 0) != (x[0].numpy() >= 0.5)  # nearest vs linear: at most the square's rim differs
    assert differ.sum() <= 0.25 * (x[0].numpy() >= 0.5).sum() and (m[0].numpy() > 0).sum() > 30
