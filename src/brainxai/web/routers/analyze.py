"""Analysing one uploaded scan."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from brainxai.web.analysis import Analyzer, analyze_and_store, available_methods, load_study_out, patient_info_for
from brainxai.web.deps import Client, CurrentUser, Service, State
from brainxai.web.models import User
from brainxai.web.schemas import ErrorOut, PatientIn, StudyOut
from brainxai.web.state import AppState
from brainxai.web.uploads import check_upload

router = APIRouter(prefix="/api", tags=["analysis"])

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 413, 415, 422, 503)}


def parse_patient(code: str | None, name: str | None, birth_date: str | None, sex: str | None) -> PatientIn | None:
    """Patient form fields -> :class:`PatientIn` (None when no code is given), or 422."""
    if not (code and code.strip()):
        if any(v and v.strip() for v in (name, birth_date, sex)):
            raise HTTPException(422, "patient_code: required when other patient fields are given")
        return None
    try:
        # Validated from the raw form strings: pydantic parses the date and checks the sex code.
        return PatientIn.model_validate(
            {"code": code, "name": name or None, "birth_date": birth_date or None, "sex": sex or None}
        )
    except ValidationError as exc:
        msgs = "; ".join(f"patient_{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise HTTPException(422, msgs) from None


def check_method(method: str, service: Analyzer) -> str:
    methods = available_methods(service)
    if method not in methods:
        raise HTTPException(422, f"method: unknown or unsupported explanation method {method!r}; use one of {methods}")
    return method


async def run_analysis(
    state: AppState,
    service: Analyzer,
    user: User,
    file: UploadFile,
    method: str,
    patient: PatientIn | None,
    slice_index: int | None,
    client: str | None,
) -> str:
    """Validates, analyses and stores one upload; maps the scan's problems to 4xx."""
    data = await file.read()
    upload = await run_in_threadpool(
        check_upload,
        data,
        file.filename,
        max_bytes=state.settings.max_upload_bytes,
        max_volume_bytes=state.settings.max_volume_bytes,
    )
    info = await run_in_threadpool(patient_info_for, state.session_factory, user, patient)
    try:
        return await state.runner.run(
            analyze_and_store,
            service,
            state.storage,
            state.session_factory,
            upload=upload,
            method=method,
            owner_id=user.id,
            new_patient=patient,
            patient_info=info,
            slice_index=slice_index,
            client=client,
        )
    except ValueError as exc:  # ImageReadError, NotABrainScanError, unsupported method for this model...
        raise HTTPException(422, f"{upload.display_name}: {exc}") from None


@router.post("/analyze", status_code=201, response_model=StudyOut, responses=_ERRORS)
async def analyze(
    client: Client,
    user: CurrentUser,
    state: State,
    service: Service,
    file: Annotated[UploadFile, File(description="The scan: JPEG, PNG, DICOM or NIfTI (.nii/.nii.gz)")],
    method: Annotated[str, Form(description="Explanation method, see /api/health 'methods'")] = "lrp",
    patient_code: Annotated[str | None, Form(description="Your identifier for the patient")] = None,
    patient_name: Annotated[str | None, Form()] = None,
    patient_birth_date: Annotated[str | None, Form(description="YYYY-MM-DD")] = None,
    patient_sex: Annotated[str | None, Form(description="F, M, O or U")] = None,
    slice_index: Annotated[
        int | None, Form(ge=0, le=100_000, description="Slice of a volume; default: chosen automatically")
    ] = None,
) -> JSONResponse:
    """Analyses one scan: prediction, class probabilities, explanation heatmap, spatial parameters, PDF report.

    The study is stored (and linked to the patient when ``patient_code`` is given). Research use
    only: the output is not a diagnosis.
    """
    check_method(method, service)
    patient = parse_patient(patient_code, patient_name, patient_birth_date, patient_sex)
    study_id = await run_analysis(state, service, user, file, method, patient, slice_index, client)
    out = await run_in_threadpool(load_study_out, state.session_factory, study_id, user)
    return JSONResponse(out.model_dump(mode="json"), status_code=201, headers={"Location": out.links.self})
