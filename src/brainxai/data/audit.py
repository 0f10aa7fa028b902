"""Duplicate audit: perceptual-hash near-duplicates within Training and between Testing and Training.

A 64-bit pHash (DCT of a 32x32 grayscale thumbnail, sign of the 8x8 low frequencies against their
median) changes little under re-encoding, resizing and small intensity changes, so two files whose
hashes differ in at most ``max_distance`` bits are the same slice (or a neighbouring slice of the
same patient). Test images with such a twin in Training make a raw test accuracy optimistic; the
audit writes the list of test images that have none.

The same hashes find an evaluation set's images in a training set: :func:`nearest_training_images`
(which benchmark images did the model see?) and :func:`twins_of` (leave them out of training).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from brainxai.constants import CLASSES, IMAGE_SUFFIXES
from brainxai.data.dataset import Sample, discover_samples

logger = logging.getLogger(__name__)

DEFAULT_MAX_DISTANCE = 4


@dataclass
class HashedImage:
    sample: Sample
    bits: np.ndarray  # (64,) bool
    size: tuple[int, int]


def _phash(path: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """The 64 pHash bits of an image file and its size."""
    with Image.open(path) as img:
        size = img.size
        h = imagehash.phash(img.convert("L"))
    return np.asarray(h.hash, dtype=bool).ravel(), size


def _hash_one(sample: Sample) -> HashedImage | str:
    try:
        bits, size = _phash(sample.path)
        return HashedImage(sample, bits, size)
    except Exception as exc:
        return f"{sample.path}: {exc}"


def hash_samples(samples: list[Sample], progress: bool = True) -> tuple[list[HashedImage], list[str]]:
    """pHashes every sample (threads); returns the hashes and the files that failed."""
    ok: list[HashedImage] = []
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for r in tqdm(
            pool.map(_hash_one, samples), total=len(samples), desc="hashing", disable=not progress, leave=False
        ):
            (failed.append(r) if isinstance(r, str) else ok.append(r))
    return ok, failed


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between rows of two boolean bit matrices ``(N, 64)`` and ``(M, 64)``."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    # |a xor b| = a.(1-b) + (1-a).b, as two matrix products.
    return np.rint(a @ (1 - b).T + (1 - a) @ b.T).astype(np.int32)


def near_pairs(a: np.ndarray, b: np.ndarray | None, max_distance: int, chunk: int = 2048) -> list[tuple[int, int, int]]:
    """Index pairs ``(i, j, distance)`` with distance <= max_distance; within ``a`` when ``b`` is None (i < j)."""
    same = b is None
    other = a if b is None else b
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(a), chunk):
        d = hamming_matrix(a[start : start + chunk], other)
        ii, jj = np.nonzero(d <= max_distance)
        for i, j in zip(ii + start, jj):
            if not same or i < j:
                pairs.append((int(i), int(j), int(d[i - start, j])))
    return pairs


@dataclass(frozen=True)
class NearestTrainingImage:
    """The training image whose pHash is closest to a query image."""

    path: Path
    class_name: str
    distance: int  # Hamming distance in bits; <= DEFAULT_MAX_DISTANCE counts as the same slice


def nearest_training_images(
    paths: list[Path], train_root: str | Path, progress: bool = True, exclude: Collection[str] = ()
) -> list[NearestTrainingImage | None]:
    """For each image, the nearest image of a class-per-folder training set by pHash.

    Tells which images of an evaluation set a model has (nearly) seen in training: at a distance of
    ``DEFAULT_MAX_DISTANCE`` bits or less they are the same slice, re-encoded or resized.

    Args:
        paths: The query images.
        train_root: Folder with one sub-folder per class (e.g. ``Training/``).
        progress: Show a progress bar while hashing the training set.
        exclude: Files of ``train_root`` the model was not trained on, relative to it
            (``class/file.jpg``, as a checkpoint's ``excluded_twins`` records them).

    Returns:
        One entry per path; ``None`` for an unreadable query image.

    Raises:
        DatasetLayoutError: ``train_root`` is not a class-per-folder dataset.
        ValueError: No training image could be read.
    """
    skip = {Path(e).as_posix() for e in exclude}
    samples = [s for s in discover_samples(train_root) if Path(s.path).relative_to(train_root).as_posix() not in skip]
    train_h, failed = hash_samples(samples, progress)
    if not train_h:
        raise ValueError(f"no readable training image in {train_root} ({len(failed)} failed)")
    bits = np.stack([h.bits for h in train_h])
    out: list[NearestTrainingImage | None] = []
    for path in paths:
        try:
            query, _ = _phash(Path(path))
        except Exception as exc:
            logger.warning("cannot hash %s: %s", path, exc)
            out.append(None)
            continue
        d = hamming_matrix(query[None], bits)[0]
        j = int(d.argmin())
        out.append(NearestTrainingImage(train_h[j].sample.path, train_h[j].sample.class_name, int(d[j])))
    return out


def reference_images(source: str | Path) -> list[Path]:
    """The images of an evaluation set: a folder (searched recursively) or a CSV with a ``file`` column.

    CSV paths are relative to the CSV's folder (the box CSV of ``brainxai xai-benchmark`` qualifies).

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: A CSV without a ``file`` column, or no image found.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source} not found")
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        with open(source, newline="") as fh:
            reader = csv.DictReader(fh)
            if "file" not in (reader.fieldnames or []):
                raise ValueError(f"{source}: expected a folder of images or a CSV with a 'file' column")
            paths = [source.parent / row["file"] for row in reader if row.get("file")]
    if not paths:
        raise ValueError(f"no images in {source}")
    return paths


