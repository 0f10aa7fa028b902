"""Which public source each image of the Kaggle brain-tumour set comes from, and leave-one-source-out splits.

The Kaggle "Brain Tumor MRI Dataset" is assembled from three sources: figshare (Cheng et al., 2017;
glioma, meningioma, pituitary), SARTAJ (all four classes) and Br35H (no tumour). In the 224-px
re-export this project uses (``Tr-xx_NNNN.jpg`` / ``Te-xx_NNNN.jpg`` file names), the scouting study
``experiments/source_derivation`` found the source written in the files themselves:

* tumour classes: a grayscale (``L``) JPEG is figshare, a colour (``RGB``) one is SARTAJ. The counts
  match figshare's published class sizes exactly (1426 / 708 / 930) and the file numbering agrees
  (within a class and split, the RGB images are numbers 0..k-1 and the L ones k..end);
* no tumour (figshare has none): file number below 395 (Training) or 105 (Testing), SARTAJ's own
  no-tumour counts, is SARTAJ; the rest is Br35H. Weaker evidence (file numbering, and a colour marker
  that never occurs in the first block); 332 Br35H images are near-copies of SARTAJ ones.

A file whose name does not follow that convention gets the source ``unknown``, with the reason.

The sources share content: the figshare slices are stored mirrored left to right, and most SARTAJ
tumour images are the same figshare slices again, unmirrored. So every image also gets a *content
group*: images whose 64-bit pHash, or the pHash of their left-right mirror image, lies within
``CONTENT_MAX_DISTANCE`` bits of each other's are linked, and a group is a connected set of links
(across splits and sources). Leave-one-source-out keeps whole groups on one side (:func:`loso_split`).
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from brainxai.data.audit import HashedImage, hash_samples, near_pairs
from brainxai.data.dataset import DatasetLayoutError, Sample, discover_samples

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("figshare", "sartaj", "br35h")
UNKNOWN = "unknown"
SPLITS: tuple[str, ...] = ("Training", "Testing")

#: pHash bits within which two images (or one and the other's mirror image) are the same slice. The study's
#: nearest-distance histograms show twins at 0-2 bits and unrelated slices from 4 bits, mostly 8-16.
CONTENT_MAX_DISTANCE = 2

#: SARTAJ's no-tumour counts; in the Kaggle numbering its images come first.
NOTUMOR_SARTAJ_BELOW: dict[str, int] = {"Training": 395, "Testing": 105}

_NAME = re.compile(r"^(?P<split>Tr|Te)-(?P<cls>gl|me|no|pi)(?:Tr)?_(?P<num>\d+)\.jpe?g$", re.IGNORECASE)
_CLASS_TOKEN = {"gl": "glioma", "me": "meningioma", "no": "notumor", "pi": "pituitary"}
_SPLIT_TOKEN = {"tr": "Training", "te": "Testing"}
_COLUMNS = ("path", "split", "label", "source", "rule", "content")


@dataclass(frozen=True)
class SourceLabel:
    """One image's source and content group."""

    path: str  # relative to the dataset root, posix ("Training/glioma/Tr-gl_0000.jpg")
    split: str  # "Training" | "Testing"
    label: str  # canonical class name
    source: str  # one of SOURCES, or UNKNOWN
    rule: str  # how the source was decided, one short phrase
    content: str  # content group: images that are the same slice (plain or mirrored) share it


def source_rule(split: str, label: str, file_name: str, mode: str) -> tuple[str, str]:
    """The source of one Kaggle image and the rule that decided it.

    Args:
        split: ``"Training"`` or ``"Testing"`` (the folder the file is in).
        label: Canonical class name (the class folder).
        file_name: The file's name (``Tr-gl_0000.jpg``).
        mode: The image's PIL colour mode (``"L"``, ``"RGB"``, ...).

    Returns:
        ``(source, rule)``; ``source`` is ``UNKNOWN`` when the name does not follow the Kaggle
        convention or disagrees with its folders.
    """
    m = _NAME.match(file_name)
    if m is None:
        return UNKNOWN, "file name not in the Kaggle Tr-xx_NNNN/Te-xx_NNNN form"
    named_split, named_class = _SPLIT_TOKEN[m["split"].lower()], _CLASS_TOKEN[m["cls"].lower()]
    if named_split != split:
        return UNKNOWN, f"file name says {named_split}, folder says {split}"
    if named_class != label:
        return UNKNOWN, f"file name says {named_class}, folder says {label}"
    if label == "notumor":
        limit = NOTUMOR_SARTAJ_BELOW[split]
        number = int(m["num"])
        if number < limit:
            return "sartaj", f"no-tumour file number < {limit}"
        return "br35h", f"no-tumour file number >= {limit}"
    if mode == "L":
        return "figshare", "tumour image stored as grayscale (L) JPEG"
    if mode == "RGB":
        return "sartaj", "tumour image stored as colour (RGB) JPEG"
    return UNKNOWN, f"tumour image in colour mode {mode}, neither L nor RGB"


