"""Patients and their past studies (the history). A user sees their own patients; an admin sees all."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from brainxai.web import crud
from brainxai.web.deps import DB, Client, CurrentUser, Offset, PageSize
from brainxai.web.schemas import ErrorOut, PatientIn, PatientOut, StudySummary
from brainxai.web.views import patient_out, study_summary

router = APIRouter(prefix="/api/patients", tags=["patients"])

_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 404: {"model": ErrorOut}}


@router.get("", response_model=list[PatientOut], responses=_ERRORS)
def list_patients(
    client: Client,
    user: CurrentUser,
    db: DB,
    q: Annotated[str | None, Query(max_length=64, description="Filter by code or name")] = None,
    limit: PageSize = 100,
    offset: Offset = 0,
) -> list[PatientOut]:
    """Patients you may see, most recently studied first, with their study counts."""
    rows = crud.list_patients(db, user, limit=limit, offset=offset, query=q)
    crud.audit(db, user, "patient.list", "patient", None, f"{len(rows)} shown", client)
    db.commit()
    return [patient_out(p, n, last) for p, n, last in rows]


@router.post("", status_code=201, response_model=PatientOut, responses=_ERRORS)
def create_patient(body: PatientIn, client: Client, user: CurrentUser, db: DB) -> PatientOut:
    """Registers a patient (or returns yours with the same code, filling in blank fields)."""
    patient = crud.ensure_patient(db, user, body)
    crud.audit(db, user, "patient.update", "patient", patient.id, None, client)
    db.commit()
    return patient_out(patient)


@router.get("/{patient_id}", response_model=PatientOut, responses=_ERRORS)
def get_patient(patient_id: int, client: Client, user: CurrentUser, db: DB) -> PatientOut:
    """One patient."""
    patient = crud.get_patient(db, user, patient_id)
    count, last = crud.patient_activity(db, patient.id)
    crud.audit(db, user, "patient.view", "patient", patient.id, None, client)
    db.commit()
    return patient_out(patient, count, last)


@router.get("/{patient_id}/studies", response_model=list[StudySummary], responses=_ERRORS)
def patient_studies(
    patient_id: int, client: Client, user: CurrentUser, db: DB, limit: PageSize = 100, offset: Offset = 0
) -> list[StudySummary]:
    """The patient's studies, newest first."""
    patient = crud.get_patient(db, user, patient_id)
    studies = crud.list_studies(db, user, patient_id=patient.id, limit=limit, offset=offset)
    crud.audit(db, user, "patient.history", "patient", patient.id, f"{len(studies)} studies", client)
    db.commit()
    return [study_summary(s) for s in studies]
