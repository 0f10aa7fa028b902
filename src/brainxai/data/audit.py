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
import hashlib
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
from brainxai.util.files import atomic_write

logger = logging.getLogger(__name__)

DEFAULT_MAX_DISTANCE = 4


#: Bump when the hash computation changes, so that cached hashes are not reused.
_HASH_VERSION = "phash64+hflip-v1"


@dataclass
class HashedImage:
    sample: Sample
    bits: np.ndarray  # (64,) bool
    size: tuple[int, int]
    flip_bits: np.ndarray | None = None  # (64,) bool: pHash of the image flipped left to right


def _bits(img: Image.Image) -> np.ndarray:
    return np.asarray(imagehash.phash(img).hash, dtype=bool).ravel()


def _phash_pair(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The 64 pHash bits of an image file, those of its left-right mirror image, and its size."""
    with Image.open(path) as img:
        size = img.size
        gray = img.convert("L")
    return _bits(gray), _bits(gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), size


def _phash(path: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """The 64 pHash bits of an image file and its size."""
    with Image.open(path) as img:
        size = img.size
        bits = _bits(img.convert("L"))
    return bits, size


def _hash_one(sample: Sample) -> HashedImage | str:
    try:
        bits, flip_bits, size = _phash_pair(sample.path)
        return HashedImage(sample, bits, size, flip_bits)
    except Exception as exc:
        return f"{sample.path}: {exc}"


def _hash_cache_file(cache_dir: Path, samples: list[Sample]) -> Path:
    # Keyed like the decoded-image cache: the file list with sizes and modification times.
    h = hashlib.sha256(_HASH_VERSION.encode())
    for s in samples:
        st = Path(s.path).stat()
        h.update(f"{Path(s.path).resolve()}\t{st.st_size}\t{st.st_mtime_ns}\t{s.label}\n".encode())
    return cache_dir / f"phash-{h.hexdigest()[:20]}.npz"


def _read_hash_cache(path: Path, samples: list[Sample]) -> tuple[list[HashedImage], list[str]]:
    with np.load(path, allow_pickle=False) as z:
        ok, bits, flips, sizes, failed = z["ok"], z["bits"], z["flip_bits"], z["sizes"], z["failed"]
    hashed = [
        HashedImage(s, bits[i], (int(sizes[i, 0]), int(sizes[i, 1])), flips[i]) for i, s in enumerate(samples) if ok[i]
    ]
    return hashed, [str(f) for f in failed]


def _write_hash_cache(path: Path, samples: list[Sample], hashed: list[HashedImage], failed: list[str]) -> None:
    index = {id(h.sample): h for h in hashed}
    ok = np.array([id(s) in index for s in samples], dtype=bool)
    bits = np.zeros((len(samples), 64), dtype=bool)
    flips = np.zeros((len(samples), 64), dtype=bool)
    sizes = np.zeros((len(samples), 2), dtype=np.int64)
    for i, s in enumerate(samples):
        if ok[i]:
            h = index[id(s)]
            bits[i], flips[i], sizes[i] = h.bits, h.flip_bits, h.size

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, ok=ok, bits=bits, flip_bits=flips, sizes=sizes, failed=np.array(failed, dtype=str))

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def hash_samples(
    samples: list[Sample], progress: bool = True, cache_dir: str | Path | None = None
) -> tuple[list[HashedImage], list[str]]:
    """pHashes every sample and its left-right mirror image (threads); returns the hashes and the files that failed.

    Args:
        samples: The files to hash.
        progress: Show a progress bar.
        cache_dir: When given, the hashes are stored there as ``.npz`` keyed by the file list (paths,
            sizes, modification times, labels) and reused on the next call with the same files.
    """
    samples = list(samples)
    cache = _hash_cache_file(Path(cache_dir), samples) if cache_dir is not None and samples else None
    if cache is not None and cache.is_file():
        try:
            return _read_hash_cache(cache, samples)
        except (OSError, KeyError, ValueError) as exc:
            logger.warning("ignoring unreadable hash cache %s: %s", cache, exc)
    ok: list[HashedImage] = []
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for r in tqdm(
            pool.map(_hash_one, samples), total=len(samples), desc="hashing", disable=not progress, leave=False
        ):
            (failed.append(r) if isinstance(r, str) else ok.append(r))
    if cache is not None:
        _write_hash_cache(cache, samples, ok, failed)
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
    mirrored: bool = False  # the distance is to the query's left-right mirror image (closer than to the query)


def nearest_training_images(
    paths: list[Path], train_root: str | Path, progress: bool = True, exclude: Collection[str] = ()
) -> list[NearestTrainingImage | None]:
    """For each image, the nearest image of a class-per-folder training set by pHash.

    Tells which images of an evaluation set a model has (nearly) seen in training: at a distance of
    ``DEFAULT_MAX_DISTANCE`` bits or less they are the same slice, re-encoded or resized. The query's
    left-right mirror image counts too (the Kaggle set stores figshare slices mirrored): the
    distance is the smaller of the two, and ``mirrored`` says when it came from the mirror image.

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
            query, query_flip, _ = _phash_pair(Path(path))
        except Exception as exc:
            logger.warning("cannot hash %s: %s", path, exc)
            out.append(None)
            continue
        d = hamming_matrix(np.stack([query, query_flip]), bits)
        plain_j, flip_j = int(d[0].argmin()), int(d[1].argmin())
        mirrored = bool(d[1, flip_j] < d[0, plain_j])
        j = flip_j if mirrored else plain_j
        out.append(
            NearestTrainingImage(
                train_h[j].sample.path, train_h[j].sample.class_name, int(d[int(mirrored), j]), mirrored
            )
        )
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
    samples: list[Sample],
    references: list[Path],
    max_distance: int = DEFAULT_MAX_DISTANCE,
    progress: bool = True,
    mirror: bool = True,
) -> list[int]:
    """Indices of the samples that have a pHash twin (within ``max_distance`` bits) among ``references``.

    Used to keep an evaluation set's images out of training. With ``mirror`` a sample whose left-right
    mirror image matches a reference is a twin too (the model would see it mirrored). An unreadable
    sample is not a twin (it is reported where it is decoded); an unreadable reference is an error,
    since it could not be kept out.
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
    refs = np.stack(ref_bits)
    close = hamming_matrix(np.stack([h.bits for h in hashed]), refs).min(axis=1) <= max_distance
    if mirror:
        flips = np.stack([h.bits if h.flip_bits is None else h.flip_bits for h in hashed])
        close |= hamming_matrix(flips, refs).min(axis=1) <= max_distance
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


def _flip_bits(hashed: list[HashedImage]) -> np.ndarray:
    return np.stack([h.bits if h.flip_bits is None else h.flip_bits for h in hashed])


def _nearest(query: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Distance from each query row to its nearest row of ``bits`` (in chunks, to bound memory)."""
    return np.concatenate([hamming_matrix(query[s : s + 2048], bits).min(axis=1) for s in range(0, len(query), 2048)])


