"""What one analysis is asked to do: the per-call options, and the patient details for its report.

The library call, ``brainxai analyze``, the batch runner and the web app all describe an analysis
with one :class:`AnalysisOptions`, so a new option is added in one place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is only needed for the perfusion map's type
    import numpy as np


@dataclass(frozen=True)
class AnalysisOptions:
    """How to analyse a scan (what to read, which explanation, which outputs).

    Attributes:
        method: Explanation method (``lrp``, ``gradcam``, ``gradcam++``, ``hirescam``...).
        agreement: Also run a second explanation method and report the agreement.
        report: Write the PDF report.
        slice_index: For volumes, the slice to analyse (default: the most suspicious).
        assumed_pixel_spacing_mm: Spacing to assume when the file has none; reported as assumed.
        sequence: MR sequence (``T1``, ``T2``, ``FLAIR``...) when the file does not say.
        perfusion_map: CBV map on the scan's pixel grid, enabling the rCBV ratio.
        dicom_out: Folder for the DICOM outputs (SR, parametric map, overlay, encapsulated PDF); None: none.
        dicom_deferred: Where DICOM outputs are asked for, save only what they are built from
            (:func:`~brainxai.pipeline.outputs.save_dicom_inputs`) and build them when needed
            (:func:`~brainxai.pipeline.outputs.saved_dicom_files`: the same files), e.g. behind a download link.
        segment: Outline the tumour with the segmentation model and measure the lesion on it. None: when a
            segmentation model is available (given to the service, or shipped); True: required (an error when
            none is available); False: off (the parameters describe the explanation's relevance region).
        write_files: Write the scan's files (PNGs and the JSON sidecar; the PDF with ``report``). False: the
            result only (no images, ``report_json`` None), e.g. for a table of results; needs ``report=False``
            and no ``dicom_out``.
    """

    method: str = "lrp"
    agreement: bool = True
    report: bool = True
    slice_index: int | None = None
    assumed_pixel_spacing_mm: float | tuple[float, float] | None = None
    sequence: str | None = None
    perfusion_map: np.ndarray | None = field(default=None, compare=False, repr=False)
    dicom_out: str | Path | None = None
    dicom_deferred: bool = False
    segment: bool | None = None
    write_files: bool = True

    def __post_init__(self) -> None:
        if not self.write_files and (self.report or self.dicom_out is not None):
            raise ValueError("write_files=False writes nothing: it needs report=False and no dicom_out")

    def assumed_spacing(self) -> tuple[float, float] | None:
        """The assumed spacing as ``(row, column)`` millimetres, or None when none was given."""
        a = self.assumed_pixel_spacing_mm
        if a is None:
            return None
        return (float(a), float(a)) if isinstance(a, (int, float)) else (float(a[0]), float(a[1]))


@dataclass
class PatientInfo:
    """Optional patient details typed by the user (never read from the scan's own tags)."""

    name: str | None = None
    patient_id: str | None = None
    age: int | None = None
    sex: str | None = None
    referring_physician: str | None = None

    @classmethod
    def coerce(cls, value: PatientInfo | dict[str, Any] | None) -> PatientInfo | None:
        """Accepts a PatientInfo, a dict with its field names, or None."""
        if value is None or isinstance(value, PatientInfo):
            return value
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown patient fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        """The fields that were filled in."""
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}
