"""What one server process runs on, opened in order and closed in reverse by the app's lifespan: the span
provider, the store, the FHIR client, the checkpointer, the worker pool and the token verifier."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import httpx
from langchain_core.language_models import BaseChatModel
from opentelemetry.sdk.trace import TracerProvider

from clinicflow.api.audit import AuditingTransport
from clinicflow.api.auth import JwtVerifier, PatientAccess
from clinicflow.api.checkpoints import open_service_checkpointer
from clinicflow.api.config import ApiSettings
from clinicflow.api.events import EventBus
from clinicflow.api.metrics import Metrics
from clinicflow.api.services import AuthFailureSampler, Services
from clinicflow.api.smart import smart_auth_from_settings
from clinicflow.api.store import Store
from clinicflow.api.workers import WorkerPool
from clinicflow.api.workflows import WorkflowDeps, WorkflowRegistry
from clinicflow.fhir import FhirClient
from clinicflow.graphs.telemetry import INSTRUMENTATION, tracer_provider

__all__ = ["open_services"]

log = logging.getLogger("clinicflow.api.app")


async def _fhir_url(stack: contextlib.AsyncExitStack, settings: ApiSettings) -> str | None:
    """The configured FHIR server; else the embedded one over data in the cache dir (stopped with the
    stack), if there is any."""
    if settings.fhir_url:
        return settings.fhir_url
    from clinicflow.fhir.demo import free_port
    from clinicflow.fhir.server import DB_FILENAME, EmbeddedFhirServer

    data_dir = settings.cache_dir / "fhir-server"
    if not (data_dir / DB_FILENAME).exists():
        log.warning("no FHIR server configured (CLINICFLOW_FHIR_URL) and no embedded data in %s", data_dir)
        return None
    server = EmbeddedFhirServer(data_dir, port=free_port())
    await asyncio.to_thread(server.start)
    stack.push_async_callback(asyncio.to_thread, server.stop)
    return server.base_url


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


async def _open_fhir(
    stack: contextlib.AsyncExitStack, settings: ApiSettings, metrics: Metrics
) -> FhirClient | None:
    """The service's one FHIR client (None without a FHIR server), closed with the stack."""
    base_url = await _fhir_url(stack, settings)
    if not base_url:
        return None
    fhir = _fhir_client(settings, base_url, metrics)
    stack.push_async_callback(fhir.aclose)
    return fhir


def _tracing(
    stack: contextlib.AsyncExitStack, settings: ApiSettings, given: TracerProvider | None
) -> TracerProvider | None:
    """The given span provider, else one exporting to `otel_endpoint` (flushed at exit), else None."""
    if given is not None or not settings.otel_endpoint:
        return given
    provider = tracer_provider(settings.otel_service_name, otlp_endpoint=settings.otel_endpoint)
    stack.callback(provider.shutdown)  # flushes what the batch exporter still holds
    return provider


def _jwt_verifier(settings: ApiSettings) -> JwtVerifier | None:
    if not settings.auth_jwks:
        return None
    return JwtVerifier(
        settings.auth_jwks,
        issuer=settings.auth_jwt_issuer,
        audience=settings.auth_jwt_audience,
        algorithms=settings.jwt_algorithms(),
        scope_claim=settings.auth_scope_claim,
    )


async def open_services(
    stack: contextlib.AsyncExitStack,
    settings: ApiSettings,
    registry: WorkflowRegistry,
    metrics: Metrics,
    load_model: Callable[[], BaseChatModel],
    tracing: TracerProvider | None = None,
) -> Services:
    """Open everything the endpoints use, each closed by `stack`; the worker pool is started (and
    resumes interrupted runs, as `api_resume_on_startup` says)."""
    provider = _tracing(stack, settings, tracing)
    store = Store(settings.store_url(), pool_size=settings.api_workers + 16)
    stack.push_async_callback(store.close)
    await store.init()
    fhir = await _open_fhir(stack, settings, metrics)
    checkpointer = await stack.enter_async_context(
        open_service_checkpointer(settings, registry.checkpoint_types())
    )
    deps = WorkflowDeps(settings=settings, fhir=fhir, checkpointer=checkpointer, load_model=load_model)
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
    services = Services(
        settings=settings,
        store=store,
        registry=registry,
        deps=deps,
        pool=pool,
        bus=bus,
        metrics=metrics,
        access=PatientAccess(fhir),
        jwt=_jwt_verifier(settings),
        auth_audit=AuthFailureSampler(settings.api_auth_audit_per_minute),
    )
    resumed = await pool.start(resume=settings.api_resume_on_startup)
    if resumed:
        log.info("resumed %d interrupted runs: %s", len(resumed), ", ".join(resumed))
    stack.push_async_callback(pool.stop)
    return services
