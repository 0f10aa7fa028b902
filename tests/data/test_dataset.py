import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainxai.constants import CLASSES
from brainxai.data.dataset import DatasetLayoutError, MRIDataset, decode_samples, discover_samples
from brainxai.data.preprocess import PreprocessConfig
from brainxai.data.splits import stratified_split
from brainxai.io.raster import ImageReadError, read_raster


def _write(path: Path, arr: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)


def make_dataset(root: Path, names=("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"), n=3) -> Path:
    rng = np.random.default_rng(0)
    for name in names:
        for i in range(n):
            _write(root / name / f"{i}.png", rng.integers(0, 255, (40 + i, 50), dtype=np.uint8))
    return root


def test_folder_aliases_and_order(tmp_path):
    samples = discover_samples(make_dataset(tmp_path))
    assert len(samples) == 12
    assert [s.class_name for s in samples[::3]] == list(CLASSES)


def test_hidden_files_are_skipped(tmp_path):
    root = make_dataset(tmp_path, names=CLASSES, n=2)
    _write(root / "glioma" / ".ipynb_checkpoints" / "0-checkpoint.png", np.zeros((8, 8), np.uint8))
    _write(root / "glioma" / "._0.png", np.zeros((8, 8), np.uint8))
    assert len(discover_samples(root)) == 8


def test_missing_and_empty_class_folders_are_clear_errors(tmp_path):
    root = make_dataset(tmp_path, names=("glioma", "meningioma", "notumor"))
    with pytest.raises(DatasetLayoutError, match="pituitary.*expected DIR/<class>"):
        discover_samples(root)
    (root / "pituitary").mkdir()
    with pytest.raises(DatasetLayoutError, match="holds no images"):
        discover_samples(root)
    with pytest.raises(DatasetLayoutError, match="not found"):
        discover_samples(tmp_path / "nope")


def test_read_raster_modes(tmp_path):
    gray = np.arange(0, 200, dtype=np.uint8).reshape(10, 20)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full((10, 20, 1), 255, np.uint8)], axis=2)
    _write(tmp_path / "l.png", gray)
    _write(tmp_path / "rgb.jpg", rgb)
    _write(tmp_path / "rgba.png", rgba)
    wide = (gray.astype(np.uint16) * 300).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "w16.png")
    assert np.array_equal(read_raster(tmp_path / "l.png"), gray)
    assert np.abs(read_raster(tmp_path / "rgb.jpg").astype(int) - gray).max() <= 6  # JPEG loss
    assert np.array_equal(read_raster(tmp_path / "rgba.png"), gray)
    w16 = read_raster(tmp_path / "w16.png")
    assert w16.dtype == np.uint8 and w16.min() == 0 and w16.max() == 255
    assert np.all(np.diff(w16[0].astype(int)) >= 0)  # order preserved by the rescale


def test_bad_files_skipped_with_one_warning(tmp_path):
    root = make_dataset(tmp_path, names=CLASSES, n=2)
    (root / "glioma" / "broken.jpg").write_bytes(b"not an image at all")
    good = (root / "meningioma" / "0.png").read_bytes()
    (root / "meningioma" / "truncated.png").write_bytes(good[: len(good) // 2])
    samples = discover_samples(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoded = decode_samples(samples, PreprocessConfig(img_size=16, crop=False), progress=False)
    msgs = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(msgs) == 1 and "skipped 2 unreadable" in msgs[0]
    assert "broken.jpg" in msgs[0] and "truncated.png" in msgs[0]
    assert decoded.images.shape == (8, 16, 16)
    assert len(decoded.samples) == 8 and {p.name for p, _ in decoded.failed} == {"broken.jpg", "truncated.png"}
    with pytest.raises(ImageReadError):
        read_raster(root / "glioma" / "broken.jpg")


def test_decode_cache_roundtrip(tmp_path):
    root = make_dataset(tmp_path / "d", names=CLASSES, n=2)
    samples = discover_samples(root)
    cfg = PreprocessConfig(img_size=16, crop=False)
    first = decode_samples(samples, cfg, cache_dir=tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    second = decode_samples(samples, cfg, cache_dir=tmp_path / "cache", progress=False)
    assert np.array_equal(first.images, second.images)
    assert [s.path for s in first.samples] == [s.path for s in second.samples]


def test_a_new_crop_version_does_not_reuse_cached_crops(tmp_path, monkeypatch):
    from brainxai.data import dataset

    root = make_dataset(tmp_path / "d", names=CLASSES, n=1)
    samples = discover_samples(root)
    cfg = PreprocessConfig(img_size=16, crop=True)
    decode_samples(samples, cfg, cache_dir=tmp_path / "cache", progress=False)
    monkeypatch.setattr(dataset, "CROP_VERSION", dataset.CROP_VERSION + 1)
    decode_samples(samples, cfg, cache_dir=tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_stratified_split_is_seeded_and_stratified():
    labels = np.repeat(np.arange(4), [50, 30, 60, 40])
    tr, va = stratified_split(labels, 0.2, seed=3)
    tr2, va2 = stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not set(tr) & set(va) and len(tr) + len(va) == len(labels)
    assert np.bincount(labels[va]).tolist() == [10, 6, 12, 8]
    with pytest.raises(ValueError):
        stratified_split(labels, 1.0)
    with pytest.raises(ValueError):
        stratified_split(labels, -0.1)
    # 0 holds out nothing: a refit on all the data.
    tr0, va0 = stratified_split(labels, 0.0, seed=3)
    assert np.array_equal(tr0, np.arange(len(labels))) and va0.size == 0


def test_dataset_augmentation_depends_on_seed_epoch_index_only():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 16, 16), dtype=np.uint8)
    cfg = PreprocessConfig(img_size=16, channels=1, normalize="unit")
    from brainxai.data.augment import default_augmentation

    ds = MRIDataset(images, np.array([0, 1, 2, 3]), cfg, augment=default_augmentation(), seed=5)
    a = ds[2][0]
    ds[0], ds[1]  # other items drawn in between change nothing
    assert (ds[2][0] == a).all()
    ds.set_epoch(1)
    assert not (ds[2][0] == a).all()
    plain = MRIDataset(images, np.arange(4), cfg)
    x, y = plain[1]
    assert y == 1 and x.shape == (1, 16, 16)
