"""Whole series and volumes: DICOM series (files sharing a SeriesInstanceUID), multi-frame DICOM, NIfTI volumes.

Every reader returns a :class:`SeriesVolume`: the slices of the acquisition plane as display images
(``uint8``, windowed as the single-file readers window them), in order along the slice normal, with
the geometry needed to put a per-slice map back into the patient (:attr:`SeriesVolume.affine`, RAS mm)
and, for DICOM, the headers of the source instances that results must refer to.

Ordering and checks (a clear :class:`~brainxai.io.raster.ImageReadError` when they fail):

- single-frame DICOM instances are sorted by ImagePositionPatient projected on the slice normal
  (row x column direction of ImageOrientationPatient); every image instance must have both, one
  orientation and one size, and no two may share a position;
- localisers (ImageType ``LOCALIZER``, or a series described as localiser/scout/survey) are left out
  of the volume and listed with the reason (``meta["excluded_instances"]``); a series of localisers
  only raises :class:`SeriesSkipped`;
- a multi-frame DICOM is ordered by its per-frame positions when it has them, else in file order;
- a NIfTI volume is cut along its slice axis: the voxel axis with the largest voxel size when it is
  at least 10% larger than the others (the thick-slice direction of the acquisition), otherwise
  (near-isotropic voxels) the axis closest to the patient's head-foot axis, i.e. axial slices.
  Slices are displayed radiologically (axial/coronal: patient right on the image's left; superior
  or anterior at the top; sagittal: anterior on the left).
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainxai.io.dicom import decode_frames, pixel_spacing
from brainxai.io.raster import ImageReadError, to_uint8
from brainxai.io.sniff import is_nifti_header, sniff_format
from brainxai.util.compression import DecompressionError, gunzip_bounded

logger = logging.getLogger(__name__)

#: Words in a series description or protocol name that mark a localiser series.
LOCALISER_WORDS: tuple[str, ...] = ("LOCALIZER", "LOCALISER", "SCOUT", "SURVEY", "3-PLANE LOC", "3PLANE LOC")
#: Largest volume file read into memory (bytes).
MAX_VOLUME_BYTES = 1 << 30
_PLANES = ("sagittal", "coronal", "axial")


class SeriesSkipped(ImageReadError):
    """A series that is deliberately not analysed (a localiser series, documents without images)."""


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series found among files.

    Attributes:
        study_uid: StudyInstanceUID.
        series_uid: SeriesInstanceUID.
        paths: The instance files, sorted by position along the slice normal (instance number when
            positions are missing; :func:`load_dicom_series` then refuses to stack them).
        modality: Modality (``MR``, ``CT``...).
        description: SeriesDescription (or ProtocolName), possibly empty.
        series_number: SeriesNumber, when present.
        n_frames: Frames of the first instance (more than one: a multi-frame image).
        has_pixels: Whether the instances hold images (SR, PDF and other documents do not).
    """

    study_uid: str
    series_uid: str
    paths: tuple[Path, ...]
    modality: str
    description: str
    series_number: int | None = None
    n_frames: int = 1
    has_pixels: bool = True


@dataclass(frozen=True)
class VoxelLayout:
    """How the display slices map onto the voxel array the affine describes.

    Attributes:
        slice_axis: Voxel axis along which slices are cut.
        row_axis: Voxel axis that runs down the displayed rows.
        col_axis: Voxel axis that runs along the displayed columns.
        flip_rows: Rows are displayed in reverse voxel order.
        flip_cols: Columns are displayed in reverse voxel order.
    """

    slice_axis: int
    row_axis: int
    col_axis: int
    flip_rows: bool = False
    flip_cols: bool = False

    def display(self, volume: np.ndarray, k: int) -> np.ndarray:
        """Slice ``k`` of ``volume`` as displayed (rows, columns)."""
        s = np.take(volume, k, axis=self.slice_axis)
        if self.row_axis > self.col_axis:
            s = s.T
        if self.flip_rows:
            s = s[::-1]
        if self.flip_cols:
            s = s[:, ::-1]
        return np.ascontiguousarray(s)

    def volume(self, slices: Sequence[np.ndarray]) -> np.ndarray:
        """The voxel array (the affine's layout) holding the displayed ``slices``: the inverse of :meth:`display`."""
        planes = []
        for s in slices:
            s = s[::-1] if self.flip_rows else s
            s = s[:, ::-1] if self.flip_cols else s
            planes.append(s.T if self.row_axis > self.col_axis else s)
        return np.ascontiguousarray(np.moveaxis(np.stack(planes), 0, self.slice_axis))


