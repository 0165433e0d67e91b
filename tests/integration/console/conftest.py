"""A real `clinicflow serve` process (uvicorn, the embedded FHIR server's demo cohort, the scripted model)
with a runs folder of sample eval reports, and a headless Chromium driven by Playwright.

Chromium is Debian's (`apt-get install chromium`; `.ci/run` installs it), started by Playwright from
`CLINICFLOW_CHROMIUM` or the first of `chromium`, `chromium-browser` on PATH: Playwright downloads no
browser. Without one, or without the Playwright package, the browser tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.api.conftest import create_group, issue_keys, server_env
from tests.integration.api.server import ApiServer, ehr_qa_script
from tests.integration.console.sample_reports import write_sample_reports

TASK = {
    "instruction": "Order an HbA1c for the patient.",
    "context": "It's 2025-12-31T10:15:00+00:00 now. The LOINC code for HbA1c is 4548-4.",
}
QUESTION = "What are the patient's most recent observations?"


def chromium_path() -> str | None:
    """The Chromium binary the browser tests drive, or None."""
    configured = os.environ.get("CLINICFLOW_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class ConsoleEnv:
    """The running service and what the browser tests need to call it."""

    url: str
    fhir_url: str
    tokens: dict[str, str]
    patient_a: str
    patient_b: str
    server: ApiServer

    # Plain synchronous httpx here: Playwright's sync API keeps an event loop in the test thread, so the
    # asyncio-based `clinicflow.client.Client` cannot run beside it.
    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get_run(self, run_id: str, who: str = "admin") -> dict[str, Any]:
        response = httpx.get(f"{self.url}/v1/runs/{run_id}", headers=self.headers(who))
        response.raise_for_status()
        return dict(response.json())

    def settled(self, workflow: str, data: dict[str, Any], who: str) -> dict[str, Any]:
        """Start a run and follow its event stream until it finishes or waits for approval."""
        created = httpx.post(
            f"{self.url}/v1/runs", json={"workflow": workflow, "input": data}, headers=self.headers(who)
        )
        created.raise_for_status()
        run_id = created.json()["id"]
        url = f"{self.url}/v1/runs/{run_id}/events"
        with httpx.stream("GET", url, headers=self.headers(who), timeout=60) as stream:
            for line in stream.iter_lines():
                if line in ("event: run.finished", "event: approval.required"):
                    break
        return self.get_run(run_id, who)

    def pending_task(self, who: str, patient_id: str) -> dict[str, Any]:
        """A new `ehr_task` run, once it waits for approval of its HbA1c order."""
        waiting = self.settled("ehr_task", TASK | {"patient_id": patient_id}, who)
        assert waiting["status"] == "waiting_approval", waiting
        return waiting

    def answered(self, who: str, patient_id: str) -> dict[str, Any]:
        """A finished `ehr_qa` run about the patient."""
        done = self.settled("ehr_qa", {"question": QUESTION, "patient_id": patient_id}, who)
        assert done["status"] == "completed", done
        return done


@pytest.fixture(scope="session")
def console_env(
    fhir_base_url: str, patient_ids: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleEnv]:
    work = tmp_path_factory.mktemp("console")
    database_url = f"sqlite:///{work}/api.sqlite"
    patient_a, patient_b = patient_ids[0], patient_ids[1]
    tokens = issue_keys(database_url, patient_a, create_group(fhir_base_url, patient_a))
    reports = write_sample_reports(work / "runs")
    env = server_env(
        work,
        fhir_base_url,
        database_url,
        ehr_qa_script(work / "script.json"),
        CLINICFLOW_CONSOLE_REPORTS_DIR=str(reports),
    )
    with ApiServer(work, env) as server:
        yield ConsoleEnv(server.url, fhir_base_url, tokens, patient_a, patient_b, server)


@pytest.fixture(scope="module")
def browser(console_env: ConsoleEnv) -> Iterator[Any]:
    """Headless Chromium, for one module: Playwright's sync API holds an event loop in the test thread
    while it runs, so it starts after the servers (whose setup runs asyncio) and stops before other
    modules' tests."""
    binary = chromium_path()
    if binary is None:
        pytest.skip(
            "no Chromium: install Debian's `chromium` (apt-get install -y chromium) for the browser tests"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the Playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        yield launched
        launched.close()
