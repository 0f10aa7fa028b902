"""Reading whole series and volumes (``brainxai.io.series``): order, geometry, multi-frame, NIfTI layout.

Fast: no model. The analysis itself is in ``test_series_analysis.py``.
"""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicomfiles import IDENTITY_WINDOW, make_dicom
from pydicom.dataset import Dataset
from pydicom.uid import EnhancedMRImageStorage, generate_uid
from seriesfiles import ORIGIN, THICKNESS, series_datasets, write_series

from brainxai.io import read_raster
from brainxai.io.series import (
    VoxelLayout,
    group_dicom_series,
    is_nifti_volume,
    load_dicom_series,
    load_multiframe,
    load_nifti_volume,
    nifti_layout,
    read_volume,
)


@pytest.fixture(scope="module")
def samples(samples_dir: Path) -> list[np.ndarray]:
    return [read_raster(samples_dir / f"{c}.jpg") for c in ("notumor", "glioma", "meningioma", "pituitary")]


def _marked(samples: list[np.ndarray], n: int) -> list[np.ndarray]:
    """``n`` slices whose top-left pixel holds their index, so the order can be read back."""
    out = []
    for k in range(n):
        s = samples[k % len(samples)].copy()
        s[0, 0] = 10 * k
        out.append(s)
    return out


@pytest.mark.parametrize(
    "orientation",
    [(1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1), (1, 0, 0, 0, 0, -1), (0.96, 0.28, 0, -0.28, 0.96, 0)],
    ids=["axial", "sagittal", "coronal", "oblique"],
)
def test_shuffled_files_are_sorted_along_the_slice_normal(tmp_path, samples, orientation) -> None:
    slices = _marked(samples, 7)
    write_series(tmp_path, slices, shuffle_seed=3, orientation=orientation)
    (series,) = group_dicom_series([tmp_path])
    volume = load_dicom_series(series)
    assert [int(s[0, 0]) for s in volume.slices] == [10 * k for k in range(7)]
    assert np.diff(volume.positions_mm) == pytest.approx([THICKNESS] * 6, abs=1e-3)
    assert volume.slice_spacing_mm == pytest.approx(THICKNESS)
    # The order does not come from the file names: they were shuffled.
    names = [p.name for p in series.paths]
    assert names != sorted(names)


def test_affine_maps_voxels_to_the_dicom_positions(tmp_path, samples) -> None:
    orientation = (0.96, 0.28, 0, -0.28, 0.96, 0)
    datasets = series_datasets(samples[:3], orientation=orientation, spacing=(0.5, 0.7))
    write_series(tmp_path, samples[:3], orientation=orientation, spacing=(0.5, 0.7))
    volume = read_volume(tmp_path)
    assert volume.affine is not None
    lps_to_ras = np.array([-1.0, -1.0, 1.0])
    for k in range(3):
        ipp = np.array([float(v) for v in datasets[k].ImagePositionPatient])
        assert volume.affine @ [0, 0, k, 1] == pytest.approx([*(lps_to_ras * ipp), 1.0], abs=1e-4)
    # One column step moves 0.7 mm along the row direction, one row step 0.5 mm along the column direction.
    iop = np.array(orientation, dtype=float)
    first = volume.affine @ [0, 0, 0, 1]
    assert (volume.affine @ [1, 0, 0, 1] - first)[:3] == pytest.approx(lps_to_ras * iop[:3] * 0.7)
    assert (volume.affine @ [0, 1, 0, 1] - first)[:3] == pytest.approx(lps_to_ras * iop[3:] * 0.5)


def test_voxel_array_round_trips_the_display_slices(tmp_path, samples) -> None:
    write_series(tmp_path, samples[:3])
    volume = read_volume(tmp_path)
    array = volume.voxel_array(volume.slices)
    assert array.shape == (224, 224, 3)  # (columns, rows, slices)
    assert np.array_equal(array[:, :, 1].T, volume.slices[1])


def test_series_are_grouped_by_uid_and_non_dicom_files_ignored(tmp_path, samples) -> None:
    study = generate_uid()
    write_series(tmp_path / "a", samples[:3], study_uid=study, series_number=2, description="AX T2")
    write_series(tmp_path / "b", samples[:2], study_uid=study, series_number=5, description="AX T1")
    (tmp_path / "notes.txt").write_text("not DICOM")
    (tmp_path / "b" / "picture.dcm").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    groups = group_dicom_series([tmp_path])
    assert [(g.series_number, g.description, len(g.paths)) for g in groups] == [(2, "AX T2", 3), (5, "AX T1", 2)]
    assert {g.study_uid for g in groups} == {study}
    assert all(g.modality == "MR" and g.has_pixels for g in groups)


