"""Class-per-folder MRI datasets: discovery, decoding with a cache, and a torch ``Dataset``.

Decoding JPEGs every epoch would make CPU training I/O-bound, so images are decoded, cropped and
resized once into a ``uint8`` array (kept in memory, optionally mirrored to an ``.npy`` file on disk)
and every epoch reads from that array.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from brainxai.constants import CLASSES, FOLDER_ALIASES, IMAGE_SUFFIXES
from brainxai.data.preprocess import CROP_VERSION, PreprocessConfig, prepare, to_tensor
from brainxai.io.raster import ImageReadError, read_raster
from brainxai.util.files import atomic_write

logger = logging.getLogger(__name__)


class DatasetLayoutError(ValueError):
    """The dataset folder does not have the expected class-per-folder layout."""


EXPECTED_LAYOUT = (
    "expected DIR/<class>/<images>, with one folder per class: "
    "glioma|glioma_tumor, meningioma|meningioma_tumor, notumor|no_tumor, pituitary|pituitary_tumor"
)


@dataclass(frozen=True)
class Sample:
    """One labelled image file."""

    path: Path
    label: int

    @property
    def class_name(self) -> str:
        return CLASSES[self.label]


def _is_image_file(path: Path, folder: Path) -> bool:
    # Hidden entries (".ipynb_checkpoints/", "._x.jpg" from macOS) are editor or OS debris, and
    # counting them would duplicate images: the shared Testing/meningioma folder holds one.
    if any(part.startswith(".") for part in path.relative_to(folder).parts):
        return False
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def discover_samples(root: str | Path, classes: Sequence[str] = CLASSES, partial: bool = False) -> list[Sample]:
    """Lists the images of a class-per-folder dataset.

    Args:
        root: Folder holding one sub-folder per class (e.g. ``Training/``).
        classes: Canonical class names; folder-name variants are mapped via ``FOLDER_ALIASES``.
        partial: Accept folders for only some of the classes (at least one), e.g. extra training data.

    Returns:
        Samples sorted by class then path (deterministic).

    Raises:
        DatasetLayoutError: The folder is missing, or a class folder is missing or empty.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset folder not found: {root}; {EXPECTED_LAYOUT}")
    folders: dict[str, Path] = {}
    for child in sorted(root.iterdir()):
        canonical = FOLDER_ALIASES.get(child.name.lower())
        if child.is_dir() and canonical is not None:
            if canonical in folders:
                raise DatasetLayoutError(
                    f"{root}: both {folders[canonical].name!r} and {child.name!r} map to class {canonical!r}"
                )
            folders[canonical] = child
    missing = [c for c in classes if c not in folders]
    if missing and not (partial and folders):
        raise DatasetLayoutError(f"{root}: no folder for class(es) {', '.join(missing)}; {EXPECTED_LAYOUT}")
    samples: list[Sample] = []
    for label, name in enumerate(classes):
        if name not in folders:
            continue
        files = sorted(p for p in folders[name].rglob("*") if _is_image_file(p, folders[name]))
        if not files:
            raise DatasetLayoutError(f"{folders[name]}: class folder {name!r} holds no images; {EXPECTED_LAYOUT}")
        samples.extend(Sample(p, label) for p in files)
    return samples


def fingerprint(samples: Sequence[Sample], root: str | Path | None = None) -> str:
    """A short hash of the file list (relative paths, sizes, labels) identifying a dataset version."""
    h = hashlib.sha256()
    for s in samples:
        rel = os.path.relpath(s.path, root) if root is not None else str(s.path)
        h.update(f"{rel}\t{s.path.stat().st_size}\t{s.label}\n".encode())
    return h.hexdigest()[:16]


@dataclass
class DecodedImages:
    """Prepared images plus what was lost on the way."""

    images: np.ndarray  # (N, S, S) uint8
    samples: list[Sample]  # the samples that decoded, aligned with ``images``
    failed: list[tuple[Path, str]]

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)


def _decode_one(sample: Sample, config: PreprocessConfig) -> np.ndarray | str:
    try:
        return prepare(read_raster(sample.path), config)
    except ImageReadError as exc:
        return str(exc)