def _histogram(distances: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(distances, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts)}


@dataclass
class _CrossTwins:
    """Test images with a twin in Training: plain pairs, mirrored pairs, and nearest-distance histograms."""

    plain_pairs: list[dict[str, Any]]
    mirror_pairs: list[dict[str, Any]]
    plain: set[int]  # test indices with a plain twin
    mirrored: set[int]  # test indices whose mirror image has a twin
    plain_hist: dict[str, int]
    aware_hist: dict[str, int]


def _test_train_twins(
    test_h: list[HashedImage],
    train_h: list[HashedImage],
    tr_bits: np.ndarray,
    max_distance: int,
    root: Path,
    mirror: bool,
) -> _CrossTwins:
    """Test-Training near-duplicate pairs (of each test image and, with ``mirror``, of its mirror image)."""
    result = _CrossTwins([], [], set(), set(), {}, {})
    if not test_h or not len(tr_bits):
        return result
    te_bits = np.stack([h.bits for h in test_h])
    for i, j, d in near_pairs(te_bits, tr_bits, max_distance):
        result.plain_pairs.append(_pair_record(test_h[i], train_h[j], d, root))
        result.plain.add(i)
    # Distance from each test image to its nearest training image: shows where twins end and
    # merely similar slices begin, which is how max_distance should be chosen.
    nearest = _nearest(te_bits, tr_bits)
    result.plain_hist = _histogram(nearest)
    if mirror:
        te_flip = _flip_bits(test_h)
        for i, j, d in near_pairs(te_flip, tr_bits, max_distance):
            result.mirror_pairs.append({**_pair_record(test_h[i], train_h[j], d, root), "mirrored": True})
            result.mirrored.add(i)
        result.aware_hist = _histogram(np.minimum(nearest, _nearest(te_flip, tr_bits)))
    return result


