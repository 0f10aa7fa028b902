"""FastAPI dependencies: app state, database session, the current user, the analysis service, paging."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Query, Request, status
from sqlalchemy.orm import Session

from brainxai.web import crud
from brainxai.web.analysis import Analyzer
from brainxai.web.models import User
from brainxai.web.state import AppState

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def get_state(request: Request) -> AppState:
    return request.app.state.brainxai


State = Annotated[AppState, Depends(get_state)]


def get_db(state: State) -> Iterator[Session]:
    """A session per request; endpoints commit what they change, anything else is rolled back."""
    session = state.session_factory()
    try:
        yield session
    finally:
        session.close()


DB = Annotated[Session, Depends(get_db)]


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


#: The client's address, for the audit log.
Client = Annotated[str | None, Depends(client_address)]
#: Paging of a list: how many entries, and how many to skip.
PageSize = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0)]


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _check_origin(request: Request, state: AppState) -> None:
    """Cookie-authenticated writes must come from our own page (defence in depth beside SameSite)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return  # Non-browser clients send neither; browsers always send Origin on POST.
    parts = urlsplit(origin)
    allowed = {f"{request.url.scheme}://{request.headers.get('host', '')}", *state.settings.trusted_origins}
    if f"{parts.scheme}://{parts.netloc}" not in allowed:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-origin request refused")


def get_current_user(request: Request, db: DB, state: State) -> User:
    """The authenticated user (bearer token or session cookie), else 401."""
    token = _bearer_token(request)
    via_cookie = token is None
    if via_cookie:
        token = request.cookies.get(state.settings.cookie_name)
    user = crud.user_for_token(db, token) if token else None
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "authentication required: log in, or send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if via_cookie and request.method in UNSAFE_METHODS:
        _check_origin(request, state)
    # End the read transaction now: an analysis may await for seconds, and must not hold a pooled
    # connection meanwhile (objects stay usable: the session does not expire them on commit).
    db.commit()
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "administrator role required")
    return user


AdminUser = Annotated[User, Depends(get_admin)]


def get_service(state: State) -> Analyzer:
    """The loaded analysis service, or 503 when the model could not be loaded."""
    if state.service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"model not loaded: {state.service_error}")
    return state.service


Service = Annotated[Analyzer, Depends(get_service)]
