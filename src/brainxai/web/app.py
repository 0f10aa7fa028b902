"""The FastAPI application: API routers, the page, start-up (migrate, recover, load the model once)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from brainxai.constants import DISCLAIMER
from brainxai.version import __version__
from brainxai.web import crud
from brainxai.web.analysis import Analyzer, InferenceRunner
from brainxai.web.batch import BatchWorker
from brainxai.web.db import make_engine, make_session_factory, session_scope, upgrade_database
from brainxai.web.errors import BodyLimitMiddleware, SecurityHeadersMiddleware, install_error_handlers
from brainxai.web.models import BatchItem, Study
from brainxai.web.routers import analyze, audit, auth, batch, health, pacs, patients, studies
from brainxai.web.settings import Settings, user_add_command
from brainxai.web.state import AppState
from brainxai.web.storage import Storage

logger = logging.getLogger(__name__)

ServiceFactory = Callable[[Settings], Analyzer]

#: Room for multipart framing and form fields around the file(s), in bytes.
_FORM_OVERHEAD = 1_000_000
_JSON_BODY_LIMIT = 1_000_000
_DESCRIPTION = (
    f"{DISCLAIMER}\n\nAuthenticate with `POST /api/auth/login` (session cookie, for the page) or "
    "`POST /api/auth/token` (bearer token, for API clients). Every patient, study, batch and report "
    'endpoint requires authentication. Errors are JSON: `{"error": code, "message": text}`.'
)


def static_dir() -> Path:
    return Path(str(resources.files("brainxai.web") / "static"))


def default_service_factory(settings: Settings) -> Analyzer:
    """Loads :class:`brainxai.pipeline.service.AnalysisService` (the model) once."""
    from brainxai.pipeline.service import AnalysisService

    return AnalysisService(checkpoint=settings.checkpoint, device=settings.device)


def create_app(settings: Settings | None = None, *, service_factory: ServiceFactory | None = None) -> FastAPI:
    """Builds the app.

    Args:
        settings: Server settings (default: from ``BRAINXAI_*`` environment variables).
        service_factory: Builds the analysis service from the settings (default: the real model).
            Tests pass a fast fake here.

    Returns:
        The FastAPI app; its lifespan migrates the database, cleans up after any crash, loads the
        model and starts the batch worker.
    """
    settings = settings or Settings.from_env()
    app = FastAPI(
        title="brainxai",
        version=__version__,
        summary="Explainable brain-tumour MRI classification",
        description=_DESCRIPTION,
        lifespan=_lifespan(settings, service_factory or default_service_factory),
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN; the schema is at /api/openapi.json.
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    install_error_handlers(app)
    _add_routers(app)
    _add_middleware(app, settings)
    _add_page(app, static_dir())
    return app


def _lifespan(settings: Settings, factory: ServiceFactory) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start-up (database, recovery, model, batch worker) and shutdown, in the app's lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await _start(settings, factory)
        app.state.brainxai = state
        state.worker.start()
        logger.info(
            "brainxai web ready (data dir %s, model %s)", settings.data_dir, "loaded" if state.service else "NOT loaded"
        )
        try:
            yield
        finally:
            await _stop(state)

    return lifespan


async def _start(settings: Settings, factory: ServiceFactory) -> AppState:
    """Migrates the database, cleans up after a crash, loads the model and builds the batch worker."""
    storage = Storage(settings.data_dir)
    storage.ensure()
    engine = make_engine(settings.db_url)
    await run_in_threadpool(upgrade_database, engine)
    session_factory = make_session_factory(engine)
    await run_in_threadpool(_recover, storage, session_factory)
    await run_in_threadpool(_warn_if_no_user, settings, session_factory)
    service, error = await _load_service(settings, factory)
    runner = InferenceRunner(settings.inference_workers, settings.max_pending)
    worker = BatchWorker(
        service,
        runner,
        storage,
        session_factory,
        max_upload_bytes=settings.max_upload_bytes,
        max_volume_bytes=settings.max_volume_bytes,
    )
    return AppState(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        storage=storage,
        runner=runner,
        worker=worker,
        service=service,
        service_error=error,
    )


async def _load_service(settings: Settings, factory: ServiceFactory) -> tuple[Analyzer | None, str | None]:
    """The analysis service, or None and why it could not be loaded."""
    try:
        return await run_in_threadpool(factory, settings), None
    except Exception as exc:  # Serve history and health anyway; analysis answers 503.
        error = f"{type(exc).__name__}: {exc}"
        logger.error("analysis service not loaded: %s", error)
        return None, error


async def _stop(state: AppState) -> None:
    await state.worker.stop()
    await run_in_threadpool(state.runner.shutdown)
    close = getattr(state.service, "close", None)  # the real service frees its explainers' hooks
    if close is not None:
        close()
    state.engine.dispose()


def _recover(storage: Storage, session_factory: sessionmaker[Session]) -> dict[str, int]:
    with session_scope(session_factory) as db:
        study_ids = set(db.scalars(select(Study.id)))
        uploads = set(db.scalars(select(BatchItem.upload_path).where(BatchItem.status.in_(("queued", "running")))))
        crud.purge_expired_sessions(db)
    return storage.recover(study_ids, {u for u in uploads if u})


def _warn_if_no_user(settings: Settings, session_factory: sessionmaker[Session]) -> None:
    """Says, with the command that fixes it, when nobody can log in because no account exists."""
    with session_scope(session_factory) as db:
        if crud.has_users(db):
            return
    logger.warning("no user account exists yet, so nobody can log in; create one with:  %s", user_add_command(settings))


def _add_routers(app: FastAPI) -> None:
    for module in (health, auth, analyze, batch, patients, studies, audit, pacs):
        app.include_router(module.router)


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """Request body limits by endpoint, and the security headers on every answer."""

    def body_limit(path: str) -> int:
        if path.startswith("/api/batch"):
            return settings.max_batch_bytes + _FORM_OVERHEAD
        if path.startswith("/api/analyze"):
            return settings.max_upload_bytes + _FORM_OVERHEAD
        return _JSON_BODY_LIMIT

    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    app.add_middleware(SecurityHeadersMiddleware)


def _add_page(app: FastAPI, static: Path) -> None:
    """The single page at ``/`` and its assets under ``/static``."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static), name="static")
