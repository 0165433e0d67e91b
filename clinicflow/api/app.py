"""The FastAPI application: `create_app()` wires settings, store, FHIR client, checkpointer, workflows and
the worker pool (`api.wiring`), opened and closed by the app's lifespan.

Run it with `clinicflow serve`, or `uvicorn --factory clinicflow.api.app:create_app`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI
from langchain_core.language_models import BaseChatModel
from opentelemetry.sdk.trace import TracerProvider

from clinicflow.api.cds_hooks import cds_router
from clinicflow.api.config import ApiSettings
from clinicflow.api.errors import add_error_handlers
from clinicflow.api.mcp_service import MCP_ANY_HOST, build_api_mcp_server
from clinicflow.api.metrics import Metrics, MetricsMiddleware
from clinicflow.api.middleware import BodyLimitMiddleware
from clinicflow.api.openapi import use_workflow_inputs
from clinicflow.api.routes import router
from clinicflow.api.scripted import SCRIPTED_PREFIX, load_scripted_model
from clinicflow.api.wiring import open_services
from clinicflow.api.workflows import WorkflowRegistry, default_registry, load_plugins

__all__ = ["BodyLimitMiddleware", "create_app", "model_loader"]

DESCRIPTION = """Run clinicflow workflows from hospital pipelines.

Start a run (`POST /v1/runs`), follow its progress (`GET /v1/runs/{id}/events`, Server-Sent Events),
answer pending writes (`POST /v1/runs/{id}/approval`) and read the result (`GET /v1/runs/{id}`).
Every `/v1` call needs a bearer token: an API key or an OAuth2 JWT, scoped to workflows, read or write,
and patients.
"""


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
            app.state.services = await open_services(stack, settings, registry, metrics, load_model, tracing)
            await stack.enter_async_context(mcp.session_manager.run())
            yield

    app = FastAPI(title="clinicflow", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.include_router(router)
    app.include_router(cds_router)
    from clinicflow.console import console_router  # not at the top: the console imports the API's routes

    app.include_router(console_router)  # /console, outside the OpenAPI document
    mcp = build_api_mcp_server(app, settings, lambda: app.state.services)
    app.mount("/mcp", mcp.streamable_http_app(streamable_http_path="/", host=MCP_ANY_HOST))
    use_workflow_inputs(app, registry)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    add_error_handlers(app)
    return app
