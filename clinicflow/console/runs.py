"""Run pages: the list, one run (question, answer, status, trace timeline, audit rows) with live updates
from the API's SSE stream, the cited resources, and Ask (start a run through the API's `create_run`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from clinicflow.api.access import visible_run
from clinicflow.api.params import MAX_ID, RunId
from clinicflow.api.runs import create_run, get_run, list_runs, run_events
from clinicflow.api.schemas import RunCreate, RunOut, RunStatus
from clinicflow.api.services import services
from clinicflow.api.store import TERMINAL_STATUSES
from clinicflow.console.present import evidence_of, order_of, patient_label, timeline
from clinicflow.console.records import patient_labels, pickable_patients, visible_resource
from clinicflow.console.session import Visitor, checked_form, visitor
from clinicflow.console.web import PREFIX, ConsoleRoute, page
from clinicflow.fhir.references import patient_owners

__all__ = ["ASK_WORKFLOWS", "router"]

router = APIRouter(route_class=ConsoleRoute)
ResourceType = Annotated[str, Path(pattern=r"^[A-Z][A-Za-z]{1,63}$")]
ResourceId = Annotated[str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
ASK_WORKFLOWS = {"ehr_qa": "question", "ehr_task": "instruction"}
"""Workflows Ask can start, and the input field the typed text goes to."""
AUDIT_LIMIT = 500


@router.get("/runs")
async def run_list(request: Request, status: RunStatus | None = None) -> Response:
    """The runs the user may see, newest first."""
    who = await visitor(request)
    listed = await list_runs(request, who.principal, status=status, workflow=None, before=None, limit=100)
    labels = await patient_labels(request, who.principal, [r.patient_id for r in listed.runs])
    return page(request, "runs.jinja", who, nav="runs", runs=listed.runs, labels=labels, status=status)


async def _run_context(request: Request, who: Visitor, run: RunOut) -> dict[str, Any]:
    svc = services(request)
    events = await svc.store.events_after(run.id, 0, limit=5000)
    audit = []
    if who.principal.grants.audit:
        audit = await svc.store.list_audit(run_id=run.id, limit=AUDIT_LIMIT)
    result = run.result or {}
    labels = await patient_labels(request, who.principal, [run.patient_id])
    return {
        "run": run,
        "question": run.input.get("question") or run.input.get("instruction") or "",
        "answer": result.get("answer") or result.get("summary") or "",
        "citations": result.get("citations") or [],
        "items": timeline(events),
        "last_seq": events[-1].seq if events else 0,
        "live": run.status not in TERMINAL_STATUSES,
        "order": order_of(run, evidence_of(events)),
        "audit": audit,
        "patient": labels.get(run.patient_id or "", patient_label(None, run.patient_id)),
    }


@router.get("/runs/{run_id}")
async def run_page(run_id: RunId, request: Request) -> Response:
    """One run: its question, answer, status, trace and (with the `audit` scope) its audit rows."""
    who = await visitor(request)
    run = await get_run(run_id, request, who.principal)
    context = await _run_context(request, who, run)
    return page(request, "run.jinja", who, nav="runs", **context)


@router.get("/runs/{run_id}/live")
async def run_fragment(run_id: RunId, request: Request) -> Response:
    """The changing part of the run page, fetched again by the page's script on each new event."""
    who = await visitor(request)
    row = await visible_run(services(request), who.principal, run_id)
    context = await _run_context(request, who, RunOut.from_row(row))
    return page(request, "run_live.jinja", who, **context)


@router.get("/runs/{run_id}/events")
async def run_stream(
    run_id: RunId, request: Request, after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0
) -> Response:
    """The API's SSE stream of the run, for the page's EventSource (the session cookie authenticates)."""
    who = await visitor(request)
    last = request.headers.get("last-event-id")
    return await run_events(run_id, request, who.principal, after=after, follow=True, last_event_id=last)


@router.get("/fhir/{resource_type}/{resource_id}")
async def cited_resource(resource_type: ResourceType, resource_id: ResourceId, request: Request) -> Response:
    """A cited resource, read from the FHIR server only if the user's patient scopes cover it."""
    who = await visitor(request)
    resource = await visible_resource(request, who.principal, resource_type, resource_id)
    fhir = services(request).deps.fhir
    owners = sorted(patient_owners(resource, fhir.base_url if fhir else None))
    return page(
        request,
        "resource.jinja",
        who,
        reference=f"{resource_type}/{resource_id}",
        resource=resource,
        owners=owners,
    )


def _askable(request: Request, who: Visitor) -> list[str]:
    registry = services(request).registry
    grants = who.principal.grants
    return [
        name
        for name in ASK_WORKFLOWS
        if name in registry and grants.may_run(name) and (grants.write or not registry.get(name).writes)
    ]


@router.get("/ask")
async def ask_form(request: Request) -> Response:
    """Pick a patient the user may see, type a question (or an instruction), start the run."""
    who = await visitor(request)
    workflows = _askable(request, who)
    patients = await pickable_patients(request, who.principal) if workflows else []
    return page(
        request,
        "ask.jinja",
        who,
        nav="ask",
        patients=patients,
        workflows=workflows,
        idempotency_key=uuid.uuid4().hex,
        selected=request.query_params.get("patient"),
    )


@router.post("/ask")
async def ask(request: Request) -> Response:
    """Start the run through the API's `create_run` (same checks, audit and queue), then watch it."""
    who = await visitor(request)
    form = await checked_form(request, who.session)
    workflow = form.get("workflow", "")
    if workflow not in ASK_WORKFLOWS:
        raise HTTPException(422, f"Ask starts {' or '.join(ASK_WORKFLOWS)}, not {workflow!r}")
    body = RunCreate(
        workflow=workflow,
        input={ASK_WORKFLOWS[workflow]: form.get("text", ""), "patient_id": form.get("patient_id", "")},
    )
    key = form.get("idempotency_key") or None
    if key is not None and not (len(key) == 32 and key.isalnum()):
        key = None
    run = await create_run(body, request, Response(), who.principal, idempotency_key=key)
    return RedirectResponse(f"{PREFIX}/runs/{run.id}", status_code=303)
