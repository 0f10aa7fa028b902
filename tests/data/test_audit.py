import json
import shutil

import numpy as np
from PIL import Image

from brainxai.constants import CLASSES
from brainxai.data.audit import (
    audit_dataset,
    hamming_matrix,
    near_pairs,
    nearest_training_images,
    read_subset,
    size_points,
    write_audit,
)
from brainxai.evaluation.plots import save_figure, size_scatter_figure


def _blobs(seed: int) -> np.ndarray:
    """A random smooth image: distinct seeds give perceptually distinct images."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((96, 96), Image.BICUBIC))


def test_hamming_matrix_matches_naive():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 64)) > 0.5, rng.random((7, 64)) > 0.5
    naive = np.array([[np.sum(x != y) for y in b] for x in a])
    assert np.array_equal(hamming_matrix(a, b), naive)
    pairs = near_pairs(a, None, 64)
    assert len(pairs) == 10 and all(i < j for i, j, _ in pairs)


def test_audit_finds_planted_duplicates(tmp_path):
    root = tmp_path / "ds"
    seed = 0
    for split in ("Training", "Testing"):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                seed += 1
                Image.fromarray(_blobs(seed)).save(root / split / c / f"{i}.png")
    # Plant: a re-encoded (JPEG) copy inside Training, a test image copied from Training, and a
    # conflicting label (same image filed under two classes).
    Image.open(root / "Training/glioma/0.png").convert("L").save(root / "Training/glioma/dup.jpg", quality=90)
    shutil.copy(root / "Training/meningioma/1.png", root / "Testing/meningioma/twin.png")
    shutil.copy(root / "Training/pituitary/2.png", root / "Testing/notumor/conflict.png")

    report = audit_dataset(root, max_distance=4, progress=False)
    within = {(p["a"], p["b"]) for p in report["pairs_within_train"]}
    assert ("Training/glioma/0.png", "Training/glioma/dup.jpg") in within
    assert report["train_near_duplicate_pairs"] == 1
    cross = {(p["a"], p["b"]) for p in report["pairs_test_train"]}
    assert cross == {
        ("Testing/meningioma/twin.png", "Training/meningioma/1.png"),
        ("Testing/notumor/conflict.png", "Training/pituitary/2.png"),
    }
    assert report["test_with_train_twin"] == 2 and report["n_test"] == 14
    assert [(p["label_a"], p["label_b"]) for p in report["label_conflicts"]] == [("notumor", "pituitary")]
    assert "Testing/meningioma/twin.png" not in report["dedup_test"] and len(report["dedup_test"]) == 12
    assert report["image_sizes"] == {"96x96": 27}

    paths = write_audit(report, tmp_path / "out" / "audit.json")
    saved = json.loads(paths["json"].read_text())
    assert saved["n_dedup_test"] == 12 and "_sizes" not in saved
    assert saved["size_plot"] == paths["size_plot"].name == "audit_sizes.png"
    save_figure(size_scatter_figure(*size_points(report)), str(paths["size_plot"]))  # as `brainxai audit-data` does
    assert read_subset(paths["dedup_list"]) == report["dedup_test"]
    assert read_subset(paths["json"]) == report["dedup_test"]
    assert paths["size_plot"].stat().st_size > 1000


def test_nearest_training_images(tmp_path):
    train = tmp_path / "Training"
    for k, c in enumerate(CLASSES):
        (train / c).mkdir(parents=True)
        Image.fromarray(_blobs(100 + k)).save(train / c / "a.png")
    # A resized JPEG copy of a training image (a re-export), an unrelated image and a broken file.
    Image.fromarray(_blobs(101)).resize((224, 224)).save(tmp_path / "copy.jpg", quality=90)
    Image.fromarray(_blobs(999)).save(tmp_path / "new.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")

    copy, new, broken = nearest_training_images(
        [tmp_path / "copy.jpg", tmp_path / "new.png", tmp_path / "broken.png"], train, progress=False
    )
    assert copy.path == train / CLASSES[1] / "a.png" and copy.class_name == CLASSES[1] and copy.distance <= 2
    assert new.distance > 10
    assert broken is None

    # A file the model was not trained on is no twin: the copy's nearest is then another image, far away.
    (again,) = nearest_training_images([tmp_path / "copy.jpg"], train, progress=False, exclude=[f"{CLASSES[1]}/a.png"])
    assert again.path != train / CLASSES[1] / "a.png" and again.distance > 10
