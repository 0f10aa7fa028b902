"""DICOM outputs of an analysis (highdicom): SR measurement report, Parametric Map, overlay SC, Encapsulated PDF.

One module per object type (:mod:`~.sr`, :mod:`~.parametric_map`, :mod:`~.segmentation`,
:mod:`~.secondary_capture`, :mod:`~.encapsulated_pdf`); :mod:`~.source` holds what they share (the
referenced image, the study, deterministic UIDs, the model as Contributing Equipment), and
:func:`write_dicom_outputs` builds and writes them all (:func:`encode_dicom_outputs`: their bytes, unwritten).
Inputs are plain data (the result's dict, arrays, the source ``pydicom.Dataset`` or None), so the pipeline
calls this package, never the reverse.
"""

from brainxai.reporting.dicom.writer import (
    AnalysisImages,
    DicomOutputs,
    build_dicom_outputs,
    dicom_file_name,
    encode_dicom_outputs,
    write_dicom_outputs,
)

__all__ = [
    "AnalysisImages",
    "DicomOutputs",
    "build_dicom_outputs",
    "dicom_file_name",
    "encode_dicom_outputs",
    "write_dicom_outputs",
]
