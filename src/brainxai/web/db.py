"""Database engine and sessions; schema migrations run programmatically at start-up.

SQLite (the default) gets WAL journaling, foreign keys, full fsync on commit and a busy timeout, so
concurrent readers never block the writer and an acknowledged commit survives a killed process. Any
other SQLAlchemy URL (PostgreSQL) is used as given.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

#: Seconds a SQLite connection waits for a lock before failing.
SQLITE_BUSY_TIMEOUT_S = 30


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit is on disk before it is acknowledged (survives power loss, not just kill -9).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    finally:
        cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Creates an engine for ``url``; SQLite files get their folder created and the pragmas above."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        if parsed.database and parsed.database != ":memory:":
            # Request handlers run on a thread pool of up to 40; each may hold a connection briefly.
            kwargs = {"pool_size": 10, "max_overflow": 40, **kwargs}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return create_engine(url, pool_pre_ping=True, **{"pool_size": 10, "max_overflow": 20, **kwargs})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Session factory; objects stay readable after commit (we return them from endpoints)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def migrations_dir() -> Path:
    """Folder of the Alembic environment shipped inside the package."""
    return Path(str(resources.files("brainxai.web") / "migrations"))


def alembic_config(url: str) -> Any:
    """An Alembic ``Config`` pointing at the packaged migrations and ``url``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(engine: Engine) -> None:
    """Brings the schema to the newest migration (idempotent)."""
    from alembic import command

    alembic_logger = logging.getLogger("alembic")
    if alembic_logger.level == logging.NOTSET:  # its INFO lines are noise at every start-up
        alembic_logger.setLevel(logging.WARNING)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    logger.debug("database schema is at head")


def open_database(url: str) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and session factory for ``url``, with the schema migrated to the newest version."""
    engine = make_engine(url)
    upgrade_database(engine)
    return engine, make_session_factory(engine)
