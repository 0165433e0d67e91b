"""`clinicflow mcp` over stdio, driven by the MCP SDK's own client, against the real embedded FHIR server
with a scripted model: the tools listed, cited lines for the bound patient only, a refusal for any call
that names a patient, the ask workflow, and a task that stops at its pending approval without writing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from clinicflow.fhir import FhirClient
from tests.integration.api.server import ehr_qa_script

pytestmark = pytest.mark.integration

CLINICFLOW = str(Path(sys.executable).with_name("clinicflow"))


async def _allergy_ids(base_url: str, patient: str) -> set[str]:
    async with FhirClient(base_url) as client:
        found = await client.search("AllergyIntolerance").where(patient=patient).all()
        return {a["id"] for a in found}


async def _service_requests(base_url: str, patient: str) -> int:
    async with FhirClient(base_url) as client:
        return len(await client.search("ServiceRequest").where(patient=patient).all())


@pytest.fixture(scope="module")
def two_patients(fhir_base_url: str, patient_ids: list[str]) -> tuple[str, str]:
    """Two demo patients with allergies: the session's, and another."""
    with_allergies = [p for p in patient_ids if asyncio.run(_allergy_ids(fhir_base_url, p))]
    assert len(with_allergies) >= 2, "the demo cohort should hold two patients with allergies"
    return with_allergies[0], with_allergies[1]


def _env(tmp_path: Path, fhir_base_url: str) -> dict[str, str]:
    script = ehr_qa_script(tmp_path / "script.json")
    return {
        "CLINICFLOW_FHIR_URL": fhir_base_url,
        "CLINICFLOW_MODEL": f"scripted:{script}",
        "CLINICFLOW_CACHE_DIR": str(tmp_path),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


@contextlib.asynccontextmanager
async def _session(tmp_path: Path, fhir_base_url: str, patient: str) -> AsyncIterator[ClientSession]:
    """A client session with `clinicflow mcp --patient <patient>` (entered and left in one task)."""
    params = StdioServerParameters(
        command=CLINICFLOW,
        args=["mcp", "--patient", patient, "--no-guidelines"],
        env=_env(tmp_path, fhir_base_url),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        yield client


def _text(result: Any) -> str:
    return "\n".join(part.text for part in result.content if getattr(part, "text", None))


async def test_the_client_lists_the_patient_scoped_tools_none_taking_a_patient(
    tmp_path: Path, fhir_base_url: str, two_patients: tuple[str, str]
) -> None:
    async with _session(tmp_path, fhir_base_url, two_patients[0]) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == {"record_manifest", "search_record", "ask", "propose_task"}
        for tool in tools.values():
            assert not any("patient" in name for name in tool.input_schema.get("properties", {}))


async def test_search_returns_cited_lines_of_the_bound_patient_only(
    tmp_path: Path, fhir_base_url: str, two_patients: tuple[str, str]
) -> None:
    async with _session(tmp_path, fhir_base_url, two_patients[0]) as session:
        mine = await _allergy_ids(fhir_base_url, two_patients[0])
        theirs = await _allergy_ids(fhir_base_url, two_patients[1])
        result = await session.call_tool("search_record", {"resource_type": "AllergyIntolerance"})
        assert not result.is_error, _text(result)
        text = _text(result)
        assert all(f"[AllergyIntolerance/{i}]" in text for i in mine)
        assert not any(f"[AllergyIntolerance/{i}]" in text for i in theirs - mine)
        manifest = await session.call_tool("record_manifest", {})
        assert "AllergyIntolerance" in _text(manifest)


async def test_a_call_naming_another_patient_is_refused(
    tmp_path: Path, fhir_base_url: str, two_patients: tuple[str, str]
) -> None:
    async with _session(tmp_path, fhir_base_url, two_patients[0]) as session:
        result = await session.call_tool(
            "search_record", {"resource_type": "Condition", "patient_id": two_patients[1]}
        )
        assert result.is_error
        assert f"takes no argument 'patient_id': this session is bound to Patient/{two_patients[0]}" in _text(
            result
        )
        bad = await session.call_tool("search_record", {"resource_type": "Spaceship"})
        assert bad.is_error and "resource_type" in _text(bad)


async def test_ask_answers_with_citations_from_the_record(
    tmp_path: Path, fhir_base_url: str, two_patients: tuple[str, str]
) -> None:
    async with _session(tmp_path, fhir_base_url, two_patients[0]) as session:
        result = await session.call_tool("ask", {"question": "What was the most recent observation?"})
        assert not result.is_error, _text(result)
        answer = json.loads(_text(result))
        assert answer["status"] == "answered"
        cited = {c for line in answer["evidence"] for c in line["citations"]}
        assert answer["citations"] and set(answer["citations"]) <= cited
        assert f"Patient/{two_patients[1]}" not in cited
        assert answer["citations"][0] in answer["answer"]


async def test_a_task_returns_its_pending_approval_and_writes_nothing(
    tmp_path: Path, fhir_base_url: str, two_patients: tuple[str, str]
) -> None:
    async with _session(tmp_path, fhir_base_url, two_patients[0]) as session:
        before = await _service_requests(fhir_base_url, two_patients[0])
        result = await session.call_tool("propose_task", {"instruction": "Order an HbA1c."})
        assert not result.is_error, _text(result)
        task = json.loads(_text(result))
        assert task["status"] == "awaiting_approval" and task["written"] == []
        pending = task["pending_approval"]
        assert pending["resource_type"] == "ServiceRequest"
        assert pending["resource"]["subject"]["reference"] == f"Patient/{two_patients[0]}"
        assert await _service_requests(fhir_base_url, two_patients[0]) == before


def test_a_patient_the_server_lacks_stops_the_server_at_start(tmp_path: Path, fhir_base_url: str) -> None:
    done = subprocess.run(
        [CLINICFLOW, "mcp", "--patient", "no-such-patient", "--no-guidelines"],
        env=os.environ | _env(tmp_path, fhir_base_url),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "Patient/no-such-patient is not on the FHIR server" in done.stderr
