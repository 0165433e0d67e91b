"""Start the real API server as a uvicorn subprocess on 127.0.0.1, wait for it, stop or kill it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from clinicflow.fhir.demo import free_port

__all__ = ["ORDER", "ApiServer", "ehr_qa_script", "write_script"]

REPO_ROOT = Path(__file__).resolve().parents[3]
PLUGIN = "tests.integration.api.plugin:register"


ORDER = {"code": "4548-4", "code_system": "loinc", "display": "Hemoglobin A1c", "note": "yearly check"}


def ehr_qa_script(path: Path, *, delay_ms: float = 0.0, planner_turns: int = 1) -> Path:
    """A model script: for `ehr_qa`, `planner_turns` Observation searches, then a cited answer; for
    `ehr_task`, one HbA1c order (a write waiting for approval), then finish; for `encounter`, a diagnosis."""
    search = {"tool_calls": [{"name": "search_record", "args": {"resource_type": "Observation", "limit": 3}}]}
    finish = {"tool_calls": [{"name": "finish_retrieval", "args": {}}]}
    order = {"tool_calls": [{"name": "create_service_request", "args": ORDER}]}
    done = {"tool_calls": [{"name": "finish_task", "args": {"answers": [], "summary": "Ordered HbA1c."}}]}
    script = {
        "delay_ms": delay_ms,
        "rules": [
            {"tools": ["create_service_request", "finish_task"], "replies": [order, done]},
            {"tools": ["search_record"], "replies": [search] * planner_turns + [finish]},
            {
                "tools": ["record_facts"],
                "replies": [
                    {
                        "tool_calls": [
                            {
                                "name": "record_facts",
                                "args": {"facts": [{"text": "$line", "citations": ["$cite"]}]},
                            }
                        ]
                    }
                ],
            },
            {
                "tools": ["final_answer"],
                "replies": [
                    {
                        "tool_calls": [
                            {"name": "final_answer", "args": {"answer": "$line", "citations": ["$cite"]}}
                        ]
                    }
                ],
            },
            {"tools": [], "replies": [{"content": "DIAGNOSIS READY: Migraine"}]},
        ],
    }
    path.write_text(json.dumps(script))
    return path


def write_script(path: Path) -> Path:
    """A script for workflows that never call the model (any call gets plain text)."""
    path.write_text(json.dumps({"rules": [{"tools": [], "replies": [{"content": "unused"}]}]}))
    return path


class ApiServer:
    """`uvicorn --factory clinicflow.api.app:create_app` with CLINICFLOW_* settings, on a free port."""

    def __init__(self, workdir: Path, env: dict[str, str], *, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ApiServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICFLOW_")}
        env |= {"CLINICFLOW_CACHE_DIR": str(self.workdir / "cache"), "PYTHONPATH": str(REPO_ROOT)} | self.env
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "clinicflow.api.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"API server did not answer /health in {timeout_s} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
