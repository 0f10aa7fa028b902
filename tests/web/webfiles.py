"""Scan files for web tests: valid DICOM/NIfTI built on the fly, and deliberately broken uploads."""

from __future__ import annotations

import gzip
import io
import struct
import zlib

import numpy as np


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (the pixel data is a token few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def phantom(size: int = 128) -> np.ndarray:
    """A head-like bright ellipse on black, as uint8."""
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) / (size * 0.4)) ** 2 + ((xx - size / 2) / (size * 0.33)) ** 2 <= 1
    img = np.where(head, 120 + 60 * np.sin(xx / 7.0) * np.cos(yy / 9.0), 0)
    return np.clip(img, 0, 255).astype(np.uint8)


def dicom_bytes(with_pixels: bool = True, size: int = 128) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.PatientName = "Test^Phantom"
    ds.Rows, ds.Columns = size, size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.5, 0.5]
    if with_pixels:
        ds.PixelData = (phantom(size).astype(np.uint16) * 16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def nifti_bytes(shape: tuple[int, ...] = (96, 96, 5), compressed: bool = True) -> bytes:
    import nibabel as nib

    vol = np.stack([phantom(shape[0])[:, : shape[1]]] * shape[2], axis=-1).astype(np.int16)
    img = nib.Nifti1Image(vol, affine=np.diag([0.9, 0.9, 3.0, 1.0]))
    raw = img.to_bytes()
    return gzip.compress(raw) if compressed else raw


def nifti_gzip_bomb(expanded_bytes: int) -> bytes:
    """A small .nii.gz whose valid header is followed by ``expanded_bytes`` of zeros."""
    raw = nifti_bytes((64, 64, 1), compressed=False)
    return gzip.compress(raw + b"\0" * expanded_bytes, compresslevel=9)


def nifti_claiming(shape: tuple[int, int, int]) -> bytes:
    """An uncompressed NIfTI header announcing ``shape`` but carrying almost no data."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.float32)
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\0\0\0\0" + b"\0" * 64
