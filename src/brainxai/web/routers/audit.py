"""The audit log, for administrators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from brainxai.web import crud
from brainxai.web.deps import DB, AdminUser
from brainxai.web.schemas import AuditEventOut, ErrorOut

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("", response_model=list[AuditEventOut], responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
def audit_log(
    admin: AdminUser,
    db: DB,
    user_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[AuditEventOut]:
    """Who created or viewed what, newest first (administrators only)."""
    return [AuditEventOut.model_validate(e) for e in crud.list_audit(db, limit=limit, offset=offset, user_id=user_id)]
