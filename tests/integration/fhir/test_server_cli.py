"""`clinicflow fhir serve` runs the embedded server in the foreground and stops cleanly on a signal."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from clinicflow.fhir.demo import free_port
from clinicflow.fhir.server import port_is_free

pytestmark = pytest.mark.integration

_RUN_GROUP = "from clinicflow.cli.fhir import fhir_app; fhir_app()"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    "inherited", ["default", "sigint_ignored"], ids=["foreground", "background-job"]
)  # a job a script starts with `&` inherits SIGINT ignored; Ctrl-C must still stop the server
def test_serve_demo_answers_until_interrupted(inherited: str) -> None:
    port = free_port()
    cmd = [sys.executable, "-c", _RUN_GROUP, "serve", "--port", str(port), "--demo"]
    preexec = _ignore_sigint if inherited == "sigint_ignored" else None
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=preexec
    )
    try:
        assert proc.stdout is not None
        url = f"http://127.0.0.1:{port}/fhir"
        lines = []
        for line in proc.stdout:  # progress bars come first when the demo database is built on first use
            lines.append(line)
            if url in line:
                break
        assert url in lines[-1], lines
        assert httpx.get(f"{url}/metadata", timeout=10).status_code == 200
        patients = httpx.get(f"{url}/Patient", params={"_summary": "count"}, timeout=10).json()
        assert patients["total"] == 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "Stopping." in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert port_is_free("127.0.0.1", port)


def test_serve_on_a_busy_port_exits_2_with_one_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-c", _RUN_GROUP, "serve", "--port", str(port), "--data-dir", str(tmp_path)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"port {port}" in done.stderr and "already in use" in done.stderr
    assert "Traceback" not in done.stderr
