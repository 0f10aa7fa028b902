"""Fixtures for the web app: a temp data dir, a fake analysis service, users, logged-in clients."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from webfakes import FakeService
from webhelpers import login, reset_database, running_app

from brainxai.web.settings import Settings


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
    """Temp SQLite by default; BRAINXAI_TEST_WEB_DATABASE_URL runs the API tests on another database."""
    url = os.environ.get("BRAINXAI_TEST_WEB_DATABASE_URL")
    if url:
        reset_database(url)
    return Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        max_upload_mb=2.0,
        max_batch_mb=10.0,
        max_batch_files=10,
        max_volume_mb=8.0,
    )


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
