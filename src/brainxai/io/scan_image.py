"""The one image type every reader returns: a decoded 2-D scan with its spacing and description."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ScanImage:
    """A decoded 2-D scan, ready for the model.

    Attributes:
        pixels: ``(H, W)`` ``uint8`` display image (windowed and, for MONOCHROME1, inverted).
        pixel_spacing_mm: ``(row, column)`` spacing in millimetres, or None when the format has none.
        format: ``"jpeg"``, ``"png"``, ``"bmp"``, ``"tiff"``, ``"dicom"`` or ``"nifti"``.
        source_name: File name shown in reports (no directories).
        slice_index: Slice of a volume that was analysed, or None for 2-D files.
        meta: Format-specific details (plane, sequence, slice scores, windowing...). No patient identifiers.
    """

    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None
    format: str
    source_name: str
    slice_index: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    def info(self) -> dict[str, Any]:
        """JSON-serialisable description for reports (what the ``scan`` field of a result holds)."""
        return {
            "file": self.source_name,
            "format": self.format,
            "shape": list(self.shape),
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
            "slice_index": self.slice_index,
            **{k: v for k, v in self.meta.items() if _jsonable(v)},
        }


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False
