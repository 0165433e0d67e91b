"""The embedded FHIR R4 server: sekmet-fhir on 127.0.0.1 with SQLite, run as a child process."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import httpx
import yaml

__all__ = ["DB_FILENAME", "MAX_PAGE_SIZE", "EmbeddedFhirServer", "EmbeddedServerError", "port_is_free"]

DB_FILENAME = "sekmet.db"
MAX_PAGE_SIZE = 1000
"""sekmet caps `_count` at this value; larger requests must page over `Bundle.link[next]`."""

_LOG_FILENAME = "server.log"
_SETTINGS_FILENAME = "settings.yaml"
_PR_SET_PDEATHSIG = 1

Validation = Literal["strict", "warn", "off"]


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when its parent dies, even by a signal atexit never sees."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedServerError(RuntimeError):
    """The embedded FHIR server could not start, or stopped unexpectedly; the message says why."""


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on (host, port) and this process could bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class EmbeddedFhirServer:
    """sekmet-fhir serving FHIR R4 at `http://{host}:{port}/fhir`, its SQLite DB and log under `data_dir`.

    `validation` is sekmet's inbound structural check (R4B models): "strict" rejects invalid resources.
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int = 8765,
        host: str = "127.0.0.1",
        *,
        validation: Validation = "strict",
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self.host = host
        self.validation: Validation = validation
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """FHIR base URL, e.g. `http://127.0.0.1:8765/fhir`."""
        return f"http://{self.host}:{self.port}/fhir"

    @property
    def db_path(self) -> Path:
        """The server's SQLite database file."""
        return self.data_dir / DB_FILENAME

    @property
    def log_path(self) -> Path:
        """stdout and stderr of the server process."""
        return self.data_dir / _LOG_FILENAME

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def write_settings(self) -> Path:
        """Write sekmet's settings.yaml: SQLite under data_dir, no auth, no simulator, no traffic log."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        settings = {
            "base_url": self.base_url,
            "host": self.host,
            "port": self.port,
            "data_dir": str(self.data_dir),
            "db_path": str(self.db_path),
            "software_name": "clinicflow embedded FHIR R4 server (sekmet-fhir)",
            "server_auth": {"types": ["none"]},
            "validation": {"inbound": self.validation},
            "simulator": {"enabled": False, "auto": []},
            "log_inbound": False,
        }
        path = self.data_dir / _SETTINGS_FILENAME
        path.write_text(yaml.safe_dump(settings, sort_keys=False))
        return path

    def start(self) -> str:
        """Start the server and wait until `GET /metadata` answers; return the base URL."""
        if self.running:
            return self.base_url
        if not port_is_free(self.host, self.port):
            raise EmbeddedServerError(
                f"Cannot start the embedded FHIR server: port {self.port} on {self.host} is already in use "
                f"(choose another with --port or CLINICFLOW_FHIR_PORT)."
            )
        settings_path = self.write_settings()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
        env["SEKMET_CONFIG"] = str(settings_path)
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "sekmet.main:app_factory",
            "--factory",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"{self.base_url}/metadata"
        with httpx.Client(timeout=2.0) as http:
            while True:
                if self._proc is None or self._proc.poll() is not None:
                    code = self._proc.returncode if self._proc is not None else None
                    raise EmbeddedServerError(
                        f"The embedded FHIR server exited during start-up (exit code {code}).\n"
                        f"Last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(url).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(
                        f"The embedded FHIR server did not answer {url} "
                        f"within {self.startup_timeout_s:g} s.\n"
                        f"Last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log ("" when there is none)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the server and wait for it; kill it if it does not exit in time (also run at exit)."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)

    def wait(self) -> int:
        """Block until the server process exits; return its exit code."""
        if self._proc is None:
            raise EmbeddedServerError("The embedded FHIR server is not running.")
        return self._proc.wait()

    def analyze(self) -> None:
        """Run SQLite ANALYZE on the server's DB so the planner picks the right indexes after bulk loads."""
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=60)) as conn:
            conn.execute("ANALYZE")
            conn.commit()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedFhirServer({str(self.data_dir)!r}, port={self.port}, {state})"
