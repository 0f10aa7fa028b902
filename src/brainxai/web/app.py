"""The FastAPI application: API routers, the page, start-up (migrate, recover, load the model once)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select

from brainxai.version import __version__
from brainxai.constants import DISCLAIMER
from brainxai.web import crud
from brainxai.web.analysis import InferenceRunner
from brainxai.web.batch import BatchWorker
from brainxai.web.db import make_engine, make_session_factory, session_scope, upgrade_database
from brainxai.web.errors import BodyLimitMiddleware, SecurityHeadersMiddleware, install_error_handlers
from brainxai.web.models import BatchItem, Study
from brainxai.web.routers import analyze, audit, auth, batch, health, patients, studies
from brainxai.web.settings import Settings
from brainxai.web.state import AppState
from brainxai.web.storage import Storage

logger = logging.getLogger(__name__)

ServiceFactory = Callable[[Settings], Any]

#: Room for multipart framing and form fields around the file(s), in bytes.
_FORM_OVERHEAD = 1_000_000
_JSON_BODY_LIMIT = 1_000_000


def static_dir() -> Path:
    return Path(str(resources.files("brainxai.web") / "static"))


def default_service_factory(settings: Settings) -> Any:
    """Loads :class:`brainxai.service.AnalysisService` (the model) once."""
    from brainxai.service import AnalysisService

    return AnalysisService(checkpoint=settings.checkpoint, device=settings.device)


def _recover(storage: Storage, session_factory: Any) -> dict[str, int]:
    with session_scope(session_factory) as db:
        study_ids = set(db.scalars(select(Study.id)))
        uploads = set(db.scalars(select(BatchItem.upload_path).where(BatchItem.status.in_(("queued", "running")))))
        crud.purge_expired_sessions(db)
    return storage.recover(study_ids, {u for u in uploads if u})


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
    factory = service_factory or default_service_factory

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        storage = Storage(settings.data_dir)
        storage.ensure()
        engine = make_engine(settings.db_url)
        await run_in_threadpool(upgrade_database, engine)
        session_factory = make_session_factory(engine)
        await run_in_threadpool(_recover, storage, session_factory)
        service, error = None, None
        try:
            service = await run_in_threadpool(factory, settings)
        except Exception as exc:  # Serve history and health anyway; analysis answers 503.
            error = f"{type(exc).__name__}: {exc}"
            logger.error("analysis service not loaded: %s", error)
        runner = InferenceRunner(settings.inference_workers, settings.max_pending)
        worker = BatchWorker(
            service,
            runner,
            storage,
            session_factory,
            max_upload_bytes=settings.max_upload_bytes,
            max_volume_bytes=settings.max_volume_bytes,
        )
        app.state.brainxai = AppState(
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            storage=storage,
            runner=runner,
            worker=worker,
            service=service,
            service_error=error,
        )
        worker.start()
        logger.info(
            "brainxai web ready (data dir %s, model %s)", settings.data_dir, "loaded" if service else "NOT loaded"
        )
        try:
            yield
        finally:
            await worker.stop()
            await run_in_threadpool(runner.shutdown)
            if hasattr(service, "close"):
                service.close()
            engine.dispose()

    app = FastAPI(
        title="brainxai",
        version=__version__,
        summary="Explainable brain-tumour MRI classification",
        description=(
            f"{DISCLAIMER}\n\nAuthenticate with `POST /api/auth/login` (session cookie, for the page) or "
            "`POST /api/auth/token` (bearer token, for API clients). Every patient, study, batch and report "
            'endpoint requires authentication. Errors are JSON: `{"error": code, "message": text}`.'
        ),
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN; the schema is at /api/openapi.json.
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    install_error_handlers(app)
    for module in (health, auth, analyze, batch, patients, studies, audit):
        app.include_router(module.router)

    def body_limit(path: str) -> int:
        if path.startswith("/api/batch"):
            return settings.max_batch_bytes + _FORM_OVERHEAD
        if path.startswith("/api/analyze"):
            return settings.max_upload_bytes + _FORM_OVERHEAD
        return _JSON_BODY_LIMIT

    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    app.add_middleware(SecurityHeadersMiddleware)

    static = static_dir()

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static), name="static")
    return app
