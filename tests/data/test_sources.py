import random
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainxai.constants import CLASSES
from brainxai.data.audit import audit_dataset, nearest_training_images, twins_of
from brainxai.data.dataset import discover_samples
from brainxai.data.sources import (
    SOURCES,
    UNKNOWN,
    SourceLabel,
    derive_sources,
    describe_fold,
    loso_excluded,
    loso_split,
    loso_training_paths,
    read_sources_csv,
    source_rule,
    write_sources_csv,
)

_TOKEN = {"glioma": "gl", "meningioma": "me", "notumor": "no", "pituitary": "pi"}


def _blobs(seed: int, size: int = 96) -> np.ndarray:
    """A random smooth image: distinct seeds give perceptually distinct images, and none is mirror-symmetric."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))


def _save(path: Path, pixels: np.ndarray, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(pixels)
    (img.convert("RGB") if mode == "RGB" else img).save(path, quality=95)


@pytest.fixture()
def kaggle_like(tmp_path: Path) -> Path:
    """A tiny Kaggle-named dataset: L and RGB tumour JPEGs, no-tumour numbers on both sides of the thresholds.

    Planted: Testing/glioma/Te-gl_0050.jpg is the mirror image (stored L) of Training/glioma/Tr-glTr_0001.jpg
    (RGB), as figshare slices sit mirrored beside their SARTAJ copies; Training/glioma/scan.jpg has no
    Kaggle name.
    """
    root = tmp_path / "ds"
    seed = 0
    numbers = {
        ("Training", "notumor"): [0, 394, 395, 900],
        ("Testing", "notumor"): [3, 104, 105, 200],
    }
    for split, prefix in (("Training", "Tr"), ("Testing", "Te")):
        for c in CLASSES:
            for n in numbers.get((split, c), [1, 2, 60, 61]):
                seed += 1
                tr = "Tr" if n < 10 else ""
                mode = "RGB" if c == "notumor" or n < 10 else "L"  # tumour: low numbers RGB (SARTAJ), high L
                _save(root / split / c / f"{prefix}-{_TOKEN[c]}{tr}_{n:04d}.jpg", _blobs(seed), mode)
    src = np.asarray(Image.open(root / "Training/glioma/Tr-glTr_0001.jpg").convert("L"))
    _save(root / "Testing/glioma/Te-gl_0050.jpg", np.ascontiguousarray(src[:, ::-1]), "L")
    _save(root / "Training/glioma/scan.jpg", _blobs(999), "L")
    return root


def test_source_rule_follows_the_kaggle_conventions():
    assert source_rule("Training", "glioma", "Tr-gl_1200.jpg", "L")[0] == "figshare"
    assert source_rule("Training", "glioma", "Tr-glTr_0003.jpg", "RGB")[0] == "sartaj"
    assert source_rule("Testing", "pituitary", "Te-pi_0099.jpg", "RGB")[0] == "sartaj"
    assert source_rule("Training", "notumor", "Tr-no_0394.jpg", "RGB")[0] == "sartaj"
    assert source_rule("Training", "notumor", "Tr-no_0395.jpg", "L")[0] == "br35h"
    assert source_rule("Testing", "notumor", "Te-no_0104.jpg", "RGB")[0] == "sartaj"
    assert source_rule("Testing", "notumor", "Te-no_0105.jpg", "RGB")[0] == "br35h"
    assert source_rule("Training", "glioma", "brain_12.jpg", "L") == (
        UNKNOWN,
        "file name not in the Kaggle Tr-xx_NNNN/Te-xx_NNNN form",
    )
    assert source_rule("Testing", "glioma", "Tr-gl_0001.jpg", "L")[0] == UNKNOWN  # split token disagrees
    assert source_rule("Training", "meningioma", "Tr-gl_0001.jpg", "L")[0] == UNKNOWN  # class token disagrees
    assert source_rule("Training", "glioma", "Tr-gl_0001.jpg", "CMYK")[0] == UNKNOWN


def test_derive_sources_is_reproducible_and_groups_mirror_twins(kaggle_like, tmp_path):
    labels = derive_sources(kaggle_like, progress=False)
    assert labels == derive_sources(kaggle_like, progress=False)
    cache = tmp_path / "cache"
    assert derive_sources(kaggle_like, progress=False, cache_dir=cache) == labels
    assert list(cache.glob("phash-*.npz"))
    assert derive_sources(kaggle_like, progress=False, cache_dir=cache) == labels  # from the cache

    by = {lab.path: lab for lab in labels}
    assert len(labels) == 34 and [lab.path for lab in labels] == sorted(by)
    assert by["Training/glioma/Tr-gl_0060.jpg"].source == "figshare"
    assert by["Training/glioma/Tr-glTr_0001.jpg"].source == "sartaj"
    assert [by[f"Training/notumor/Tr-no{'Tr' if n < 10 else ''}_{n:04d}.jpg"].source for n in (0, 394, 395, 900)] == [
        "sartaj",
        "sartaj",
        "br35h",
        "br35h",
    ]
    assert [by[f"Testing/notumor/Te-no{'Tr' if n < 10 else ''}_{n:04d}.jpg"].source for n in (3, 104, 105, 200)] == [
        "sartaj",
        "sartaj",
        "br35h",
        "br35h",
    ]
    assert by["Training/glioma/scan.jpg"].source == UNKNOWN and "file name" in by["Training/glioma/scan.jpg"].rule
    # The mirrored copy shares its original's content group, across split and source; nothing else does.
    twin, original = by["Testing/glioma/Te-gl_0050.jpg"], by["Training/glioma/Tr-glTr_0001.jpg"]
    assert twin.content == original.content and (twin.source, original.source) == ("figshare", "sartaj")
    groups = defaultdict(list)
    for lab in labels:
        groups[lab.content].append(lab.path)
    assert sorted(len(g) for g in groups.values()) == [1] * 32 + [2]

    csv_path = write_sources_csv(labels, tmp_path / "s" / "sources.csv")
    assert read_sources_csv(csv_path) == labels
    assert csv_path.read_text().splitlines()[0] == "path,split,label,source,rule,content"


def test_loso_split_keeps_content_groups_on_one_side(kaggle_like):
    labels = derive_sources(kaggle_like, progress=False)
    by = {lab.path: lab for lab in labels}
    train, test = loso_split(labels, "figshare")
    assert {by[p].source for p in test} == {"figshare"} and {by[p].split for p in test} == {"Training", "Testing"}
    assert "Training/glioma/Tr-glTr_0001.jpg" not in train  # its mirror twin is a figshare test image
    assert "Training/glioma/scan.jpg" not in train  # unknown source: might be figshare
    assert all(by[p].split == "Training" and by[p].source not in ("figshare", UNKNOWN) for p in train)
    assert not {by[p].content for p in train} & {by[p].content for p in test}
    fold = describe_fold(labels, "figshare")
    assert fold["test"] == {"glioma": 5, "meningioma": 4, "pituitary": 4}
    assert fold["train"] == {"glioma": 1, "meningioma": 2, "notumor": 4, "pituitary": 2}
    assert fold["dropped_twins"] == {"glioma": 1} and fold["dropped_unknown"] == 1
    with pytest.raises(ValueError, match="unknown source"):
        loso_split(labels, "SARTAJ")


def test_loso_split_never_shares_a_group_on_random_labels():
    rnd = random.Random(0)
    for _trial in range(20):
        labels = [
            SourceLabel(
                f"{split}/c/{i}.jpg",
                split,
                "glioma",
                rnd.choice((*SOURCES, UNKNOWN)),
                "r",
                f"g{rnd.randrange(15)}",
            )
            for i in range(60)
            for split in (rnd.choice(("Training", "Testing")),)
        ]
        for held in SOURCES:
            train, test = loso_split(labels, held)
            by = {lab.path: lab for lab in labels}
            assert not {by[p].content for p in train} & {by[p].content for p in test}
            assert set(test) == {lab.path for lab in labels if lab.source == held}
        assert set(loso_training_paths(labels, SOURCES)) == set()  # nothing is left to train on


def test_loso_excluded_maps_back_to_samples(kaggle_like):
    samples = discover_samples(kaggle_like / "Training")
    drop = loso_excluded(samples, kaggle_like / "Training", ["figshare"])
    dropped = {samples[k].path.relative_to(kaggle_like).as_posix() for k in drop}
    train, _ = loso_split(derive_sources(kaggle_like, progress=False), "figshare")
    assert dropped == {s.path.relative_to(kaggle_like).as_posix() for s in samples} - set(train)
    assert len(dropped) == 8  # 6 figshare tumour images, the SARTAJ mirror twin of a figshare one, one unknown
    with pytest.raises(ValueError):
        loso_excluded(samples, kaggle_like / "Training", ["nope"])


def test_audit_finds_mirrored_test_twins(tmp_path):
    root = tmp_path / "ds"
    seed = 100
    for split in ("Training", "Testing"):
        for c in CLASSES:
            for i in range(2):
                seed += 1
                _save(root / split / c / f"{i}.jpg", _blobs(seed), "L")
    original = np.asarray(Image.open(root / "Training/pituitary/1.jpg"))
    _save(root / "Testing/pituitary/mirrored.jpg", np.ascontiguousarray(original[:, ::-1]), "RGB")

    report = audit_dataset(root, max_distance=4, progress=False)
    assert report["mirror_aware"] is True and report["n_test"] == 9
    assert report["test_with_plain_twin"] == 0 and report["mirror_twins"] == 1
    assert report["test_with_train_twin"] == 1 and report["mirror_twins_per_class"]["pituitary"] == 1
    assert [(p["a"], p["b"]) for p in report["pairs_test_train_mirrored"]] == [
        ("Testing/pituitary/mirrored.jpg", "Training/pituitary/1.jpg")
    ]
    assert "Testing/pituitary/mirrored.jpg" not in report["dedup_test"] and report["n_dedup_test"] == 8
    old = audit_dataset(root, max_distance=4, progress=False, mirror=False)
    assert old["test_with_train_twin"] == 0 and old["n_dedup_test"] == 9 and old["mirror_twins"] == 0

    test_samples = discover_samples(root / "Testing")
    mirrored_idx = [k for k, s in enumerate(test_samples) if s.path.name == "mirrored.jpg"]
    refs = [root / "Training/pituitary/1.jpg"]
    assert twins_of(test_samples, refs, progress=False) == mirrored_idx
    assert twins_of(test_samples, refs, progress=False, mirror=False) == []

    near = nearest_training_images(
        [root / "Testing/pituitary/mirrored.jpg", root / "Testing/glioma/0.jpg"], root / "Training", progress=False
    )
    assert near[0] is not None and near[0].mirrored and near[0].distance <= 2
    assert near[0].path.name == "1.jpg" and near[0].class_name == "pituitary"
    assert near[1] is not None and near[1].distance > 4  # an unrelated image is no twin either way


def test_real_sources_match_the_scouting_study(mri_root, tmp_path):
    """The product rule reproduces experiments/source_derivation/sources.csv on a sample of the real files."""
    import csv

    study = Path(__file__).resolve().parents[2] / "experiments/source_derivation/sources.csv"
    if not study.is_file():
        pytest.skip("scouting study CSV not present")
    rows = {r["file"]: r for r in csv.DictReader(open(study))}
    root = tmp_path / "ds"
    for split in ("Training", "Testing"):
        for c in CLASSES:
            files = sorted((mri_root / split / c).glob("*.jpg"))
            for f in files[:3] + files[100:103] + files[390:400]:
                (root / split / c).mkdir(parents=True, exist_ok=True)
                shutil.copy(f, root / split / c / f.name)
    labels = derive_sources(root, progress=False)
    assert len(labels) > 80
    for lab in labels:
        assert lab.source == rows[lab.path]["source"].lower(), lab
