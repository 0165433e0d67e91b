"""HTTP endpoints: runs, their events, approvals, cancel and resume, workflows, audit, health and metrics.

Every `/v1` endpoint needs a bearer token (401 without one) whose scopes cover the workflow, read or
write, and the run's patient (403 otherwise, checked before anything runs). Each concern has its module;
`router` holds them all, in the order of the OpenAPI document.
"""

from __future__ import annotations

from fastapi import APIRouter

from clinicflow.api import audit_routes, run_control, runs, service_routes
from clinicflow.api.access import Caller, authenticate
from clinicflow.api.audit_routes import audit_bundle, audit_rows
from clinicflow.api.params import MAX_ID, WORKFLOW_NAME, IsoDatetime, RunId
from clinicflow.api.run_control import cancel, decide, resume
from clinicflow.api.runs import create_run, get_run, list_runs, run_events
from clinicflow.api.service_routes import health, list_workflows, metrics
from clinicflow.api.services import AuthFailureSampler, Services, services

__all__ = [
    "MAX_ID",
    "WORKFLOW_NAME",
    "AuthFailureSampler",
    "Caller",
    "IsoDatetime",
    "RunId",
    "Services",
    "audit_bundle",
    "audit_rows",
    "authenticate",
    "cancel",
    "create_run",
    "decide",
    "get_run",
    "health",
    "list_runs",
    "list_workflows",
    "metrics",
    "resume",
    "router",
    "run_events",
    "services",
]

router = APIRouter()
for _part in (
    runs.router,
    run_control.router,
    service_routes.workflows_router,
    audit_routes.router,
    service_routes.router,
):
    router.include_router(_part)
