"""`clinicflow.Client` and `AsyncClient` against the real server: run to the end, follow events, approve."""

from __future__ import annotations

import pytest

from clinicflow.client import ApiError, AsyncClient, Client, RunFailedError
from tests.integration.api.conftest import ApiEnv

pytestmark = pytest.mark.integration


def test_sync_client_runs_a_question_and_an_approved_write(api: ApiEnv) -> None:
    with Client(api.url, api.tokens["writer_a"]) as cf:
        assert {w["name"] for w in cf.workflows()} >= {"ehr_qa", "write_probe"}
        answered = cf.run(
            "ehr_qa", {"question": "Recent observations?", "patient_id": api.patient_a}, timeout=60
        )
        assert answered["status"] == "completed" and answered["result"]["citations"]
        types = [e.type for e in cf.events(answered["id"])]
        assert types[0] == "run.queued" and types[-1] == "run.finished" and "answer" in types

        requests: list[dict] = []
        written = cf.run(
            "write_probe",
            {"patient_id": api.patient_a},
            on_approval=lambda request: requests.append(request) or "approve",
            timeout=60,
        )
        assert len(requests) == 1 and requests[0]["resource_type"] == "Observation"
        assert written["result"]["outcome"]["status"] == "created"
        with pytest.raises(ApiError) as denied:
            cf.create_run("ehr_qa", {"question": "q", "patient_id": api.patient_b})
        assert denied.value.status == 403


async def test_async_client_follows_events_and_reports_cancelled_runs(api: ApiEnv) -> None:
    async with AsyncClient(api.url, api.tokens["admin"]) as cf:
        run = await cf.create_run("write_probe", {"patient_id": api.patient_a, "pre_s": 20})
        async for event in cf.events(run["id"]):
            if event.type == "node.started":
                await cf.cancel(run["id"])
            if event.terminal:
                assert event.data["status"] == "cancelled"
        with pytest.raises(RunFailedError, match="cancelled"):
            await cf.run("write_probe", {"patient_id": api.patient_a, "pre_s": 0.5}, on_approval=_cancel(cf))
        listed = await cf.list_runs(workflow="write_probe", status="cancelled")
        assert run["id"] in {r["id"] for r in listed}


def _cancel(cf: AsyncClient):  # type: ignore[no-untyped-def]
    async def decide(request: dict) -> dict:
        runs = await cf.list_runs(workflow="write_probe", status="waiting_approval", limit=1)
        await cf.cancel(runs[0]["id"])
        return {"action": "approve"}

    return decide
