"""Alembic environment for the brainxai web database.

Run programmatically by :func:`brainxai.web.db.upgrade_database` (which passes an open connection),
or by hand: ``alembic -c src/brainxai/web/alembic.ini -x url=sqlite:///path.db upgrade head``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from alembic import context
from sqlalchemy import engine_from_config, pool

from brainxai.web.models import Base, UTCDateTime

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from sqlalchemy.engine import Connection

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Migrations stay independent of the models module: UTCDateTime is a plain aware DateTime in DDL.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(**target: Any) -> None:
    """Runs the migrations against ``target`` (a connection, or a URL to print SQL for)."""
    # Batch mode lets later migrations ALTER tables on SQLite too.
    context.configure(target_metadata=target_metadata, render_as_batch=True, render_item=_render_item, **target)
    with context.begin_transaction():
        context.run_migrations()


def _configure(connection: Connection) -> None:
    _run(connection=connection)


def run_migrations_offline() -> None:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    _run(url=url, literal_binds=True)


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    section = config.get_section(config.config_ini_section, {})
    if url:
        section["sqlalchemy.url"] = url
    engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
