"""Server settings: where data lives, which database, upload limits, cookie policy."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "BRAINXAI_"
_HOME_DATA_DIR = "~/.brainxai"


def default_data_dir() -> Path:
    """``$BRAINXAI_DATA_DIR``, else ``~/.brainxai``."""
    return Path(os.environ.get(f"{ENV_PREFIX}DATA_DIR", _HOME_DATA_DIR)).expanduser()


@dataclass(frozen=True)
class Settings:
    """Everything the web app needs to know, with safe defaults.

    Attributes:
        data_dir: Root for the SQLite database (by default), study images and reports.
        database_url: Any SQLAlchemy URL; None means SQLite at ``data_dir/brainxai.db``.
        checkpoint: Model checkpoint stem; None means the model shipped with the package.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        max_upload_mb: Largest accepted scan file, in MB (10**6 bytes).
        max_batch_files: Most files in one batch request.
        max_batch_mb: Largest batch request body, in MB.
        max_volume_mb: Largest decompressed NIfTI volume accepted, in MB (gzip-bomb guard).
        inference_workers: Analyses run at the same time (one model in memory; 1 serialises).
        max_pending: Analyses allowed to wait for a worker before new ones get 503.
        session_hours: Lifetime of a login session or bearer token.
        cookie_name: Name of the session cookie.
        cookie_secure: Send the cookie over HTTPS only (set when served behind TLS).
        trusted_origins: Extra origins (scheme://host:port) allowed to make cookie-authenticated writes.
    """

    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    checkpoint: Path | None = None
    device: str = "auto"
    max_upload_mb: float = 50.0
    max_batch_files: int = 100
    max_batch_mb: float = 500.0
    max_volume_mb: float = 1024.0
    inference_workers: int = 1
    max_pending: int = 64
    session_hours: float = 12.0
    cookie_name: str = "brainxai_session"
    cookie_secure: bool = False
    trusted_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", Path(self.checkpoint).expanduser())
        if self.max_upload_mb <= 0 or self.max_batch_mb <= 0 or self.max_volume_mb <= 0:
            raise ValueError("upload and volume limits must be positive")
        if self.max_batch_files < 1 or self.inference_workers < 1 or self.max_pending < 1:
            raise ValueError("max_batch_files, inference_workers and max_pending must be at least 1")

    @property
    def db_url(self) -> str:
        """The effective database URL."""
        return self.database_url or f"sqlite:///{self.data_dir / 'brainxai.db'}"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def max_batch_bytes(self) -> int:
        return int(self.max_batch_mb * 1_000_000)

    @property
    def max_volume_bytes(self) -> int:
        return int(self.max_volume_mb * 1_000_000)

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from ``BRAINXAI_*`` environment variables, then ``overrides`` (None ignored)."""
        env = os.environ
        values: dict[str, Any] = {}
        converters: dict[str, tuple[str, Callable[[str], Any]]] = {
            "DATABASE_URL": ("database_url", str),
            "CHECKPOINT": ("checkpoint", Path),
            "DEVICE": ("device", str),
            "MAX_UPLOAD_MB": ("max_upload_mb", float),
            "MAX_BATCH_FILES": ("max_batch_files", int),
            "MAX_BATCH_MB": ("max_batch_mb", float),
            "MAX_VOLUME_MB": ("max_volume_mb", float),
            "INFERENCE_WORKERS": ("inference_workers", int),
            "SESSION_HOURS": ("session_hours", float),
            "COOKIE_SECURE": ("cookie_secure", lambda v: v.lower() in ("1", "true", "yes")),
        }
        for key, (name, conv) in converters.items():
            if f"{ENV_PREFIX}{key}" in env:
                values[name] = conv(env[f"{ENV_PREFIX}{key}"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def user_add_command(settings: Settings, name: str = "NAME") -> str:
    """The ``brainxai user add`` line that creates an admin account in these settings' database.

    ``--data-dir`` is named (absolute) unless the folder is the built-in ``~/.brainxai`` and
    ``$BRAINXAI_DATA_DIR`` is unset, so the line means the same folder in any shell. A database URL is
    named instead of the folder, its password shown as ``***`` (the line may be shown to anyone).
    """
    from sqlalchemy.engine import make_url  # lazy: the settings module stays free of third-party imports

    words = ["brainxai", "user", "add", name, "--admin"]
    if settings.database_url:
        words += ["--database-url", make_url(settings.database_url).render_as_string(hide_password=True)]
    elif f"{ENV_PREFIX}DATA_DIR" in os.environ or settings.data_dir != Path(_HOME_DATA_DIR).expanduser().resolve():
        words += ["--data-dir", str(settings.data_dir)]
    return shlex.join(words)
