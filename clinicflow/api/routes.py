"""HTTP endpoints: runs, their events, approvals, cancel and resume, workflows, audit, health and metrics.

Every `/v1` endpoint needs a bearer token (401 without one) whose scopes cover the workflow, read or
write, and the run's patient (403 otherwise, checked before anything runs).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BeforeValidator, ValidationError

from clinicflow.api.audit import AuditScope, audit_event, audit_scope
from clinicflow.api.auth import (
    API_KEY_PREFIX,
    AuthError,
    ForbiddenError,
    JwtVerifier,
    PatientAccess,
    Principal,
    verify_api_key,
)
from clinicflow.api.config import ApiSettings
from clinicflow.api.events import APPROVAL_DECIDED, RUN_FINISHED, RUN_QUEUED, EventBus, sse_stream
from clinicflow.api.metrics import CONTENT_TYPE_LATEST, Metrics
from clinicflow.api.schemas import (
    RUN_ID_PATTERN,
    ApprovalIn,
    AuditList,
    ErrorOut,
    HealthOut,
    RunCreate,
    RunList,
    RunOut,
    RunStatus,
    WorkflowOut,
)
from clinicflow.api.store import (
    TERMINAL_STATUSES,
    AuditRow,
    DuplicateDecisionError,
    NewAudit,
    NewEvent,
    RunRow,
    Store,
    utcnow,
)
from clinicflow.api.workers import QueueFullError, StartReason, WorkerPool
from clinicflow.api.workflows import PatientId as PatientIdQuery
from clinicflow.api.workflows import (
    PatientNotFoundError,
    UnknownWorkflowError,
    Workflow,
    WorkflowDeps,
    WorkflowInputError,
    WorkflowRegistry,
)

__all__ = ["AuthFailureSampler", "Services", "router"]


class AuthFailureSampler:
    """Which failed authentications reach the audit trail: at most `per_minute` rows a minute, so callers
    without a token cannot grow the store without bound. Every failure is counted by the
    `clinicflow_auth_failures` metric; a row written after some were left out says how many."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._window_start = clock()
        self._written = 0
        self._unwritten = 0
        self._lock = threading.Lock()

    def admit(self) -> int | None:
        """None when this failure is only counted; else how many were left out since the last row."""
        with self._lock:
            now = self._clock()
            if now - self._window_start >= 60.0:
                self._window_start, self._written = now, 0
            if self._written >= self.per_minute:
                self._unwritten += 1
                return None
            self._written += 1
            unwritten, self._unwritten = self._unwritten, 0
            return unwritten


@dataclass
class Services:
    """Everything the endpoints use, built once by the app's lifespan."""

    settings: ApiSettings
    store: Store
    registry: WorkflowRegistry
    deps: WorkflowDeps
    pool: WorkerPool
    bus: EventBus
    metrics: Metrics
    access: PatientAccess
    jwt: JwtVerifier | None
    auth_audit: AuthFailureSampler = field(default_factory=lambda: AuthFailureSampler(10))


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


_bearer = HTTPBearer(auto_error=False, description="An API key (cfk_...) or an OAuth2 JWT access token.")
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No valid bearer token."},
    403: {"model": ErrorOut, "description": "The token's scopes do not cover this."},
}
_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body is not JSON (or not UTF-8)."},
    413: {"model": ErrorOut, "description": "The body is larger than the server accepts."},
    422: {"model": ErrorOut, "description": "The body does not follow the schema."},
}
_RUN_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    404: {"model": ErrorOut, "description": "No such run."},
}
MAX_ID = 2**53
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?$")