def _per_class(test_h: list[HashedImage], indices: set[int]) -> dict[str, int]:
    counts = {c: 0 for c in CLASSES}
    for k in indices:
        counts[test_h[k].sample.class_name] += 1
    return counts


def _size_counts(sizes: list[tuple[int, int]]) -> dict[str, int]:
    """``{"WxH": images}``, most frequent first."""
    size_counts: dict[str, int] = {}
    for w, h in sizes:
        size_counts[f"{w}x{h}"] = size_counts.get(f"{w}x{h}", 0) + 1
    return dict(sorted(size_counts.items(), key=lambda kv: -kv[1]))


def audit_dataset(
    root: str | Path,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    progress: bool = True,
    mirror: bool = True,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Runs the duplicate audit on ``root`` (holding ``Training/`` and, optionally, ``Testing/``).

    Args:
        root: The dataset root.
        max_distance: Largest pHash Hamming distance counted as a near-duplicate.
        progress: Show progress bars.
        mirror: Also count a test image as a twin when its left-right mirror image matches a training
            image (the Kaggle set holds figshare slices both mirrored and not). False gives the audit
            as it was before mirrored twins were looked for.
        cache_dir: Where pHashes are cached (see :func:`hash_samples`).

    Returns:
        A JSON-ready dict: counts, near-duplicate pairs within Training and between Testing and
        Training (paths relative to ``root``, Hamming distance, labels; ``pairs_test_train_mirrored``
        for the mirrored ones), label conflicts, image-size summary, and ``dedup_test`` (test images
        with no near-twin in Training, plain or, with ``mirror``, mirrored). ``test_with_train_twin``
        counts both kinds; ``test_with_plain_twin``, ``test_with_mirror_twin`` and ``mirror_twins``
        (found only through the mirror image) split them. Keys starting with ``_`` (every image's size
        and split/class, for :func:`size_points`) are not for the JSON.
    """
    root = Path(root)
    train_samples = discover_samples(root / "Training")
    test_dir = root / "Testing"
    test_samples = discover_samples(test_dir) if test_dir.is_dir() else []
    train_h, train_fail = hash_samples(train_samples, progress, cache_dir)
    test_h, test_fail = hash_samples(test_samples, progress, cache_dir)
    tr_bits = np.stack([h.bits for h in train_h]) if train_h else np.zeros((0, 64), bool)
    within = [_pair_record(train_h[i], train_h[j], d, root) for i, j, d in near_pairs(tr_bits, None, max_distance)]
    x = _test_train_twins(test_h, train_h, tr_bits, max_distance, root, mirror)
    twins = x.plain | x.mirrored
    only_mirrored = x.mirrored - x.plain
    dedup = [os.path.relpath(h.sample.path, root) for k, h in enumerate(test_h) if k not in twins]
    sizes = [h.size for h in train_h + test_h]
    mirror_info = (
        "; a test image whose left-right mirror image is that close to a training image is a twin too" if mirror else ""
    )
    return {
        "root": str(root),
        "method": f"64-bit pHash (imagehash.phash); near-duplicate = Hamming distance <= {max_distance}" + mirror_info,
        "max_distance": max_distance,
        "mirror_aware": mirror,
        "n_train": len(train_h),
        "n_test": len(test_h),
        "unreadable": train_fail + test_fail,
        "train_near_duplicate_pairs": len(within),
        "train_images_in_pairs": len({p["a"] for p in within} | {p["b"] for p in within}),
        "test_with_train_twin": len(twins),
        "test_with_train_twin_per_class": _per_class(test_h, twins),
        "test_with_plain_twin": len(x.plain),
        "test_with_mirror_twin": len(x.mirrored),
        "mirror_twins": len(only_mirrored),
        "mirror_twins_per_class": _per_class(test_h, only_mirrored),
        "test_nearest_train_distance_histogram": x.plain_hist,
        "test_nearest_train_distance_histogram_mirror_aware": x.aware_hist,
        "label_conflicts": [p for p in within + x.plain_pairs + x.mirror_pairs if p["label_a"] != p["label_b"]],
        "image_sizes": _size_counts(sizes),
        "n_dedup_test": len(dedup),
        "dedup_test": dedup,
        "pairs_within_train": within,
        "pairs_test_train": x.plain_pairs,
        "pairs_test_train_mirrored": x.mirror_pairs,
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
