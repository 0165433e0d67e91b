"""Async FHIR R4 REST client on one shared `httpx.AsyncClient`, with timeouts and bounded retries.

Retry policy (`retries` extra attempts, backoff `backoff * 2**attempt` seconds, at most 2 s):
- GET, HEAD, PUT, DELETE (idempotent): retried on connection errors, timeouts, dropped connections and 5xx.
- POST (create, transaction): retried only when the request was never sent (connect error, connect or
  pool timeout); a 5xx or a failure after sending is raised at once, so nothing is written twice.
4xx answers are never retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Generator, Iterable, Mapping, Sequence
from enum import Enum
from types import TracebackType
from typing import Any, Literal

import httpx

from .errors import FhirError, error_from_response, error_from_transport
from .references import reference_of
from .search import DEFAULT_LIMIT, DEFAULT_MAX_PAGES, Search

__all__ = ["FHIR_ID", "FHIR_JSON", "BearerAuth", "FhirClient"]

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRYABLE_AFTER_SEND = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_MAX_BACKOFF_S = 2.0
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
FHIR_ID = re.compile(r"^(?!\.+$)[A-Za-z0-9\-.]{1,64}$")
"""A FHIR resource id: 1-64 letters, digits, `-` and `.`, not dots alone (`.` and `..` are path steps)."""


class _ClientDefault(Enum):
    TIMEOUT = "the client's timeout"


_CLIENT_DEFAULT = _ClientDefault.TIMEOUT
"""Sentinel: use the client's own timeout for this request."""