@dataclass
class SeriesVolume:
    """The slices of a series or volume, in acquisition order, with their geometry and references.

    Attributes:
        slices: ``(H, W)`` ``uint8`` display images, in order along the slice normal.
        pixel_spacing_mm: ``(row, column)`` spacing of a slice in mm, or None when unknown.
        slice_spacing_mm: Distance between slice centres in mm, or None when unknown.
        affine: 4x4 voxel-to-patient matrix (RAS, mm) of :meth:`voxel_array`'s layout, or None when the
            source records no patient geometry.
        layout: How slices map onto that voxel array.
        format: ``"dicom-series"``, ``"dicom-multiframe"`` or ``"nifti"``.
        source_name: Name for reports (folder or file name).
        positions_mm: Position of each slice along the slice normal (mm), when known.
        headers: DICOM only: the source instances' data sets without pixel data.
        refs: DICOM only: per slice, ``(index into headers, 1-based frame number or None)``.
        study_uid, series_uid: DICOM only.
        meta: Technical details for reports (modality, plane, sequence, windowing, notes).
    """

    slices: list[np.ndarray]
    pixel_spacing_mm: tuple[float, float] | None
    slice_spacing_mm: float | None
    affine: np.ndarray | None
    layout: VoxelLayout
    format: str
    source_name: str
    positions_mm: list[float] | None = None
    headers: list[Any] = field(default_factory=list)
    refs: list[tuple[int, int | None]] = field(default_factory=list)
    study_uid: str | None = None
    series_uid: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.slices)

    def voxel_array(self, maps: Sequence[np.ndarray]) -> np.ndarray:
        """Per-slice maps (display orientation) as one array in the layout :attr:`affine` describes."""
        if len(maps) != len(self.slices):
            raise ValueError(f"{len(maps)} maps for {len(self.slices)} slices")
        return self.layout.volume(maps)


# -- finding and grouping DICOM files ---------------------------------------------------------------


