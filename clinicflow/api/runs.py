"""Starting and reading runs: `POST /v1/runs`, the run list, one run, and its events as Server-Sent Events."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from clinicflow.api.access import (
    Caller,
    RequestAudit,
    audit_read,
    check_patient,
    deny,
    require_read,
    run_audit,
    visible_run,
)
from clinicflow.api.audit import audit_scope
from clinicflow.api.auth import ForbiddenError, Principal
from clinicflow.api.events import RUN_QUEUED, sse_stream
from clinicflow.api.params import BODY_ERRORS, ERRORS, MAX_ID, RUN_ERRORS, WORKFLOW_NAME, IsoDatetime, RunId
from clinicflow.api.schemas import ErrorOut, RunCreate, RunList, RunOut, RunStatus
from clinicflow.api.services import Services, services
from clinicflow.api.store import NewEvent, RunRow, utcnow
from clinicflow.api.workers import QueueFullError, StartReason
from clinicflow.api.workflows import (
    PatientNotFoundError,
    UnknownWorkflowError,
    Workflow,
    WorkflowInputError,
)

__all__ = ["create_run", "get_run", "list_runs", "queue_full", "router", "run_events", "submit"]

router = APIRouter()


def queue_full() -> HTTPException:
    """The 429 of a full run queue."""
    return HTTPException(429, "the server's run queue is full; retry later", headers={"Retry-After": "5"})


async def submit(svc: Services, run_id: str, reason: StartReason) -> None:
    """Queue a run here; when this server is full, hand it to whichever server has room first."""
    try:
        svc.pool.submit(run_id, reason)
    except QueueFullError:
        await svc.store.transition(
            run_id, from_statuses=("queued",), values={"status": "interrupted", "owner": None}
        )


def _workflow(svc: Services, name: str) -> Workflow:
    try:
        return svc.registry.get(name)
    except UnknownWorkflowError as exc:
        raise HTTPException(422, str(exc.args[0])) from None


def _input(workflow: Workflow, body: RunCreate) -> BaseModel:
    """The body's input as the workflow's input model; 422 naming each problem under `body.input`."""
    try:
        return workflow.input_model.model_validate(body.input)
    except ValidationError as exc:
        raise HTTPException(
            422,
            [{"loc": ["body", "input", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()],
        ) from None


async def _check_input(
    svc: Services, principal: Principal, workflow: Workflow, data: BaseModel, **where: str | None
) -> None:
    """The workflow's own check of the input (e.g. that its patient exists), audited as the caller's."""
    if workflow.check is None:
        return
    record = RequestAudit(svc, principal, workflow=workflow.name, **where)
    try:
        with audit_scope(record.scope):
            await workflow.check(svc.deps, data)
    except PatientNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except WorkflowInputError as exc:
        raise HTTPException(422, str(exc)) from None
    finally:
        await record.save()


def _new_run(
    svc: Services, principal: Principal, workflow: Workflow, data: BaseModel, **row: str | None
) -> RunRow:
    """The row of a run about to be queued on this server (`row`: its id, patient and idempotency key)."""
    now = utcnow()
    return RunRow(
        workflow=workflow.name,
        status="queued",
        input=data.model_dump(mode="json"),
        principal=principal.subject,
        principal_kind=principal.kind,
        scopes=list(principal.scopes),
        created_at=now,
        updated_at=now,
        owner=svc.pool.worker_id,
        heartbeat_at=now,
        attempts=0,
        cancel_requested=False,
        **row,
    )


@router.post(
    "/v1/runs",
    status_code=201,
    response_model=RunOut,
    tags=["runs"],
    responses={
        **ERRORS,
        **BODY_ERRORS,
        200: {"model": RunOut, "description": "A run with this Idempotency-Key already exists."},
        404: {"model": ErrorOut, "description": "The input's patient is not on the FHIR server."},
        422: {"model": ErrorOut, "description": "Unknown workflow or invalid input."},
        429: {"model": ErrorOut, "description": "The server's queue is full; retry later."},
    },
)
async def create_run(
    body: RunCreate,
    request: Request,
    response: Response,
    principal: Caller,
    idempotency_key: Annotated[str | None, Header(pattern=r"^[!-~]{1,200}$")] = None,
) -> RunOut:
    """Start a run; the run executes on the worker pool. Follow it at `/v1/runs/{id}/events`."""
    svc = services(request)
    workflow = _workflow(svc, body.workflow)
    try:
        principal.require_workflow(workflow.name, write=workflow.writes)
    except ForbiddenError as exc:
        raise await deny(svc, principal, exc, workflow=workflow.name) from None
    data = _input(workflow, body)
    patient_id = workflow.patient_id(data)
    await check_patient(svc, principal, patient_id, workflow=workflow.name)
    if not svc.pool.has_room():
        raise queue_full()
    run_id = uuid.uuid4().hex
    await _check_input(svc, principal, workflow, data, run_id=run_id, patient_id=patient_id)
    row = _new_run(
        svc, principal, workflow, data, id=run_id, patient_id=patient_id, idempotency_key=idempotency_key
    )
    audit = run_audit(principal, row, "run.create", detail={"idempotency_key": idempotency_key})
    run, created = await svc.store.create_run(row, NewEvent(RUN_QUEUED, {"workflow": workflow.name}), audit)
    if created:
        svc.metrics.runs_created.labels(workflow.name).inc()
        await submit(svc, run.id, "new")
    else:
        response.status_code = 200
    return RunOut.from_row(run)


@router.get("/v1/runs", response_model=RunList, tags=["runs"], responses=ERRORS)
async def list_runs(
    request: Request,
    principal: Caller,
    status: RunStatus | None = None,
    workflow: Annotated[str | None, Query(pattern=WORKFLOW_NAME)] = None,
    before: Annotated[
        IsoDatetime | None, Query(description="Runs created before this ISO 8601 date-time.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RunList:
    """Runs the token may see, newest first."""
    svc = services(request)
    await require_read(svc, principal)
    try:
        patients = await svc.access.visible(principal)
    except ForbiddenError as exc:
        raise await deny(svc, principal, exc) from None
    workflows = None if principal.grants.all_workflows else sorted(principal.grants.workflows)
    rows = await svc.store.list_runs(
        status=status,
        workflow=workflow,
        patient_ids=patients,
        workflows=workflows,
        before=before,
        limit=limit,
    )
    next_before = rows[-1].created_at if len(rows) == limit else None
    return RunList(runs=[RunOut.from_row(r) for r in rows], next_before=next_before)


@router.get("/v1/runs/{run_id}", response_model=RunOut, tags=["runs"], responses=RUN_ERRORS)
async def get_run(run_id: RunId, request: Request, principal: Caller) -> RunOut:
    """A run's status, result (answer, citations, evidence, provenance) and pending approval."""
    svc = services(request)
    run = await visible_run(svc, principal, run_id)
    await audit_read(svc, principal, run, "run.read", status=run.status)
    return RunOut.from_row(run)


@router.get(
    "/v1/runs/{run_id}/events",
    tags=["runs"],
    responses={
        **RUN_ERRORS,
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events."},
    },
    response_class=StreamingResponse,
)
async def run_events(
    run_id: RunId,
    request: Request,
    principal: Caller,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Send events after this seq.")] = 0,
    follow: Annotated[bool, Query(description="Wait for new events until the run finishes.")] = True,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """The run's events as Server-Sent Events (`id` = seq, `event` = type); ends after `run.finished`."""
    svc = services(request)
    run = await visible_run(svc, principal, run_id)
    if last_event_id and last_event_id.isascii() and last_event_id.isdigit():
        after = max(after, min(int(last_event_id), MAX_ID))
    await audit_read(svc, principal, run, "run.events", after=after)
    stream = sse_stream(
        svc.store,
        svc.bus,
        run.id,
        after=after,
        follow=follow,
        poll_s=svc.settings.api_event_poll_s,
        disconnected=request.is_disconnected,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
