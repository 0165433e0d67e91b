"""The console's routes: login and logout, the approval queue and its decisions; the run viewer, Ask and
eval reports come from `runs` and `reports`. Mounted under `/console` by `create_app`, left out of the
OpenAPI document.

Every decision goes through the API's own `decide` (the function behind `POST /v1/runs/{id}/approval`),
every new run through its `create_run`, every read of a run through its access checks: the console adds
pages, not a second path to the record.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import ValidationError

from clinicflow.api.access import visible_run
from clinicflow.api.params import RunId
from clinicflow.api.run_control import decide
from clinicflow.api.runs import list_runs
from clinicflow.api.schemas import ApprovalIn
from clinicflow.api.services import services
from clinicflow.api.store import NewAudit
from clinicflow.console.present import Order, apply_edits, evidence_of, order_of
from clinicflow.console.records import patient_labels
from clinicflow.console.reports import router as reports_router
from clinicflow.console.runs import router as runs_router
from clinicflow.console.session import (
    checked_form,
    codec,
    current_session,
    new_session,
    set_session_cookie,
    verify_token,
    visitor,
)
from clinicflow.console.web import PREFIX, STATIC_DIR, ConsoleRoute, page

__all__ = ["console_router"]

console_router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=ConsoleRoute)
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
QUEUE_LIMIT = 200


def _safe_next(target: str | None) -> str:
    """Where to go after login: a console path only (never another site)."""
    if target and target.startswith(f"{PREFIX}/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/queue"


@console_router.get("")
@console_router.get("/")
async def index() -> Response:
    return RedirectResponse(f"{PREFIX}/queue", status_code=303)


@console_router.get("/static/{name}")
async def static(name: Annotated[str, Path(pattern=r"^[a-z]+\.(css|js)$")]) -> Response:
    if name not in _STATIC:
        raise HTTPException(404, f"no static file {name}")
    return FileResponse(
        STATIC_DIR / name, media_type=_STATIC[name], headers={"Cache-Control": "public, max-age=3600"}
    )


def _login_page(request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
    session = current_session(request)
    fresh = session is None or session.token is not None
    if fresh:
        session = new_session()
    assert session is not None
    next_url = _safe_next(request.query_params.get("next"))
    response = page(
        request,
        "login.jinja",
        None,
        status_code=status_code,
        csrf=codec(request).csrf(session),
        next_url=next_url,
        error=error,
    )
    if fresh:
        set_session_cookie(request, response, session)
    return response


@console_router.get("/login")
async def login_form(request: Request) -> Response:
    """The login form: paste an API key (cfk_...) or a JWT access token from the trusted issuer."""
    return _login_page(request)


@console_router.post("/login")
async def login(request: Request) -> Response:
    session = current_session(request)
    if session is None:
        raise HTTPException(403, "no login form was loaded in this browser; open the login page first")
    form = await checked_form(request, session)
    token = form.get("token", "").strip()
    try:
        principal = await verify_token(request, token)
    except HTTPException as exc:
        if exc.status_code != 401:
            raise
        return _login_page(request, error=f"Login failed: {exc.detail}.", status_code=401)
    svc = services(request)
    await svc.store.add_audit(
        [NewAudit(actor=principal.subject, actor_kind=principal.kind, action="console.login")]
    )
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    set_session_cookie(request, response, new_session(token))
    return response


@console_router.post("/logout")
async def logout(request: Request) -> Response:
    who = await visitor(request)
    await checked_form(request, who.session)
    await services(request).store.add_audit(
        [NewAudit(actor=who.subject, actor_kind=who.principal.kind, action="console.logout")]
    )
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    set_session_cookie(request, response, None)
    return response


@console_router.get("/queue")
async def queue(request: Request) -> Response:
    """Pending writes of every run the user may see, oldest first, each as an order beside its resource."""
    who = await visitor(request)
    svc = services(request)
    listed = await list_runs(
        request, who.principal, status="waiting_approval", workflow=None, before=None, limit=QUEUE_LIMIT
    )
    orders: list[Order] = []
    for run in reversed(listed.runs):
        events = await svc.store.events_after(run.id, 0)
        order = order_of(run, evidence_of(events))
        if order is not None:
            orders.append(order)
    labels = await patient_labels(request, who.principal, [o.patient_id for o in orders])
    return page(request, "queue.jinja", who, nav="queue", orders=orders, labels=labels)


def _approval(action: str, form: dict[str, str], resource: dict[str, object]) -> ApprovalIn:
    """The API's approval body for what the reviewer chose: approve, reject (with reason) or edit."""
    interrupt_id = form.get("interrupt_id") or None
    try:
        if action == "reject":
            return ApprovalIn(action="reject", reason=form.get("reason", ""), interrupt_id=interrupt_id)
        if action == "edit":
            edited = apply_edits(resource, form)
            if edited is not None:
                return ApprovalIn.model_validate(
                    {"action": "edit", "resource": edited, "interrupt_id": interrupt_id}
                )
        if action in ("approve", "edit"):
            return ApprovalIn(action="approve", interrupt_id=interrupt_id)
    except ValidationError as exc:
        raise HTTPException(422, "; ".join(str(e["msg"]) for e in exc.errors())) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    raise HTTPException(422, f"unknown action {action!r}; approve, edit or reject")


@console_router.post("/queue/{run_id}/decide")
async def decide_form(run_id: RunId, request: Request) -> Response:
    """Approve, reject with a reason, or edit fields and approve: through the API's own `decide`."""
    who = await visitor(request)
    form = await checked_form(request, who.session)
    svc = services(request)
    run = await visible_run(svc, who.principal, run_id)
    request_body = (run.pending or {}).get("request")
    resource = request_body.get("resource") if isinstance(request_body, dict) else None
    body = _approval(form.get("action", ""), form, resource if isinstance(resource, dict) else {})
    await decide(run_id, body, request, who.principal)
    return RedirectResponse(f"{PREFIX}/runs/{run_id}", status_code=303)


console_router.include_router(runs_router)
console_router.include_router(reports_router)
