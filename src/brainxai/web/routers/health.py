"""Liveness and readiness: is the model loaded, on which device, is the database reachable."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from brainxai.web.analysis import available_methods, describe_device, describe_model, server_version
from brainxai.web.deps import State
from brainxai.web.schemas import DeviceInfo, HealthOut, ModelInfo

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", response_model=HealthOut)
def health(state: State) -> HealthOut:
    """Server status (public: holds no patient data)."""
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # The answer must come even when the database is down.
        database = f"error: {type(exc).__name__}"
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
    )
