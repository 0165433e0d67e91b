"""About the service itself: the workflows a token may run, health, and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from clinicflow.api.access import Caller
from clinicflow.api.metrics import CONTENT_TYPE_LATEST
from clinicflow.api.params import ERRORS
from clinicflow.api.schemas import HealthOut, WorkflowOut
from clinicflow.api.services import services

__all__ = ["health", "list_workflows", "metrics", "router", "workflows_router"]

workflows_router = APIRouter()  # its own router: the OpenAPI document lists it before the audit routes
router = APIRouter()


@workflows_router.get("/v1/workflows", response_model=list[WorkflowOut], tags=["workflows"], responses=ERRORS)
async def list_workflows(request: Request, principal: Caller) -> list[WorkflowOut]:
    """The workflows this token may run, with the JSON schema of each one's input."""
    svc = services(request)
    return [
        WorkflowOut.model_validate(svc.registry.get(name).describe())
        for name in svc.registry.names()
        if principal.grants.may_run(name)
    ]


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