def _iso_only(value: Any) -> Any:
    """Only an ISO 8601 date-time: pydantic alone would also read `0.5` as seconds since 1970."""
    if isinstance(value, str) and not _ISO_DATETIME.match(value):
        raise ValueError("expected an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_aware)]
WORKFLOW_NAME = r"^[a-z][a-z0-9_]{0,63}$"
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="Run id (32 hex digits).")]


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller's principal; 401 (counted, and audited up to a rate) without a valid token."""
    svc = services(request)
    try:
        if credentials is None or not credentials.credentials:
            raise AuthError("a bearer token is required", "missing")
        token = credentials.credentials
        if token.startswith(API_KEY_PREFIX):
            return await verify_api_key(svc.store, token)
        if svc.jwt is None:
            raise AuthError("unknown token: not an API key, and JWT verification is not configured")
        return await svc.jwt.verify(token)
    except AuthError as exc:
        svc.metrics.auth_failures.labels(exc.reason).inc()
        unwritten = svc.auth_audit.admit()
        if unwritten is not None:
            path = request.url.path[:200]
            detail: dict[str, Any] = {"reason": exc.reason, "error": exc.detail, "path": path}
            if unwritten:
                detail["unwritten_before"] = unwritten
            await svc.store.add_audit(
                [
                    NewAudit(
                        actor="anonymous",
                        actor_kind="none",
                        action="auth.failure",
                        outcome="denied",
                        detail=detail,
                    )
                ]
            )
        raise HTTPException(401, exc.detail, headers={"WWW-Authenticate": "Bearer"}) from None


Caller = Annotated[Principal, Depends(authenticate)]
router = APIRouter()


class _RequestAudit:
    """Audit rows of one request, stored when the request is done with them."""

    def __init__(self, svc: Services, principal: Principal, **where: Any) -> None:
        self.svc = svc
        self.rows: list[NewAudit] = []
        self.scope = AuditScope(
            actor=principal.subject, actor_kind=principal.kind, record=self.rows.append, **where
        )

    async def save(self) -> None:
        rows, self.rows = self.rows, []
        await self.svc.store.add_audit(rows)


async def _deny(svc: Services, principal: Principal, exc: ForbiddenError, **where: Any) -> HTTPException:
    svc.metrics.auth_failures.labels(exc.reason).inc()
    record = _RequestAudit(svc, principal, **where)
    record.scope.audit("access.denied", outcome="denied", reason=exc.reason, error=exc.detail)
    await record.save()
    return HTTPException(403, exc.detail)


async def _check_patient(svc: Services, principal: Principal, patient_id: str | None, **where: Any) -> None:
    record = _RequestAudit(svc, principal, patient_id=patient_id, **where)
    try:
        with audit_scope(record.scope):
            allowed = await svc.access.allowed(principal, patient_id)
    except ForbiddenError as exc:
        await record.save()
        raise await _deny(svc, principal, exc, patient_id=patient_id, **where) from None
    await record.save()
    if not allowed:
        raise await _deny(
            svc,
            principal,
            ForbiddenError(f"token has no scope for patient {patient_id!r}", "patient"),
            patient_id=patient_id,
            **where,
        )


