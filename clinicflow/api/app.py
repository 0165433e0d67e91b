"""The FastAPI application: `create_app()` wires settings, store, FHIR client, checkpointer, workflows and
the worker pool, opened and closed by the app's lifespan.

Run it with `clinicflow serve`, or `uvicorn --factory clinicflow.api.app:create_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from langchain_core.language_models import BaseChatModel
from opentelemetry.sdk.trace import TracerProvider
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinicflow.api.audit import AuditingTransport
from clinicflow.api.auth import AuthError, ForbiddenError, JwtVerifier, PatientAccess
from clinicflow.api.cds_hooks import cds_router
from clinicflow.api.checkpoints import open_service_checkpointer
from clinicflow.api.config import ApiSettings
from clinicflow.api.events import EventBus
from clinicflow.api.mcp_service import MCP_ANY_HOST, build_api_mcp_server
from clinicflow.api.metrics import Metrics, MetricsMiddleware
from clinicflow.api.routes import AuthFailureSampler, Services, router
from clinicflow.api.scripted import SCRIPTED_PREFIX, load_scripted_model
from clinicflow.api.smart import smart_auth_from_settings
from clinicflow.api.store import Store
from clinicflow.api.workers import QueueFullError, WorkerPool
from clinicflow.api.workflows import WorkflowDeps, WorkflowRegistry, default_registry, load_plugins
from clinicflow.fhir import FhirClient
from clinicflow.graphs.telemetry import INSTRUMENTATION, tracer_provider

__all__ = ["BodyLimitMiddleware", "create_app", "model_loader"]

log = logging.getLogger(__name__)

DESCRIPTION = """Run clinicflow workflows from hospital pipelines.

