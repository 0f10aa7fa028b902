"""Running ``brainxai serve`` as a child process on loopback (for browser tests and benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def cli_command(*args: str) -> list[str]:
    """``brainxai ARGS`` run with this interpreter (works without the console script on PATH)."""
    return [sys.executable, "-c", "from brainxai.cli import app; app()", *args]


def add_user(data_dir: Path, name: str, password: str, *, admin: bool = False, database_url: str | None = None) -> None:
    """Creates an account through the CLI, as an administrator would."""
    args = ["user", "add", name, "--password-stdin", "--data-dir", str(data_dir)]
    if admin:
        args.append("--admin")
    if database_url:
        args += ["--database-url", database_url]
    subprocess.run(cli_command(*args), input=password + "\n", text=True, check=True, capture_output=True)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux ``/proc``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class ServerProcess:
    """``brainxai serve`` on 127.0.0.1 and a free port, stopped on exit.

    Args:
        data_dir: The server's data dir.
        checkpoint: Model checkpoint (None: the shipped model).
        extra_args: More ``serve`` options.
        log_path: Where the server's output goes (default: ``data_dir/../server.log``).
        startup_timeout_s: How long to wait for ``/api/health`` to answer.
    """

    def __init__(
        self,
        data_dir: Path,
        checkpoint: Path | None = None,
        *,
        extra_args: tuple[str, ...] = (),
        log_path: Path | None = None,
        startup_timeout_s: float = 180.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.checkpoint = checkpoint
        self.extra_args = extra_args
        self.log_path = log_path or self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self.startup_timeout_s = startup_timeout_s
        self.env = env
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ServerProcess:
        self.port = free_port()
        args = ["serve", "--host", LOOPBACK, "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.checkpoint is not None:
            args += ["--checkpoint", str(self.checkpoint)]
        args += ["--log-level", "warning", *self.extra_args]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(cli_command(*args), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}; see {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/api/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server did not answer within {self.startup_timeout_s} s; see {self.log_path}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind (crash simulation)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