async def _visible_run(svc: Services, principal: Principal, run_id: str, *, write: bool = False) -> RunRow:
    """The run, if the token may see it (and act on it, with `write`); 404 / 403 otherwise."""
    run = await svc.store.get_run(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    writes = run.workflow in svc.registry and svc.registry.get(run.workflow).writes
    where = {"run_id": run.id, "workflow": run.workflow}
    try:
        principal.require_workflow(run.workflow, write=write and writes)
    except ForbiddenError as exc:
        raise await _deny(svc, principal, exc, patient_id=run.patient_id, **where) from None
    await _check_patient(svc, principal, run.patient_id, **where)
    return run


def _run_audit(principal: Principal, run: RunRow, action: str, **fields: Any) -> NewAudit:
    """An audit row of `principal` acting on `run`."""
    return NewAudit(
        actor=principal.subject,
        actor_kind=principal.kind,
        action=action,
        run_id=run.id,
        patient_id=run.patient_id,
        workflow=run.workflow,
        **fields,
    )


async def _audit_read(svc: Services, principal: Principal, run: RunRow, action: str, **detail: Any) -> None:
    """Audit `principal` reading `run` (its state or its events)."""
    record = _RequestAudit(svc, principal, run_id=run.id, patient_id=run.patient_id, workflow=run.workflow)
    record.scope.audit(action, **detail)
    await record.save()


def _queue_full() -> HTTPException:
    return HTTPException(429, "the server's run queue is full; retry later", headers={"Retry-After": "5"})


async def _current(svc: Services, run_id: str) -> RunOut:
    """The run as stored now."""
    run = await svc.store.get_run(run_id)
    assert run is not None
    return RunOut.from_row(run)


def _workflow(svc: Services, name: str) -> Workflow:
    try:
        return svc.registry.get(name)
    except UnknownWorkflowError as exc:
        raise HTTPException(422, str(exc.args[0])) from None


async def _submit(svc: Services, run_id: str, reason: StartReason) -> None:
    """Queue a run here; when this server is full, hand it to whichever server has room first."""
    try:
        svc.pool.submit(run_id, reason)
    except QueueFullError:
        await svc.store.transition(
            run_id, from_statuses=("queued",), values={"status": "interrupted", "owner": None}
        )


@router.post(
    "/v1/runs",
    status_code=201,
    response_model=RunOut,
    tags=["runs"],
    responses={
        **_ERRORS,
        **_BODY_ERRORS,
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
        raise await _deny(svc, principal, exc, workflow=workflow.name) from None
    try:
        data = workflow.input_model.model_validate(body.input)
    except ValidationError as exc:
        raise HTTPException(
            422,
            [{"loc": ["body", "input", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()],
        ) from None
    patient_id = workflow.patient_id(data)
    await _check_patient(svc, principal, patient_id, workflow=workflow.name)
    if not svc.pool.has_room():
        raise _queue_full()
    run_id = uuid.uuid4().hex
    if workflow.check is not None:
        record = _RequestAudit(svc, principal, run_id=run_id, patient_id=patient_id, workflow=workflow.name)
        try:
            with audit_scope(record.scope):
                await workflow.check(svc.deps, data)
        except PatientNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        except WorkflowInputError as exc:
            raise HTTPException(422, str(exc)) from None
        finally:
            await record.save()
    now = utcnow()
    row = RunRow(
        id=run_id,
        workflow=workflow.name,
        status="queued",
        input=data.model_dump(mode="json"),
        patient_id=patient_id,
        principal=principal.subject,
        principal_kind=principal.kind,
        scopes=list(principal.scopes),
        idempotency_key=idempotency_key,
        created_at=now,
        updated_at=now,
        owner=svc.pool.worker_id,
        heartbeat_at=now,
        attempts=0,
        cancel_requested=False,
    )
    audit = NewAudit(
        actor=principal.subject,
        actor_kind=principal.kind,
        action="run.create",
        run_id=row.id,
        patient_id=patient_id,
        workflow=workflow.name,
        detail={"idempotency_key": idempotency_key},
    )
    run, created = await svc.store.create_run(row, NewEvent(RUN_QUEUED, {"workflow": workflow.name}), audit)
    if created:
        svc.metrics.runs_created.labels(workflow.name).inc()
        await _submit(svc, run.id, "new")
    else:
        response.status_code = 200
    return RunOut.from_row(run)


@router.get("/v1/runs", response_model=RunList, tags=["runs"], responses=_ERRORS)
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
    if not principal.grants.read:
        raise await _deny(svc, principal, ForbiddenError("token lacks the `read` scope", "read"))
    try:
        patients = await svc.access.visible(principal)
    except ForbiddenError as exc:
        raise await _deny(svc, principal, exc) from None
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


@router.get("/v1/runs/{run_id}", response_model=RunOut, tags=["runs"], responses=_RUN_ERRORS)
async def get_run(run_id: RunId, request: Request, principal: Caller) -> RunOut:
    """A run's status, result (answer, citations, evidence, provenance) and pending approval."""
    svc = services(request)
    run = await _visible_run(svc, principal, run_id)
    await _audit_read(svc, principal, run, "run.read", status=run.status)
    return RunOut.from_row(run)


@router.get(
    "/v1/runs/{run_id}/events",
    tags=["runs"],
    responses={
        **_RUN_ERRORS,
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
    run = await _visible_run(svc, principal, run_id)
    if last_event_id and last_event_id.isascii() and last_event_id.isdigit():
        after = max(after, min(int(last_event_id), MAX_ID))
    await _audit_read(svc, principal, run, "run.events", after=after)
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


@router.post(
    "/v1/runs/{run_id}/approval",
    response_model=RunOut,
    tags=["runs"],
    responses={
        **_RUN_ERRORS,
        **_BODY_ERRORS,
        409: {"model": ErrorOut, "description": "Nothing (or another write) is pending."},
    },
)
async def decide(run_id: RunId, body: ApprovalIn, request: Request, principal: Caller) -> RunOut:
    """Approve, reject or edit the write a run is waiting on; the run then continues."""
    svc = services(request)
    run = await _visible_run(svc, principal, run_id)
    if not principal.grants.write:
        raise await _deny(
            svc,
            principal,
            ForbiddenError("deciding on writes needs the `write` scope", "write"),
            run_id=run.id,
            patient_id=run.patient_id,
            workflow=run.workflow,
        )
    pending = run.pending or {}
    if run.status != "waiting_approval" or not pending.get("interrupt_id"):
        raise HTTPException(409, f"run {run.id} is {run.status}, not waiting for approval")
    interrupt_id = str(pending["interrupt_id"])
    if body.interrupt_id is not None and body.interrupt_id != interrupt_id:
        raise HTTPException(409, f"interrupt {body.interrupt_id} is not the pending one ({interrupt_id})")
    decision = body.decision()
    audit = _run_audit(
        principal,
        run,
        "approval.decide",
        resources=[],
        detail={"action": body.action, "interrupt_id": interrupt_id, "reason": body.reason},
    )
    event = NewEvent(
        APPROVAL_DECIDED,
        {"interrupt_id": interrupt_id, "action": body.action, "by": principal.subject, "reason": body.reason},
    )
    try:
        updated = await svc.store.record_decision(
            run.id,
            interrupt_id,
            decision,
            principal.subject,
            owner=svc.pool.worker_id,
            events=[event],
            audits=[audit],
        )
    except DuplicateDecisionError as exc:
        raise HTTPException(409, str(exc)) from None
    svc.metrics.approvals.labels(body.action).inc()
    svc.bus.notify(run.id)
    await _submit(svc, run.id, "approval")
    return RunOut.from_row(updated)


@router.post(
    "/v1/runs/{run_id}/cancel",
    response_model=RunOut,
    tags=["runs"],
    responses={**_RUN_ERRORS, 409: {"model": ErrorOut, "description": "The run already finished."}},
)
async def cancel(run_id: RunId, request: Request, principal: Caller) -> RunOut:
    """Cancel a run: at once when it is queued or waiting, else before its next step."""
    svc = services(request)
    run = await _visible_run(svc, principal, run_id, write=True)
    if run.status in TERMINAL_STATUSES:
        raise HTTPException(409, f"run {run.id} already {run.status}")
    audit = _run_audit(principal, run, "run.cancel", detail={"status_before": run.status})
    idle = ("queued", "waiting_approval", "interrupted")
    updated = None
    if run.status in idle:
        updated = await svc.store.transition(
            run.id,
            from_statuses=idle,
            values={
                "status": "cancelled",
                "finished_at": utcnow(),
                "owner": None,
                "pending": None,
                "cancel_requested": True,
            },
            events=[NewEvent(RUN_FINISHED, {"status": "cancelled", "error": None})],
            audits=[audit],
        )
        if updated is not None:
            svc.metrics.runs_finished.labels(run.workflow, "cancelled").inc()
    if updated is None:
        await svc.store.request_cancel(run.id)
        await svc.store.add_audit([audit])
    svc.pool.cancel_local(run.id)
    svc.bus.notify(run.id)
    return await _current(svc, run.id)


@router.post(
    "/v1/runs/{run_id}/resume",
    response_model=RunOut,
    tags=["runs"],
    responses={**_RUN_ERRORS, 409: {"model": ErrorOut, "description": "The run cannot be resumed."}},
)
async def resume(run_id: RunId, request: Request, principal: Caller) -> RunOut:
    """Continue an interrupted or failed run from its last checkpoint (completed steps are not repeated)."""
    svc = services(request)
    run = await _visible_run(svc, principal, run_id, write=True)
    audit = _run_audit(principal, run, "run.resume", detail={"status_before": run.status})
    if run.status in ("interrupted", "failed"):
        updated = await svc.store.transition(
            run.id,
            from_statuses=("interrupted", "failed"),
            values={
                "status": "queued",
                "owner": svc.pool.worker_id,
                "heartbeat_at": utcnow(),
                "error": None,
                "finished_at": None,
            },
            audits=[audit],
        )
        if updated is None:
            raise HTTPException(409, f"run {run.id} changed state; fetch it again")
    elif run.status in ("queued", "running") and not svc.pool.has_room():
        raise _queue_full()
    elif run.status not in ("queued", "running"):
        raise HTTPException(409, f"run {run.id} is {run.status}; only interrupted or failed runs resume")
    else:
        await svc.store.add_audit([audit])
    try:
        svc.pool.submit(run.id, "resume")
    except QueueFullError:
        raise _queue_full() from None
    return await _current(svc, run.id)


@router.get("/v1/workflows", response_model=list[WorkflowOut], tags=["workflows"], responses=_ERRORS)
async def list_workflows(request: Request, principal: Caller) -> list[WorkflowOut]:
    """The workflows this token may run, with the JSON schema of each one's input."""
    svc = services(request)
    return [
        WorkflowOut.model_validate(svc.registry.get(name).describe())
        for name in svc.registry.names()
        if principal.grants.may_run(name)
    ]


@dataclass
class _AuditPage:
    rows: list[AuditRow]
    limit: int


async def _audit_page(
    request: Request,
    principal: Caller,
    run_id: Annotated[str | None, Query(pattern=RUN_ID_PATTERN)] = None,
    patient_id: Annotated[PatientIdQuery | None, Query()] = None,
    action: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}(\.[a-z_]{1,32})?$")] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> _AuditPage:
    """The audit rows a query selects; 403 (audited) without the `audit` scope."""
    svc = services(request)
    if not principal.grants.audit:
        raise await _deny(
            svc, principal, ForbiddenError("reading the audit trail needs the `audit` scope", "audit")
        )
    rows = await svc.store.list_audit(
        run_id=run_id, patient_id=patient_id, action=action, after_id=after, limit=limit
    )
    return _AuditPage(rows, limit)


AuditPage = Annotated[_AuditPage, Depends(_audit_page)]


@router.get("/v1/audit", response_model=AuditList, tags=["audit"], responses=_ERRORS)
async def audit_rows(page: AuditPage) -> AuditList:
    """Audit rows in the order they were written: who, action, outcome, patient, run, resources, when."""
    rows = page.rows
    entries = [
        {
            "id": r.id,
            "at": r.at.isoformat(),
            "actor": r.actor,
            "actor_kind": r.actor_kind,
            "action": r.action,
            "outcome": r.outcome,
            "run_id": r.run_id,
            "patient_id": r.patient_id,
            "workflow": r.workflow,
            "resources": r.resources,
            "detail": r.detail,
        }
        for r in rows
    ]
    return AuditList(entries=entries, next_after=rows[-1].id if len(rows) == page.limit else None)


@router.get(
    "/v1/audit/fhir",
    tags=["audit"],
    responses={**_ERRORS, 200: {"content": {"application/fhir+json": {}}, "description": "A FHIR Bundle."}},
)
async def audit_bundle(page: AuditPage) -> JSONResponse:
    """The same rows as FHIR R4 AuditEvent resources in a collection Bundle."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": utcnow().isoformat(),
        "total": len(page.rows),
        "entry": [{"fullUrl": f"urn:clinicflow:audit:{r.id}", "resource": audit_event(r)} for r in page.rows],
    }
    return JSONResponse(bundle, media_type="application/fhir+json")


@router.get("/health", response_model=HealthOut, tags=["service"], responses={503: {"model": HealthOut}})
async def health(request: Request, response: Response) -> HealthOut:
    """Liveness and readiness: the store answers, and how busy the worker pool is."""
    svc = services(request)
    database = "ok"
    try:
        await svc.store.ping()
    except Exception as exc:
        database = f"error: {type(exc).__name__}"
        response.status_code = 503
    return HealthOut(
        status="ok" if database == "ok" else "degraded",
        database=database,
        workers={"id": svc.pool.worker_id, "slots": svc.pool.workers, "held": svc.pool.pending},
        workflows=svc.registry.names(),
    )


@router.get(
    "/metrics",
    tags=["service"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition."}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(services(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