class BearerAuth(httpx.Auth):
    """Sends `Authorization: Bearer <token>`; subclass it to fetch and refresh tokens (SMART backend)."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("bearer token is empty")
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def _check_type(resource_type: str) -> str:
    if not isinstance(resource_type, str) or not _RESOURCE_TYPE.match(resource_type):
        raise ValueError(f"invalid FHIR resource type {resource_type!r}")
    return resource_type


def _check_id(resource_id: str) -> str:
    if not isinstance(resource_id, str) or not FHIR_ID.match(resource_id):
        raise ValueError(
            f"invalid FHIR id {resource_id!r}: 1-64 characters of A-Z a-z 0-9 - ., not dots alone"
        )
    return resource_id


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, Mapping) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def _query_string(condition: str | Mapping[str, str] | Sequence[tuple[str, str]]) -> str:
    if isinstance(condition, str):
        return condition
    pairs = condition.items() if isinstance(condition, Mapping) else condition
    return str(httpx.QueryParams(tuple((str(k), str(v)) for k, v in pairs)))


class FhirClient:
    """Async FHIR R4 client for one server: `async with FhirClient(url) as c:`, or `await c.aclose()`."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float | None = 30.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        auth: httpx.Auth | None = None,
        backoff: float = 0.1,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"FHIR base URL must be an http(s) URL with a host, got {base_url!r}")
        if token is not None and auth is not None:
            raise ValueError("give either token or auth, not both")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.base_url = str(url.copy_with(query=None, fragment=None)).rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._base = httpx.URL(self.base_url + "/")
        self._http = httpx.AsyncClient(
            base_url=self._base,
            timeout=timeout,
            transport=transport,
            auth=BearerAuth(token) if token is not None else auth,
            headers={"Accept": FHIR_JSON},
            follow_redirects=True,
        )

    async def __aenter__(self) -> FhirClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the shared connection pool."""
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r})"

    # -- transport -------------------------------------------------------------------------------

    def _may_retry(self, method: str, exc: httpx.TransportError) -> bool:
        if isinstance(exc, _NOT_SENT):
            return True
        return method in _IDEMPOTENT and isinstance(exc, _RETRYABLE_AFTER_SEND)

    async def _pause(self, attempt: int) -> None:
        if self.backoff > 0:
            await asyncio.sleep(min(self.backoff * 2**attempt, _MAX_BACKOFF_S))

    async def _request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | _ClientDefault | None = _CLIENT_DEFAULT,
    ) -> httpx.Response:
        content = json.dumps(body).encode() if body is not None else None
        send_headers = dict(headers or {})
        if content is not None:
            send_headers["Content-Type"] = FHIR_JSON
        for attempt in range(self.retries + 1):
            started = time.perf_counter()
            try:
                response = await self._http.request(
                    method,
                    url,
                    params=list(params) if params else None,
                    content=content,
                    headers=send_headers,
                    timeout=httpx.USE_CLIENT_DEFAULT if timeout is _CLIENT_DEFAULT else timeout,
                )
            except httpx.TransportError as exc:
                if attempt < self.retries and self._may_retry(method, exc):
                    log.debug("%s %s failed (%r), retrying", method, url, exc)
                    await self._pause(attempt)
                    continue
                limit = self.timeout if isinstance(timeout, _ClientDefault) else timeout
                raise error_from_transport(exc, self.base_url, limit) from exc
            except httpx.HTTPError as exc:
                raise FhirError(f"request to FHIR server at {self.base_url} failed: {exc}") from exc
            log.debug(
                "%s %s -> %d in %.0f ms",
                method,
                response.request.url,
                response.status_code,
                (time.perf_counter() - started) * 1000,
            )
            if response.status_code >= 500 and method in _IDEMPOTENT and attempt < self.retries:
                await self._pause(attempt)
                continue
            if response.is_error:
                raise error_from_response(response)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise FhirError(
                f"FHIR server at {self.base_url} returned a body that is not a FHIR JSON object "
                f"({response.request.method} {response.request.url})"
            )
        return data

    # -- reads -----------------------------------------------------------------------------------

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """GET one resource by type and id."""
        path = f"{_check_type(resource_type)}/{_check_id(resource_id)}"
        return self._json(await self._request("GET", path))

    async def metadata(self) -> dict[str, Any]:
        """GET the server's CapabilityStatement (also a cheap liveness check)."""
        return self._json(await self._request("GET", "metadata"))

    def search(self, resource_type: str) -> Search:
        """Start an immutable search builder on one resource type."""
        return Search(self, _check_type(resource_type))

    async def get_bundle(
        self, path: str | httpx.URL, params: Sequence[tuple[str, str]] = ()
    ) -> dict[str, Any]:
        """GET a Bundle: a path relative to the base (with params), or an absolute URL on this server."""
        bundle = self._json(await self._request("GET", path, params=params))
        if bundle.get("resourceType") != "Bundle":
            raise FhirError(
                f"FHIR server at {self.base_url} answered {path} with a "
                f"{bundle.get('resourceType') or 'non-resource'} instead of a Bundle"
            )
        return bundle

    def _resolve_link(self, link: str) -> httpx.URL:
        url = self._base.join(link)
        if _origin(url) != _origin(self._base):
            raise FhirError(
                f"FHIR server at {self.base_url} sent a paging link to another origin ({link}); not followed"
            )
        return url

    async def paginate(
        self,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        limit: int | None = DEFAULT_LIMIT,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the resources of a searchset, following Bundle.link[next] up to `limit` and `max_pages`."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        if max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {max_pages}")
        if limit == 0:
            return
        bundle = await self.get_bundle(path, params)
        pages, yielded = 1, 0
        seen: set[str] = set()
        while True:
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, Mapping) else None
                if not isinstance(resource, dict) or (entry.get("search") or {}).get("mode") == "outcome":
                    continue
                if limit is not None and yielded >= limit:
                    log.info("stopped %s after the limit of %d resources; more remain", path, limit)
                    return
                yield resource
                yielded += 1
            link = _next_link(bundle)
            if link is None:
                return
            if limit is not None and yielded >= limit:
                log.info("stopped %s after the limit of %d resources; more pages remain", path, limit)
                return
            if pages >= max_pages:
                log.warning(
                    "stopped %s after %d pages (%d resources); more pages remain", path, pages, yielded
                )
                return
            url = self._resolve_link(link)
            if str(url) in seen:
                log.warning("paging link repeats %s; stopped", url)
                return
            seen.add(str(url))
            bundle = await self.get_bundle(url)
            pages += 1

    async def everything(
        self,
        patient_id: str,
        limit: int | None = DEFAULT_LIMIT,
        *,
        types: Iterable[str] | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> list[dict[str, Any]]:
        """The patient's record via `Patient/{id}/$everything`, following paging links, up to `limit`."""
        params = [("_type", ",".join(_check_type(t) for t in types))] if types else []
        path = f"Patient/{_check_id(patient_id)}/$everything"
        return [r async for r in self.paginate(path, params, limit=limit, max_pages=max_pages)]

    # -- writes ----------------------------------------------------------------------------------

    def _resource_type_of(self, resource: Mapping[str, Any]) -> str:
        if not isinstance(resource, Mapping):
            raise ValueError(f"a FHIR resource must be a JSON object, got {type(resource).__name__}")
        return _check_type(resource.get("resourceType"))  # type: ignore[arg-type]

    async def _written(self, response: httpx.Response, resource_type: str) -> dict[str, Any]:
        if response.content:
            data = self._json(response)
            if data.get("resourceType") == resource_type:
                return data
        location = response.headers.get("Location") or response.headers.get("Content-Location")
        ref = (
            reference_of(str(httpx.URL(location).copy_with(query=None, fragment=None))) if location else None
        )
        if ref is None or ref.resource_type is None or ref.id is None:
            raise FhirError(
                f"FHIR server at {self.base_url} accepted the {resource_type} but returned "
                "neither the resource nor a Location"
            )
        return await self.read(ref.resource_type, ref.id)

    async def create(
        self,
        resource: Mapping[str, Any],
        if_none_exist: str | Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """POST a new resource; `if_none_exist` (e.g. "identifier=sys|val") makes it a conditional create.

        Returns the stored resource (the existing one when the condition matched).
        """
        resource_type = self._resource_type_of(resource)
        headers = {"Prefer": "return=representation"}
        if if_none_exist is not None:
            query = _query_string(if_none_exist)
            if not query:
                raise ValueError("if_none_exist is empty")
            headers["If-None-Exist"] = query
        response = await self._request("POST", resource_type, body=resource, headers=headers)
        return await self._written(response, resource_type)

    async def update(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """PUT a resource at its own id (create-or-replace); returns the stored version."""
        resource_type = self._resource_type_of(resource)
        path = f"{resource_type}/{_check_id(resource.get('id'))}"  # type: ignore[arg-type]
        response = await self._request(
            "PUT", path, body=resource, headers={"Prefer": "return=representation"}
        )
        return await self._written(response, resource_type)

    async def transaction(
        self,
        bundle: Mapping[str, Any],
        *,
        prefer: Literal["minimal", "representation", "OperationOutcome"] = "minimal",
        timeout: float | _ClientDefault | None = _CLIENT_DEFAULT,
    ) -> dict[str, Any]:
        """POST a transaction or batch Bundle to the base URL; returns the response Bundle.

        `prefer="minimal"` keeps the response small (entry.response only); `timeout` overrides the client's.
        """
        if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
            raise ValueError("transaction() needs a Bundle resource")
        if bundle.get("type") not in ("transaction", "batch"):
            raise ValueError(
                f"transaction() needs a Bundle of type transaction or batch, not {bundle.get('type')!r}"
            )
        response = await self._request(
            "POST", self.base_url, body=bundle, headers={"Prefer": f"return={prefer}"}, timeout=timeout
        )
        return self._json(response)
