"""The benchmark's input: a box CSV and its images, read and prepared once for every method.

A box CSV may also have a ``mask`` column (the layout of ``figshare-masks-dev/slices.csv``: ``file,mask,
label,patient,width,height,x0,y0,x1,y1``): each row then names a binary lesion mask (0/255 PNG), read
with the scan and brought to the scan's pixel grid like the box.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainxai.analysis.region import brain_mask
from brainxai.data.lesion import read_mask, resize_mask
from brainxai.explain.quality import Box
from brainxai.pipeline import steps
from brainxai.pipeline.steps import PreparedImage

if TYPE_CHECKING:
    from brainxai.inference import Classifier

#: Columns a box CSV must have (``width``/``height``, the size the box refers to, are optional).
REQUIRED_COLUMNS = frozenset({"file", "label", "x0", "y0", "x1", "y1"})

#: The optional column naming each image's lesion mask (relative to the same root as ``file``).
MASK_COLUMN = "mask"


@dataclass(frozen=True)
class BoxRecord:
    """One annotated image."""

    path: Path
    label: str
    box: Box
    size: tuple[int, int] | None = None  # (width, height) the box refers to, when the CSV gives it
    mask: Path | None = None  # the lesion mask, when the CSV has a mask column


def _parse_row(row: dict[str, str], root: Path, where: str) -> BoxRecord:
    try:
        box = tuple(int(float(row[k])) for k in ("x0", "y0", "x1", "y1"))
    except ValueError as exc:
        raise ValueError(f"{where}: bad box ({exc})") from exc
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"{where}: empty box {box}")
    size = (int(row["width"]), int(row["height"])) if row.get("width") and row.get("height") else None
    mask = None
    if MASK_COLUMN in row:
        if not (row[MASK_COLUMN] or "").strip():
            raise ValueError(f"{where}: empty {MASK_COLUMN!r} (the CSV has a mask column: every row needs a mask)")
        mask = root / row[MASK_COLUMN].strip()
    return BoxRecord(path=root / row["file"], label=row["label"].strip(), box=box, size=size, mask=mask)  # type: ignore[arg-type]


def read_boxes(csv_path: str | Path, images_root: str | Path | None = None) -> list[BoxRecord]:
    """Reads a box CSV; paths (``file`` and, when present, ``mask``) are relative to ``images_root`` or
    else to the CSV's folder.

    Raises:
        ValueError: A required column is missing or a row is malformed.
    """
    csv_path = Path(csv_path)
    root = Path(images_root) if images_root is not None else csv_path.parent
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = REQUIRED_COLUMNS - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {', '.join(sorted(missing))}")
        return [_parse_row(row, root, f"{csv_path}:{line}") for line, row in enumerate(reader, start=2)]


def scaled_box(record: BoxRecord, shape: tuple[int, int]) -> Box:
    """The record's box in pixels of the image as read (scaled, with a warning, if the CSV declared another size)."""
    declared = record.size
    h, w = shape
    if declared is None or declared == (w, h):
        return record.box
    sx, sy = w / declared[0], h / declared[1]
    warnings.warn(
        f"{record.path.name}: CSV says {declared[0]}x{declared[1]}, image is {w}x{h}; box scaled", stacklevel=3
    )
    x0, y0, x1, y1 = record.box
    return (round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy))


def scaled_mask(record: BoxRecord, shape: tuple[int, int]) -> np.ndarray:
    """The record's lesion mask on the pixel grid of the image as read (nearest-neighbour resize, with a
    warning, when the mask file has another size).

    Raises:
        ValueError: The record has no mask, or the mask file is unreadable or not binary.
    """
    if record.mask is None:
        raise ValueError(f"{record.path.name}: no mask")
    mask = read_mask(record.mask)
    if mask.shape != shape:
        warnings.warn(
            f"{record.mask.name}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {shape[1]}x{shape[0]}; "
            "mask resized (nearest)",
            stacklevel=3,
        )
        mask = resize_mask(mask, shape)
    return mask


@dataclass
class BoxImages:
    """The images of a box CSV, read and preprocessed once for every method.

    Attributes:
        records: The CSV rows.
        images: Each scan as the model sees it (:class:`~brainxai.pipeline.steps.PreparedImage`).
        boxes: Each tumour box in pixels of its scan.
        brains: Each scan's head mask (the relevance region is restricted to it).
        prepared: ``(N, S, S)`` ``uint8`` stack of the model inputs.
        originals: The scans as decoded, ``(H, W)`` ``uint8``.
        crops: The crop boxes the model inputs were cut from, in original pixels.
        masks: Each lesion mask in pixels of its scan (bool), or None when the CSV has no mask column.
    """

    records: list[BoxRecord]
    images: list[PreparedImage]
    boxes: list[Box]
    brains: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] | None = None
    prepared: np.ndarray = field(init=False)
    originals: list[np.ndarray] = field(init=False)
    crops: list[Box] = field(init=False)

    def __post_init__(self) -> None:
        self.prepared = np.stack([p.model_input for p in self.images])
        self.originals = [p.original for p in self.images]
        self.crops = [p.box for p in self.images]

    @property
    def has_masks(self) -> bool:
        """Whether every image comes with a lesion mask."""
        return self.masks is not None


def load_box_images(records: Sequence[BoxRecord], classifier: Classifier) -> BoxImages:
    """Reads the scans, preprocesses them as inference does and scales their boxes to the scans.

    Scans are read by the analysis core (:func:`brainxai.pipeline.steps.read`: any format, checked to
    look like a brain scan) and prepared by it (:func:`brainxai.pipeline.steps.prepare`). Lesion masks
    are read when every record names one (:func:`scaled_mask`).
    """
    with_masks = bool(records) and all(rec.mask is not None for rec in records)
    images, boxes, brains, masks = [], [], [], []
    for rec in records:
        image = steps.prepare(steps.read(rec.path).pixels, classifier)
        images.append(image)
        boxes.append(scaled_box(rec, image.shape))
        brains.append(brain_mask(image.original))
        if with_masks:
            masks.append(scaled_mask(rec, image.shape))
    return BoxImages(list(records), images, boxes, brains, masks if with_masks else None)
