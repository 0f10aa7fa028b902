"""Helpers for the web tests (imported by name: ``conftest`` is ambiguous across test folders)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from webfakes import FakeService

from brainxai.web.app import create_app
from brainxai.web.crud import create_user
from brainxai.web.db import session_scope
from brainxai.web.settings import Settings

PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "root": "root-password"}


def reset_database(url: str) -> None:
    """Empties a shared test database (PostgreSQL) so each test starts from a fresh schema."""
    from sqlalchemy import text

    from brainxai.web.db import make_engine
    from brainxai.web.models import Base

    engine = make_engine(url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


def add_users(app: Any) -> None:
    with session_scope(app.state.brainxai.session_factory) as db:
        for name, password in PASSWORDS.items():
            create_user(db, name, password, is_admin=name == "root")


def login(client: TestClient, name: str) -> dict[str, str]:
    """Bearer header for ``name`` (API-client style)."""
    r = client.post("/api/auth/token", json={"username": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@contextmanager
def running_app(
    settings: Settings, service: Any | None = None, *, users: bool = True, raise_server_exceptions: bool = False
) -> Iterator[TestClient]:
    service = service if service is not None else FakeService()
    app = create_app(settings, service_factory=lambda _s: service)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        if users:
            add_users(app)
        yield client
