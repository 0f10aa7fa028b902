"""The configured PACS in the web app: list its studies, analyse one (thin: the logic is :mod:`brainxai.pacs.service`).

The PACS is configured by the environment of the server process: ``BRAINXAI_PACS_URL`` (its
DICOMweb root) and, when it needs a login, ``BRAINXAI_PACS_USER``/``BRAINXAI_PACS_PASSWORD``.
Without ``BRAINXAI_PACS_URL`` these endpoints answer 503. The page ``/static/pacs.html`` uses them.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from brainxai.pacs import PacsClient, PacsError, load_credentials
from brainxai.pacs.credentials import CredentialsError
from brainxai.pacs.service import analyze_pacs_study
from brainxai.pipeline.options import AnalysisOptions
from brainxai.web.analysis import available_methods
from brainxai.web.deps import CurrentUser, Service, State

router = APIRouter(prefix="/api/pacs", tags=["pacs"])

PACS_URL_ENV = "BRAINXAI_PACS_URL"


def pacs_client() -> PacsClient:
    """The configured PACS, or 503 saying how to configure one."""
    url = os.environ.get(PACS_URL_ENV, "").strip()
    if not url:
        raise HTTPException(503, f"no PACS configured: start the server with {PACS_URL_ENV}=<DICOMweb root>")
    try:
        return PacsClient(url, load_credentials())
    except (CredentialsError, PacsError) as exc:
        raise HTTPException(503, f"PACS misconfigured: {exc}") from None


def _pacs_failure(exc: PacsError) -> HTTPException:
    # The PACS's own 404 is the caller's "not found"; anything else is a failure of the upstream server.
    return HTTPException(404 if exc.status == 404 else 502, str(exc))


@router.get("/studies")
async def list_studies(
    user: CurrentUser,
    since: Annotated[date | None, Query(description="Only studies with StudyDate on or after (YYYY-MM-DD)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Studies in the configured PACS (QIDO-RS)."""
    client = pacs_client()
    try:
        studies = await run_in_threadpool(
            client.search_studies, date_from=since.strftime("%Y%m%d") if since else None, limit=limit
        )
    except PacsError as exc:
        raise _pacs_failure(exc) from None
    return {"pacs": client.url, "studies": [asdict(s) for s in studies]}


@router.post("/studies/{study_uid}/analyze")
async def analyze_study(
    study_uid: str,
    user: CurrentUser,
    state: State,
    service: Service,
    method: Annotated[str, Query(description="Explanation method, see /api/health 'methods'")] = "lrp",
    force: Annotated[bool, Query(description="Analyse series that already have a brainxai result")] = False,
) -> dict[str, Any]:
    """Analyses the study's brain MR series and stores the results in it (one STOW request). Research use only."""
    if method not in available_methods(service):
        raise HTTPException(422, f"method: unknown or unsupported explanation method {method!r}")
    client = pacs_client()
    options = AnalysisOptions(method=method, agreement=False, report=True)
    try:
        outcome = await state.runner.run(analyze_pacs_study, client, study_uid, options, service=service, force=force)
    except PacsError as exc:
        raise _pacs_failure(exc) from None
    return asdict(outcome) | {"research_use_only": True, "verification": "UNVERIFIED"}
