"""Reading the audit trail: `GET /v1/audit` as rows, `GET /v1/audit/fhir` as FHIR AuditEvents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from clinicflow.api.access import Caller, deny
from clinicflow.api.audit import audit_event
from clinicflow.api.auth import ForbiddenError
from clinicflow.api.params import ERRORS, MAX_ID
from clinicflow.api.schemas import RUN_ID_PATTERN, AuditList
from clinicflow.api.services import services
from clinicflow.api.store import AuditRow, utcnow
from clinicflow.api.workflows import PatientId as PatientIdQuery

__all__ = ["audit_bundle", "audit_rows", "router"]

router = APIRouter()


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
        raise await deny(
            svc, principal, ForbiddenError("reading the audit trail needs the `audit` scope", "audit")
        )
    rows = await svc.store.list_audit(
        run_id=run_id, patient_id=patient_id, action=action, after_id=after, limit=limit
    )
    return _AuditPage(rows, limit)


AuditPage = Annotated[_AuditPage, Depends(_audit_page)]


@router.get("/v1/audit", response_model=AuditList, tags=["audit"], responses=ERRORS)
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
    responses={**ERRORS, 200: {"content": {"application/fhir+json": {}}, "description": "A FHIR Bundle."}},
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
