"""``brainxai serve`` (the web app) and ``brainxai user ...`` (its accounts)."""

from __future__ import annotations

import contextlib
import ipaddress
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from brainxai.cli.app import app, fail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from brainxai.web.settings import Settings

user_app = typer.Typer(help="Manage the web app's user accounts.", no_args_is_help=True)
app.add_typer(user_app, name="user")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder for the database, images and reports [env BRAINXAI_DATA_DIR, ~/.brainxai]"),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="SQLAlchemy URL, e.g. postgresql+psycopg://... [default: SQLite in the data dir]"
    ),
]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")]


def _settings(data_dir: Path | None, database_url: str | None, **extra: object) -> Settings:
    from brainxai.web.settings import Settings

    try:
        return Settings.from_env(data_dir=data_dir, database_url=database_url, **extra)
    except ValueError as exc:
        fail(str(exc))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Model checkpoint [default: the model shipped with brainxai]")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    max_upload_mb: Annotated[float | None, typer.Option(help="Largest accepted scan, MB [default 50]")] = None,
    secure_cookies: Annotated[
        bool, typer.Option("--secure-cookies", help="Send the session cookie over HTTPS only (behind a TLS proxy)")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Runs the web app: API under /api, the page at /. Research use only."""
    import uvicorn

    from brainxai.web.app import create_app

    settings = _settings(
        data_dir,
        database_url,
        checkpoint=checkpoint,
        device=device,
        max_upload_mb=max_upload_mb,
        cookie_secure=secure_cookies or None,
    )
    if not _is_loopback(host) and not settings.cookie_secure:
        typer.secho(
            f"warning: listening on {host} without --secure-cookies; put the server behind HTTPS before "
            "exposing patient data on a network",
            fg=typer.colors.YELLOW,
            err=True,
        )
    typer.echo(f"brainxai web on http://{host}:{port}/  (data dir {settings.data_dir})")
    # One process: the model is loaded once and shared; concurrency comes from the inference pool.
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, server_header=False, workers=1)


@contextlib.contextmanager
def _database(data_dir: Path | None, database_url: str | None) -> Iterator[Session]:
    """One transaction on the app's database (committed on success); ``ValueError`` becomes a CLI error."""
    from brainxai.web.db import open_database, session_scope

    engine, sessions = open_database(_settings(data_dir, database_url).db_url)
    try:
        with session_scope(sessions) as db:
            yield db
    except ValueError as exc:
        fail(str(exc))
    finally:
        engine.dispose()


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _with_new_password(
    password_stdin: bool, data_dir: Path | None, database_url: str | None, store: Callable[[Session, str], object]
) -> None:
    """Reads a new password (from stdin or a prompt), then runs ``store(db, password)`` in one transaction."""
    password = _read_password(password_stdin)
    with _database(data_dir, database_url) as db:
        store(db, password)


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, . _ @ -)")],
    admin: Annotated[bool, typer.Option("--admin", help="May see every user's patients and the audit log")] = False,
    password_stdin: PasswordStdin = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Creates an account (the password is stored as an argon2id hash)."""
    from brainxai.web.crud import create_user

    _with_new_password(
        password_stdin, data_dir, database_url, lambda db, password: create_user(db, name, password, is_admin=admin)
    )
    typer.echo(f"user {name!r} created{' (admin)' if admin else ''}")


@user_app.command("set-password")
def user_set_password(
    name: Annotated[str, typer.Argument(help="User name")],
    password_stdin: PasswordStdin = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Replaces a user's password and ends their sessions."""
    from brainxai.web import crud

    _with_new_password(
        password_stdin, data_dir, database_url, lambda db, password: crud.reset_password(db, name, password)
    )
    typer.echo(f"password of {name!r} changed")


@user_app.command("list")
def user_list(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Lists the accounts."""
    from sqlalchemy import select

    from brainxai.web.models import User

    with _database(data_dir, database_url) as db:
        for user in db.scalars(select(User).order_by(User.username)):
            role = "admin" if user.is_admin else "user"
            state = "" if user.is_active else " (disabled)"
            typer.echo(f"{user.username}\t{role}{state}\tcreated {user.created_at:%Y-%m-%d}")
