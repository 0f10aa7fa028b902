"""Recognising a file's format from its content, never from its name.

DICOM by ``DICM`` at byte 128, NIfTI by its header size field (348 or 540) and magic, JPEG/PNG/BMP/TIFF
by their signatures, and gzip (which may hold a NIfTI volume) by its own.
"""

from __future__ import annotations

import struct


def sniff_format(data: bytes) -> str | None:
    """Names the format of ``data`` from its first bytes, or None when unrecognised."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if is_nifti_header(data):
        return "nifti"
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    return None


def is_nifti_header(data: bytes) -> bool:
    """True when ``data`` starts with a NIfTI-1 or NIfTI-2 header (either byte order)."""
    if len(data) < 348:
        return False
    for endian in "<>":
        size = struct.unpack(endian + "i", data[:4])[0]
        if size == 348 and data[344:347] in (b"n+1", b"ni1"):
            return True
        if size == 540 and len(data) >= 540 and data[4:7] in (b"n+2", b"ni2"):
            return True
    return False
