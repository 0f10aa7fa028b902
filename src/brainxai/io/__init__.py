"""Reading scans (JPEG/PNG, and more) into grayscale arrays."""

from brainxai.io.raster import ImageReadError, read_raster, to_uint8

__all__ = ["ImageReadError", "read_raster", "to_uint8"]
