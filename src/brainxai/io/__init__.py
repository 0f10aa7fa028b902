"""Reading scans (JPEG/PNG, DICOM, NIfTI) into grayscale arrays and :class:`ScanImage` objects."""

from brainxai.io.raster import ImageReadError, read_raster, to_uint8
from brainxai.io.scan import NotABrainScanError, ScanImage, check_brain_scan, read_scan, sniff_format

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
