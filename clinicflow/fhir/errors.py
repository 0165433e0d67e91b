"""Errors raised by the FHIR layer; HTTP statuses and OperationOutcomes become exceptions here only.

::

    FhirError                       anything that went wrong talking FHIR
    ├── FhirConnectionError         the server could not be reached: refused, no route, no connection
    │                               within the timeout (names the URL and the reason)
    ├── FhirTimeoutError            connected, but the server did not answer within the timeout
    ├── FhirValidationError         a resource that is not valid FHIR R4 (lists each error with its path)
    └── FhirResponseError           the server answered with an error status (status, url, issues)
        ├── FhirBadRequestError     400, 422: the request or resource was rejected
        ├── FhirAuthError           401, 403: missing or insufficient credentials
        ├── FhirNotFoundError       404, 410: no such resource (or it was deleted)
        ├── FhirConflictError       409, 412: version conflict or failed precondition
        └── FhirServerError         5xx: the server failed

`error_from_response` maps an error `httpx.Response` to one of these; `error_from_transport` maps an
`httpx.TransportError`. Every message is a readable sentence naming the server or request URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import httpx

__all__ = [
    "FhirAuthError",
    "FhirBadRequestError",
    "FhirConflictError",
    "FhirConnectionError",
    "FhirError",
    "FhirNotFoundError",
    "FhirResponseError",
    "FhirServerError",
    "FhirTimeoutError",
    "FhirValidationError",
    "error_from_response",
    "error_from_transport",
    "outcome_issues",
]

_MAX_BODY_EXCERPT = 300


class FhirError(Exception):
    """Base of every error raised by `clinicflow.fhir`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FhirConnectionError(FhirError):
    """The FHIR server could not be reached: refused, unresolvable host, dropped connection."""

    def __init__(self, base_url: str, reason: str, *, url: str | None = None) -> None:
        super().__init__(f"FHIR server at {base_url} is unreachable: {reason}")
        self.base_url = base_url
        self.url = url or base_url
        self.reason = reason


class FhirTimeoutError(FhirError):
    """The FHIR server did not answer a request within the configured timeout."""

    def __init__(self, base_url: str, url: str, timeout: float | None, method: str = "GET") -> None:
        within = f" within {timeout:g} s" if timeout is not None else ""
        super().__init__(f"FHIR server at {base_url} did not answer{within} ({method} {url})")
        self.base_url = base_url
        self.url = url
        self.timeout = timeout
        self.method = method


class FhirValidationError(FhirError):
    """A resource that does not parse as FHIR R4; `errors` holds (path, message) pairs."""

    def __init__(self, resource_type: str | None, errors: Sequence[tuple[str, str]]) -> None:
        what = resource_type or "resource"
        listed = "; ".join(f"{path}: {msg}" for path, msg in errors) or "unknown error"
        super().__init__(f"Invalid FHIR R4 {what}: {listed}")
        self.resource_type = resource_type
        self.errors = list(errors)


class FhirResponseError(FhirError):
    """The server answered with an error status; `issues` are the OperationOutcome texts, if any."""

    def __init__(
        self,
        status: int,
        url: str,
        *,
        outcome: Mapping[str, Any] | None = None,
        message: str | None = None,
        method: str = "GET",
    ) -> None:
        self.status = status
        self.url = url
        self.method = method
        self.outcome = dict(outcome) if outcome is not None else None
        self.issues = outcome_issues(outcome) if outcome is not None else []
        super().__init__(message or _response_message(status, url, method, self.issues))


class FhirBadRequestError(FhirResponseError):
    """400 or 422: the server rejected the request or the resource."""


class FhirAuthError(FhirResponseError):
    """401 or 403: credentials missing, invalid, or not allowed to do this."""


class FhirNotFoundError(FhirResponseError):
    """404 or 410: the resource (or resource type, or operation) does not exist or was deleted."""


class FhirConflictError(FhirResponseError):
    """409 or 412: a version conflict or a failed conditional precondition."""