def _files(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(f for f in sorted(p.rglob("*")) if f.is_file() and not _hidden(f, p))
        elif p.is_file():
            out.append(p)
    return out


def _hidden(f: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in f.relative_to(root).parts)


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` starts like a DICOM file (``DICM`` at byte 128)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return sniff_format(head) == "dicom"


def _header(path: Path) -> Any | None:
    """The data set of a DICOM file with large values (pixel data) left unread, or None when not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not is_dicom_file(path):
        return None
    try:
        return pydicom.dcmread(path, defer_size=4096)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: skipped, not a readable DICOM file (%s)", path, exc)
        return None


def _floats(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.isfinite(out).all() else None


def slice_normal(iop: Any) -> np.ndarray | None:
    """Unit normal (row direction x column direction) of an ImageOrientationPatient, or None."""
    v = _floats(iop, 6)
    if v is None:
        return None
    n = np.cross(v[:3], v[3:])
    norm = float(np.linalg.norm(n))
    return n / norm if norm > 0.5 else None


def _position_key(ds: Any, path: Path) -> tuple[float, float, str]:
    n = slice_normal(ds.get("ImageOrientationPatient"))
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    position = float(ipp @ n) if n is not None and ipp is not None else float("inf")
    number = ds.get("InstanceNumber")
    return (position, float(number) if number not in (None, "") else float("inf"), path.name)


def group_dicom_series(paths: Iterable[str | Path]) -> list[DicomSeries]:
    """Groups DICOM files (folders are searched recursively) by StudyInstanceUID + SeriesInstanceUID.

    Non-DICOM files are ignored. Series are returned in study, series number and UID order; the files
    of each are sorted by position along the slice normal (see :class:`DicomSeries`).
    """
    groups: dict[tuple[str, str], list[tuple[Any, Path]]] = {}
    for path in _files(paths):
        ds = _header(path)
        if ds is None:
            continue
        key = (str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")))
        groups.setdefault(key, []).append((ds, path))
    out = []
    for (study, series), members in groups.items():
        members.sort(key=lambda m: _position_key(*m))
        first = members[0][0]
        number = first.get("SeriesNumber")
        out.append(
            DicomSeries(
                study_uid=study,
                series_uid=series,
                paths=tuple(p for _, p in members),
                modality=str(first.get("Modality", "")),
                description=str(first.get("SeriesDescription", "") or first.get("ProtocolName", "")),
                series_number=int(number) if number not in (None, "") else None,
                n_frames=int(first.get("NumberOfFrames", 1) or 1),
                has_pixels=any("PixelData" in ds for ds, _ in members),
            )
        )
    out.sort(key=lambda s: (s.study_uid, s.series_number if s.series_number is not None else 1 << 30, s.series_uid))
    return out


# -- DICOM series --------------------------------------------------------------------------------------


def is_localiser(ds: Any, series_description: str = "") -> str | None:
    """Why an instance is a localiser (ImageType or the series description), or None."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "LOCALIZER" in image_type:
        return "localiser (ImageType LOCALIZER)"
    text = f"{series_description} {ds.get('ProtocolName', '')}".upper()
    word = next((w for w in LOCALISER_WORDS if w in text), None)
    return f"localiser/scout series (description mentions {word.lower()})" if word else None


def _read_instance(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageReadError(f"{path.name}: not a readable DICOM file ({exc})") from exc


def _orientation_text(iop: np.ndarray) -> str:
    n = np.abs(np.cross(iop[:3], iop[3:]))
    plane = _PLANES[int(np.argmax(n))] if n.max() >= 0.8 else "oblique"
    return f"({', '.join(f'{v:g}' for v in np.round(iop, 3))}) {plane}"


def _check_geometry(datasets: Sequence[Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    """The common orientation (6) and the positions ``(N, 3)``; raises when the slices cannot be stacked."""
    iops = [_floats(ds.get("ImageOrientationPatient"), 6) for ds in datasets]
    ipps = [_floats(ds.get("ImagePositionPatient"), 3) for ds in datasets]
    missing = sum(1 for a, b in zip(iops, ipps, strict=True) if a is None or b is None)
    if missing:
        raise ImageReadError(
            f"{name}: cannot order the slices: {missing} of {len(datasets)} image instances have no "
            "ImagePositionPatient/ImageOrientationPatient"
        )
    known = [iop for iop in iops if iop is not None]
    kinds: dict[str, int] = {}
    for iop in known:
        kinds[_orientation_text(iop)] = kinds.get(_orientation_text(iop), 0) + 1
    if any(not np.allclose(iop, known[0], atol=1e-3) for iop in known):
        listed = "; ".join(f"{count} slices {text}" for text, count in kinds.items())
        raise ImageReadError(f"{name}: mixed orientations in one series ({listed}); analyse each orientation apart")
    sizes = {(int(ds.Rows), int(ds.Columns)) for ds in datasets}
    if len(sizes) > 1:
        raise ImageReadError(f"{name}: slices of different sizes in one series ({sorted(sizes)})")
    return known[0], np.stack([p for p in ipps if p is not None])


def _slice_steps(positions: np.ndarray, normal: np.ndarray, name: str, notes: list[str]) -> tuple[float | None, float]:
    """Slice spacing (mm) from the positions along the normal; raises on repeated positions."""
    d = positions @ normal
    if len(d) < 2:
        return None, 0.0
    steps = np.diff(d)
    if np.any(np.abs(steps) < 1e-3):
        raise ImageReadError(
            f"{name}: {int(np.sum(np.abs(steps) < 1e-3)) + 1} slices share a position (several echoes, time "
            "points or a duplicated file?); cannot build one volume"
        )
    spacing = float(np.median(np.abs(steps)))
    if np.max(np.abs(np.abs(steps) - spacing)) > 0.1 * spacing:
        notes.append(f"irregular slice spacing ({np.min(np.abs(steps)):.3g} to {np.max(np.abs(steps)):.3g} mm)")
    return spacing, float(d[0])


def dicom_affine(iop: np.ndarray, first: np.ndarray, spacing: tuple[float, float], step: np.ndarray) -> np.ndarray:
    """RAS affine of voxel ``(column, row, slice)`` from DICOM orientation, first position, spacing and slice step.

    Args:
        iop: ImageOrientationPatient (row direction, then column direction; LPS).
        first: ImagePositionPatient of the first slice (LPS, mm).
        spacing: PixelSpacing ``(row spacing, column spacing)`` in mm.
        step: Displacement from one slice to the next (LPS, mm).
    """
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * spacing[1]  # along a row: the column index grows, by the column spacing
    lps[:3, 1] = iop[3:] * spacing[0]
    lps[:3, 2] = step
    lps[:3, 3] = first
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _display_stack(values: list[np.ndarray], shown: list[np.ndarray], meta: dict[str, Any]) -> list[np.ndarray]:
    """Display slices: the file's own windows, or one mapping of the whole series when the files have none."""
    if str(meta.get("window", "")).startswith("window"):
        return shown
    # One intensity mapping for the whole series, so slices stay comparable (as for a multi-frame file).
    stack = to_uint8(np.stack(values))
    meta["window"] = "full intensity range of the series (no window in the files)"
    if meta.get("photometric_interpretation") == "MONOCHROME1":
        stack = 255 - stack
    return list(stack)


def load_dicom_series(series: DicomSeries) -> SeriesVolume:
    """Decodes a series of single-frame instances (or one multi-frame instance) into a :class:`SeriesVolume`.

    Raises:
        ImageReadError: No images, mixed orientations or sizes, missing or repeated positions, undecodable pixels.
    """
    name = series.description or (series.paths[0].name if len(series.paths) == 1 else f"series {series.series_uid}")
    if len(series.paths) == 1 and series.n_frames > 1:
        return load_multiframe(series.paths[0])
    datasets = [_read_instance(p) for p in series.paths]
    images = [i for i, ds in enumerate(datasets) if "PixelData" in ds]
    if not images:
        raise SeriesSkipped(f"{name}: the series holds no images (no PixelData in {len(datasets)} instances)")
    if any(int(datasets[i].get("NumberOfFrames", 1) or 1) > 1 for i in images) and len(images) > 1:
        raise ImageReadError(f"{name}: several multi-frame instances in one series; analyse each file on its own")
    datasets = [datasets[i] for i in images]
    excluded = [(ds, why) for ds in datasets if (why := is_localiser(ds, series.description))]
    if len(excluded) == len(datasets):
        raise SeriesSkipped(f"{name}: not analysed: {excluded[0][1]}")
    datasets = [ds for ds in datasets if not is_localiser(ds, series.description)]
    notes: list[str] = []
    datasets, positions_mm, slice_spacing, affine = _stack_geometry(datasets, name, notes)
    values: list[np.ndarray] = []
    shown: list[np.ndarray] = []
    meta: dict[str, Any] = {}
    for ds in datasets:
        arr, frames, meta = decode_frames(ds, _file_name(ds))
        values.append(arr[0])
        shown.append(frames[0])
    slices = _display_stack(values, shown, meta)
    if notes:
        meta["geometry_notes"] = notes
    for ds in datasets:
        del ds.PixelData  # the headers are what the results refer to; the pixels are decoded already
    return SeriesVolume(
        slices=slices,
        pixel_spacing_mm=pixel_spacing(datasets[0]),
        slice_spacing_mm=slice_spacing,
        affine=affine,
        layout=VoxelLayout(slice_axis=2, row_axis=1, col_axis=0),
        format="dicom-series",
        source_name=name,
        positions_mm=positions_mm,
        headers=list(datasets),
        refs=[(i, None) for i in range(len(datasets))],
        study_uid=series.study_uid,
        series_uid=series.series_uid,
        meta={
            **meta,
            "n_instances": len(datasets),
            "series_description": series.description or None,
            "excluded_instances": [{"file": _file_name(ds), "reason": why} for ds, why in excluded],
        },
    )


def _file_name(ds: Any) -> str:
    return Path(str(ds.filename)).name if getattr(ds, "filename", None) else str(ds.get("SOPInstanceUID", "?"))


def _stack_geometry(
    datasets: list[Any], name: str, notes: list[str]
) -> tuple[list[Any], list[float] | None, float | None, np.ndarray | None]:
    """The instances sorted along the slice normal, their positions (mm), the slice spacing and the RAS affine.

    A single instance needs no position to be analysed: without one, there is no patient geometry.
    """
    one = datasets[0]
    if len(datasets) == 1 and (
        _floats(one.get("ImagePositionPatient"), 3) is None or slice_normal(one.get("ImageOrientationPatient")) is None
    ):
        notes.append("the instance records no position or orientation: no patient geometry")
        return datasets, None, None, None
    iop, _ = _check_geometry(datasets, name)
    positions = np.stack([_floats(ds.ImagePositionPatient, 3) for ds in datasets])  # type: ignore[misc]
    normal = np.cross(iop[:3], iop[3:])
    order = np.argsort(positions @ normal, kind="stable")
    datasets, positions = [datasets[i] for i in order], positions[order]
    slice_spacing, _ = _slice_steps(positions, normal, name, notes)
    n = len(positions)
    step = (positions[-1] - positions[0]) / (n - 1) if n > 1 else normal * _thickness(datasets)
    spacing = pixel_spacing(datasets[0])
    affine = dicom_affine(iop, positions[0], spacing, step) if spacing else None
    return datasets, [float(p @ normal) for p in positions], slice_spacing, affine


def _thickness(datasets: Sequence[Any]) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = datasets[0].get(keyword)
        if value not in (None, ""):
            return float(value)
    return 1.0


# -- multi-frame DICOM ---------------------------------------------------------------------------------


def _functional(ds: Any, frame: int, sequence: str, keyword: str) -> Any:
    """A per-frame attribute from the frame's functional groups, else the shared ones, else None."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items is None or len(items) <= index or sequence not in items[index]:
            continue
        inner = items[index].get(sequence)
        if inner and keyword in inner[0]:
            return inner[0].get(keyword)
    return None


def _frame_geometry(ds: Any, n: int) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
    """Orientation and position of each frame (None where the file does not say)."""
    iops = [_floats(_functional(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient"), 6) for i in range(n)]
    ipps = [_floats(_functional(ds, i, "PlanePositionSequence", "ImagePositionPatient"), 3) for i in range(n)]
    if all(p is None for p in ipps) and n == 1:
        iops, ipps = [_floats(ds.get("ImageOrientationPatient"), 6)], [_floats(ds.get("ImagePositionPatient"), 3)]
    if all(o is None for o in iops):
        iops = [_floats(ds.get("ImageOrientationPatient"), 6)] * n
    return iops, ipps


def _frame_spacing(ds: Any) -> tuple[float, float] | None:
    raw = _functional(ds, 0, "PixelMeasuresSequence", "PixelSpacing")
    if raw is None:
        return pixel_spacing(ds)
    values = _floats(raw, 2)
    return (float(values[0]), float(values[1])) if values is not None and (values > 0).all() else None


def load_multiframe(path: Path) -> SeriesVolume:
    """Decodes a multi-frame DICOM image into a :class:`SeriesVolume` (frames ordered by position when known).

    Raises:
        ImageReadError: No pixel data, undecodable pixels, mixed frame orientations or repeated positions.
    """
    ds = _read_instance(path)
    name = path.name
    values, shown, meta = decode_frames(ds, name)
    n = values.shape[0]
    iops, ipps = _frame_geometry(ds, n)
    spacing = _frame_spacing(ds)
    notes: list[str] = []
    affine, positions_mm, slice_spacing = None, None, None
    order = np.arange(n)
    if all(o is not None for o in iops) and all(p is not None for p in ipps):
        if any(not np.allclose(o, iops[0], atol=1e-3) for o in iops):  # type: ignore[arg-type]
            raise ImageReadError(f"{name}: frames of mixed orientations; cannot build one volume")
        iop = np.asarray(iops[0])
        normal = np.cross(iop[:3], iop[3:])
        positions = np.stack(ipps)  # type: ignore[arg-type]
        order = np.argsort(positions @ normal, kind="stable")
        positions = positions[order]
        slice_spacing, _ = _slice_steps(positions, normal, name, notes)
        step = (positions[-1] - positions[0]) / (n - 1) if n > 1 else normal * _thickness([ds])
        affine = dicom_affine(iop, positions[0], spacing, step) if spacing else None
        positions_mm = [float(p @ normal) for p in positions]
    else:
        notes.append("the file records no position per frame: frames are taken in file order, no patient geometry")
        gap = ds.get("SpacingBetweenSlices")
        slice_spacing = float(gap) if gap not in (None, "") else None
    if notes:
        meta["geometry_notes"] = notes
    del ds.PixelData
    return SeriesVolume(
        slices=[shown[i] for i in order],
        pixel_spacing_mm=spacing,
        slice_spacing_mm=slice_spacing,
        affine=affine,
        layout=VoxelLayout(slice_axis=2, row_axis=1, col_axis=0),
        format="dicom-multiframe",
        source_name=name,
        positions_mm=positions_mm,
        headers=[ds],
        refs=[(0, int(i) + 1) for i in order],
        study_uid=str(ds.get("StudyInstanceUID", "")) or None,
        series_uid=str(ds.get("SeriesInstanceUID", "")) or None,
        meta={**meta, "n_frames": n},
    )


# -- NIfTI volumes -------------------------------------------------------------------------------------

_UNIT_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001}


def nifti_layout(affine: np.ndarray, zooms: Sequence[float]) -> tuple[VoxelLayout, str]:
    """The slice axis and display orientation of a NIfTI volume, and how the slice axis was chosen.

    The slice axis is the voxel axis with the largest voxel size when it is at least 10% larger than
    the other two (a thick-slice acquisition is cut in its own plane); otherwise the axis closest to
    the patient's head-foot direction (axial slices). Slices are displayed radiologically.
    """
    zooms = [float(z) for z in zooms[:3]]
    world = np.abs(affine[:3, :3]) / np.maximum(np.linalg.norm(affine[:3, :3], axis=0), 1e-12)
    thickest = int(np.argmax(zooms))
    if all(zooms[thickest] >= 1.1 * z for i, z in enumerate(zooms) if i != thickest):
        slice_axis, how = thickest, f"voxel axis {thickest}: its voxel size {zooms[thickest]:g} is the largest"
    else:
        slice_axis = int(np.argmax(world[2]))
        how = f"voxel axis {slice_axis}: near-isotropic voxels, the axis closest to head-foot (axial)"
    plane_axis = int(np.argmax(world[:, slice_axis]))  # 0: x (sagittal), 1: y (coronal), 2: z (axial)
    vertical = 1 if plane_axis == 2 else 2  # anterior (axial) or superior at the top
    horizontal = 1 if plane_axis == 0 else 0  # patient right on the left; sagittal: anterior on the left
    a, b = (i for i in range(3) if i != slice_axis)
    row_axis = a if world[vertical, a] >= world[vertical, b] else b
    col_axis = b if row_axis == a else a
    layout = VoxelLayout(
        slice_axis=slice_axis,
        row_axis=row_axis,
        col_axis=col_axis,
        flip_rows=bool(affine[vertical, row_axis] > 0),
        flip_cols=bool(affine[horizontal, col_axis] > 0),
    )
    return layout, f"{how}; {_PLANES[plane_axis]} slices"


def load_nifti_volume(data: bytes, name: str) -> SeriesVolume:
    """Decodes an (uncompressed) NIfTI-1/2 image into a :class:`SeriesVolume` cut along its slice axis.

    Raises:
        ImageReadError: Corrupt header, truncated data or unsupported dimensionality.
    """
    from brainxai.io.nifti import as_3d, load_nifti_image, volume_to_uint8

    img, volume = load_nifti_image(data, name, canonical=False)  # cut along the acquisition's own slice axis
    meta: dict[str, Any] = {}
    volume = as_3d(volume, img, name, meta)
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    layout, how = nifti_layout(img.affine, zooms)
    volume8 = volume_to_uint8(volume)
    slices = [layout.display(volume8, k) for k in range(volume.shape[layout.slice_axis])]
    factor = _UNIT_TO_MM.get(img.header.get_xyzt_units()[0])
    spacing = (zooms[layout.row_axis] * factor, zooms[layout.col_axis] * factor) if factor else None
    codes = (int(img.header["qform_code"]), int(img.header["sform_code"]))
    if not any(codes):
        meta["geometry_note"] = "the NIfTI header states no patient orientation (qform and sform codes 0)"
    if factor is None:
        meta["spacing_note"] = "spatial units not recorded in the NIfTI header; measurements are in pixels"
    plane = how.rsplit("; ", 1)[1].split()[0]
    return SeriesVolume(
        slices=slices,
        pixel_spacing_mm=spacing if spacing and all(s > 0 for s in spacing) else None,
        slice_spacing_mm=zooms[layout.slice_axis] * factor if factor else None,
        affine=np.asarray(img.affine, dtype=float),
        layout=layout,
        format="nifti",
        source_name=name,
        meta={
            **meta,
            "plane": plane,
            "slice_axis_selection": how,
            "volume_shape": list(volume.shape),
            "nifti_code": codes[1] or codes[0],  # the coordinate system the affine is in, kept for the outputs
        },
    )


# -- dispatch ------------------------------------------------------------------------------------------


def _head(path: Path, n: int = 1024) -> bytes:
    with path.open("rb") as fh:
        head = fh.read(n)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as gz:
                return gz.read(n)
        except (OSError, EOFError):
            return head
    return head


def volume_kind(path: str | Path) -> str | None:
    """``"nifti"``, ``"dicom-multiframe"``, ``"dicom"`` (single frame) or None, from the file's content."""
    path = Path(path)
    if not path.is_file():
        return None
    head = _head(path)
    if is_nifti_header(head):
        return "nifti"
    if sniff_format(head) != "dicom":
        return None
    ds = _header(path)
    return "dicom-multiframe" if ds is not None and int(ds.get("NumberOfFrames", 1) or 1) > 1 else "dicom"


def is_nifti_volume(path: str | Path) -> bool:
    """Whether ``path`` is a NIfTI image with more than one slice in each of its three spatial axes."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        return False
    head = _head(path, 540)
    if not is_nifti_header(head):
        return False
    try:
        header_class = nib.Nifti2Header if head[4:7] in (b"n+2", b"ni2") else nib.Nifti1Header
        shape = header_class.from_fileobj(io.BytesIO(head), check=False).get_data_shape()
    except Exception:  # nibabel raises assorted errors for broken headers; then it is no volume to us
        return False
    return len(shape) >= 3 and all(int(d) > 1 for d in shape[:3])


def _file_bytes(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_VOLUME_BYTES:
        raise ImageReadError(f"{path}: {size} bytes exceeds the limit of {MAX_VOLUME_BYTES}")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gunzip_bounded(data, MAX_VOLUME_BYTES)
        except DecompressionError as exc:
            raise ImageReadError(f"{path.name}: corrupt, truncated or too large gzip data ({exc})") from exc
    return data


def read_volume(source: str | Path | Sequence[str | Path]) -> SeriesVolume:
    """Reads ONE series: a folder or file list of one DICOM series, a multi-frame DICOM, or a NIfTI volume.

    Raises:
        ImageReadError: Unreadable, not a series or volume, several series, or a series that cannot be stacked.
    """
    if not isinstance(source, (str, Path)):
        return _one_series(group_dicom_series(source), "the files given")
    path = Path(source)
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    if path.is_dir():
        return _one_series(group_dicom_series([path]), str(path))
    kind = volume_kind(path)
    if kind == "nifti":
        return load_nifti_volume(_file_bytes(path), path.name)
    if kind in ("dicom", "dicom-multiframe"):
        return _one_series(group_dicom_series([path]), path.name)
    raise ImageReadError(f"{path.name}: not a DICOM series or NIfTI volume")


def _one_series(series: list[DicomSeries], where: str) -> SeriesVolume:
    if not series:
        raise ImageReadError(f"{where}: no DICOM files found")
    if len(series) > 1:
        raise ImageReadError(f"{where}: holds {len(series)} DICOM series; analyse it as a study (one result each)")
    return load_dicom_series(series[0])


__all__ = [
    "DicomSeries",
    "SeriesSkipped",
    "SeriesVolume",
    "VoxelLayout",
    "dicom_affine",
    "group_dicom_series",
    "is_localiser",
    "is_nifti_volume",
    "load_dicom_series",
    "load_multiframe",
    "load_nifti_volume",
    "read_volume",
    "volume_kind",
]
