"""Liveness and readiness: is the model loaded, on which device, is the database reachable."""

from __future__ import annotations

from fastapi import APIRouter

from brainxai.web import crud
from brainxai.web.analysis import available_methods, describe_device, describe_model, server_version
from brainxai.web.deps import State
from brainxai.web.schemas import DeviceInfo, HealthOut, ModelInfo
from brainxai.web.settings import user_add_command
from brainxai.web.state import AppState

router = APIRouter(prefix="/api", tags=["health"])


def _database_status(state: AppState) -> tuple[str, bool]:
    """``"ok"`` or the error's name, and whether the database has no account yet."""
    try:
        with state.session_factory() as db:
            return "ok", not crud.has_users(db)
    except Exception as exc:  # The answer must come even when the database is down.
        return f"error: {type(exc).__name__}", False


@router.get("/health", response_model=HealthOut)
def health(state: State) -> HealthOut:
    """Server status (public: holds no patient data)."""
    database, needs_setup = _database_status(state)
    model = ModelInfo.model_validate(describe_model(state.service, state.service_error))
    device = describe_device(state.service)
    settings = state.settings
    return HealthOut(
        status="ok" if model.loaded and database == "ok" else "degraded",
        version=server_version(),
        model=model,
        device=None if device is None else DeviceInfo.model_validate(device),
        methods=available_methods(state.service) if state.service is not None else [],
        database=database,
        queue={
            "pending": state.runner.pending,
            "workers": state.runner.workers,
            "batch_jobs": state.worker.queue.qsize(),
        },
        limits={
            "max_upload_mb": settings.max_upload_mb,
            "max_batch_files": settings.max_batch_files,
            "max_batch_mb": settings.max_batch_mb,
        },
        needs_setup=needs_setup,
        setup_command=user_add_command(settings) if needs_setup else None,
    )
