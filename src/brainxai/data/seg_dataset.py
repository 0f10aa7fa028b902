"""Segmentation data: a folder with ``slices.csv`` (``file,mask,label,patient,...``), checked, decoded, split.

Every slice is read at its own size, checked against its mask (same size, binary, non-empty for a tumour
class), then cropped to the head with the image's contour crop and resized for the model; the mask follows
the same crop and resize (:func:`brainxai.data.lesion.resize_mask`). A bad row stops loading with an error
naming the file (:class:`SegDataError`). Splits are by patient: the slices of one patient are near-copies, so
a patient is never on both sides (:func:`patient_folds`).

No-tumour slices (label :data:`brainxai.constants.NO_TUMOUR`) teach and measure what "no tumour" looks like:
their mask may be an empty file or an empty ``mask`` cell (no file), and must hold no tumour pixel. Extra
folders (:func:`read_sources`, ``train-seg --extra-data``) may lack the ``patient`` column: each of their
slices is then its own group; their groups are prefixed with the folder's name, so they never merge with
the main folder's patients.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from brainxai.constants import NO_TUMOUR
from brainxai.data.lesion import read_mask, resize_mask
from brainxai.data.preprocess import CROP_VERSION, PreprocessConfig, contour_crop, resize, window_intensity
from brainxai.io.raster import ImageReadError, read_raster
from brainxai.util.files import atomic_write

logger = logging.getLogger(__name__)

#: Columns ``slices.csv`` must have.
REQUIRED_COLUMNS = ("file", "mask", "label", "patient")
#: Columns an extra folder's ``slices.csv`` must have (without ``patient`` every slice is its own group).
EXTRA_REQUIRED_COLUMNS = ("file", "mask", "label")
_CACHE_VERSION = 1


class SegDataError(ValueError):
    """A segmentation folder or one of its files is unusable; the message names the file."""


@dataclass(frozen=True)
class SegSlice:
    """One row of ``slices.csv`` with absolute paths; ``mask`` None: a no-tumour slice without a mask file (empty)."""

    image: Path
    mask: Path | None
    label: str
    patient: str
    extra: bool = False  # from an extra folder (``read_sources``), split apart from the main folder's patients

    @property
    def files(self) -> tuple[Path, ...]:
        """The image and, when there is one, the mask file."""
        return (self.image,) if self.mask is None else (self.image, self.mask)


@dataclass
class SegData:
    """Prepared slices: images and masks on the model grid, and the crop box of each in its original slice."""

    slices: list[SegSlice]
    images: np.ndarray  # (N, S, S) uint8
    masks: np.ndarray  # (N, S, S) bool
    boxes: np.ndarray  # (N, 4) int: x0, y0, x1, y1 (exclusive) in the original slice

    @property
    def patients(self) -> np.ndarray:
        return np.array([s.patient for s in self.slices])

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.slices])


def read_slices(
    root: str | Path, labels: Sequence[str] | None = None, require_patient: bool = True, group_prefix: str = ""
) -> list[SegSlice]:
    """The rows of ``ROOT/slices.csv``, with paths resolved against ROOT.

    Args:
        root: The folder.
        labels: Keep only rows with one of these labels (None: all).
        require_patient: Whether the ``patient`` column is required; without it (or with an empty cell when
            not required) each slice is its own group, named after its file.
        group_prefix: Prepended to every patient/group name (keeps an extra folder's groups apart).

    Raises:
        SegDataError: The CSV is missing, lacks a required column, has an empty cell (an empty ``mask`` is
            accepted for a no-tumour row) or no rows (after the label filter).
    """
    root = Path(root)
    csv_path = root / "slices.csv"
    required = REQUIRED_COLUMNS if require_patient else EXTRA_REQUIRED_COLUMNS
    if not csv_path.is_file():
        raise SegDataError(f"{csv_path} not found: a segmentation folder needs slices.csv ({','.join(required)})")
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise SegDataError(f"{csv_path} lacks the column(s) {', '.join(missing)} (needs {','.join(required)})")
        rows = list(reader)
    out = []
    for line, row in enumerate(rows, start=2):
        label = (row.get("label") or "").strip()
        if labels is not None and label not in labels:
            continue
        empty = [c for c in required if not (row.get(c) or "").strip()]
        if label == NO_TUMOUR and "mask" in empty:  # a no-tumour slice needs no mask file: its mask is empty
            empty.remove("mask")
        if empty:
            raise SegDataError(f"{csv_path} line {line}: empty {', '.join(empty)}")
        mask = (row.get("mask") or "").strip()
        patient = (row.get("patient") or "").strip() or row["file"].strip()
        image, mask_path = root / row["file"], root / mask if mask else None
        out.append(SegSlice(image, mask_path, label, group_prefix + patient, extra=not require_patient))
    if not out:
        kept = f" with label {', '.join(labels)}" if labels is not None else ""
        raise SegDataError(f"{csv_path} has no rows{kept}")
    return out


def extra_prefix(folder: str | Path) -> str:
    """The group-name prefix of an extra folder's slices: ``<folder name>:``."""
    return f"{Path(folder).name}:"


def read_sources(
    root: str | Path, extra: Sequence[str | Path] = (), extra_labels: Sequence[str] | None = None
) -> list[SegSlice]:
    """The slices of the main folder and then of each extra folder (``extra_labels`` filters the extras only)."""
    slices = read_slices(root)
    for folder in extra:
        slices += read_slices(folder, extra_labels, require_patient=False, group_prefix=extra_prefix(folder))
    return slices


def data_fingerprint(slices: Sequence[SegSlice], root: str | Path) -> str:
    """A short hash of the slice list (relative paths, sizes, labels, patients) identifying a dataset version."""
    h = hashlib.sha256()
    for s in slices:
        for p in s.files:
            h.update(f"{p.relative_to(root) if p.is_relative_to(root) else p}\t{p.stat().st_size}\t".encode())
        h.update(f"{s.label}\t{s.patient}\n".encode())
    return h.hexdigest()[:16]


def load_pair(item: SegSlice) -> tuple[np.ndarray, np.ndarray]:
    """The slice (2-D uint8) and its mask (bool), checked.

    A tumour slice's mask must hold tumour pixels; a no-tumour slice's must not (no mask file: all empty).

    Raises:
        SegDataError: Unreadable image or mask, sizes that differ, an empty mask of a tumour slice or a
            non-empty one of a no-tumour slice; the message names the file.
    """
    try:
        image = read_raster(item.image)
    except (ImageReadError, OSError) as exc:
        raise SegDataError(f"cannot read image {item.image}: {exc}") from exc
    if item.mask is None:
        return image, np.zeros(image.shape, bool)
    try:
        mask = read_mask(item.mask)
    except (ValueError, OSError) as exc:
        raise SegDataError(f"cannot read mask {item.mask}: {exc}") from exc
    if mask.shape != image.shape:
        raise SegDataError(
            f"mask {item.mask} is {mask.shape[1]}x{mask.shape[0]} px but its image {item.image} is "
            f"{image.shape[1]}x{image.shape[0]} px"
        )
    if item.label == NO_TUMOUR:
        if mask.any():
            raise SegDataError(f"mask {item.mask} of a {NO_TUMOUR} slice holds {int(mask.sum())} tumour pixel(s)")
    elif not mask.any():
        raise SegDataError(f"mask {item.mask} is empty (no tumour pixel): every tumour slice needs its outline")
    return image, mask


def prepare_pair(
    image: np.ndarray, mask: np.ndarray, config: PreprocessConfig
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Windows (if configured), crops and resizes a slice for the model; its mask follows (same box and grid)."""
    h, w = image.shape
    box = (0, 0, w, h)
    if config.window:
        image = window_intensity(image, config.window)
    if config.crop:
        image, box = contour_crop(image)
        x0, y0, x1, y1 = box
        mask = mask[y0:y1, x0:x1]
    return resize(image, config.img_size), resize_mask(mask, (config.img_size, config.img_size)), box


def _cache_path(cache_dir: Path, slices: Sequence[SegSlice], config: PreprocessConfig) -> Path:
    key = {**config.to_dict(), "crop_version": CROP_VERSION, "cache_version": _CACHE_VERSION}
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    for s in slices:
        for p in s.files:
            st = p.stat()
            h.update(f"{p.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return cache_dir / f"seg-{h.hexdigest()[:20]}.npz"


def load_seg_data(
    root: str | Path,
    config: PreprocessConfig,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    extra: Sequence[str | Path] = (),
    extra_labels: Sequence[str] | None = None,
) -> SegData:
    """Reads, checks and prepares every slice of a segmentation folder (cached as ``.npz`` when ``cache_dir``).

    ``extra``: more folders whose slices follow the main folder's (see :func:`read_sources`).

    Raises:
        SegDataError: See :func:`read_slices` and :func:`load_pair`; nothing is cached then.
    """
    slices = read_sources(root, extra, extra_labels)
    for item in slices:
        for p in item.files:
            if not p.is_file():
                raise SegDataError(f"file not found: {p} (listed in {_csv_of(item, root, extra)})")
    cache = _cache_path(Path(cache_dir), slices, config) if cache_dir is not None else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return SegData(slices, z["images"], z["masks"], z["boxes"])
    size = config.img_size
    images = np.zeros((len(slices), size, size), np.uint8)
    masks = np.zeros((len(slices), size, size), bool)
    boxes = np.zeros((len(slices), 4), np.int64)
    for i, item in enumerate(tqdm(slices, desc="reading slices", disable=not progress, leave=False)):
        images[i], masks[i], boxes[i] = prepare_pair(*load_pair(item), config)
    if cache is not None:

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # through a file object: np.savez would append ".npz" to the name
                np.savez(fh, images=images, masks=masks, boxes=boxes)

        atomic_write(cache, write)
    return SegData(slices, images, masks, boxes)


def _csv_of(item: SegSlice, root: str | Path, extra: Sequence[str | Path]) -> Path:
    """The ``slices.csv`` that lists ``item``."""
    for folder in extra:
        if item.image.is_relative_to(Path(folder)):
            return Path(folder) / "slices.csv"
    return Path(root) / "slices.csv"


def patient_folds(
    patients: Sequence[str] | np.ndarray, labels: Sequence[str] | np.ndarray, k: int, seed: int = 0
) -> np.ndarray:
    """Fold (0..k-1) of every slice, by patient: each patient's slices share one fold.

    Patients are shuffled with ``seed`` within their (majority) label and dealt round-robin, so every fold
    gets about the same share of each class.

    Raises:
        ValueError: ``k < 2`` or fewer patients than folds.
    """
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    pat, lab = np.asarray(patients), np.asarray(labels)
    unique = sorted(set(pat.tolist()))
    if len(unique) < k:
        raise ValueError(f"{len(unique)} patient(s) cannot be split into {k} folds")
    majority = {}
    for p in unique:
        values, counts = np.unique(lab[pat == p], return_counts=True)
        majority[p] = str(values[np.argmax(counts)])
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    turn = 0
    for label in sorted(set(majority.values())):
        group = [p for p in unique if majority[p] == label]
        for p in rng.permutation(group):
            fold_of[str(p)] = turn % k
            turn += 1
    return np.array([fold_of[p] for p in pat.tolist()], dtype=np.int64)


def patient_split(
    patients: Sequence[str] | np.ndarray, labels: Sequence[str] | np.ndarray, val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation slice indices with about ``val_fraction`` of the patients in validation.

    ``val_fraction == 0`` puts everything in training (an empty validation set).
    """
    n = len(patients)
    if val_fraction <= 0:
        return np.arange(n), np.arange(0)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    k = max(2, round(1 / val_fraction))
    folds = patient_folds(patients, labels, k, seed)
    return np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)


def source_folds(slices: Sequence[SegSlice], k: int, seed: int = 0) -> np.ndarray:
    """:func:`patient_folds` of the main folder's slices and, dealt separately, of the extra folders' groups.

    Dealing the extras apart leaves the main folder's folds exactly as without them (a comparable CV), and
    spreads every extra label over all folds.
    """
    folds = np.zeros(len(slices), np.int64)
    for is_extra in (False, True):
        sel = np.array([s.extra == is_extra for s in slices], bool)
        if sel.any():
            chosen = [s for s, keep in zip(slices, sel) if keep]
            folds[sel] = patient_folds([s.patient for s in chosen], [s.label for s in chosen], k, seed)
    return folds


def source_split(slices: Sequence[SegSlice], val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`patient_split`, with the extra folders' groups split apart (:func:`source_folds`)."""
    n = len(slices)
    if val_fraction <= 0:
        return np.arange(n), np.arange(0)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    folds = source_folds(slices, max(2, round(1 / val_fraction)), seed)
    return np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
