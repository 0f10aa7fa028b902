"""Bad DICOM input gives a clear message (and ``brainxai analyze`` a non-zero exit): mixed orientations,
missing positions, no pixel data, compressed transfer syntaxes with and without a decoder.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomfiles import IDENTITY_WINDOW, make_dicom
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, JPEG2000Lossless, JPEGLSLossless, RLELossless
from seriesfiles import series_datasets, write_datasets
from typer.testing import CliRunner

from brainxai.cli import app
from brainxai.io import ImageReadError, read_raster, read_scan
from brainxai.io.series import read_volume


@pytest.fixture(scope="module")
def slices(samples_dir: Path) -> list[np.ndarray]:
    return [read_raster(samples_dir / f"{c}.jpg") for c in ("glioma", "meningioma", "pituitary")]


def test_mixed_orientations_are_refused_with_the_counts(tmp_path, slices) -> None:
    datasets = series_datasets(slices)
    datasets[1].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    write_datasets(tmp_path, datasets)
    with pytest.raises(ImageReadError, match="mixed orientations") as err:
        read_volume(tmp_path)
    assert "2 slices (1, 0, 0, 0, 1, 0) axial" in str(err.value) and "1 slices (0, 1, 0, 0, 0, -1) sagittal" in str(
        err.value
    )


def test_missing_positions_are_refused(tmp_path, slices) -> None:
    datasets = series_datasets(slices)
    del datasets[2].ImagePositionPatient
    write_datasets(tmp_path, datasets)
    with pytest.raises(ImageReadError, match="cannot order the slices: 1 of 3 image instances have no Image"):
        read_volume(tmp_path)


def test_repeated_positions_are_refused(tmp_path, slices) -> None:
    datasets = series_datasets(slices)
    datasets[1].ImagePositionPatient = datasets[0].ImagePositionPatient
    write_datasets(tmp_path, datasets)
    with pytest.raises(ImageReadError, match="2 slices share a position"):
        read_volume(tmp_path)


def test_no_pixel_data(tmp_path, slices) -> None:
    (ds,) = series_datasets(slices[:1])
    del ds.PixelData
    path = tmp_path / "empty.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageReadError, match="holds no images"):
        read_volume(path)
    with pytest.raises(ImageReadError, match="no PixelData element"):
        read_scan(path)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless, JPEGLSLossless], ids=lambda s: s.name)
def test_compressed_series_decode_losslessly(tmp_path, slices, syntax) -> None:
    plain = series_datasets(slices)
    compressed = series_datasets(slices, study_uid=plain[0].StudyInstanceUID)
    for ds in compressed:
        ds.compress(syntax)
    write_datasets(tmp_path / "plain", plain)
    write_datasets(tmp_path / "packed", compressed)
    a, b = read_volume(tmp_path / "plain"), read_volume(tmp_path / "packed")
    assert len(b) == 3 and all(np.array_equal(x, y) for x, y in zip(a.slices, b.slices, strict=True))


def _undecodable(pixels: np.ndarray) -> bytes:
    """A DICOM file whose pixel data is in a transfer syntax no installed decoder handles (MPEG-2 video)."""
    ds = pydicom.dcmread(io.BytesIO(make_dicom(pixels, window=IDENTITY_WINDOW)))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(64)])
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def test_undecodable_transfer_syntax_is_named(tmp_path, slices) -> None:
    path = tmp_path / "video.dcm"
    path.write_bytes(_undecodable(slices[0]))
    with pytest.raises(ImageReadError, match=r"transfer syntax MPEG2 Main Profile / Main Level"):
        read_volume(path)
    with pytest.raises(ImageReadError, match=r"transfer syntax MPEG2"):
        read_scan(path)


def test_cli_reports_a_bad_series_and_exits_non_zero(tmp_path, slices, random_checkpoint) -> None:
    good = series_datasets(slices[:2], series_number=2, description="good")
    bad = series_datasets(slices, series_number=3, description="bad", study_uid=good[0].StudyInstanceUID)
    bad[0].ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    write_datasets(tmp_path / "in" / "good", good)
    write_datasets(tmp_path / "in" / "bad", bad)
    args = ["analyze", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-report"]
    run = CliRunner().invoke(app, [*args, "--checkpoint", str(random_checkpoint), "--method", "gradcam"])
    assert run.exit_code == 1, run.output
    assert "series 2 'good': series finding" in run.output
    assert "series 3 'bad': failed:" in run.output and "mixed orientations" in run.output
    assert (tmp_path / "out" / "002-good" / "002-good.json").is_file()
