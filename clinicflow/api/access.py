"""Who is calling and what they may touch, for the API's endpoints and the console alike.

`authenticate` turns the bearer token into a `Principal` (401 otherwise); `check_patient`, `visible_run`
and `require_read` refuse with 403 what the token's scopes do not cover. Every refusal, and every read
made on a caller's behalf, lands in the audit trail through a `RequestAudit`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from clinicflow.api.audit import AuditScope, audit_scope
from clinicflow.api.auth import API_KEY_PREFIX, AuthError, ForbiddenError, Principal, verify_api_key
from clinicflow.api.services import Services, services
from clinicflow.api.store import NewAudit, RunRow

__all__ = [
    "Caller",
    "RequestAudit",
    "audit_read",
    "authenticate",
    "check_patient",
    "deny",
    "require_read",
    "run_audit",
    "verify_token",
    "visible_run",
]

_bearer = HTTPBearer(auto_error=False, description="An API key (cfk_...) or an OAuth2 JWT access token.")


async def verify_token(svc: Services, token: str) -> Principal:
    """The principal of an API key, else of a JWT from the configured issuer; `AuthError` otherwise."""
    if token.startswith(API_KEY_PREFIX):
        return await verify_api_key(svc.store, token)
    if svc.jwt is None:
        raise AuthError("unknown token: not an API key, and JWT verification is not configured")
    return await svc.jwt.verify(token)


async def _principal(svc: Services, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is None or not credentials.credentials:
        raise AuthError("a bearer token is required", "missing")
    return await verify_token(svc, credentials.credentials)


async def _audit_auth_failure(svc: Services, request: Request, exc: AuthError) -> None:
    """Count the failure; write it to the audit trail when the sampler admits it."""
    svc.metrics.auth_failures.labels(exc.reason).inc()
    unwritten = svc.auth_audit.admit()
    if unwritten is None:
        return
    detail: dict[str, Any] = {"reason": exc.reason, "error": exc.detail, "path": request.url.path[:200]}
    if unwritten:
        detail["unwritten_before"] = unwritten
    failure = NewAudit(
        actor="anonymous", actor_kind="none", action="auth.failure", outcome="denied", detail=detail
    )
    await svc.store.add_audit([failure])


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller's principal; 401 (counted, and audited up to a rate) without a valid token."""
    svc = services(request)
    try:
        return await _principal(svc, credentials)
    except AuthError as exc:
        await _audit_auth_failure(svc, request, exc)
        raise HTTPException(401, exc.detail, headers={"WWW-Authenticate": "Bearer"}) from None


Caller = Annotated[Principal, Depends(authenticate)]


class RequestAudit:
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


async def deny(svc: Services, principal: Principal, exc: ForbiddenError, **where: Any) -> HTTPException:
    """The 403 for `exc`, counted and audited (`where`: the run, patient and workflow concerned)."""
    svc.metrics.auth_failures.labels(exc.reason).inc()
    record = RequestAudit(svc, principal, **where)
    record.scope.audit("access.denied", outcome="denied", reason=exc.reason, error=exc.detail)
    await record.save()
    return HTTPException(403, exc.detail)


async def require_read(svc: Services, principal: Principal, **where: Any) -> None:
    """403 (audited) unless the token carries the `read` scope."""
    if not principal.grants.read:
        raise await deny(svc, principal, ForbiddenError("token lacks the `read` scope", "read"), **where)


async def check_patient(svc: Services, principal: Principal, patient_id: str | None, **where: Any) -> None:
    """403 (audited) unless the token's patient scopes cover `patient_id` (None: no patient involved)."""
    record = RequestAudit(svc, principal, patient_id=patient_id, **where)
    try:
        with audit_scope(record.scope):
            allowed = await svc.access.allowed(principal, patient_id)
    except ForbiddenError as exc:
        await record.save()
        raise await deny(svc, principal, exc, patient_id=patient_id, **where) from None
    await record.save()
    if not allowed:
        refused = ForbiddenError(f"token has no scope for patient {patient_id!r}", "patient")
        raise await deny(svc, principal, refused, patient_id=patient_id, **where)


async def visible_run(svc: Services, principal: Principal, run_id: str, *, write: bool = False) -> RunRow:
    """The run, if the token may see it (and act on it, with `write`); 404 / 403 otherwise."""
    run = await svc.store.get_run(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    writes = run.workflow in svc.registry and svc.registry.get(run.workflow).writes
    where = {"run_id": run.id, "workflow": run.workflow}
    try:
        principal.require_workflow(run.workflow, write=write and writes)
    except ForbiddenError as exc:
        raise await deny(svc, principal, exc, patient_id=run.patient_id, **where) from None
    await check_patient(svc, principal, run.patient_id, **where)
    return run


def run_audit(principal: Principal, run: RunRow, action: str, **fields: Any) -> NewAudit:
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


async def audit_read(svc: Services, principal: Principal, run: RunRow, action: str, **detail: Any) -> None:
    """Audit `principal` reading `run` (its state or its events)."""
    record = RequestAudit(svc, principal, run_id=run.id, patient_id=run.patient_id, workflow=run.workflow)
    record.scope.audit(action, **detail)
    await record.save()
