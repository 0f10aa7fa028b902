"""Batch analysis: many files in, a job id out; progress and per-file results on request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from fastapi.responses import JSONResponse

from brainxai.web import crud
from brainxai.web.batch import JobRequest
from brainxai.web.deps import DB, Client, CurrentUser, Service, State
from brainxai.web.routers.analyze import check_method, parse_patient
from brainxai.web.schemas import BatchJobOut, ErrorOut
from brainxai.web.settings import Settings
from brainxai.web.uploads import UploadError, safe_display_name
from brainxai.web.views import job_out

router = APIRouter(prefix="/api", tags=["batch"])

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 404, 413, 422, 503)}


async def read_files(files: list[UploadFile], settings: Settings) -> list[tuple[str, bytes | UploadError]]:
    """The uploaded files' names and contents; a file over the size limit is not read, its item records the refusal."""
    if not files:
        raise HTTPException(422, "files: at least one file is required")
    if len(files) > settings.max_batch_files:
        raise HTTPException(413, f"{len(files)} files exceed the limit of {settings.max_batch_files} per batch")
    contents: list[tuple[str, bytes | UploadError]] = []
    limit = settings.max_upload_bytes
    for f in files:
        if f.size is not None and f.size > limit:
            message = f"{safe_display_name(f.filename)}: {f.size:,} bytes exceeds the upload limit of {limit:,} bytes"
            contents.append((f.filename or "", UploadError(message, 413)))
        else:
            contents.append((f.filename or "", await f.read()))
    return contents


@router.post("/batch", status_code=202, response_model=BatchJobOut, responses=_ERRORS)
async def create_batch(
    client: Client,
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
    contents = await read_files(files, state.settings)
    out = await state.worker.enqueue(JobRequest(user.id, method, patient, contents, client))
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
