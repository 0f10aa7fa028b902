"""Batch analysis: many files in, a job id out; progress and per-file results on request."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from brainxai.web import crud
from brainxai.web.db import session_scope
from brainxai.web.deps import DB, CurrentUser, Service, State, client_address
from brainxai.web.models import BatchItem, BatchJob, User
from brainxai.web.routers.analyze import check_method, parse_patient
from brainxai.web.schemas import BatchJobOut, ErrorOut, PatientIn
from brainxai.web.state import AppState
from brainxai.web.uploads import UploadError, check_upload, safe_display_name
from brainxai.web.views import job_out

router = APIRouter(prefix="/api", tags=["batch"])

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 404, 413, 422, 503)}


def _create_job(
    state: AppState,
    user: User,
    method: str,
    patient: PatientIn | None,
    files: list[tuple[str, bytes | UploadError]],
    client: str | None,
) -> BatchJobOut:
    """Checks each file, stores the good ones under generated names and records the job.

    A bad file (or one refused while reading, given as an UploadError) becomes an item with an
    error; the others go on.
    """
    job_id = uuid.uuid4().hex
    settings = state.settings
    items: list[BatchItem] = []
    saved: list[str] = []
    try:
        for position, (filename, data) in enumerate(files):
            display = safe_display_name(filename)
            try:
                if isinstance(data, UploadError):
                    raise data
                upload = check_upload(
                    data, filename, max_bytes=settings.max_upload_bytes, max_volume_bytes=settings.max_volume_bytes
                )
            except UploadError as exc:
                items.append(BatchItem(position=position, filename=display, status="error", error=exc.message))
                continue
            path = state.storage.save_upload(job_id, upload.data)
            saved.append(path)
            items.append(BatchItem(position=position, filename=display, upload_path=path, status="queued"))
        with session_scope(state.session_factory) as db:
            owner = db.get(User, user.id)
            assert owner is not None
            patient_id = None
            if patient is not None:
                patient_id = crud.find_or_create_patient(
                    db,
                    owner,
                    patient.code,
                    name=patient.name,
                    birth_date=patient.birth_date.isoformat() if patient.birth_date else None,
                    sex=patient.sex,
                ).id
            job = BatchJob(id=job_id, owner_id=user.id, patient_id=patient_id, method=method, items=items)
            if not any(i.status == "queued" for i in items):
                job.status = "done"
                job.finished_at = crud.utcnow()
            db.add(job)
            db.flush()
            crud.audit(db, owner, "batch.create", "batch", job_id, f"{len(items)} files method={method}", client)
            return job_out(job)
    except BaseException:
        for path in saved:
            state.storage.remove_upload(path)
        raise


@router.post("/batch", status_code=202, response_model=BatchJobOut, responses=_ERRORS)
async def create_batch(
    request: Request,
    user: CurrentUser,
    state: State,
    service: Service,
    files: Annotated[list[UploadFile], File(description="Scans (JPEG, PNG, DICOM, NIfTI), one study each")],
    method: Annotated[str, Form()] = "lrp",
    patient_code: Annotated[str | None, Form(description="All files belong to this patient (optional)")] = None,
    patient_name: Annotated[str | None, Form()] = None,
    patient_birth_date: Annotated[str | None, Form()] = None,
    patient_sex: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    """Queues many scans for analysis. Poll ``GET /api/batch/{id}`` for progress and results."""
    check_method(method, service)
    patient = parse_patient(patient_code, patient_name, patient_birth_date, patient_sex)
    if not files:
        raise HTTPException(422, "files: at least one file is required")
    if len(files) > state.settings.max_batch_files:
        raise HTTPException(413, f"{len(files)} files exceed the limit of {state.settings.max_batch_files} per batch")
    contents: list[tuple[str, bytes | UploadError]] = []
    limit = state.settings.max_upload_bytes
    for f in files:
        if f.size is not None and f.size > limit:
            # Not even read into memory: the item records the refusal.
            message = f"{safe_display_name(f.filename)}: {f.size:,} bytes exceeds the upload limit of {limit:,} bytes"
            contents.append((f.filename or "", UploadError(message, 413)))
        else:
            contents.append((f.filename or "", await f.read()))
    out = await run_in_threadpool(_create_job, state, user, method, patient, contents, client_address(request))
    if out.status != "done":
        state.worker.submit(out.id)
    return JSONResponse(out.model_dump(mode="json"), status_code=202, headers={"Location": out.links["self"]})


@router.get("/batch", response_model=list[BatchJobOut], responses={401: {"model": ErrorOut}})
def list_batches(user: CurrentUser, db: DB) -> list[BatchJobOut]:
    """Your most recent batch jobs (all users' for an administrator)."""
    return [job_out(job) for job in crud.list_jobs(db, user)]


@router.get(
    "/batch/{job_id}", response_model=BatchJobOut, responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}}
)
def get_batch(job_id: str, user: CurrentUser, db: DB) -> BatchJobOut:
    """Progress and per-file results of a batch job."""
    return job_out(crud.get_job(db, user, job_id))