class FhirServerError(FhirResponseError):
    """5xx: the server failed to process a request it accepted."""


_BY_STATUS: dict[int, type[FhirResponseError]] = {
    400: FhirBadRequestError,
    422: FhirBadRequestError,
    401: FhirAuthError,
    403: FhirAuthError,
    404: FhirNotFoundError,
    410: FhirNotFoundError,
    409: FhirConflictError,
    412: FhirConflictError,
}


def _status_phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _response_message(status: int, url: str, method: str, details: Sequence[str]) -> str:
    head = f"FHIR server returned {_status_phrase(status)} for {method} {url}"
    return f"{head}: {'; '.join(details)}" if details else head


def _issue_text(issue: Mapping[str, Any]) -> str:
    raw_details = issue.get("details")
    details: Mapping[str, Any] = raw_details if isinstance(raw_details, Mapping) else {}
    raw_codings = details.get("coding")
    codings: list[Any] = raw_codings if isinstance(raw_codings, list) else []
    text = (
        issue.get("diagnostics")
        or details.get("text")
        or next((c.get("display") or c.get("code") for c in codings if isinstance(c, Mapping)), None)
        or issue.get("code")
        or "no details"
    )
    where = issue.get("expression") or issue.get("location")
    if isinstance(where, list) and where and str(where[0]) not in str(text):
        text = f"{text} (at {', '.join(str(w) for w in where)})"
    severity = issue.get("severity")
    return f"{severity}: {text}" if severity in ("fatal", "warning") else str(text)


def outcome_issues(outcome: Mapping[str, Any] | None) -> list[str]:
    """Readable texts of an OperationOutcome's issues (diagnostics, else details text or coding)."""
    if not outcome:
        return []
    issues = outcome.get("issue")
    if not isinstance(issues, list):
        return []
    return [_issue_text(i) for i in issues if isinstance(i, Mapping)]


def _body_excerpt(response: httpx.Response) -> str | None:
    ctype = response.headers.get("content-type", "")
    if "html" in ctype:
        return None
    text = re.sub(r"\s+", " ", response.text).strip()
    if not text:
        return None
    return text if len(text) <= _MAX_BODY_EXCERPT else text[:_MAX_BODY_EXCERPT] + "..."


def error_from_response(response: httpx.Response) -> FhirResponseError:
    """The one place an error status (and its OperationOutcome, if any) becomes a typed exception."""
    status = response.status_code
    url = str(response.request.url)
    method = response.request.method
    cls = _BY_STATUS.get(status) or (FhirServerError if status >= 500 else FhirResponseError)
    outcome: dict[str, Any] | None = None
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        outcome = body
    if outcome is None:
        excerpt = _body_excerpt(response)
        details = [excerpt] if excerpt else []
        return cls(status, url, method=method, message=_response_message(status, url, method, details))
    return cls(status, url, outcome=outcome, method=method)


def _reason(exc: BaseException) -> str:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.strerror:
            return cur.strerror[0].lower() + cur.strerror[1:]
        cur = cur.__cause__ or cur.__context__
    text = str(exc).strip()
    match = re.match(r"\[Errno -?\d+\]\s*(.+)", text)
    if match:
        text = match.group(1)
    if not text:
        return type(exc).__name__
    return text[0].lower() + text[1:]


def error_from_transport(
    exc: httpx.TransportError, base_url: str, timeout: float | None = None
) -> FhirConnectionError | FhirTimeoutError:
    """Map an httpx transport failure (no HTTP answer at all) to a typed error naming the server."""
    try:
        request: httpx.Request | None = exc.request
    except RuntimeError:
        request = None
    url = str(request.url) if request is not None else base_url
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return FhirTimeoutError(base_url, url, timeout, request.method if request is not None else "GET")
    if isinstance(exc, httpx.ConnectTimeout):
        within = f" within {timeout:g} s" if timeout is not None else ""
        return FhirConnectionError(base_url, f"no connection{within}", url=url)
    return FhirConnectionError(base_url, _reason(exc), url=url)