def _split_folders(root: Path) -> dict[str, Path]:
    """``{"Training": folder, "Testing": folder}`` for the split folders present (case-insensitive names)."""
    if not root.is_dir():
        raise DatasetLayoutError(f"dataset root not found: {root}")
    by_lower = {c.name.lower(): c for c in sorted(root.iterdir()) if c.is_dir()}
    found = {s: by_lower[s.lower()] for s in SPLITS if s.lower() in by_lower}
    if "Training" not in found:
        raise DatasetLayoutError(f"{root}: no Training/ folder; expected a Kaggle-layout root with Training/, Testing/")
    return found


def _image_mode(path: Path) -> str:
    with Image.open(path) as img:  # reads the header only
        return str(img.mode)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def content_groups(hashed: Sequence[HashedImage], max_distance: int = CONTENT_MAX_DISTANCE) -> list[int]:
    """Content-group index of each hashed image (0, 1, ... in order of first member).

    Two images are linked when the pHash of one lies within ``max_distance`` bits of the pHash of the
    other or of its left-right mirror image; a group is a connected set of links.
    """
    if not hashed:
        return []
    plain = np.stack([h.bits for h in hashed])
    flipped = np.stack([h.bits if h.flip_bits is None else h.flip_bits for h in hashed])
    uf = _UnionFind(len(hashed))
    for i, j, _ in near_pairs(plain, None, max_distance):
        uf.union(i, j)
    for i, j, _ in near_pairs(plain, flipped, max_distance):  # i's image vs j's mirror image
        if i != j:
            uf.union(i, j)
    numbering: dict[int, int] = {}
    return [numbering.setdefault(uf.find(i), len(numbering)) for i in range(len(hashed))]


def derive_sources(
    root: str | Path,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    max_distance: int = CONTENT_MAX_DISTANCE,
) -> list[SourceLabel]:
    """Source and content group of every image of a Kaggle-layout dataset.

    Args:
        root: Folder holding ``Training/`` and (optionally) ``Testing/``, each class-per-folder
            (the folder-name variants :func:`~brainxai.data.dataset.discover_samples` accepts).
        progress: Show a progress bar while hashing.
        cache_dir: Where the pHashes are cached (see :func:`~brainxai.data.audit.hash_samples`).
        max_distance: pHash bits within which images are the same content.

    Returns:
        One label per readable image, sorted by path (same files, same labels). Unreadable files
        are left out with a warning.

    Raises:
        DatasetLayoutError: No ``Training/`` folder, or a split folder is not class-per-folder.
    """
    root = Path(root)
    samples: list[Sample] = []
    split_of: dict[int, str] = {}
    for split, folder in _split_folders(root).items():
        for s in discover_samples(folder):
            split_of[id(s)] = split
            samples.append(s)
    hashed, failed = hash_samples(samples, progress, cache_dir)
    if failed:
        logger.warning("%d unreadable image(s) left out of the source labels, e.g. %s", len(failed), failed[:3])
    rel = [Path(h.sample.path).relative_to(root).as_posix() for h in hashed]
    order = sorted(range(len(hashed)), key=lambda k: rel[k])
    hashed = [hashed[k] for k in order]
    rel = [rel[k] for k in order]
    groups = content_groups(hashed, max_distance)
    labels = []
    for h, path, g in zip(hashed, rel, groups):
        split = split_of[id(h.sample)]
        source, rule = source_rule(split, h.sample.class_name, Path(h.sample.path).name, _image_mode(h.sample.path))
        labels.append(SourceLabel(path, split, h.sample.class_name, source, rule, f"g{g:05d}"))
    return labels