Start a run (`POST /v1/runs`), follow its progress (`GET /v1/runs/{id}/events`, Server-Sent Events),
answer pending writes (`POST /v1/runs/{id}/approval`) and read the result (`GET /v1/runs/{id}`).
Every `/v1` call needs a bearer token: an API key or an OAuth2 JWT, scoped to workflows, read or write,
and patients.
"""


class BodyLimitMiddleware:
    """413 for a request body over `max_bytes`: at once when Content-Length says so, else as soon as the
    bytes read pass the limit; the application sees only bodies within it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        messages: list[Message] = []
        size = 0
        more = scope["method"] not in ("GET", "HEAD", "OPTIONS") or bool(declared)
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(send)
                return
            more = message.get("more_body", False)

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"the request body is larger than {self.max_bytes} bytes"}, status_code=413
        )
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists at this path, with HEAD where GET is (Starlette serves it);
    Starlette's own 405 names only the methods of the first route matching the path."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _with_workflow_inputs(schema: dict[str, Any], registry: WorkflowRegistry) -> dict[str, Any]:
    """The OpenAPI document with `RunCreate` spelled out per registered workflow (plugins included): the
    workflow's name and the JSON schema of its input, so that a client sees which input each one takes."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    workflows = [registry.get(name) for name in registry.names()]
    refs, defs = models_json_schema(
        [(w.input_model, "validation") for w in workflows], ref_template="#/components/schemas/{model}"
    )
    components.update(defs.get("$defs", {}))
    generic = components["RunCreate"]
    variants = []
    for workflow in workflows:
        properties = dict(generic["properties"])
        properties["workflow"] = {"type": "string", "const": workflow.name}
        properties["input"] = refs[(workflow.input_model, "validation")]
        variants.append(
            {
                "title": f"RunCreate[{workflow.name}]",
                "type": "object",
                "properties": properties,
                "required": ["workflow", "input"],
                "additionalProperties": False,
            }
        )
    components["RunCreate"] = {
        "title": "RunCreate",
        "description": generic["description"],
        "oneOf": variants,
        "discriminator": {"propertyName": "workflow"},
    }
    return schema


def model_loader(settings: ApiSettings, model: BaseChatModel | None = None) -> Callable[[], BaseChatModel]:
    """How workflows get their chat model: the given one, a script (`scripted:<file>`), or
    `load_chat_model(settings)`. A script is read now, so a bad one fails at startup."""
    if model is not None:
        given = model
        return lambda: given
    if settings.model and settings.model.startswith(SCRIPTED_PREFIX):
        scripted = load_scripted_model(settings.model)
        return lambda: scripted

    def load() -> BaseChatModel:
        from clinicflow.model import load_chat_model

        return load_chat_model(settings, progress=False)

    return load


@contextlib.asynccontextmanager
async def _fhir_url(settings: ApiSettings) -> AsyncIterator[str | None]:
    """The configured FHIR server; else the embedded one over data in the cache dir, if any."""
    if settings.fhir_url:
        yield settings.fhir_url
        return
    from clinicflow.fhir.demo import free_port
    from clinicflow.fhir.server import DB_FILENAME, EmbeddedFhirServer

    data_dir = settings.cache_dir / "fhir-server"
    if not (data_dir / DB_FILENAME).exists():
        log.warning("no FHIR server configured (CLINICFLOW_FHIR_URL) and no embedded data in %s", data_dir)
        yield None
        return
    server = EmbeddedFhirServer(data_dir, port=free_port())
    await asyncio.to_thread(server.start)
    try:
        yield server.base_url
    finally:
        await asyncio.to_thread(server.stop)


def _fhir_client(settings: ApiSettings, base_url: str, metrics: Metrics) -> FhirClient:
    auth = smart_auth_from_settings(settings, base_url)
    transport = AuditingTransport(httpx.AsyncHTTPTransport(), base_url, metrics)
    return FhirClient(
        base_url,
        token=settings.fhir_token if auth is None else None,
        auth=auth,
        timeout=settings.fhir_timeout_s,
        retries=settings.fhir_retries,
        transport=transport,
    )


def create_app(
    settings: ApiSettings | None = None,
    *,
    model: BaseChatModel | None = None,
    registry: WorkflowRegistry | None = None,
    tracing: TracerProvider | None = None,
) -> FastAPI:
    """The API application. `model` and `registry` replace the configured model and workflows (tests,
    embedding), `tracing` the span provider built from the `otel_*` settings; plugins named by
    `api_plugins` are loaded into the registry either way."""
    settings = settings or ApiSettings()  # type: ignore[call-arg]
    registry = registry or default_registry()
    load_plugins(registry, settings.plugin_specs())
    load_model = model_loader(settings, model)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            provider = tracing
            if provider is None and settings.otel_endpoint:
                provider = tracer_provider(settings.otel_service_name, otlp_endpoint=settings.otel_endpoint)
                stack.callback(provider.shutdown)  # flushes what the batch exporter still holds
            store = Store(settings.store_url(), pool_size=settings.api_workers + 16)
            stack.push_async_callback(store.close)
            await store.init()
            base_url = await stack.enter_async_context(_fhir_url(settings))
            fhir = _fhir_client(settings, base_url, metrics) if base_url else None
            if fhir is not None:
                stack.push_async_callback(fhir.aclose)
            checkpointer = await stack.enter_async_context(
                open_service_checkpointer(settings, registry.checkpoint_types())
            )
            deps = WorkflowDeps(
                settings=settings, fhir=fhir, checkpointer=checkpointer, load_model=load_model
            )
            bus = EventBus()
            pool = WorkerPool(
                store=store,
                registry=registry,
                deps=deps,
                bus=bus,
                metrics=metrics,
                worker_id=settings.worker_id(),
                workers=settings.api_workers,
                max_queued=settings.api_max_queued,
                lease_s=settings.api_lease_s,
                tracer=provider.get_tracer(INSTRUMENTATION) if provider else None,  # None: no-op spans
            )
            jwt_verifier = (
                JwtVerifier(
                    settings.auth_jwks,
                    issuer=settings.auth_jwt_issuer,
                    audience=settings.auth_jwt_audience,
                    algorithms=settings.jwt_algorithms(),
                    scope_claim=settings.auth_scope_claim,
                )
                if settings.auth_jwks
                else None
            )
            app.state.services = Services(
                settings=settings,
                store=store,
                registry=registry,
                deps=deps,
                pool=pool,
                bus=bus,
                metrics=metrics,
                access=PatientAccess(fhir),
                jwt=jwt_verifier,
                auth_audit=AuthFailureSampler(settings.api_auth_audit_per_minute),
            )
            resumed = await pool.start(resume=settings.api_resume_on_startup)
            if resumed:
                log.info("resumed %d interrupted runs: %s", len(resumed), ", ".join(resumed))
            stack.push_async_callback(pool.stop)
            await stack.enter_async_context(mcp.session_manager.run())
            yield

    app = FastAPI(
        title="clinicflow",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.include_router(router)
    app.include_router(cds_router)
    from clinicflow.console import console_router  # not at the top: the console imports api.routes

    app.include_router(console_router)  # /console, outside the OpenAPI document
    mcp = build_api_mcp_server(app, settings, lambda: app.state.services)
    app.mount("/mcp", mcp.streamable_http_app(streamable_http_path="/", host=MCP_ANY_HOST))
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _with_workflow_inputs(generate_openapi(), registry)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # ASCII-escaped, so an echoed input holding a lone surrogate is still valid UTF-8 JSON.
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            allow = ", ".join(_allowed_methods(app, request.url.path))
            return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": allow})
        return await http_exception_handler(request, exc)  # type: ignore[return-value]

    @app.exception_handler(AuthError)
    async def _unauthorized(request: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ForbiddenError)
    async def _forbidden(request: Request, exc: ForbiddenError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=403)

    @app.exception_handler(QueueFullError)
    async def _full(request: Request, exc: QueueFullError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": "5"})

    return app
