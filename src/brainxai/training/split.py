"""The training folder and its seeded, stratified train/validation split: the one way to build them.

The trainer builds its split here, and ``brainxai calibrate`` rebuilds a checkpoint's validation
split here from the recipe stored in the checkpoint, so the two can never drift apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainxai.data.audit import reference_images, twins_of
from brainxai.data.dataset import Sample, decode_samples, discover_samples, fingerprint
from brainxai.data.preprocess import PreprocessConfig
from brainxai.data.sources import loso_excluded
from brainxai.data.splits import stratified_split


def resolve_training_folder(data: str | Path) -> Path:
    """``DIR`` or ``DIR/Training``: accepts the dataset root or its training folder."""
    p = Path(data)
    return p / "Training" if (p / "Training").is_dir() else p


def _limit(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``per_class`` images of each class, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    keep = [np.sort(rng.permutation(np.flatnonzero(labels == c))[:per_class]) for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


@dataclass
class TrainingSplit:
    """The decoded training folder and its train/validation split, exactly as the trainer uses them."""

    folder: Path
    images: np.ndarray  # (N, S, S) uint8, after ``limit_per_class``
    labels: np.ndarray  # (N,)
    train_idx: np.ndarray
    val_idx: np.ndarray
    fingerprint: str  # of every decoded image of ``folder`` (before exclusion and ``limit_per_class``)
    failed: list[tuple[Path, str]]
    excluded: list[Path] = field(default_factory=list)  # twins of ``exclude_twins_of``, left out
    excluded_by_source: list[Path] = field(default_factory=list)  # left out by ``exclude_sources``
    samples: list[Sample] = field(default_factory=list)  # aligned with ``images`` (e.g. to find their masks)
    extra: dict[str, object] = field(default_factory=dict)  # what ``extra_data`` added (see :func:`training_split`)


def training_split(
    data: str | Path,
    preprocess: PreprocessConfig,
    *,
    val_fraction: float,
    seed: int,
    limit_per_class: int | None = None,
    exclude_twins_of: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    exclude_sources: tuple[str, ...] | list[str] = (),
    twins_mirror: bool = True,
    extra_data: tuple[str | Path, ...] | list[str | Path] = (),
) -> TrainingSplit:
    """Decodes ``data``'s training folder and splits it as the trainer does (the one place that does).

    A run's recipe (``val_fraction``, ``seed``, ``limit_per_class``) plus the same files give the same
    split, so the validation split of a checkpoint can be rebuilt later (``brainxai calibrate``).

    ``exclude_twins_of`` (a folder of images or a CSV with a ``file`` column, such as a box CSV) leaves
    out every training image that is a pHash twin of one of its images, so that set can later measure
    the model on images it has not seen; with ``twins_mirror`` a training image whose left-right mirror
    image is such a twin is left out too (checkpoints from before record no such flag: False).

    ``exclude_sources`` (names from :data:`brainxai.data.sources.SOURCES`) leaves out what
    leave-one-source-out training must not see (:func:`brainxai.data.sources.loso_excluded`): those
    sources' images and every image sharing content with them; ``data`` must be a Kaggle-layout root.

    ``extra_data`` (class-per-folder folders) adds images to the training half only, after the split, so
    the validation split stays the one the recipe alone defines; extra images that are pHash twins (or
    mirror twins) of a validation image or of ``exclude_twins_of`` are left out.
    """
    folder = resolve_training_folder(data)
    samples = discover_samples(folder)
    decoded = decode_samples(samples, preprocess, cache_dir=cache_dir, progress=progress)
    images, labels = decoded.images, decoded.labels
    kept = np.arange(len(labels))  # positions in decoded.samples of the rows of ``images``
    excluded: list[Path] = []
    by_source: list[Path] = []
    drop: set[int] = set()
    if exclude_sources:
        gone = loso_excluded(decoded.samples, folder, exclude_sources, cache_dir, progress)
        by_source = [decoded.samples[k].path for k in gone]
        drop.update(gone)
    if exclude_twins_of is not None:
        twins = twins_of(decoded.samples, reference_images(exclude_twins_of), progress=progress, mirror=twins_mirror)
        excluded = [decoded.samples[k].path for k in twins]
        drop.update(twins)
    if drop:
        keep = np.setdiff1d(np.arange(len(labels)), sorted(drop))
        images, labels, kept = images[keep], labels[keep], kept[keep]
    if limit_per_class:
        keep = _limit(labels, limit_per_class, seed)
        images, labels, kept = images[keep], labels[keep], kept[keep]
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    split = TrainingSplit(
        folder=folder,
        images=images,
        labels=labels,
        train_idx=train_idx,
        val_idx=val_idx,
        fingerprint=fingerprint(decoded.samples, folder),
        failed=decoded.failed,
        excluded=excluded,
        excluded_by_source=by_source,
        samples=[decoded.samples[k] for k in kept],
    )
    if extra_data:
        _add_extra(split, extra_data, preprocess, exclude_twins_of, cache_dir, progress, twins_mirror)
    return split


def _add_extra(
    split: TrainingSplit,
    folders: tuple[str | Path, ...] | list[str | Path],
    preprocess: PreprocessConfig,
    exclude_twins_of: str | Path | None,
    cache_dir: str | Path | None,
    progress: bool,
    mirror: bool,
) -> None:
    """Appends the decoded images of ``folders`` to ``split``'s training half (in place)."""
    references = [split.samples[i].path for i in split.val_idx]
    if exclude_twins_of is not None:
        references += reference_images(exclude_twins_of)
    per_folder: dict[str, dict[str, int]] = {}
    prints = [split.fingerprint]
    for folder in folders:
        decoded = decode_samples(
            discover_samples(folder, partial=True), preprocess, cache_dir=cache_dir, progress=progress
        )
        twins = set(twins_of(decoded.samples, references, progress=progress, mirror=mirror)) if references else set()
        keep = np.array([i for i in range(len(decoded.samples)) if i not in twins], dtype=np.int64)
        start = len(split.labels)
        split.images = np.concatenate([split.images, decoded.images[keep]])
        split.labels = np.concatenate([split.labels, decoded.labels[keep]])
        split.samples += [decoded.samples[i] for i in keep]
        split.train_idx = np.concatenate([split.train_idx, np.arange(start, start + len(keep))])
        split.failed += decoded.failed
        prints.append(fingerprint(decoded.samples, folder))
        per_folder[str(folder)] = {"added": len(keep), "left_out_as_twins": len(twins), "failed": len(decoded.failed)}
    split.fingerprint = hashlib.sha256("+".join(prints).encode()).hexdigest()[:16]
    split.extra = {"folders": per_folder}
