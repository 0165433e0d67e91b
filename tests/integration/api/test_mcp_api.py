"""The MCP server inside the real API server (`/mcp/`, streamable HTTP), driven by the MCP SDK's own
client with the API's tokens: the patient comes from the token, never from an argument; reads are that
patient's; a task returns its pending approval, which only the API's approval endpoint completes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from clinicflow.fhir import FhirClient
from tests.integration.api.conftest import ApiEnv

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def _session(api: ApiEnv, who: str) -> AsyncIterator[ClientSession]:
    http = create_mcp_http_client(headers=api.headers(who))
    async with (
        http,
        streamable_http_client(f"{api.url}/mcp/", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def _text(result: Any) -> str:
    return "\n".join(part.text for part in result.content if getattr(part, "text", None))


async def _service_requests(api: ApiEnv, patient: str) -> int:
    async with FhirClient(api.fhir_url) as client:
        return len(await client.search("ServiceRequest").where(patient=patient).all())


def _get_run(api: ApiEnv, run_id: str) -> dict[str, Any]:
    with api.client("reader_a") as cf:
        return cf.get_run(run_id)


def _approve(api: ApiEnv, run_id: str) -> dict[str, Any]:
    with api.client("writer_a") as cf:
        cf.approve(run_id)
        return cf.wait(run_id, timeout=60)


def test_without_a_token_the_mcp_endpoint_answers_401(api: ApiEnv) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    assert httpx.post(f"{api.url}/mcp/", json=body).status_code == 401
    bad = {"Authorization": "Bearer cfk_nope.nope"}
    assert httpx.post(f"{api.url}/mcp/", json=body, headers=bad).status_code == 401


async def test_reads_are_of_the_tokens_patient_and_no_call_names_another(api: ApiEnv) -> None:
    async with _session(api, "reader_a") as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert {"record_manifest", "search_record", "ask", "propose_task"} <= names
        assert not any("approv" in name for name in names), "no MCP tool can approve a write"
        result = await session.call_tool("search_record", {"resource_type": "Condition", "limit": 5})
        assert not result.is_error, _text(result)
        lines = _text(result).splitlines()
        assert any("[Condition/" in line for line in lines)
        assert api.patient_b not in _text(result)

        other = await session.call_tool(
            "search_record", {"resource_type": "Condition", "patient_id": api.patient_b}
        )
        assert other.is_error and "no call can name another patient" in _text(other)


async def test_a_token_for_many_patients_is_told_to_use_a_one_patient_token(api: ApiEnv) -> None:
    async with _session(api, "reader_all") as session:
        result = await session.call_tool("record_manifest", {})
        assert result.is_error and "exactly one patient" in _text(result)


async def test_ask_is_an_api_run_with_citations(api: ApiEnv) -> None:
    async with _session(api, "reader_a") as session:
        result = await session.call_tool("ask", {"question": "What was the most recent observation?"})
    assert not result.is_error, _text(result)
    answer = json.loads(_text(result))
    assert answer["status"] == "answered" and answer["citations"]
    run = await asyncio.to_thread(_get_run, api, answer["run_id"])
    assert run["patient_id"] == api.patient_a and run["result"]["citations"] == answer["citations"]


async def test_a_task_waits_for_the_apis_approval_and_writes_once(api: ApiEnv) -> None:
    before = await _service_requests(api, api.patient_a)
    async with _session(api, "writer_a") as session:
        result = await session.call_tool("propose_task", {"instruction": "Order an HbA1c for the patient."})
    assert not result.is_error, _text(result)
    task = json.loads(_text(result))
    assert task["status"] == "waiting_approval", task
    assert task["pending_approval"]["request"]["resource_type"] == "ServiceRequest"
    assert task["approve_at"] == f"POST /v1/runs/{task['run_id']}/approval"
    assert await _service_requests(api, api.patient_a) == before, "nothing written before approval"

    done = await asyncio.to_thread(_approve, api, task["run_id"])
    assert done["status"] == "completed", done
    assert await asyncio.wait_for(_service_requests(api, api.patient_a), 30) == before + 1
    decisions = [r for r in api.audit(run_id=task["run_id"]) if r["action"] == "approval.decide"]
    assert len(decisions) == 1
