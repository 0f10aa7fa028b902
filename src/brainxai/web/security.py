"""Passwords (argon2id), session tokens (random secrets stored only as SHA-256 digests), login throttling."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """argon2id hash of ``password`` (salted, encoded with its parameters)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a None hash (unknown user) still spends the same time."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)


def new_token() -> str:
    """A fresh 256-bit URL-safe secret for a session cookie or bearer token."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the database stores for a token: a stolen table does not give working sessions."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class LoginThrottle:
    """Refuses logins after too many recent failures (slows password guessing).

    A user name is blocked after ``max_failures`` failures within ``window_s``; a client address
    after ``max_client_failures`` (higher: many users may share one address).
    """

    def __init__(self, max_failures: int = 10, max_client_failures: int = 50, window_s: float = 900.0) -> None:
        self.max_failures = max_failures
        self.max_client_failures = max_client_failures
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _count(self, key: str, now: float) -> int:
        times = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return len(times)

    def blocked(self, username: str, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return (
                self._count(f"user:{username.lower()}", now) >= self.max_failures
                or self._count(f"client:{client}", now) >= self.max_client_failures
            )

    def failed(self, username: str, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 100_000:  # bound memory under a spray of random names
                self._failures.clear()
            for key in (f"user:{username.lower()}", f"client:{client}"):
                self._failures.setdefault(key, []).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{username.lower()}", None)