def twins_of(
    samples: list[Sample], references: list[Path], max_distance: int = DEFAULT_MAX_DISTANCE, progress: bool = True
) -> list[int]:
    """Indices of the samples that have a pHash twin (within ``max_distance`` bits) among ``references``.

    Used to keep an evaluation set's images out of training. An unreadable sample is not a twin (it is
    reported where it is decoded); an unreadable reference is an error, since it could not be kept out.
    """
    ref_bits = []
    for path in references:
        try:
            ref_bits.append(_phash(Path(path))[0])
        except Exception as exc:
            raise ValueError(f"cannot read reference image {path}: {exc}") from exc
    hashed, _ = hash_samples(samples, progress)
    if not hashed:
        return []
    close = hamming_matrix(np.stack([h.bits for h in hashed]), np.stack(ref_bits)).min(axis=1) <= max_distance
    # hash_samples drops unreadable files, so map back to the caller's indices by identity.
    position = {id(s): k for k, s in enumerate(samples)}
    return sorted(position[id(h.sample)] for h, c in zip(hashed, close) if c)


def _pair_record(x: HashedImage, y: HashedImage, d: int, root: Path) -> dict[str, Any]:
    return {
        "a": os.path.relpath(x.sample.path, root),
        "b": os.path.relpath(y.sample.path, root),
        "distance": d,
        "label_a": x.sample.class_name,
        "label_b": y.sample.class_name,
    }


def _test_train_twins(
    test_h: list[HashedImage], train_h: list[HashedImage], tr_bits: np.ndarray, max_distance: int, root: Path
) -> tuple[list[dict[str, Any]], set[int], dict[str, int]]:
    """Test-Training near-duplicate pairs, the test images that have a twin, and the nearest-distance histogram."""
    cross: list[dict[str, Any]] = []
    twins: set[int] = set()
    if not test_h:
        return cross, twins, {}
    te_bits = np.stack([h.bits for h in test_h])
    for i, j, d in near_pairs(te_bits, tr_bits, max_distance):
        cross.append(_pair_record(test_h[i], train_h[j], d, root))
        twins.add(i)
    # Distance from each test image to its nearest training image: shows where twins end and
    # merely similar slices begin, which is how max_distance should be chosen.
    nearest = np.concatenate(
        [hamming_matrix(te_bits[s : s + 2048], tr_bits).min(axis=1) for s in range(0, len(te_bits), 2048)]
    )
    values, counts = np.unique(nearest, return_counts=True)
    return cross, twins, {str(int(v)): int(c) for v, c in zip(values, counts)}


def _size_counts(sizes: list[tuple[int, int]]) -> dict[str, int]:
    """``{"WxH": images}``, most frequent first."""
    size_counts: dict[str, int] = {}
    for w, h in sizes:
        size_counts[f"{w}x{h}"] = size_counts.get(f"{w}x{h}", 0) + 1
    return dict(sorted(size_counts.items(), key=lambda kv: -kv[1]))


