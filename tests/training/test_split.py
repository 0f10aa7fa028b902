"""The training split's exclusion of an evaluation set's twins, on a tiny synthetic dataset."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from brainxai.constants import CLASSES
from brainxai.data.dataset import DatasetLayoutError, discover_samples
from brainxai.models import get_model_config
from brainxai.training.split import training_split


def _blobs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(Image.fromarray(rng.integers(0, 255, (8, 8)).astype(np.uint8)).resize((96, 96), Image.BICUBIC))


@pytest.fixture()
def tiny_root(tmp_path):
    root = tmp_path / "Training"
    for k, c in enumerate(CLASSES):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(_blobs(10 * k + i)).save(root / c / f"{i}.png")
    return root


def test_exclusion_leaves_out_exactly_the_twins(tiny_root, tmp_path):
    preprocess = get_model_config("efficientnet-lite0").preprocess
    # The evaluation set: a re-encoded, resized copy of meningioma/3.png and an unrelated image.
    evaluation = tmp_path / "eval" / "images"
    evaluation.mkdir(parents=True)
    Image.fromarray(_blobs(13)).resize((224, 224)).save(evaluation / "copy.jpg", quality=90)
    Image.fromarray(_blobs(999)).save(evaluation / "new.png")
    (tmp_path / "eval" / "boxes.csv").write_text("file,label\nimages/copy.jpg,meningioma\nimages/new.png,glioma\n")

    kw = dict(val_fraction=0.2, seed=0, cache_dir=None, progress=False)
    full = training_split(tiny_root, preprocess, **kw)
    for source in (evaluation, tmp_path / "eval" / "boxes.csv"):
        split = training_split(tiny_root, preprocess, exclude_twins_of=source, **kw)
        assert split.excluded == [tiny_root / "meningioma" / "3.png"]
        assert len(split.labels) == len(full.labels) - 1
        assert np.bincount(split.labels).tolist() == [5, 4, 5, 5]
        # The excluded image is not among the images left, and the fingerprint still names the folder.
        excluded = full.images[full.labels == 1][3]
        assert not any(np.array_equal(excluded, im) for im in split.images)
        assert split.fingerprint == full.fingerprint
        assert len(split.train_idx) + len(split.val_idx) == 19


def test_exclusion_errors_are_clear(tiny_root, tmp_path):
    preprocess = get_model_config("efficientnet-lite0").preprocess
    kw = dict(val_fraction=0.2, seed=0, cache_dir=None, progress=False)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        training_split(tiny_root, preprocess, exclude_twins_of=tmp_path / "nowhere", **kw)
    (tmp_path / "bad.csv").write_text("path,label\nx.png,glioma\n")
    with pytest.raises(ValueError, match="'file' column"):
        training_split(tiny_root, preprocess, exclude_twins_of=tmp_path / "bad.csv", **kw)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        training_split(tiny_root, preprocess, exclude_twins_of=tmp_path / "empty", **kw)
    (tmp_path / "broken.csv").write_text("file\nmissing.png\n")
    with pytest.raises(ValueError, match="missing.png"):
        training_split(tiny_root, preprocess, exclude_twins_of=tmp_path / "broken.csv", **kw)


def test_extra_data_joins_the_training_half_only_and_drops_twins_of_validation(tiny_root, tmp_path):
    preprocess = get_model_config("efficientnet-lite0").preprocess
    kw = dict(val_fraction=0.2, seed=0, cache_dir=None, progress=False)
    base = training_split(tiny_root, preprocess, **kw)
    val_image = base.samples[int(base.val_idx[0])].path
    # Only a no-tumour folder (a partial layout is fine for extra data): two new images and a resized
    # copy of a validation image, which must stay out.
    extra = tmp_path / "extra" / "no_tumor"
    extra.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(_blobs(500 + i)).save(extra / f"new{i}.png")
    Image.open(val_image).resize((200, 200)).save(extra / "copy.jpg", quality=90)

    split = training_split(tiny_root, preprocess, extra_data=(tmp_path / "extra",), **kw)
    assert np.array_equal(split.val_idx, base.val_idx)  # the recipe alone defines the validation split
    assert len(split.train_idx) == len(base.train_idx) + 2
    added = [split.samples[i].path.name for i in split.train_idx[len(base.train_idx) :]]
    assert added == ["new0.png", "new1.png"]
    assert all(split.labels[i] == CLASSES.index("notumor") for i in split.train_idx[len(base.train_idx) :])
    assert split.extra["folders"][str(tmp_path / "extra")] == {"added": 2, "left_out_as_twins": 1, "failed": 0}
    assert split.fingerprint != base.fingerprint and len(split.fingerprint) == 16


def test_a_partial_layout_is_accepted_only_when_asked(tmp_path):
    (tmp_path / "notumor").mkdir()
    Image.fromarray(_blobs(1)).save(tmp_path / "notumor" / "a.png")
    with pytest.raises(DatasetLayoutError, match="no folder for class"):
        discover_samples(tmp_path)
    assert [s.label for s in discover_samples(tmp_path, partial=True)] == [CLASSES.index("notumor")]
    (tmp_path / "notumor" / "a.png").unlink()
    (tmp_path / "notumor").rmdir()
    (tmp_path / "other").mkdir()
    with pytest.raises(DatasetLayoutError):
        discover_samples(tmp_path, partial=True)
