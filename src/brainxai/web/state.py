"""What the running app holds: settings, database, storage, the loaded model and its workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from brainxai.web.analysis import InferenceRunner
from brainxai.web.batch import BatchWorker
from brainxai.web.security import LoginThrottle
from brainxai.web.settings import Settings
from brainxai.web.storage import Storage


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    storage: Storage
    runner: InferenceRunner
    worker: BatchWorker
    service: Any | None = None
    service_error: str | None = None
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
