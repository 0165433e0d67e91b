"""The pipeline client's SSE parsing and error mapping (the live API is exercised in integration tests)."""

from __future__ import annotations

import json

import httpx
import pytest

from clinicflow.client import ApiError, AsyncClient, _parse_sse


def test_parse_sse_reads_one_event_block() -> None:
    payload = {
        "run_id": "r",
        "seq": 3,
        "type": "answer",
        "data": {"answer": "7.9 %"},
        "at": "2026-01-01T00:00:00Z",
    }
    event = _parse_sse(f"id: 3\nevent: answer\ndata: {json.dumps(payload)}")
    assert event is not None and (event.seq, event.type, event.data) == (3, "answer", {"answer": "7.9 %"})
    assert _parse_sse(": keep-alive") is None


async def test_api_errors_carry_status_and_detail() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer cfk_x"
        return httpx.Response(403, json={"detail": "token has no scope for patient 'b'"})

    async with AsyncClient("http://api.test", "cfk_x", transport=httpx.MockTransport(handler)) as cf:
        with pytest.raises(ApiError) as raised:
            await cf.create_run("ehr_qa", {"question": "q", "patient_id": "b"})
    assert raised.value.status == 403 and "patient 'b'" in str(raised.value.detail)
