"""Small parts the API shares: the client's decision body, the HTTP-only middleware base, store filters."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import select

from clinicflow.api.middleware import HttpMiddleware
from clinicflow.api.store import RunRow, _equal
from clinicflow.client import AsyncClient


async def test_approve_sends_only_the_decision_fields_given_in_a_fixed_order() -> None:
    bodies: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content.decode())
        return httpx.Response(200, json={"id": "r"})

    async with AsyncClient("http://api", "cfk_x", transport=httpx.MockTransport(handler)) as cf:
        await cf.approve("r", "edit", interrupt_id="i1", resource={"resourceType": "Task"}, reason=None)
        await cf.approve("r")
    assert [list(json.loads(b)) for b in bodies] == [["action", "resource", "interrupt_id"], ["action"]]
    assert json.loads(bodies[0])["resource"] == {"resourceType": "Task"}


async def test_http_middleware_passes_other_scopes_by() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    class Refuse(HttpMiddleware):
        async def handle(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append("handled")

    middleware = Refuse(app)
    await middleware({"type": "lifespan"}, None, None)
    await middleware({"type": "http"}, None, None)
    assert seen == ["lifespan", "handled"]


def test_equal_filters_only_by_the_values_given() -> None:
    stmt = _equal(select(RunRow), (RunRow.status, "queued"), (RunRow.workflow, None), (RunRow.id, ""))
    sql = str(stmt)
    assert "cf_runs.status = :status_1" in sql
    assert "workflow =" not in sql and "cf_runs.id =" not in sql