def _cache_file(cache_dir: Path, samples: Sequence[Sample], config: PreprocessConfig) -> Path:
    # The crop's version is part of the key: a changed crop must not reuse crops cached by the old one.
    h = hashlib.sha256(json.dumps({**config.to_dict(), "crop_version": CROP_VERSION}, sort_keys=True).encode())
    for s in samples:
        st = s.path.stat()
        h.update(f"{s.path.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return cache_dir / f"decoded-{h.hexdigest()[:20]}.npz"


def _read_cache(cache_path: Path, samples: list[Sample]) -> DecodedImages:
    with np.load(cache_path, allow_pickle=False) as z:
        ok = z["ok"]
        failed = [(samples[i].path, str(msg)) for i, msg in zip(z["failed_idx"], z["failed_msg"])]
        kept = [s for s, good in zip(samples, ok) if good]
        return DecodedImages(images=z["images"], samples=kept, failed=failed)


def _write_cache(cache_path: Path, images: np.ndarray, ok: np.ndarray, failed: list[tuple[Path, str]]) -> None:
    failed_idx = np.array([i for i, good in enumerate(ok) if not good], dtype=np.int64)
    failed_msg = np.array([m for _, m in failed], dtype=str)

    def write(tmp: Path) -> None:
        # Through a file object: given a name, np.savez would append ".npz" to the temporary one.
        with open(tmp, "wb") as fh:
            np.savez(fh, images=images, ok=ok, failed_idx=failed_idx, failed_msg=failed_msg)

    atomic_write(cache_path, write)


def _decode_all(
    samples: list[Sample], config: PreprocessConfig, workers: int | None, progress: bool
) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
    """All prepared images (zeros where decoding failed), which decoded, and why the others did not."""
    s = config.img_size
    images = np.zeros((len(samples), s, s), dtype=np.uint8)
    ok = np.zeros(len(samples), dtype=bool)
    failed: list[tuple[Path, str]] = []
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = pool.map(lambda smp: _decode_one(smp, config), samples)
        for i, res in enumerate(tqdm(results, total=len(samples), desc="decoding", disable=not progress, leave=False)):
            if isinstance(res, str):
                failed.append((samples[i].path, res))
            else:
                images[i] = res
                ok[i] = True
    return images, ok, failed


def decode_samples(
    samples: Sequence[Sample],
    config: PreprocessConfig,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> DecodedImages:
    """Decodes, crops and resizes every sample once.

    Unreadable files are skipped and reported in one warning (count and paths), never raised.

    Args:
        samples: Files to decode.
        config: Preprocessing (crop and size matter here).
        cache_dir: When given, the result is stored as ``.npz`` keyed by the file list (paths, sizes,
            modification times) and config, and reused on the next call.
        workers: Decoding threads (OpenCV and PIL release the GIL); default: CPU count.
        progress: Show a progress bar.
    """
    samples = list(samples)
    cache_path = _cache_file(Path(cache_dir), samples, config) if cache_dir is not None else None
    if cache_path is not None and cache_path.is_file():
        decoded = _read_cache(cache_path, samples)
        _warn_failures(decoded.failed)
        return decoded
    images, ok, failed = _decode_all(samples, config, workers, progress)
    images = images[ok]
    kept = [smp for smp, good in zip(samples, ok) if good]
    if cache_path is not None:
        _write_cache(cache_path, images, ok, failed)
    _warn_failures(failed)
    return DecodedImages(images=images, samples=kept, failed=failed)


def _warn_failures(failed: list[tuple[Path, str]]) -> None:
    if failed:
        listing = "\n".join(f"  {p}: {msg}" for p, msg in failed[:50])
        more = f"\n  ... and {len(failed) - 50} more" if len(failed) > 50 else ""
        warnings.warn(f"skipped {len(failed)} unreadable image(s):\n{listing}{more}", RuntimeWarning, stacklevel=3)


def class_counts(labels: Sequence[int] | np.ndarray, classes: Sequence[str] = CLASSES) -> dict[str, int]:
    counts = Counter(int(x) for x in labels)
    return {c: counts.get(i, 0) for i, c in enumerate(classes)}


class MRIDataset(Dataset):
    """Prepared images -> (tensor, label), with optional seeded augmentation.

    Args:
        images: ``(N, S, S)`` uint8 prepared images.
        labels: ``(N,)`` integer labels.
        config: Preprocessing (channels and normalisation applied here).
        augment: A callable ``(image, rng) -> image`` applied before tensor conversion, or None.
        seed: Base seed; the augmentation of item ``i`` in epoch ``e`` depends only on
            ``(seed, e, i)``, so results do not depend on worker scheduling.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        config: PreprocessConfig,
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        seed: int = 0,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.config = config
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images[index]
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            img = self.augment(img, rng)
        return to_tensor(img, self.config), int(self.labels[index])