def _enhanced_multiframe(frames: np.ndarray, positions: list[list[float]]) -> bytes:
    """A multi-frame MR with per-frame plane positions (functional groups), frames in the given order."""
    ds = pydicom.dcmread(io.BytesIO(make_dicom(frames, window=IDENTITY_WINDOW, orientation=None, spacing=None)))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    shared = Dataset()
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing, measures.SliceThickness = [0.8, 0.8], 3.0
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orientation], [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for pos in positions:
        item, plane = Dataset(), Dataset()
        plane.ImagePositionPatient = pos
        item.PlanePositionSequence = [plane]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_multiframe_frames_are_ordered_by_their_positions(tmp_path, samples) -> None:
    frames = np.stack(_marked(samples, 4))
    # Stored out of order: frame 1 is the highest slice.
    positions = [[0.0, 0.0, 9.0], [0.0, 0.0, 0.0], [0.0, 0.0, 6.0], [0.0, 0.0, 3.0]]
    path = tmp_path / "mf.dcm"
    path.write_bytes(_enhanced_multiframe(frames, positions))
    volume = load_multiframe(path)
    assert volume.format == "dicom-multiframe"
    assert [int(s[0, 0]) for s in volume.slices] == [10, 30, 20, 0]
    assert volume.refs == [(0, 2), (0, 4), (0, 3), (0, 1)]
    assert volume.positions_mm == pytest.approx([0, 3, 6, 9])
    assert volume.pixel_spacing_mm == (0.8, 0.8) and volume.slice_spacing_mm == pytest.approx(3.0)
    assert volume.affine is not None and volume.affine @ [0, 0, 3, 1] == pytest.approx([0, 0, 9, 1])
    assert "PixelData" not in volume.headers[0]
    # read_volume recognises it by content, through the series grouping.
    assert read_volume(path).refs == volume.refs


def test_multiframe_without_positions_keeps_file_order_and_claims_no_geometry(tmp_path, samples) -> None:
    path = tmp_path / "legacy.dcm"
    path.write_bytes(make_dicom(np.stack(_marked(samples, 3)), window=IDENTITY_WINDOW))
    volume = read_volume(path)
    assert [int(s[0, 0]) for s in volume.slices] == [0, 10, 20]
    assert volume.affine is None and volume.positions_mm is None
    assert "no position per frame" in volume.meta["geometry_notes"][0]


# -- NIfTI -------------------------------------------------------------------------------------------


def _nifti(volume: np.ndarray, affine: np.ndarray) -> bytes:
    img = nib.Nifti1Image(volume.astype(np.float32), affine)
    img.header.set_xyzt_units("mm")
    return img.to_bytes()


def test_nifti_thick_axis_is_the_slice_axis_and_display_is_radiological() -> None:
    # Voxel axes: 0 = anterior-posterior (reversed), 1 = superior-inferior... here a sagittal-like stack:
    # axis 2 runs along x (left-right) with 4 mm voxels; axes 0, 1 are 1 mm.
    vol = np.zeros((20, 30, 5), np.float32)
    vol[:, :, 2] = np.arange(20)[:, None] + 100 * np.arange(30)[None, :]
    affine = np.array([[0, 0, 4.0, -10], [1.0, 0, 0, -20], [0, 1.0, 0, -30], [0, 0, 0, 1]])
    volume = load_nifti_volume(_nifti(vol, affine), "sag.nii")
    assert volume.layout.slice_axis == 2 and volume.meta["plane"] == "sagittal"
    assert "largest" in volume.meta["slice_axis_selection"]
    assert len(volume) == 5 and volume.pixel_spacing_mm == (1.0, 1.0) and volume.slice_spacing_mm == 4.0
    # Sagittal display: superior (axis 1 grows toward +z) at the top, anterior (axis 0 grows toward +y) on the left.
    s = volume.slices[2]
    assert s.shape == (30, 20)
    assert s[0, 0] > s[-1, 0] and s[0, 0] > s[0, -1]


def test_nifti_isotropic_volume_is_cut_axially_like_the_single_image_reader(samples) -> None:
    from brainxai.io.nifti import axial_slice, volume_to_uint8

    vol = np.stack([samples[1].T[:, ::-1]] * 3, axis=2).astype(np.float32)  # RAS: x, y, z
    volume = load_nifti_volume(_nifti(vol, np.diag([1.0, 1.0, 1.0, 1.0])), "iso.nii")
    assert volume.layout.slice_axis == 2 and volume.meta["plane"] == "axial"
    assert np.array_equal(volume.slices[1], axial_slice(volume_to_uint8(vol), 1))


@pytest.mark.parametrize("seed", range(4))
def test_layout_round_trips_any_orientation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    affine = np.eye(4)
    affine[:3, :3] = rotation * rng.uniform(0.5, 3, size=3)
    layout, _ = nifti_layout(affine, np.linalg.norm(affine[:3, :3], axis=0))
    vol = rng.normal(size=(6, 7, 8))
    slices = [layout.display(vol, k) for k in range(vol.shape[layout.slice_axis])]
    assert np.array_equal(layout.volume(slices), vol)


def test_is_nifti_volume(tmp_path) -> None:
    (tmp_path / "v.nii").write_bytes(_nifti(np.ones((4, 5, 6)), np.eye(4)))
    (tmp_path / "flat.nii").write_bytes(_nifti(np.ones((4, 5, 1)), np.eye(4)))
    assert is_nifti_volume(tmp_path / "v.nii") and not is_nifti_volume(tmp_path / "flat.nii")
    assert VoxelLayout(2, 1, 0).display(np.arange(24).reshape(2, 3, 4), 1).shape == (3, 2)


def test_volume_origin_is_first_slice_position(tmp_path, samples) -> None:
    write_series(tmp_path, samples[:2])
    volume = read_volume(tmp_path)
    assert volume.affine is not None
    assert volume.affine[:3, 3] == pytest.approx([-ORIGIN[0], -ORIGIN[1], ORIGIN[2]])
