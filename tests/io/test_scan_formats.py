"""Reading scans: format sniffing, DICOM windowing/inversion/spacing, NIfTI slice choice and orientation."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicomfiles import make_dicom
from PIL import Image

from brainxai.io import ImageReadError, NotABrainScanError, check_brain_scan, read_raster, read_scan, sniff_format
from brainxai.io.dicom import window_to_uint8
from brainxai.io.sequence import sequence_from_text


@pytest.fixture(scope="module")
def sample(samples_dir: Path) -> np.ndarray:
    return read_raster(samples_dir / "meningioma.jpg")


# -- DICOM ---------------------------------------------------------------------------------------------


def test_dicom_rescale_window_and_spacing(sample: np.ndarray) -> None:
    # Stored = 2 * value + 50; slope 0.5 and intercept -25 restore the value; window 128/256 is the identity.
    stored = sample.astype(np.int32) * 2 + 50
    data = make_dicom(stored, slope=0.5, intercept=-25, window=(128, 256), description="AX T2 FLAIR")
    scan = read_scan(data, filename="x.dcm")
    assert scan.format == "dicom"
    assert scan.pixel_spacing_mm == (0.5, 0.7)
    np.testing.assert_array_equal(scan.pixels, sample)
    assert scan.meta["plane"] == "axial"
    assert scan.meta["display_convention"] == "radiological"
    assert scan.meta["sequence"] == "FLAIR"
    assert scan.slice_index is None
    # Patient identifiers in the file never reach the scan's metadata.
    assert "Secret" not in repr(scan.info())


def test_dicom_window_clips_and_maps_linearly() -> None:
    values = np.array([0.0, 40.0, 50.0, 60.0, 100.0])
    out = window_to_uint8(values, center=50.5, width=21)
    assert out[0] == 0 and out[-1] == 255
    assert out[2] == 128 - 1 or out[2] == 128  # the centre lands mid-range
    assert np.all(np.diff(out.astype(int)) >= 0)


def test_dicom_monochrome1_is_inverted(sample: np.ndarray) -> None:
    mono2 = read_scan(make_dicom(sample, window=(128, 256)))
    mono1 = read_scan(make_dicom(sample, window=(128, 256), photometric="MONOCHROME1"))
    np.testing.assert_array_equal(mono1.pixels, 255 - mono2.pixels)
    assert mono1.meta["photometric_interpretation"] == "MONOCHROME1"


def test_dicom_without_window_uses_full_range_and_no_spacing() -> None:
    stored = np.zeros((64, 64), np.int32)
    stored[16:48, 16:48] = 1000
    stored[30:34, 30:34] = 4000
    scan = read_scan(make_dicom(stored, spacing=None, orientation=None))
    assert scan.pixel_spacing_mm is None
    assert scan.pixels.max() == 255 and scan.pixels.min() == 0
    assert scan.pixels[20, 20] == round(1000 / 4000 * 255)
    assert "plane" not in scan.meta


def test_sagittal_orientation_is_recognised(sample: np.ndarray) -> None:
    scan = read_scan(make_dicom(sample, orientation=(0, 1, 0, 0, 0, -1)))
    assert scan.meta["plane"] == "sagittal"


def test_content_not_extension_decides(sample: np.ndarray, tmp_path: Path) -> None:
    dcm = tmp_path / "looks_like.jpg"
    dcm.write_bytes(make_dicom(sample, window=(128, 256)))
    assert read_scan(dcm).format == "dicom"
    png = tmp_path / "looks_like.dcm"
    Image.fromarray(sample).save(png, format="PNG")
    scan = read_scan(png)
    assert scan.format == "png" and scan.pixel_spacing_mm is None
    assert scan.source_name == "looks_like.dcm"


def test_sequence_guess() -> None:
    assert sequence_from_text("Ax T1 FLAIR post") == "T1"
    assert sequence_from_text("AX_FLAIR") == "FLAIR"
    assert sequence_from_text("t2_tse_tra") == "T2"
    assert sequence_from_text("ep2d_perf") == "perfusion"
    assert sequence_from_text("localizer") is None


# -- raster ----------------------------------------------------------------------------------------------


def test_raster_modes(sample: np.ndarray, tmp_path: Path) -> None:
    p16 = tmp_path / "a16.png"
    Image.fromarray(sample.astype(np.uint16) * 257).save(p16)
    np.testing.assert_array_equal(read_scan(p16).pixels, sample)
    rgba = np.dstack([sample, sample, sample, np.full_like(sample, 255)])
    prgba = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(prgba)
    np.testing.assert_array_equal(read_scan(prgba).pixels, sample)
    jpg = tmp_path / "x.jpg"
    Image.fromarray(sample).convert("RGB").save(jpg, quality=95)
    scan = read_scan(jpg)
    assert scan.format == "jpeg" and scan.shape == sample.shape
    assert np.abs(scan.pixels.astype(int) - sample).mean() < 3


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, this is plain text and not an image at all" * 4, "not a supported image"),
        (b"\x1f\x8b" + b"\x00" * 40, "gzip"),
    ],
)
def test_unreadable_bytes(data: bytes, message: str) -> None:
    with pytest.raises(ImageReadError, match=message):
        read_scan(data, filename="bad.bin")


def test_truncated_files_are_errors(sample: np.ndarray, tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(sample).save(buf, format="PNG")
    with pytest.raises(ImageReadError):
        read_scan(buf.getvalue()[:200], filename="cut.png")
    dcm = make_dicom(sample)
    with pytest.raises(ImageReadError):
        read_scan(dcm[: len(dcm) // 2], filename="cut.dcm")
    with pytest.raises(ImageReadError, match="not found"):
        read_scan(tmp_path / "missing.png")


def test_brain_scan_check(sample: np.ndarray, rng: np.random.Generator) -> None:
    check_brain_scan(sample)  # a real slice passes
    with pytest.raises(NotABrainScanError, match="uniform"):
        check_brain_scan(np.full((128, 128), 200, np.uint8))
    with pytest.raises(NotABrainScanError, match="noise"):
        check_brain_scan(rng.integers(0, 256, (224, 224), dtype=np.uint8))
    with pytest.raises(NotABrainScanError, match="too small"):
        check_brain_scan(sample[:20, :20])
    page = np.full((200, 150), 245, np.uint8)  # a document: bright page, dark text lines
    page[20:180:12, 15:135] = 20
    with pytest.raises(NotABrainScanError, match="dark background"):
        check_brain_scan(page)
    assert issubclass(NotABrainScanError, ImageReadError)


# -- NIfTI -----------------------------------------------------------------------------------------------


def _volume(n: int = 7) -> np.ndarray:
    """A 3-D phantom (x, y, z): an ellipse of tissue per slice; slice 4 holds a bright blob."""
    x, y = np.mgrid[:60, :70]
    head = ((x - 30) / 24) ** 2 + ((y - 35) / 30) ** 2 <= 1
    vol = np.zeros((60, 70, n), np.float32)
    for k in range(n):
        vol[..., k] = head * (300 + 10 * k)
    vol[36:56, 45:65, 4] = 900  # patient right (high x), anterior (high y); ~1% of the tissue voxels
    return vol


def _nifti_bytes(
    vol: np.ndarray, zooms: tuple[float, float, float] = (0.8, 0.9, 3.0), units: str | None = "mm"
) -> bytes:
    img = nib.Nifti1Image(vol, np.diag([*zooms, 1.0]))
    if units:
        img.header.set_xyzt_units(units)
    return img.to_bytes()


def test_nifti_scorer_picks_the_most_suspicious_slice() -> None:
    data = _nifti_bytes(_volume())
    seen: list[int] = []

    def scorer(slices: list[np.ndarray]) -> list[float]:
        seen.append(len(slices))
        return [float((s > 250).sum()) for s in slices]

    scan = read_scan(data, filename="vol.nii", scorer=scorer)
    assert scan.format == "nifti"
    assert scan.slice_index == 4
    assert seen == [7]
    assert scan.meta["slice_scores"].keys() == {str(i) for i in range(7)}
    # Rows run along y (0.9 mm), columns along x (0.8 mm).
    assert scan.pixel_spacing_mm == pytest.approx((0.9, 0.8))
    assert scan.shape == (70, 60)


def test_nifti_radiological_orientation() -> None:
    scan = read_scan(_nifti_bytes(_volume()), slice_index=4)
    ys, xs = np.nonzero(scan.pixels == scan.pixels.max())
    h, w = scan.shape
    # The blob is anterior (top) and on the patient's right, shown on the image's left.
    assert ys.mean() < h / 2 and xs.mean() < w / 2
    assert scan.meta["display_convention"] == "radiological"


def test_nifti_gzip_slice_index_units_and_bounds() -> None:
    data = gzip.compress(_nifti_bytes(_volume(), units=None))
    assert sniff_format(data) == "gzip"
    scan = read_scan(data, filename="vol.nii.gz", slice_index=2)
    assert scan.slice_index == 2
    assert scan.pixel_spacing_mm is None  # units not recorded: no invented millimetres
    assert "spacing_note" in scan.meta
    with pytest.raises(ImageReadError, match="slice 9"):
        read_scan(data, slice_index=9)


def test_nifti_without_scorer_takes_the_fullest_slice() -> None:
    vol = _volume()
    vol[..., :3] = 0
    vol[10:50, 10:60, 3] = 0  # slice 3 almost empty
    scan = read_scan(_nifti_bytes(vol))
    assert scan.slice_index in (4, 5, 6)


def test_nifti_skips_near_empty_slices_when_scoring() -> None:
    vol = _volume()
    vol[..., 0] = 0
    vol[28:31, 33:36, 0] = 2000  # a tiny bright speck on an otherwise empty slice
    scan = read_scan(_nifti_bytes(vol), scorer=lambda s: [float(x.max()) for x in s])
    assert scan.slice_index != 0


def test_multiframe_dicom_frames_are_scored(sample: np.ndarray) -> None:
    frames = np.stack([sample // 4, sample, sample // 2])
    data = make_dicom(frames, window=(128, 256))
    scan = read_scan(data, scorer=lambda slices: [float(s.mean()) for s in slices])
    assert scan.slice_index == 1 and scan.meta["n_frames"] == 3
    np.testing.assert_array_equal(scan.pixels, sample)
    assert read_scan(data, slice_index=2).pixels.max() == sample.max() // 2
    with pytest.raises(ImageReadError, match="frame 5"):
        read_scan(data, slice_index=5)


def test_dicom_without_preamble_and_text_without_suffix(sample: np.ndarray, tmp_path: Path) -> None:
    raw = tmp_path / "IM0001"
    raw.write_bytes(make_dicom(sample, window=(128, 256))[132:])  # no preamble, no 'DICM' prefix
    scan = read_scan(raw)
    assert scan.format == "dicom" and scan.pixel_spacing_mm == (0.5, 0.7)
    text = tmp_path / "README"
    text.write_text("just some notes, not an image")
    with pytest.raises(ImageReadError, match="not a supported image"):
        read_scan(text)
