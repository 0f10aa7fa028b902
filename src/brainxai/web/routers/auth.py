"""Logging in and out: a session cookie for the page, a bearer token for API clients."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status

from brainxai.web import crud
from brainxai.web.deps import DB, CurrentUser, State, client_address
from brainxai.web.models import User
from brainxai.web.schemas import ErrorOut, LoginIn, TokenOut, UserOut
from brainxai.web.settings import user_add_command

router = APIRouter(prefix="/api/auth", tags=["auth"])

_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 429: {"model": ErrorOut}}


def _login(body: LoginIn, request: Request, db: DB, state: State) -> User:
    client = client_address(request) or "?"
    if state.throttle.blocked(body.username, client):
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many failed logins; wait a few minutes")
    user = crud.authenticate(db, body.username, body.password)
    if user is None:
        state.throttle.failed(body.username, client)
        crud.audit(db, None, "login.failed", "user", None, f"username={body.username[:64]}", client)
        db.commit()
        if not crud.has_users(db):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"no account exists yet; create one on the server with: {user_add_command(state.settings)}",
            )
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
    state.throttle.succeeded(body.username)
    return user


@router.post("/login", response_model=UserOut, responses=_ERRORS)
def login(body: LoginIn, request: Request, response: Response, db: DB, state: State) -> UserOut:
    """Checks the credentials and sets an HttpOnly, SameSite=Strict session cookie."""
    user = _login(body, request, db, state)
    settings = state.settings
    token, expires = crud.create_session(db, user, "cookie", settings.session_hours)
    crud.audit(db, user, "login", "user", user.id, "cookie", client_address(request))
    db.commit()
    response.set_cookie(
        settings.cookie_name,
        token,
        max_age=int(settings.session_hours * 3600),
        expires=expires,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
    )
    return UserOut.model_validate(user)


@router.post("/token", response_model=TokenOut, responses=_ERRORS)
def token(body: LoginIn, request: Request, db: DB, state: State) -> TokenOut:
    """Checks the credentials and returns a bearer token for API clients (send it as ``Authorization: Bearer``)."""
    user = _login(body, request, db, state)
    secret, expires = crud.create_session(db, user, "bearer", state.settings.session_hours)
    crud.audit(db, user, "login", "user", user.id, "bearer token", client_address(request))
    db.commit()
    return TokenOut(access_token=secret, expires_at=expires, user=UserOut.model_validate(user))


@router.post("/logout", status_code=204, responses={401: {"model": ErrorOut}})
def logout(request: Request, response: Response, user: CurrentUser, db: DB, state: State) -> Response:
    """Ends this session (cookie or bearer token)."""
    header = request.headers.get("authorization", "")
    secret = (
        header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(state.settings.cookie_name)
    )
    if secret:
        crud.end_session(db, secret)
    crud.audit(db, user, "logout", "user", user.id, None, client_address(request))
    db.commit()
    response = Response(status_code=204)
    response.delete_cookie(state.settings.cookie_name, path="/", httponly=True, samesite="strict")
    return response


@router.get("/me", response_model=UserOut, responses={401: {"model": ErrorOut}})
def me(user: CurrentUser) -> UserOut:
    """The logged-in user."""
    return UserOut.model_validate(user)
