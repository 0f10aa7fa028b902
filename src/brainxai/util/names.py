"""File names: the scan suffixes we know, stripped once, and names safe to write."""

from __future__ import annotations

import re

from brainxai.constants import IMAGE_SUFFIXES

#: Suffixes of the scan formats brainxai reads, longest first so ``.nii.gz`` wins over ``.gz``.
SCAN_SUFFIXES: tuple[str, ...] = tuple(
    sorted({".nii.gz", ".nii", ".dcm", ".dicom", ".ima", ".gz", *IMAGE_SUFFIXES}, key=len, reverse=True)
)


def strip_scan_suffix(name: str) -> str:
    """``name`` without its scan suffix (``brain.nii.gz`` -> ``brain``); a bare suffix is kept."""
    lower = name.lower()
    for suffix in SCAN_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def safe_stem(name: str, max_length: int = 80) -> str:
    """A file-system-safe base name from a display name: suffix stripped, odd characters replaced."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", strip_scan_suffix(name)).strip("._") or "scan"
    return stem[:max_length]
