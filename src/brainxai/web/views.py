"""Turning stored rows into API answers (links instead of paths, nothing the client may not see)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from brainxai.constants import CLASS_TITLES
from brainxai.web.models import BatchJob, Patient, Study
from brainxai.web.schemas import (
    BatchItemOut,
    BatchJobOut,
    PatientOut,
    SpatialParameter,
    StudyLinks,
    StudyOut,
    StudySummary,
)


def _columns(row: object, *names: str) -> dict[str, Any]:
    """The named attributes of a row, for the fields an answer copies as they are."""
    return {name: getattr(row, name) for name in names}


def patient_out(patient: Patient, study_count: int = 0, last_study_at: datetime | None = None) -> PatientOut:
    return PatientOut(
        **_columns(patient, "id", "code", "name", "birth_date", "sex", "created_at"),
        owner=patient.owner.username,
        study_count=study_count,
        last_study_at=last_study_at,
    )


#: The key of a study's files that names the inputs of its deferred DICOM results.
DICOM_INPUTS = "dicom_inputs"


def has_dicom_results(files: dict[str, str]) -> bool:
    """Whether a study's files hold DICOM results (their inputs, or the files older versions wrote)."""
    return DICOM_INPUTS in files or any(key.startswith("dicom:") for key in files)


def study_links(study: Study) -> StudyLinks:
    base = f"/api/studies/{study.id}"
    images = {
        key.removeprefix("image:"): f"{base}/images/{key.removeprefix('image:')}"
        for key in study.files
        if key.startswith("image:")
    }
    return StudyLinks(
        self=base,
        images=images,
        report_pdf=f"{base}/report.pdf" if "report_pdf" in study.files else None,
        dicom_zip=f"{base}/dicom.zip" if has_dicom_results(study.files) else None,
    )


def study_summary(study: Study) -> StudySummary:
    return StudySummary(
        **_columns(study, "id", "created_at", "source_name", "method", "prediction"),
        prediction_title=CLASS_TITLES.get(study.prediction, study.prediction),
        **_columns(study, "confidence", "patient_id"),
        patient_code=study.patient.code if study.patient else None,
        links=study_links(study),
    )


def _spatial(result: dict[str, Any]) -> list[SpatialParameter]:
    out = []
    for item in result.get("spatial_parameters") or []:
        if isinstance(item, dict) and "name" in item:
            fields = ("name", "value", "unit", "method", "key", "status", "text")
            out.append(SpatialParameter.model_validate({k: item.get(k) for k in fields}))
    return out


def study_out(study: Study) -> StudyOut:
    result = study.result or {}
    return StudyOut(
        **study_summary(study).model_dump(),
        source_kind=study.source_kind,
        source_sha256=study.source_sha256,
        source_bytes=study.source_bytes,
        owner=study.owner.username,
        probabilities={str(k): float(v) for k, v in (result.get("probabilities") or {}).items()},
        spatial_parameters=_spatial(result),
        scan=result.get("scan") or {},
        model=result.get("model") or {},
        patient=patient_out(study.patient) if study.patient else None,
        result=result,
    )


def job_out(job: BatchJob) -> BatchJobOut:
    items = [
        BatchItemOut(
            position=item.position,
            filename=item.filename,
            status=item.status,  # type: ignore[arg-type]
            error=item.error,
            study=study_summary(item.study) if item.study else None,
        )
        for item in job.items
    ]
    done = sum(i.status == "done" for i in items)
    failed = sum(i.status == "error" for i in items)
    total = len(items)
    return BatchJobOut(
        **_columns(job, "id", "status", "method", "created_at", "finished_at", "patient_id"),
        total=total,
        done=done,
        failed=failed,
        pending=total - done - failed,
        progress=(done + failed) / total if total else 1.0,
        items=items,
        links={"self": f"/api/batch/{job.id}"},
    )
