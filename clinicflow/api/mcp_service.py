"""The MCP server inside `clinicflow serve`: streamable HTTP at `/mcp/`, behind the API's own tokens.

- **Who**: every request carries an API key or a JWT the API trusts (the SDK's bearer middleware, with
  the API's verifier). The session's patient is the one patient the token is scoped to
  (`patient:<id>`, or a SMART launch's `patient` claim); a token for all patients or a group is told
  to use a one-patient token. No tool takes a patient.
- **Reads**: `record_manifest`, `search_record` (and `search_guidelines` when indexed), as in the
  stdio server, over the API's FHIR client.
- **Workflows**: `ask` and `propose_task` start runs through the API's own `POST /v1/runs` with the
  caller's token (in process), so scopes, audit rows and approvals are the API's. `propose_task`
  returns the run waiting for approval with its exact resource; only the API's
  `POST /v1/runs/{id}/approval` can complete it, and no MCP tool can.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI
from langchain_core.tools import BaseTool
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver.exceptions import ToolError

from clinicflow.api.access import verify_token
from clinicflow.api.auth import AuthError, parse_scopes
from clinicflow.api.config import ApiSettings
from clinicflow.api.mcp_server import INSTRUCTIONS, PatientBoundServer, add_record_tools
from clinicflow.api.services import Services
from clinicflow.tools import RecordReader, make_guideline_tool
from clinicflow.tools.guidelines import default_index_path, indexed_guidelines

__all__ = ["MCP_ANY_HOST", "ApiTokenVerifier", "build_api_mcp_server", "token_patient"]

MCP_ANY_HOST = "0.0.0.0"
"""Not a listening address: told to the SDK so it accepts any Host header (requests carry tokens)."""
_SETTLED = {"waiting_approval", "completed", "failed", "cancelled"}
_POLL_S = 0.2


class ApiTokenVerifier:
    """The API's token check (API keys, then JWTs from the configured issuer) for the MCP SDK."""

    def __init__(self, services: Callable[[], Services]) -> None:
        self.services = services

    async def verify_token(self, token: str) -> AccessToken | None:
        svc = self.services()
        try:
            principal = await verify_token(svc, token)
        except AuthError as exc:
            svc.metrics.auth_failures.labels(exc.reason).inc()
            return None
        return AccessToken(
            token=token, client_id=principal.subject, subject=principal.subject, scopes=list(principal.scopes)
        )


def token_patient() -> str:
    """The one patient the caller's token is scoped to; a `ToolError` for any other token."""
    token = get_access_token()
    if token is None:
        raise ToolError("this MCP request carries no verified token")
    grants = parse_scopes(token.scopes, strict=False)
    if not grants.read:
        raise ToolError("the token lacks the `read` scope")
    if grants.all_patients or grants.groups or len(grants.patients) != 1:
        raise ToolError(
            "an MCP session serves one patient: use a token scoped to exactly one patient "
            "(patient:<id>, or a SMART launch with a patient claim)"
        )
    return next(iter(grants.patients))


class _Runs:
    """`POST /v1/runs` and `GET /v1/runs/{id}` of this same app, with the caller's own token."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def start_and_settle(self, workflow: str, data: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        token = get_access_token()
        assert token is not None  # token_patient() ran first
        headers = {"Authorization": f"Bearer {token.token}"}
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://clinicflow", headers=headers
        ) as http:
            created = await http.post("/v1/runs", json={"workflow": workflow, "input": data})
            if created.status_code >= 400:
                raise ToolError(
                    f"the API refused the run ({created.status_code}): {created.json().get('detail')}"
                )
            run = created.json()
            deadline = asyncio.get_running_loop().time() + timeout_s
            while run["status"] not in _SETTLED and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(_POLL_S)
                run = (await http.get(f"/v1/runs/{run['id']}")).raise_for_status().json()
            return dict(run)  # past the deadline: the run as it stands (it goes on; GET /v1/runs/{id})

    async def ask(self, question: str) -> dict[str, Any]:
        """An ehr_qa run for the token's patient, settled or as it stands after 10 minutes."""
        patient = token_patient()
        run = await self.start_and_settle("ehr_qa", {"question": question, "patient_id": patient}, 600)
        result = run.get("result") or {}
        return {
            "run_id": run["id"],
            "status": result.get("status", run["status"]),
            "answer": result.get("answer"),
            "citations": result.get("citations", []),
            "error": run.get("error"),
        }

    async def propose(self, instruction: str, context: str) -> dict[str, Any]:
        """An ehr_task run for the token's patient, waiting for approval of its first write."""
        patient = token_patient()
        data = {"instruction": instruction, "context": context, "patient_id": patient}
        run = await self.start_and_settle("ehr_task", data, 600)
        waiting = run["status"] == "waiting_approval"
        return {
            "run_id": run["id"],
            "status": run["status"],
            "pending_approval": run.get("pending_approval"),
            "result": run.get("result"),
            "approve_at": f"POST /v1/runs/{run['id']}/approval" if waiting else None,
        }


class _ServiceReader:
    """A `RecordReader` over the API's FHIR client, made on first use (the client opens with the app)."""

    def __init__(self, settings: ApiSettings, services: Callable[[], Services]) -> None:
        self.settings = settings
        self.services = services
        self._reader: RecordReader | None = None

    def __call__(self) -> RecordReader:
        fhir = self.services().deps.fhir
        if fhir is None:
            raise ToolError("this service has no FHIR server")
        if self._reader is None:
            self._reader = RecordReader(fhir, **self.settings.record_budgets())
        return self._reader


def _guideline_tool(settings: ApiSettings) -> BaseTool | None:
    path = indexed_guidelines(default_index_path(settings))
    return make_guideline_tool(path) if path else None


def build_api_mcp_server(
    app: FastAPI, settings: ApiSettings, services: Callable[[], Services]
) -> PatientBoundServer:
    """The MCP server `create_app` mounts at /mcp/ (its session manager runs in the app's lifespan)."""
    server = PatientBoundServer(
        token_patient,
        name="clinicflow",
        instructions=INSTRUCTIONS,
        version="0.1.0",
        log_level="WARNING",
        token_verifier=ApiTokenVerifier(services),
        auth=AuthSettings(
            issuer_url=settings.auth_jwt_issuer or "http://localhost",  # type: ignore[arg-type]
            resource_server_url=None,
        ),
    )
    add_record_tools(server, _ServiceReader(settings, services), _guideline_tool(settings))
    runs = _Runs(app)

    @server.tool()
    async def ask(question: str) -> dict[str, Any]:
        """Answer a question about the patient's record with the ehr_qa workflow (a run of the API): the
        answer, the [ResourceType/id] citations it rests on, and its status (a run still going after 10
        minutes is returned as it stands; follow it at GET /v1/runs/{run_id})."""
        return await runs.ask(question)

    @server.tool()
    async def propose_task(instruction: str, context: str = "") -> dict[str, Any]:
        """Plan a task that writes to the record (e.g. an order) with the ehr_task workflow, as a run of
        the API. Nothing is written: the run waits for a person to approve its exact resource at the
        API's POST /v1/runs/{run_id}/approval."""
        return await runs.propose(instruction, context)

    return server
