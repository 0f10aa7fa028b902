"""What every DICOM output shares: the image it refers to, its study, the UIDs and the model's identity.

Two cases:

- **DICOM input**: the outputs join the source's study. They refer to the source instance (and
  frame), and the patient and study modules are copied from it. Type 2 attributes the source lacks
  are added empty, and a missing Study/Series Instance UID is replaced by one derived from the SOP
  Instance UID (and said so in :attr:`DicomSource.notes`).
- **Other input** (JPEG, PNG, NIfTI...): a new study is created, with the patient details the user
  typed (or an anonymous patient), and the analysed slice itself becomes its first object, a
  Secondary Capture, so that the heatmap and the report have an image to refer to.

UIDs of our objects are **deterministic**: derived (SHA-512, pydicom's :func:`generate_uid`) from the
source's identity (its SOP Instance UID and frame, or the analysed pixels and the patient details),
the model's checksum, brainxai's version and the explanation method. Analysing the same image with
the same model again gives the same UIDs, so a PACS that receives the results twice replaces them
instead of holding two copies; a different model, version or method gives new objects.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from brainxai.reporting.dicom import codes

#: Type 2 attributes of the patient and study modules that highdicom copies from the source.
_TYPE2_DEFAULTS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "SliceThickness",  # Type 2 in the MR and CT images; highdicom reads it for derived images
)

MANUFACTURER = "brainxai"
#: Shown as the series description of every object (after the object's own name).
RESEARCH_LABEL = "RESEARCH USE ONLY - not for diagnostic use"


@dataclass
class DicomSource:
    """The image the outputs refer to and what they inherit from it.

    Attributes:
        image: The referenced image: the input DICOM's header, or the Secondary Capture made of a
            non-DICOM input (then also written as an output, see ``created``).
        from_dicom: Whether the input was a DICOM file.
        frame: 1-based frame number of the analysed frame of a multi-frame source, else None.
        seed: What the deterministic UIDs are derived from.
        created: When the analysis ran (``datetime``), used for content dates.
        notes: What the SR says about the source (new study, repaired attributes).
    """

    image: Dataset
    from_dicom: bool
    frame: int | None
    seed: str
    created: datetime
    notes: list[str] = field(default_factory=list)

    def uid(self, kind: str) -> str:
        """The deterministic UID of one of our objects (``"sr"``, ``"sr-series"``...)."""
        return str(generate_uid(entropy_srcs=[self.seed, kind]))

    @property
    def study_uid(self) -> str:
        return str(self.image.StudyInstanceUID)


def model_seed(result: Mapping[str, Any]) -> str:
    """The part of the UID seed that names the analysis: model checksum, brainxai version, method."""
    model = result.get("model") or {}
    return "|".join(
        str(v) for v in (model.get("sha256"), result.get("brainxai_version"), result.get("method"), model.get("name"))
    )


def created_at(result: Mapping[str, Any]) -> datetime:
    """The analysis time of a result (its ``created`` ISO string), or now when it has none."""
    try:
        return datetime.fromisoformat(str(result.get("created")))
    except ValueError:
        return datetime.now().astimezone()


def from_dicom(source: Dataset, result: Mapping[str, Any]) -> DicomSource:
    """The context for a DICOM input: a header copy with the attributes highdicom needs made present."""
    image = copy.deepcopy(source)  # the caller's data set stays as it was (a header: cheap to copy)
    for keyword in _TYPE2_DEFAULTS:
        if keyword not in image:
            setattr(image, keyword, "")
    notes: list[str] = []
    sop_uid = str(image.get("SOPInstanceUID", "")) or None
    if sop_uid is None:
        raise ValueError("the source DICOM has no SOPInstanceUID, so the results could not refer to it")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not image.get(keyword):
            setattr(image, keyword, generate_uid(entropy_srcs=[sop_uid, keyword]))
            notes.append(f"The source DICOM has no {keyword}; {getattr(image, keyword)} was derived from its SOP UID.")
    frame = _analysed_frame(image, (result.get("scan") or {}).get("slice_index"), notes)
    seed = f"dicom|{sop_uid}|{frame}|{model_seed(result)}"
    return DicomSource(image, True, frame, seed, created_at(result), notes)


def _analysed_frame(image: Dataset, slice_index: int | None, notes: list[str]) -> int | None:
    """The 1-based frame the analysis used, when the source is a multi-frame image its IOD allows frames of."""
    if slice_index is None or int(image.get("NumberOfFrames", 1) or 1) <= 1:
        return None
    import highdicom as hd

    frame = int(slice_index) + 1
    try:  # highdicom knows which IODs are multi-frame ones
        hd.sr.SourceImageForMeasurementGroup.from_source_image(image, [frame])
    except (TypeError, ValueError):
        notes.append(
            f"Frame {frame} of the source was analysed, but its SOP class is not a multi-frame one, "
            "so the references name the instance only."
        )
        return None
    return frame


def new_study_seed(result: Mapping[str, Any], pixels: np.ndarray) -> str:
    """The UID seed of a new study: the analysed pixels, the patient details and the analysis."""
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes() + str(pixels.shape).encode()).hexdigest()
    patient = json.dumps(result.get("patient") or {}, sort_keys=True, default=str)
    return f"new|{digest}|{patient}|{(result.get('scan') or {}).get('slice_index')}|{model_seed(result)}"


def patient_module(patient: Mapping[str, Any] | None, seed: str) -> dict[str, str]:
    """Patient attributes from the details the user typed; an anonymous patient when there are none."""
    patient = patient or {}
    sex = str(patient.get("sex") or "").strip().upper()[:1]
    out = {
        "PatientName": person_name(str(patient.get("name") or "Anonymous")),
        "PatientID": str(patient.get("patient_id") or f"BXA-{hashlib.sha256(seed.encode()).hexdigest()[:10]}"),
        "PatientBirthDate": "",
        "PatientSex": sex if sex in ("M", "F", "O") else "",
    }
    age = patient.get("age")
    if isinstance(age, int) and 0 <= age < 1000:
        out["PatientAge"] = f"{age:03d}Y"
    return out


def person_name(text: str) -> str:
    """A typed name as a DICOM person name: kept whole as one component unless it already uses ``^``."""
    text = text.strip()
    # Splitting "first last" would guess wrongly for many names; a trailing caret marks one whole component.
    return text if "^" in text else f"{text}^"


def model_equipment(result: Mapping[str, Any]) -> Any:
    """The model as Contributing Equipment (purpose "Processing Equipment", as IHE AIR asks), with its checksum."""
    import highdicom as hd

    model = result.get("model") or {}
    name = str(model.get("name") or "unknown model")
    sha = str(model.get("sha256") or "unknown")
    version = str(result.get("brainxai_version") or model.get("version") or "")
    item = hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.PROCESSING_EQUIPMENT,
        manufacturer_model_name=name[:64],
        # SoftwareVersions (LO, 64 characters): brainxai's version, then the checkpoint's SHA-256 (64 hex).
        software_versions=[v for v in (version[:64], sha[:64]) if v],
        contribution_description=(
            f"Image classification and explanation by brainxai {version}: model {name}, checkpoint "
            f"{model.get('checkpoint', '?')} (SHA-256 {sha}), explanation method {result.get('method', '?')}. "
            "Research use only; results are unverified."
        )[:1024],
    )
    item.DeviceUID = device_uid(result)
    return item


def device_uid(result: Mapping[str, Any]) -> str:
    """A UID for the model: the same checkpoint always gets the same one (IHE AIR Device UID)."""
    model = result.get("model") or {}
    return str(generate_uid(entropy_srcs=["brainxai-model", str(model.get("sha256")), str(model.get("name"))]))


def series_description(kind: str) -> str:
    """``"brainxai <kind> - RESEARCH USE ONLY..."`` (LO: 64 characters)."""
    return f"brainxai {kind} - {RESEARCH_LABEL}"[:64]


def source_reference(image: Dataset, frame: int | None = None) -> Dataset:
    """One item of a Source/Referenced Image Sequence pointing at ``image`` (and its frame)."""
    item = Dataset()
    item.ReferencedSOPClassUID = image.SOPClassUID
    item.ReferencedSOPInstanceUID = image.SOPInstanceUID
    if frame is not None:
        item.ReferencedFrameNumber = frame
    return item