def audit_dataset(root: str | Path, max_distance: int = DEFAULT_MAX_DISTANCE, progress: bool = True) -> dict[str, Any]:
    """Runs the duplicate audit on ``root`` (holding ``Training/`` and, optionally, ``Testing/``).

    Returns:
        A JSON-ready dict: counts, near-duplicate pairs within Training and between Testing and
        Training (paths relative to ``root``, Hamming distance, labels), label conflicts, image-size
        summary, and ``dedup_test`` (test images with no near-twin in Training). Keys starting with
        ``_`` (every image's size and split/class, for :func:`size_points`) are not for the JSON.
    """
    root = Path(root)
    train_samples = discover_samples(root / "Training")
    test_dir = root / "Testing"
    test_samples = discover_samples(test_dir) if test_dir.is_dir() else []
    train_h, train_fail = hash_samples(train_samples, progress)
    test_h, test_fail = hash_samples(test_samples, progress)
    tr_bits = np.stack([h.bits for h in train_h]) if train_h else np.zeros((0, 64), bool)
    within = [_pair_record(train_h[i], train_h[j], d, root) for i, j, d in near_pairs(tr_bits, None, max_distance)]
    cross, twins, nearest_hist = _test_train_twins(test_h, train_h, tr_bits, max_distance, root)
    dedup = [os.path.relpath(h.sample.path, root) for k, h in enumerate(test_h) if k not in twins]
    per_class_twins = {c: 0 for c in CLASSES}
    for k in twins:
        per_class_twins[test_h[k].sample.class_name] += 1
    sizes = [h.size for h in train_h + test_h]
    return {
        "root": str(root),
        "method": f"64-bit pHash (imagehash.phash); near-duplicate = Hamming distance <= {max_distance}",
        "max_distance": max_distance,
        "n_train": len(train_h),
        "n_test": len(test_h),
        "unreadable": train_fail + test_fail,
        "train_near_duplicate_pairs": len(within),
        "train_images_in_pairs": len({p["a"] for p in within} | {p["b"] for p in within}),
        "test_with_train_twin": len(twins),
        "test_with_train_twin_per_class": per_class_twins,
        "test_nearest_train_distance_histogram": nearest_hist,
        "label_conflicts": [p for p in within + cross if p["label_a"] != p["label_b"]],
        "image_sizes": _size_counts(sizes),
        "n_dedup_test": len(dedup),
        "dedup_test": dedup,
        "pairs_within_train": within,
        "pairs_test_train": cross,
        "_sizes": sizes,
        "_size_labels": [
            ("train " if k < len(train_h) else "test ") + h.sample.class_name for k, h in enumerate(train_h + test_h)
        ],
    }


def size_points(report: dict[str, Any]) -> tuple[list[tuple[int, int]], list[str]]:
    """Every audited image's ``(width, height)`` and its ``"train <class>"``/``"test <class>"`` label."""
    return report["_sizes"], report["_size_labels"]


def audit_paths(out: str | Path) -> dict[str, Path]:
    """Where the audit's files go: the JSON at ``out``, the de-duplicated test list and the size plot beside it."""
    out = Path(out)
    return {
        "json": out,
        "dedup_list": out.with_name(out.stem + "_dedup_test.txt"),
        "size_plot": out.with_name(out.stem + "_sizes.png"),
    }


def write_audit(report: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Writes ``audit.json`` and the de-duplicated test list (one path per line).

    The JSON names the size plot too, but this module draws no figures (figures live above the data
    layer): ``brainxai audit-data`` draws it with :func:`brainxai.evaluation.plots.size_scatter_figure`.

    Args:
        report: Output of :func:`audit_dataset`.
        out: The JSON path; the other files go beside it (see :func:`audit_paths`).

    Returns:
        :func:`audit_paths` of ``out``.
    """
    paths = audit_paths(out)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    public["dedup_test_file"] = paths["dedup_list"].name
    public["size_plot"] = paths["size_plot"].name
    paths["json"].write_text(json.dumps(public, indent=2))
    paths["dedup_list"].write_text("\n".join(report["dedup_test"]) + "\n")
    return paths


def read_subset(path: str | Path) -> list[str]:
    """Reads a subset file: one relative path per line (blank lines and ``#`` comments ignored).

    Accepts an ``audit.json`` too, taking its ``dedup_test`` list.
    """
    p = Path(path)
    text = p.read_text()
    if p.suffix == ".json":
        return list(json.loads(text)["dedup_test"])
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
