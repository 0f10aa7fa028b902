"""Synthetic DICOM series for the tests and benchmarks (imported as ``seriesfiles``, like ``dicomfiles``).

A series is built from 2-D slices (e.g. the sample scans): one MR instance per slice with a known
orientation, pixel spacing, slice thickness and positions, sharing study, series and frame of reference.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from dicomfiles import IDENTITY_WINDOW, make_dicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

SPACING = (0.5, 0.5)
THICKNESS = 5.0
ORIGIN = (-100.0, -120.0, -40.0)


def series_datasets(
    slices: Sequence[np.ndarray],
    *,
    spacing: tuple[float, float] = SPACING,
    thickness: float = THICKNESS,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    origin: Sequence[float] = ORIGIN,
    description: str = "AX T1 POST",
    series_number: int = 3,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
) -> list[Dataset]:
    """One MR instance per slice; slice ``k`` lies ``k * thickness`` mm along the normal from ``origin``."""
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    iop = np.asarray(orientation, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    out = []
    for k, pixels in enumerate(slices):
        raw = make_dicom(pixels, spacing=spacing, window=IDENTITY_WINDOW, orientation=tuple(orientation))
        ds = pydicom.dcmread(io.BytesIO(raw))
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.ImagePositionPatient = [round(float(v), 4) for v in np.asarray(origin) + k * thickness * normal]
        ds.SliceThickness = thickness
        ds.SeriesDescription = description
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Series", "PAT-S1", "19700101", "F"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240105", "101500", "7", "ACC9"
        ds.ReferringPhysicianName = ""
        ds.SeriesNumber, ds.InstanceNumber = series_number, k + 1
        out.append(ds)
    return out


def write_datasets(folder: Path, datasets: Sequence[Dataset], order: Sequence[int] | None = None) -> list[Path]:
    """Writes ``datasets`` as ``folder/IMG<n>.dcm``; ``order`` scrambles which file name gets which slice."""
    folder.mkdir(parents=True, exist_ok=True)
    order = list(order) if order is not None else list(range(len(datasets)))
    paths = []
    for name_index, k in enumerate(order):
        path = folder / f"IMG{name_index:04d}.dcm"
        datasets[k].save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_series(
    folder: Path, slices: Sequence[np.ndarray], *, shuffle_seed: int | None = None, **kwargs
) -> list[Path]:
    """Writes a series of ``slices`` into ``folder`` (file names shuffled when ``shuffle_seed`` is given)."""
    datasets = series_datasets(slices, **kwargs)
    order = None
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(datasets)).tolist()
    return write_datasets(folder, datasets, order)
