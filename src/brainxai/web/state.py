"""What the running app holds: settings, database, storage, the loaded model and its workers."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from brainxai.web.analysis import Analyzer, InferenceRunner
from brainxai.web.batch import BatchWorker
from brainxai.web.security import LoginThrottle
from brainxai.web.settings import Settings
from brainxai.web.storage import Storage


@dataclass
class AppState:
    """The running app's parts, built by its lifespan (:func:`brainxai.web.app.create_app`)."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    storage: Storage
    runner: InferenceRunner
    worker: BatchWorker
    service: Analyzer | None = None  # None when the model could not be loaded (see service_error)
    service_error: str | None = None
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
