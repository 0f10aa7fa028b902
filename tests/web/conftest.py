"""Fixtures for the web app: a temp data dir, a fake analysis service, users, logged-in clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from brainxai.web.app import create_app
from brainxai.web.crud import create_user
from brainxai.web.db import session_scope
from brainxai.web.settings import Settings

from webfakes import FakeService

PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "root": "root-password"}


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """argon2 at its production cost takes ~0.1-0.3 s a hash; tests that are not about it use a cheap one."""
    if "real_argon2" in request.fixturenames:
        return
    from argon2 import PasswordHasher

    from brainxai.web import security

    monkeypatch.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))


@pytest.fixture()
def real_argon2() -> None:
    """Request this fixture to keep production argon2 parameters."""


@pytest.fixture()
def web_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", max_upload_mb=2.0, max_batch_mb=10.0, max_batch_files=10, max_volume_mb=8.0
    )


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


@pytest.fixture()
def fake_service() -> FakeService:
    return FakeService()


@pytest.fixture()
def client(web_settings: Settings, fake_service: FakeService) -> Iterator[TestClient]:
    with running_app(web_settings, fake_service) as c:
        yield c


@pytest.fixture()
def auth(client: TestClient) -> Callable[[str], dict[str, str]]:
    cache: dict[str, dict[str, str]] = {}

    def get(name: str) -> dict[str, str]:
        if name not in cache:
            cache[name] = login(client, name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def sample_jpeg(samples_dir: Path) -> bytes:
    return (samples_dir / "glioma.jpg").read_bytes()
