"""Python client of the clinicflow HTTP API, for pipelines: create runs, follow events, approve writes.

    async with AsyncClient("http://clinicflow:8000", token) as cf:
        run = await cf.run("ehr_qa", {"question": "...", "patient_id": "..."})

    with Client("http://clinicflow:8000", token) as cf:
        run = cf.run("ehr_task", task, on_approval=lambda request: {"action": "approve"})

`AsyncClient` does the work; `Client` is a thin synchronous wrapper running it on a private event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypedDict, Unpack

import httpx

__all__ = [
    "TERMINAL_STATUSES",
    "ApiError",
    "AsyncClient",
    "Client",
    "ClientError",
    "Decision",
    "Event",
    "RunFailedError",
]

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
ApprovalHandler = Callable[[dict[str, Any]], "dict[str, Any] | str | Awaitable[dict[str, Any] | str]"]


class Decision(TypedDict, total=False):
    """What a decision on a pending write may add to its action."""

    reason: str | None
    resource: Mapping[str, Any] | None
    interrupt_id: str | None


class ClientError(Exception):
    """Base of the client's errors."""


class ApiError(ClientError):
    """The API answered with an error status; `status` and `detail` say which and why."""

    def __init__(self, status: int, detail: Any, method: str, url: str) -> None:
        super().__init__(f"{method} {url} -> HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class RunFailedError(ClientError):
    """A run ended failed or cancelled; `run` holds its last state."""

    def __init__(self, run: dict[str, Any]) -> None:
        super().__init__(f"run {run.get('id')} {run.get('status')}: {run.get('error') or 'no error message'}")
        self.run = run


@dataclass(frozen=True)
class Event:
    """One run event: `seq` (SSE id), `type` (e.g. node.started, tool.call, answer) and `data`."""

    seq: int
    type: str
    data: dict[str, Any]
    at: str

    @property
    def terminal(self) -> bool:
        return self.type == "run.finished"


def _parse_sse(block: str) -> Event | None:
    data_lines = [line[5:].lstrip() for line in block.splitlines() if line.startswith("data:")]
    if not data_lines:
        return None
    payload = json.loads("\n".join(data_lines))
    return Event(
        seq=int(payload["seq"]), type=str(payload["type"]), data=payload.get("data") or {}, at=payload["at"]
    )


class AsyncClient:
    """Async client on one `httpx.AsyncClient`: `async with AsyncClient(url, token) as cf:`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"{method} {self.base_url}{path} failed: {exc}") from exc
        if response.is_error:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:500]
            raise ApiError(response.status_code, detail, method, f"{self.base_url}{path}")
        return response.json()

    async def create_run(
        self, workflow: str, input: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Start a run; with `idempotency_key`, a retried call returns the same run."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"workflow": workflow, "input": dict(input)}
        result: dict[str, Any] = await self._call("POST", "/v1/runs", json=body, headers=headers)
        return result

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """The run: status, result, pending approval."""
        result: dict[str, Any] = await self._call("GET", f"/v1/runs/{run_id}")
        return result

    async def audit(self, **filters: Any) -> list[dict[str, Any]]:
        """Audit rows (needs the `audit` scope); filters: run_id, patient_id, action, after, limit."""
        params = {k: v for k, v in filters.items() if v is not None}
        result = await self._call("GET", "/v1/audit", params=params)
        return list(result["entries"])

    async def list_runs(self, **filters: Any) -> list[dict[str, Any]]:
        """Runs the token may see, newest first (filters: status, workflow, before, limit)."""
        params = {k: v for k, v in filters.items() if v is not None}
        result = await self._call("GET", "/v1/runs", params=params)
        return list(result["runs"])

    async def workflows(self) -> list[dict[str, Any]]:
        """The workflows the token may run, with their input schemas."""
        return list(await self._call("GET", "/v1/workflows"))

    async def approve(
        self, run_id: str, action: str = "approve", **decision: Unpack[Decision]
    ) -> dict[str, Any]:
        """Decide on the pending write: "approve", "reject" (with `reason`) or "edit" (with `resource`)."""
        given: dict[str, Any] = dict(decision)
        body = {"action": action} | {
            k: given[k] for k in ("reason", "resource", "interrupt_id") if given.get(k) is not None
        }
        if "resource" in body:
            body["resource"] = dict(body["resource"])
        result: dict[str, Any] = await self._call("POST", f"/v1/runs/{run_id}/approval", json=body)
        return result

    async def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel the run (at once when idle, else before its next step)."""
        result: dict[str, Any] = await self._call("POST", f"/v1/runs/{run_id}/cancel")
        return result

    async def resume(self, run_id: str) -> dict[str, Any]:
        """Continue an interrupted or failed run from its last checkpoint."""
        result: dict[str, Any] = await self._call("POST", f"/v1/runs/{run_id}/resume")
        return result

    async def events(
        self, run_id: str, *, after: int = 0, follow: bool = True, reconnects: int = 5
    ) -> AsyncIterator[Event]:
        """The run's events in order; reconnects after a dropped stream (from the last seen event)."""
        last = after
        failures = 0
        while True:
            params = {"after": last, "follow": "true" if follow else "false"}
            try:
                async with self._http.stream(
                    "GET",
                    f"/v1/runs/{run_id}/events",
                    params=params,
                    headers={"Accept": "text/event-stream"},
                    timeout=httpx.Timeout(self._http.timeout.connect, read=None),
                ) as response:
                    if response.is_error:
                        await response.aread()
                        try:
                            detail = response.json().get("detail")
                        except ValueError:
                            detail = response.text[:500]
                        raise ApiError(
                            response.status_code, detail, "GET", f"{self.base_url}/v1/runs/{run_id}/events"
                        )
                    buffer = ""
                    async for chunk in response.aiter_text():
                        buffer += chunk.replace("\r\n", "\n")
                        while "\n\n" in buffer:
                            block, buffer = buffer.split("\n\n", 1)
                            event = _parse_sse(block)
                            if event is None or event.seq <= last:
                                continue
                            last = event.seq
                            failures = 0
                            yield event
                            if event.terminal:
                                return
                if not follow:
                    return
            except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
                failures += 1
                if failures > reconnects:
                    raise ClientError(f"event stream of run {run_id} keeps dropping: {exc}") from exc
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))

    async def wait(self, run_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Follow the run until it finishes or waits for approval; returns the run."""

        run = await self.get_run(run_id)

        async def follow() -> None:
            async for event in self.events(run_id, after=int(run.get("last_event") or 0)):
                if event.type == "approval.required":
                    return

        if run["status"] not in TERMINAL_STATUSES and run["status"] != "waiting_approval":
            await asyncio.wait_for(follow(), timeout)
        return await self.get_run(run_id)

    async def run(
        self,
        workflow: str,
        input: Mapping[str, Any],
        *,
        on_approval: ApprovalHandler | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        raise_on_failure: bool = True,
    ) -> dict[str, Any]:
        """Create a run and follow it to the end; each pending write goes to `on_approval(request)`, whose
        answer ({"action": ...} or "approve") is sent back (a run that stopped waiting meanwhile, e.g.
        cancelled, is followed as it is). Without a handler, returns while it waits."""
        run = await self.create_run(workflow, input, idempotency_key=idempotency_key)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            run = await self.wait(run["id"], timeout=left)
            if run["status"] != "waiting_approval" or on_approval is None:
                break
            pending = run["pending_approval"]
            answer = on_approval(pending["request"])
            if inspect.isawaitable(answer):
                answer = await answer
            decision: dict[str, Any] = {"action": answer} if isinstance(answer, str) else dict(answer)
            try:
                await self.approve(
                    run["id"],
                    decision.get("action", "approve"),
                    reason=decision.get("reason"),
                    resource=decision.get("resource"),
                    interrupt_id=pending["interrupt_id"],
                )
            except ApiError as exc:
                if exc.status != 409:
                    raise
        if raise_on_failure and run["status"] in ("failed", "cancelled"):
            raise RunFailedError(run)
        return run


class Client:
    """Synchronous client: the same methods as `AsyncClient`, run on a private event loop."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self._runner = asyncio.Runner()
        self._async = self._runner.run(self._open(base_url, token, timeout))

    @staticmethod
    async def _open(base_url: str, token: str, timeout: float) -> AsyncClient:
        return AsyncClient(base_url, token, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and the event loop."""
        self._runner.run(self._async.aclose())
        self._runner.close()

    def create_run(
        self, workflow: str, input: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._runner.run(self._async.create_run(workflow, input, idempotency_key=idempotency_key))

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._runner.run(self._async.get_run(run_id))

    def list_runs(self, **filters: Any) -> list[dict[str, Any]]:
        return self._runner.run(self._async.list_runs(**filters))

    def workflows(self) -> list[dict[str, Any]]:
        return self._runner.run(self._async.workflows())

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        return self._runner.run(self._async.audit(**filters))

    def approve(self, run_id: str, action: str = "approve", **decision: Unpack[Decision]) -> dict[str, Any]:
        return self._runner.run(self._async.approve(run_id, action, **decision))

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self._runner.run(self._async.cancel(run_id))

    def resume(self, run_id: str) -> dict[str, Any]:
        return self._runner.run(self._async.resume(run_id))

    def events(self, run_id: str, *, after: int = 0, follow: bool = True) -> Iterator[Event]:
        """The run's events in order, as a blocking iterator."""
        stream = self._async.events(run_id, after=after, follow=follow)

        async def step() -> Event | None:
            try:
                return await anext(stream)
            except StopAsyncIteration:
                return None

        try:
            while (event := self._runner.run(step())) is not None:
                yield event
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                self._runner.run(closer())

    def wait(self, run_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        return self._runner.run(self._async.wait(run_id, timeout=timeout))

    def run(
        self,
        workflow: str,
        input: Mapping[str, Any],
        *,
        on_approval: Callable[[dict[str, Any]], dict[str, Any] | str] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        raise_on_failure: bool = True,
    ) -> dict[str, Any]:
        return self._runner.run(
            self._async.run(
                workflow,
                input,
                on_approval=on_approval,
                idempotency_key=idempotency_key,
                timeout=timeout,
                raise_on_failure=raise_on_failure,
            )
        )
