"""PACS credentials: from ``BRAINXAI_PACS_USER``/``BRAINXAI_PACS_PASSWORD`` or a file, never from the command line.

A password on the command line ends up in the shell history and in ``ps`` output for every user
of the machine; the environment and a file readable by its owner only do not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

USER_ENV = "BRAINXAI_PACS_USER"
PASSWORD_ENV = "BRAINXAI_PACS_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    """HTTP Basic credentials for the PACS (the password is never shown in ``repr``)."""

    user: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password=***)"


class CredentialsError(ValueError):
    """The credentials file or environment is incomplete or unreadable."""


def load_credentials(file: str | Path | None = None, env: Mapping[str, str] | None = None) -> Credentials | None:
    """The PACS credentials: from ``file`` when given, else from the environment, else None (anonymous).

    Args:
        file: JSON ``{"user": ..., "password": ...}`` (``username`` also accepted) or one line ``user:password``.
        env: The environment to read (default ``os.environ``).

    Raises:
        CredentialsError: The file is missing or malformed, or only one of the two variables is set.
    """
    if file is not None:
        return _from_file(Path(file))
    env = os.environ if env is None else env
    user, password = env.get(USER_ENV), env.get(PASSWORD_ENV)
    if user is None and password is None:
        return None
    if not user or password is None:
        raise CredentialsError(f"set both {USER_ENV} and {PASSWORD_ENV} (or neither, for a PACS without login)")
    return Credentials(user, password)


def _from_file(path: Path) -> Credentials:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CredentialsError(f"cannot read the credentials file {path}: {exc.strerror or exc}") from exc
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CredentialsError(f"credentials file {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        user = data.get("user", data.get("username")) if isinstance(data, dict) else None
        password = data.get("password") if isinstance(data, dict) else None
        if not isinstance(user, str) or not user or not isinstance(password, str):
            raise CredentialsError(f'credentials file {path} needs {{"user": ..., "password": ...}}')
        return Credentials(user, password)
    user, sep, password = text.partition(":")
    if not sep or not user or "\n" in text:
        raise CredentialsError(f"credentials file {path} needs one line 'user:password' or a JSON object")
    return Credentials(user, password)
