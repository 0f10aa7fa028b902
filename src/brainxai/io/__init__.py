"""Reading scans (JPEG/PNG, DICOM, NIfTI) into grayscale arrays and :class:`ScanImage` objects.

One idea per module: :mod:`~brainxai.io.raster` (JPEG/PNG/BMP/TIFF), :mod:`~brainxai.io.dicom` and
:mod:`~brainxai.io.nifti` (the format readers), :mod:`~brainxai.io.sniff` (which format a file is),
:mod:`~brainxai.io.slices` (which slice of a volume to analyse), :mod:`~brainxai.io.sequence` (the MR
sequence from free text), :mod:`~brainxai.io.scan_image` (the decoded image),
:mod:`~brainxai.io.brain_check` (is it a brain scan at all) and :mod:`~brainxai.io.scan` (the reader
that dispatches to the others).
"""

from brainxai.io.brain_check import NotABrainScanError, check_brain_scan
from brainxai.io.raster import ImageReadError, read_raster, to_uint8
from brainxai.io.scan import read_scan
from brainxai.io.scan_image import ScanImage
from brainxai.io.sniff import sniff_format

__all__ = [
    "ImageReadError",
    "NotABrainScanError",
    "ScanImage",
    "check_brain_scan",
    "read_raster",
    "read_scan",
    "sniff_format",
    "to_uint8",
]
