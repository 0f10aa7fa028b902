"""The README's web quick-start, run as written on a fresh home, and what a server with no account says."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from webhelpers import running_app

from brainxai.web.process import LOOPBACK, ServerProcess, add_user, cli_command, free_port
from brainxai.web.settings import Settings, user_add_command

README = Path(__file__).resolve().parents[2] / "README.md"
PASSWORD = "quick-start-pw"


def quickstart_commands() -> list[list[str]]:
    """The shell lines of the first fenced block under "### Web application", split as a shell would."""
    section = README.read_text(encoding="utf-8").split("\n### Web application\n", 1)[1]
    fence = re.search(r"^```[a-z]*\n(.*?)^```", section, re.S | re.M)
    assert fence is not None and "\n#" not in section[: fence.start()], "no code block under ### Web application"
    lines = [shlex.split(line, comments=True) for line in fence.group(1).splitlines()]
    return [words for words in lines if words]


def fresh_env(home: Path) -> dict[str, str]:
    """This environment as a new user's: another HOME, no ``BRAINXAI_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAINXAI_")}
    env["HOME"] = str(home)
    return env


def with_port(words: list[str], port: int) -> list[str]:
    """The serve line with only its port replaced (or added)."""
    if "--port" in words:
        i = words.index("--port")
        return [*words[: i + 1], str(port), *words[i + 2 :]]
    return [*words, "--port", str(port)]


def http_json(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for_health(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')}"
        try:
            return http_json(f"{url}/api/health")[1]
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise TimeoutError(f"no /api/health within {timeout_s} s:\n{log.read_text(errors='replace')}")


def test_readme_web_quickstart_logs_in(tmp_path: Path) -> None:
    commands = quickstart_commands()
    assert [words[:2] for words in commands] == [["brainxai", "user"], ["brainxai", "serve"]], commands
    add, serve = commands
    home = tmp_path / "home"
    home.mkdir()
    env = fresh_env(home)
    name = add[add.index("add") + 1]
    # A hidden prompt with confirmation reads the password twice; --password-stdin reads it once.
    password_input = f"{PASSWORD}\n" if "--password-stdin" in add else f"{PASSWORD}\n{PASSWORD}\n"
    # A new session has no terminal, so the hidden prompt falls back to reading stdin.
    done = subprocess.run(
        cli_command(*add[1:]),
        input=password_input,
        text=True,
        capture_output=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stderr
    assert (home / ".brainxai" / "brainxai.db").is_file()  # the README says: the default data folder

    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cli_command(*with_port(serve, port)[1:]), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
        )
    try:
        url = f"http://{LOOPBACK}:{port}"
        health = wait_for_health(url, proc, log)
        assert health["needs_setup"] is False and health["setup_command"] is None
        status, body = http_json(f"{url}/api/auth/token", {"username": name, "password": PASSWORD})
        assert status == 200, body
        assert body["user"]["username"] == name and body["user"]["is_admin"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "no user account" not in log.read_text(errors="replace")


def test_serve_on_an_empty_data_folder_says_how_to_create_an_account(tmp_path: Path) -> None:
    data_dir = tmp_path / "my data"  # a space: the command must come quoted
    command = shlex.join(["brainxai", "user", "add", "NAME", "--admin", "--data-dir", str(data_dir.resolve())])
    with ServerProcess(data_dir) as server:
        health = http_json(f"{server.url}/api/health")[1]
        assert health["needs_setup"] is True and health["setup_command"] == command
        status, body = http_json(f"{server.url}/api/auth/login", {"username": "alice", "password": PASSWORD})
        assert status == 401 and command in body["message"], body
        log = server.log_tail(20_000)
        assert "WARNING" in log and f"create one with:  {command}" in log, log

        # The hinted command, filled in, is the fix: the hint goes and the login works.
        add_user(data_dir, "alice", PASSWORD, admin=True)
        assert http_json(f"{server.url}/api/health")[1]["needs_setup"] is False
        assert http_json(f"{server.url}/api/auth/token", {"username": "alice", "password": PASSWORD})[0] == 200


def test_setup_command_names_the_data_folder_only_when_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("BRAINXAI_DATA_DIR", raising=False)
    assert user_add_command(Settings()) == "brainxai user add NAME --admin"
    assert (
        user_add_command(Settings(data_dir=tmp_path / "d")) == f"brainxai user add NAME --admin --data-dir {tmp_path}/d"
    )
    monkeypatch.setenv("BRAINXAI_DATA_DIR", str(tmp_path / "env"))
    # Another shell may not have the variable: name the folder.
    assert user_add_command(Settings()).endswith(f"--data-dir {tmp_path}/env")
    with_url = user_add_command(Settings(database_url="postgresql+psycopg://bx:s3cret@db.example/bx"))
    assert with_url.endswith("--database-url 'postgresql+psycopg://bx:***@db.example/bx'")
    assert "s3cret" not in with_url and "--data-dir" not in with_url


def test_app_without_accounts_logs_and_reports_the_setup_command(
    web_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    command = user_add_command(web_settings)
    with caplog.at_level(logging.WARNING, logger="brainxai.web.app"), running_app(web_settings, users=False) as client:
        assert any(command in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        health = client.get("/api/health").json()
        assert health["needs_setup"] is True and health["setup_command"] == command
        r = client.post("/api/auth/token", json={"username": "alice", "password": PASSWORD})
        assert r.status_code == 401 and command in r.json()["message"]
    with running_app(web_settings) as client:
        assert client.get("/api/health").json()["needs_setup"] is False
        r = client.post("/api/auth/token", json={"username": "nobody", "password": PASSWORD})
        assert r.status_code == 401 and r.json()["message"] == "wrong user name or password"
