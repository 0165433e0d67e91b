"""What every endpoint uses: the `Services` built once by the app's lifespan, and the sampler that keeps
failed authentications from flooding the audit trail."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from clinicflow.api.auth import JwtVerifier, PatientAccess
from clinicflow.api.config import ApiSettings
from clinicflow.api.events import EventBus
from clinicflow.api.metrics import Metrics
from clinicflow.api.store import Store
from clinicflow.api.workers import WorkerPool
from clinicflow.api.workflows import WorkflowDeps, WorkflowRegistry

__all__ = ["AuthFailureSampler", "Services", "services"]


class AuthFailureSampler:
    """Which failed authentications reach the audit trail: at most `per_minute` rows a minute, so callers
    without a token cannot grow the store without bound. Every failure is counted by the
    `clinicflow_auth_failures` metric; a row written after some were left out says how many."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._window_start = clock()
        self._written = 0
        self._unwritten = 0
        self._lock = threading.Lock()

    def admit(self) -> int | None:
        """None when this failure is only counted; else how many were left out since the last row."""
        with self._lock:
            now = self._clock()
            if now - self._window_start >= 60.0:
                self._window_start, self._written = now, 0
            if self._written >= self.per_minute:
                self._unwritten += 1
                return None
            self._written += 1
            unwritten, self._unwritten = self._unwritten, 0
            return unwritten


@dataclass
class Services:
    """Everything the endpoints use, built once by the app's lifespan."""

    settings: ApiSettings
    store: Store
    registry: WorkflowRegistry
    deps: WorkflowDeps
    pool: WorkerPool
    bus: EventBus
    metrics: Metrics
    access: PatientAccess
    jwt: JwtVerifier | None
    auth_audit: AuthFailureSampler = field(default_factory=lambda: AuthFailureSampler(10))


def services(request: Request) -> Services:
    """The app's `Services`."""
    found: Services = request.app.state.services
    return found