def write_sources_csv(labels: Iterable[SourceLabel], path: str | Path) -> Path:
    """Writes source labels as CSV (``path,split,label,source,rule,content``); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_COLUMNS)
        w.writerows(astuple(lab) for lab in labels)
    return path


def read_sources_csv(path: str | Path) -> list[SourceLabel]:
    """Reads a CSV written by :func:`write_sources_csv`.

    Raises:
        ValueError: A column is missing.
    """
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a sources CSV, missing column(s) {', '.join(missing)}")
        return [SourceLabel(**{f.name: row[f.name] for f in fields(SourceLabel)}) for row in reader]


def _check_sources(held_out: Iterable[str]) -> None:
    bad = [s for s in held_out if s not in SOURCES]
    if bad:
        raise ValueError(f"unknown source(s) {', '.join(bad)}; choose from {', '.join(SOURCES)}")


def loso_training_paths(labels: Sequence[SourceLabel], held_out: Iterable[str]) -> list[str]:
    """The Training images a model may learn from when the ``held_out`` sources are to be tested on.

    Every Training image that is of none of those sources, of a known source, and in no content group
    that holds an image of one of them. Images of ``unknown`` source are left out too: they might be
    of a held-out source.
    """
    held = set(held_out)
    _check_sources(held)
    test_groups = {lab.content for lab in labels if lab.source in held}
    return [
        lab.path
        for lab in labels
        if lab.split == "Training"
        and lab.source not in held
        and lab.source != UNKNOWN
        and lab.content not in test_groups
    ]


def loso_split(labels: Sequence[SourceLabel], held_out: str) -> tuple[list[str], list[str]]:
    """Leave-one-source-out: ``(training paths, test paths)``, relative to the dataset root.

    The test set is every image of the ``held_out`` source, from Training and Testing alike. The
    training set is every Training image of another known source that shares no content group with
    a test image: a mirrored or re-encoded copy of a test slice filed under another source does not
    train the model that is tested on it. No content group is ever on both sides.

    Args:
        labels: Output of :func:`derive_sources` (or :func:`read_sources_csv`).
        held_out: One of :data:`SOURCES`.

    Raises:
        ValueError: ``held_out`` is not a known source.
    """
    _check_sources([held_out])
    test = [lab.path for lab in labels if lab.source == held_out]
    return loso_training_paths(labels, [held_out]), test


def describe_fold(labels: Sequence[SourceLabel], held_out: str) -> dict[str, Any]:
    """Per-class counts of one leave-one-source-out fold, JSON-ready.

    Returns:
        ``held_out``; ``test`` ({class: images}); ``train`` ({class: images}); ``dropped_twins``
        ({class: Training images of other sources left out because they share content with the test
        set}); ``dropped_unknown`` (Training images of unknown source left out).
    """
    train, test = loso_split(labels, held_out)
    train_set, test_set = set(train), set(test)
    by_path = {lab.path: lab for lab in labels}
    test_groups = {by_path[p].content for p in test}
    twins = [
        lab
        for lab in labels
        if lab.split == "Training" and lab.source not in (held_out, UNKNOWN) and lab.content in test_groups
    ]
    return {
        "held_out": held_out,
        "test": dict(sorted(Counter(by_path[p].label for p in test_set).items())),
        "train": dict(sorted(Counter(by_path[p].label for p in train_set).items())),
        "dropped_twins": dict(sorted(Counter(lab.label for lab in twins).items())),
        "dropped_unknown": sum(1 for lab in labels if lab.split == "Training" and lab.source == UNKNOWN),
    }


def loso_excluded(
    samples: Sequence[Sample],
    training_folder: str | Path,
    held_out: Sequence[str],
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[int]:
    """Indices of the training samples that training without the ``held_out`` sources must leave out.

    Those not in :func:`loso_training_paths`: the held-out sources' own images, images that share a
    content group with any image of theirs (Training or Testing), and images of unknown source. The
    sources are derived from the dataset root above ``training_folder`` (which must be its
    ``Training/``).

    Raises:
        DatasetLayoutError: The folder above ``training_folder`` is not a Kaggle-layout root.
        ValueError: An unknown source name.
    """
    _check_sources(held_out)
    root = Path(training_folder).parent
    keep = set(loso_training_paths(derive_sources(root, progress, cache_dir), held_out))
    return [k for k, s in enumerate(samples) if Path(s.path).relative_to(root).as_posix() not in keep]
