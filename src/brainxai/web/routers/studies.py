"""A study's result, images and PDF report."""

from __future__ import annotations

import io
import zipfile
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response

from brainxai.web import crud
from brainxai.web.analysis import study_dicom_files
from brainxai.web.deps import DB, Client, CurrentUser, Offset, PageSize, State
from brainxai.web.models import Study
from brainxai.web.schemas import ErrorOut, StudyOut, StudySummary
from brainxai.web.state import AppState
from brainxai.web.uploads import is_safe_relative
from brainxai.web.views import study_out, study_summary

router = APIRouter(prefix="/api/studies", tags=["studies"])

_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 404: {"model": ErrorOut}}
ImageKind = Literal["original", "heatmap", "overlay", "outline", "mask", "tumour"]


def _file(state: AppState, study: Study, key: str) -> str:
    relative = study.files.get(key)
    if not relative or not is_safe_relative(relative) or not is_safe_relative(study.storage_dir):
        raise HTTPException(404, f"study {study.id} has no {key.removeprefix('image:')} file")
    path = state.storage.resolve(f"{study.storage_dir}/{relative}")
    if not path.is_file():
        raise HTTPException(404, f"the {key.removeprefix('image:')} file of study {study.id} is missing on disk")
    return str(path)


@router.get("", response_model=list[StudySummary], responses=_ERRORS)
def list_studies(
    client: Client, user: CurrentUser, db: DB, limit: PageSize = 50, offset: Offset = 0
) -> list[StudySummary]:
    """Your most recent studies (all users' for an administrator)."""
    studies = crud.list_studies(db, user, limit=limit, offset=offset)
    crud.audit(db, user, "study.list", "study", None, f"{len(studies)} shown", client)
    db.commit()
    return [study_summary(s) for s in studies]


@router.get("/{study_id}", response_model=StudyOut, responses=_ERRORS)
def get_study(study_id: str, client: Client, user: CurrentUser, db: DB) -> StudyOut:
    """A study's full result: prediction, probabilities, spatial parameters, links to images and report."""
    study = crud.get_study(db, user, study_id)
    crud.audit(db, user, "study.view", "study", study.id, None, client)
    db.commit()
    return study_out(study)


@router.get(
    "/{study_id}/images/{kind}",
    response_class=FileResponse,
    responses={**_ERRORS, 200: {"content": {"image/png": {}}}},
)
def study_image(
    study_id: str, kind: ImageKind, client: Client, user: CurrentUser, db: DB, state: State
) -> FileResponse:
    """One of the study's PNG images: original, heatmap, overlay, outline, mask or (when segmented) tumour."""
    study = crud.get_study(db, user, study_id)
    path = _file(state, study, f"image:{kind}")
    crud.audit(db, user, "study.image", "study", study.id, kind, client)
    db.commit()
    return FileResponse(path, media_type="image/png")


@router.get(
    "/{study_id}/report.pdf",
    response_class=FileResponse,
    responses={**_ERRORS, 200: {"content": {"application/pdf": {}}}},
)
def study_report(study_id: str, client: Client, user: CurrentUser, db: DB, state: State) -> FileResponse:
    """The study's PDF report (downloaded as an attachment)."""
    study = crud.get_study(db, user, study_id)
    path = _file(state, study, "report_pdf")
    crud.audit(db, user, "report.download", "study", study.id, None, client)
    db.commit()
    return FileResponse(path, media_type="application/pdf", filename=f"brainxai-report-{study.id[:12]}.pdf")


@router.get(
    "/{study_id}/dicom.zip",
    response_class=Response,
    responses={**_ERRORS, 200: {"content": {"application/zip": {}}}},
)
def study_dicom_zip(study_id: str, client: Client, user: CurrentUser, db: DB, state: State) -> Response:
    """The study's DICOM results (SR, relevance map, overlay, encapsulated PDF; research use only) as one zip."""
    study = crud.get_study(db, user, study_id)
    files = study_dicom_files(study.files, study.result, lambda key: _file(state, study, key))
    if not files:
        raise HTTPException(404, f"study {study.id} has no DICOM results")
    buf = io.BytesIO()
    # Entries dated by the study, not the download: the same study gives the same bytes on every download.
    stamp = study.created_at.timetuple()[:6]
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=stamp)
            entry.external_attr = 0o600 << 16  # what writestr gives an entry named by a string
            archive.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
    crud.audit(db, user, "dicom.download", "study", study.id, f"{len(files)} files", client)
    db.commit()
    name = f"brainxai-dicom-{study.id[:12]}.zip"
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(buf.getvalue(), media_type="application/zip", headers=disposition)
