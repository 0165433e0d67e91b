"""SMART on FHIR backend-services authorization for the outbound FHIR connection, as an `httpx.Auth`.

The client proves its identity with a short-lived JWT signed by its private key (`private_key_jwt`,
RS384 or ES384), exchanges it at the token endpoint for an access token (`client_credentials` grant),
caches the token until shortly before it expires, and fetches a new one when the FHIR server answers 401.
The token endpoint comes from configuration or from `{fhir}/.well-known/smart-configuration`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Generator
from pathlib import Path
from typing import Any

import httpx
import jwt

__all__ = ["SmartAuthError", "SmartBackendAuth", "smart_auth_from_settings"]

_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_REFRESH_MARGIN_S = 60.0
_ASSERTION_LIFETIME_S = 300


class SmartAuthError(httpx.HTTPError):
    """The token endpoint could not be found or refused the client; the message says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class SmartBackendAuth(httpx.Auth):
    """Bearer tokens from a SMART backend-services token endpoint, fetched and refreshed as needed."""

    requires_response_body = True

    def __init__(
        self,
        *,
        client_id: str,
        private_key: str | bytes,
        scopes: str = "system/*.rs",
        token_url: str | None = None,
        fhir_base_url: str | None = None,
        key_id: str | None = None,
        algorithm: str = "RS384",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if algorithm not in ("RS384", "ES384"):
            raise ValueError(f"SMART backend services sign with RS384 or ES384, not {algorithm!r}")
        if token_url is None and fhir_base_url is None:
            raise ValueError("give the token URL or the FHIR base URL to discover it from")
        self.client_id = client_id
        self.private_key = private_key
        self.scopes = scopes
        self.token_url = token_url
        self.fhir_base_url = fhir_base_url.rstrip("/") if fhir_base_url else None
        self.key_id = key_id
        self.algorithm = algorithm
        self.timeout = timeout
        self.transport = transport
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    def client_assertion(self, audience: str) -> str:
        """The signed JWT that authenticates this client at `audience` (the token URL)."""
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "exp": now + _ASSERTION_LIFETIME_S,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        headers = {"typ": "JWT", **({"kid": self.key_id} if self.key_id else {})}
        return jwt.encode(claims, self.private_key, algorithm=self.algorithm, headers=headers)

    def _valid(self) -> bool:
        return self._token is not None and time.monotonic() < self._expires - _REFRESH_MARGIN_S

    def _discovery_request(self) -> httpx.Request:
        assert self.fhir_base_url is not None
        return httpx.Request(
            "GET",
            f"{self.fhir_base_url}/.well-known/smart-configuration",
            headers={"Accept": "application/json"},
        )

    def _read_discovery(self, response: httpx.Response) -> str:
        if response.status_code != 200:
            raise SmartAuthError(
                f"no SMART configuration at {response.request.url} (HTTP {response.status_code}); "
                "set the token URL explicitly"
            )
        endpoint = response.json().get("token_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise SmartAuthError(f"SMART configuration at {response.request.url} names no token_endpoint")
        return endpoint

    def _token_request(self, token_url: str) -> httpx.Request:
        return httpx.Request(
            "POST",
            token_url,
            data={
                "grant_type": "client_credentials",
                "scope": self.scopes,
                "client_assertion_type": _ASSERTION_TYPE,
                "client_assertion": self.client_assertion(token_url),
            },
            headers={"Accept": "application/json"},
        )

    def _read_token(self, response: httpx.Response) -> None:
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not body.get("access_token"):
            reason = body.get("error_description") or body.get("error") or response.text[:200]
            raise SmartAuthError(
                f"token endpoint {response.request.url} refused client {self.client_id!r} "
                f"(HTTP {response.status_code}): {reason}"
            )
        self._token = str(body["access_token"])
        self._expires = time.monotonic() + float(body.get("expires_in") or 300)

    def _token_flow(self) -> Generator[httpx.Request, httpx.Response, None]:
        if self.token_url is None:
            self.token_url = self._read_discovery((yield self._discovery_request()))
        self._read_token((yield self._token_request(self.token_url)))

    def _authorized(self, request: httpx.Request) -> httpx.Request:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._valid():
            yield from self._token_flow()
        response = yield self._authorized(request)
        if response.status_code == 401:
            yield from self._token_flow()
            yield self._authorized(request)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self._valid():
            async with self._lock:
                if not self._valid():
                    flow = self._token_flow()
                    await self._drive(flow)
        response = yield self._authorized(request)
        if response.status_code == 401:
            async with self._lock:
                await self._drive(self._token_flow())
            yield self._authorized(request)

    async def _drive(self, flow: Generator[httpx.Request, httpx.Response, None]) -> None:
        """Run a token flow with a short-lived client of its own (so it is never audited as FHIR)."""
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
            try:
                request = next(flow)
                while True:
                    response = await client.send(request)
                    await response.aread()
                    request = flow.send(response)
            except StopIteration:
                return
            except httpx.TransportError as exc:
                raise SmartAuthError(f"cannot reach the SMART token endpoint: {exc}") from exc


def smart_auth_from_settings(settings: Any, fhir_base_url: str) -> SmartBackendAuth | None:
    """The SMART auth the settings configure (`fhir_smart_client_id` and `fhir_smart_key`), or None."""
    if not settings.fhir_smart_client_id:
        return None
    if settings.fhir_smart_key is None:
        raise ValueError(
            "CLINICFLOW_FHIR_SMART_KEY (a PEM private key file) is needed with a SMART client id"
        )
    return SmartBackendAuth(
        client_id=settings.fhir_smart_client_id,
        private_key=Path(settings.fhir_smart_key).read_bytes(),
        scopes=settings.fhir_smart_scopes,
        token_url=settings.fhir_smart_token_url,
        fhir_base_url=fhir_base_url,
        key_id=settings.fhir_smart_key_id,
        algorithm=settings.fhir_smart_algorithm,
    )
