"""The PDF report as an Encapsulated PDF (PS3.3 A.45.1), in the source's study.

The document bytes are the PDF file unchanged (Encapsulated Document Length records the true length;
DICOM pads an odd length with one zero byte). The PDF shows the patient details typed by the user,
so Burned In Annotation is ``YES`` when there are any.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydicom.uid import EncapsulatedPDFStorage

from brainxai.reporting.dicom import source as src
from brainxai.reporting.dicom.source import DicomSource

PDF_SERIES = 9904
TITLE = "brainxai analysis report (research use only)"


def encapsulated_pdf(
    pdf: bytes, source: DicomSource, result: Mapping[str, Any], references: Sequence[Any] | None = None
) -> Any:
    """The report PDF as an Encapsulated PDF instance referring to the analysed image (a series: ``references``)."""
    import highdicom as hd

    if not pdf.startswith(b"%PDF-"):
        raise ValueError("the report is not a PDF file (no %PDF- header)")
    image = source.image
    created = source.created
    doc = hd.SOPClass(
        study_instance_uid=source.study_uid,
        series_instance_uid=source.uid("pdf-series"),
        series_number=PDF_SERIES,
        sop_instance_uid=source.uid("pdf"),
        sop_class_uid=EncapsulatedPDFStorage,
        instance_number=1,
        modality="DOC",
        manufacturer=src.MANUFACTURER,
        series_description=src.series_description("report"),
        software_versions=str(result.get("brainxai_version") or "unknown")[:64],
        content_date=created.date(),
        content_time=created.time().replace(microsecond=0, tzinfo=None),
    )
    doc.copy_patient_and_study_information(image)
    doc._add_contributing_equipment([src.model_equipment(result)])
    doc.ConversionType = "WSD"  # SC Equipment: produced on a workstation
    doc.AcquisitionDateTime = created.strftime("%Y%m%d%H%M%S")
    doc.BurnedInAnnotation = "YES" if result.get("patient") else "NO"  # the PDF shows only typed details
    doc.DocumentTitle = TITLE
    doc.ConceptNameCodeSequence = []  # Type 2: no standard code names this document
    doc.MIMETypeOfEncapsulatedDocument = "application/pdf"
    doc.EncapsulatedDocument = pdf
    doc.EncapsulatedDocumentLength = len(pdf)
    doc.SourceInstanceSequence = [_reference(i) for i in (references or [image])]
    return doc


def _reference(image: Any) -> Any:
    from pydicom.dataset import Dataset

    ref = Dataset()
    ref.ReferencedSOPClassUID = image.SOPClassUID
    ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    return ref
