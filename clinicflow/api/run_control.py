"""Acting on a run: decide on the write it waits on, cancel it, resume it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request

from clinicflow.api.access import Caller, deny, run_audit, visible_run
from clinicflow.api.auth import ForbiddenError, Principal
from clinicflow.api.events import APPROVAL_DECIDED, RUN_FINISHED
from clinicflow.api.params import BODY_ERRORS, RUN_ERRORS, RunId
from clinicflow.api.runs import queue_full, submit
from clinicflow.api.schemas import ApprovalIn, ErrorOut, RunOut
from clinicflow.api.services import Services, services
from clinicflow.api.store import TERMINAL_STATUSES, DuplicateDecisionError, NewAudit, NewEvent, RunRow, utcnow
from clinicflow.api.workers import QueueFullError

__all__ = ["cancel", "decide", "resume", "router"]

router = APIRouter()
_F = TypeVar("_F", bound=Callable[..., Any])
_IDLE = ("queued", "waiting_approval", "interrupted")
_RESUMABLE = ("interrupted", "failed")
_CANCELLED = {"owner": None, "pending": None, "cancel_requested": True}
_RETRIED = {"error": None, "finished_at": None}


def _post(action: str, conflict: str, more: Mapping[int | str, Any] | None = None) -> Callable[[_F], _F]:
    """The route `POST /v1/runs/{run_id}/<action>`, answering the run; 409 when `conflict`."""
    responses = {**RUN_ERRORS, **(more or {}), 409: {"model": ErrorOut, "description": conflict}}
    return router.post(
        f"/v1/runs/{{run_id}}/{action}", response_model=RunOut, tags=["runs"], responses=responses
    )


async def _acting(
    request: Request, principal: Principal, run_id: str, action: str
) -> tuple[Services, RunRow, NewAudit]:
    """The services, the run the token may act on (403 / 404 otherwise) and the audit row of acting."""
    svc = services(request)
    run = await visible_run(svc, principal, run_id, write=True)
    return svc, run, run_audit(principal, run, action, detail={"status_before": run.status})


async def _current(svc: Services, run_id: str) -> RunOut:
    """The run as stored now."""
    run = await svc.store.get_run(run_id)
    assert run is not None
    return RunOut.from_row(run)


@_post("approval", "Nothing (or another write) is pending.", BODY_ERRORS)
async def decide(run_id: RunId, body: ApprovalIn, request: Request, principal: Caller) -> RunOut:
    """Approve, reject or edit the write a run is waiting on; the run then continues."""
    svc = services(request)
    run = await visible_run(svc, principal, run_id)
    if not principal.grants.write:
        raise await deny(
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
    audit = run_audit(
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
            body.decision(),
            principal.subject,
            owner=svc.pool.worker_id,
            events=[event],
            audits=[audit],
        )
    except DuplicateDecisionError as exc:
        raise HTTPException(409, str(exc)) from None
    svc.metrics.approvals.labels(body.action).inc()
    svc.bus.notify(run.id)
    await submit(svc, run.id, "approval")
    return RunOut.from_row(updated)


@_post("cancel", "The run already finished.")
async def cancel(run_id: RunId, request: Request, principal: Caller) -> RunOut:
    """Cancel a run: at once when it is queued or waiting, else before its next step."""
    svc, run, audit = await _acting(request, principal, run_id, "run.cancel")
    if run.status in TERMINAL_STATUSES:
        raise HTTPException(409, f"run {run.id} already {run.status}")
    updated = None
    if run.status in _IDLE:
        values = {"status": "cancelled", "finished_at": utcnow()} | _CANCELLED
        finished = NewEvent(RUN_FINISHED, {"status": "cancelled", "error": None})
        updated = await svc.store.transition(
            run.id, from_statuses=_IDLE, values=values, events=[finished], audits=[audit]
        )
        if updated is not None:
            svc.metrics.runs_finished.labels(run.workflow, "cancelled").inc()
    if updated is None:
        await svc.store.request_cancel(run.id)
        await svc.store.add_audit([audit])
    svc.pool.cancel_local(run.id)
    svc.bus.notify(run.id)
    return await _current(svc, run.id)


@_post("resume", "The run cannot be resumed.")
async def resume(run_id: RunId, request: Request, principal: Caller) -> RunOut:
    """Continue an interrupted or failed run from its last checkpoint (completed steps are not repeated)."""
    svc, run, audit = await _acting(request, principal, run_id, "run.resume")
    if run.status in _RESUMABLE:
        values = {"status": "queued", "owner": svc.pool.worker_id, "heartbeat_at": utcnow()} | _RETRIED
        updated = await svc.store.transition(run.id, from_statuses=_RESUMABLE, values=values, audits=[audit])
        if updated is None:
            raise HTTPException(409, f"run {run.id} changed state; fetch it again")
    elif run.status in ("queued", "running") and not svc.pool.has_room():
        raise queue_full()
    elif run.status not in ("queued", "running"):
        raise HTTPException(409, f"run {run.id} is {run.status}; only interrupted or failed runs resume")
    else:
        await svc.store.add_audit([audit])
    try:
        svc.pool.submit(run.id, "resume")
    except QueueFullError:
        raise queue_full() from None
    return await _current(svc, run.id)
