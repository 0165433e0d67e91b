"""The audit trail: FHIR requests and tool calls recorded with who, which patient and run, what and when.

Outbound FHIR requests are audited by `AuditingTransport`, the transport of the service's one
`FhirClient`: it reads the run (or request) in context from a context variable set by the worker, so
every read, search, create and update is tied to the token that started the run. Rows export as FHIR R4
AuditEvent resources; answers carry a Provenance of the resources they cite.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from clinicflow.api.metrics import Metrics
from clinicflow.api.store import AuditRow, NewAudit, utcnow

__all__ = [
    "AuditScope",
    "AuditingTransport",
    "audit_event",
    "audit_scope",
    "cited_references",
    "current_scope",
    "provenance",
]

RUN_SYSTEM = "urn:clinicflow:run"
PRINCIPAL_SYSTEM = "urn:clinicflow:principal"
_MAX_REFS = 200
_PARSE_LIMIT = 64_000
_FULL_URL = re.compile(rb'"fullUrl"\s*:\s*"([^"]{1,2000})"')
_CITATION = re.compile(r"\[?\b([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})\b\]?")
_PATH = re.compile(r"^(?:([A-Z][A-Za-z]{1,63})(?:/([A-Za-z0-9\-.]{1,64}))?(?:/(\$[A-Za-z\-]+))?)?/?$")
_REST = {
    "fhir.read": ("read", "R"),
    "fhir.search": ("search-type", "R"),
    "fhir.operation": ("operation", "E"),
    "fhir.capabilities": ("capabilities", "R"),
    "fhir.create": ("create", "C"),
    "fhir.update": ("update", "U"),
    "fhir.delete": ("delete", "D"),
    "fhir.transaction": ("transaction", "E"),
}
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_ACTION_CODE = {"run.create": "C", "approval.decide": "U", "run.cancel": "U", "run.resume": "E"}


@dataclass
class AuditScope:
    """Who is acting and on what: set around a run's execution (or a request) for the FHIR transport."""

    actor: str
    actor_kind: str
    record: Callable[[NewAudit], None]
    flush: Callable[[], Awaitable[None]] | None = None
    run_id: str | None = None
    patient_id: str | None = None
    workflow: str | None = None

    def audit(
        self, action: str, *, outcome: str = "success", resources: Iterable[str] = (), **detail: Any
    ) -> None:
        """Buffer one audit row in this scope."""
        self.record(
            NewAudit(
                actor=self.actor,
                actor_kind=self.actor_kind,
                action=action,
                outcome=outcome,
                run_id=self.run_id,
                patient_id=self.patient_id,
                workflow=self.workflow,
                resources=list(resources)[:_MAX_REFS],
                detail=detail,
            )
        )


current_scope: contextvars.ContextVar[AuditScope | None] = contextvars.ContextVar(
    "clinicflow_audit_scope", default=None
)


@contextlib.contextmanager
def audit_scope(scope: AuditScope) -> Iterator[AuditScope]:
    """Make `scope` the audit scope of this task (and the tasks it starts) for the block."""
    token = current_scope.set(scope)
    try:
        yield scope
    finally:
        current_scope.reset(token)


def cited_references(text: str) -> list[str]:
    """`Type/id` references found in text such as `... [Observation/abc]`, without repeats."""
    return list(dict.fromkeys(f"{m.group(1)}/{m.group(2)}" for m in _CITATION.finditer(text or "")))


def _classify(method: str, relative: str) -> tuple[str, list[str]]:
    """The audit action of a FHIR request and the resources its URL names."""
    path = relative.split("?", 1)[0].strip("/")
    match = _PATH.match(path)
    rtype, rid, operation = match.groups() if match else (None, None, None)
    refs = [f"{rtype}/{rid}"] if rtype and rid else []
    if method == "GET":
        if path == "metadata":
            return "fhir.capabilities", []
        if operation:
            return "fhir.operation", refs
        return ("fhir.read" if rid else "fhir.search"), refs
    if method == "POST":
        if not path:
            return "fhir.transaction", []
        if operation or path.endswith("_search"):
            return ("fhir.operation" if operation else "fhir.search"), refs
        return "fhir.create", refs
    if method == "PUT":
        return "fhir.update", refs
    if method == "DELETE":
        return "fhir.delete", refs
    return f"fhir.{method.lower()}", refs


def _returned(body: Mapping[str, Any]) -> list[str]:
    if body.get("resourceType") == "Bundle":
        out = []
        for entry in body.get("entry") or []:
            resource = (entry or {}).get("resource") or {}
            if resource.get("resourceType") and resource.get("id"):
                out.append(f"{resource['resourceType']}/{resource['id']}")
            elif (entry or {}).get("response", {}).get("location"):
                out += cited_references(entry["response"]["location"])
        return out[:_MAX_REFS]
    if body.get("resourceType") and body.get("id") and body.get("resourceType") != "OperationOutcome":
        return [f"{body['resourceType']}/{body['id']}"]
    return []


def _returned_refs(body: bytes) -> list[str]:
    """Resources a response carries: entry fullUrls of a Bundle (found without parsing the whole, often
    large, body a second time), else the id of a small single resource."""
    urls = _FULL_URL.findall(body)
    if urls:
        return list(
            dict.fromkeys(r for u in urls[:_MAX_REFS] for r in cited_references(u.decode(errors="replace")))
        )
    if len(body) > _PARSE_LIMIT:
        return []
    with contextlib.suppress(ValueError):
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            return _returned(parsed)
    return []


class AuditingTransport(httpx.AsyncBaseTransport):
    """Wraps a transport: every request to the FHIR base URL made inside an audit scope is recorded."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, base_url: str, metrics: Metrics | None = None
    ) -> None:
        self.inner = inner
        self.base = base_url.rstrip("/") + "/"
        self.metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        scope = current_scope.get()
        if not (url + "/").startswith(self.base) and not url.startswith(self.base):
            return await self.inner.handle_async_request(request)
        action, refs = _classify(request.method, url[len(self.base) :] if url.startswith(self.base) else "")
        query = request.url.query.decode() if request.url.query else ""
        try:
            response = await self.inner.handle_async_request(request)
        except Exception as exc:
            if self.metrics is not None:
                self.metrics.fhir_requests.labels(request.method, "error").inc()
            if scope is not None:
                scope.audit(
                    action,
                    outcome="failure",
                    resources=refs,
                    method=request.method,
                    path=request.url.path,
                    query=query,
                    error=f"{type(exc).__name__}: {exc}",
                )
                if request.method != "GET" and scope.flush is not None:
                    await scope.flush()
            raise
        if self.metrics is not None:
            self.metrics.fhir_requests.labels(request.method, str(response.status_code)).inc()
        if scope is None:
            return response
        returned: list[str] = []
        if response.status_code < 400 and "json" in response.headers.get("content-type", ""):
            returned = _returned_refs(await response.aread())
        if not returned and response.headers.get("location"):
            returned = cited_references(response.headers["location"])
        scope.audit(
            action,
            outcome="success" if response.status_code < 400 else "failure",
            resources=list(dict.fromkeys([*refs, *returned])),
            method=request.method,
            path=request.url.path,
            query=query,
            status=response.status_code,
        )
        if request.method != "GET" and scope.flush is not None:
            await scope.flush()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)]}


def _event_kind(row: AuditRow) -> tuple[dict[str, str], dict[str, str], str]:
    """The AuditEvent's type, subtype and action code: a FHIR REST interaction, or an API action."""
    rest = _REST.get(row.action)
    if rest is not None:
        event_type = _coding(
            "http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "RESTful Operation"
        )
        return event_type, _coding("http://hl7.org/fhir/restful-interaction", rest[0]), rest[1]
    event_type = _coding("http://dicom.nema.org/resources/ontology/DCM", "110100", "Application Activity")
    return event_type, _coding("urn:clinicflow:audit-action", row.action), _ACTION_CODE.get(row.action, "E")


def _run_entity(row: AuditRow, run_id: str) -> dict[str, Any]:
    """The run as an entity (a Job), with the workflow and the row's detail."""
    details = [{"type": "workflow", "valueString": row.workflow}] if row.workflow else []
    details += [
        {"type": str(k), "valueString": str(v)[:1000]}
        for k, v in sorted(row.detail.items())
        if v not in (None, "", [], {})
    ]
    entity: dict[str, Any] = {
        "what": {"identifier": {"system": RUN_SYSTEM, "value": run_id}, "display": f"run {run_id}"},
        "type": _coding(_ENTITY_TYPE, "2", "System Object"),
        "role": _coding(_OBJECT_ROLE, "20", "Job"),
    }
    if details:
        entity["detail"] = details
    return entity


def _entities(row: AuditRow) -> list[dict[str, Any]]:
    """The patient, the other resources and the run an audit row concerns."""
    entities: list[dict[str, Any]] = []
    if row.patient_id:
        entities.append(
            {
                "what": {"reference": f"Patient/{row.patient_id}"},
                "type": _coding(_ENTITY_TYPE, "1", "Person"),
                "role": _coding(_OBJECT_ROLE, "1", "Patient"),
            }
        )
    entities += [
        {"what": {"reference": ref}, "type": _coding(_ENTITY_TYPE, "2", "System Object")}
        for ref in row.resources
        if ref != f"Patient/{row.patient_id}"
    ]
    if row.run_id:
        entities.append(_run_entity(row, row.run_id))
    return entities


def audit_event(row: AuditRow) -> dict[str, Any]:
    """The audit row as a FHIR R4 AuditEvent resource (validated with fhir.resources R4B)."""
    from fhir.resources.R4B.auditevent import AuditEvent

    event_type, subtype, action = _event_kind(row)
    author = _concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "AUT", "author")
    server = _coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"cf-{row.id}",
        "type": event_type,
        "subtype": [subtype],
        "action": action,
        "recorded": row.at.isoformat(),
        "outcome": {"success": "0", "denied": "4", "failure": "8"}.get(row.outcome, "4"),
        "agent": [
            {
                "type": author,
                "who": {"identifier": {"system": PRINCIPAL_SYSTEM, "value": row.actor}, "display": row.actor},
                "altId": row.actor_kind,
                "requestor": True,
            }
        ],
        "source": {"observer": {"display": "clinicflow API"}, "type": [server]},
    }
    if row.outcome != "success" and row.detail.get("error"):
        resource["outcomeDesc"] = str(row.detail["error"])[:1000]
    entities = _entities(row)
    if entities:
        resource["entity"] = entities
    AuditEvent.model_validate(resource)
    return resource


def provenance(
    run_id: str, workflow: str, actor: str, citations: Sequence[str], *, recorded: str | None = None
) -> dict[str, Any]:
    """A FHIR R4 Provenance of an answer: the run as target, each cited resource as a source entity."""
    from fhir.resources.R4B.provenance import Provenance

    resource = {
        "resourceType": "Provenance",
        "target": [
            {"identifier": {"system": RUN_SYSTEM, "value": run_id}, "display": f"answer of run {run_id}"}
        ],
        "recorded": recorded or utcnow().isoformat(),
        "activity": {
            "text": f"answer derived by the clinicflow {workflow} workflow from the cited resources"
        },
        "agent": [
            {
                "type": _concept(_PARTICIPANT, "assembler", "Assembler"),
                "who": {"display": f"clinicflow {workflow}"},
            },
            {
                "type": _concept(_PARTICIPANT, "author", "Author"),
                "who": {"identifier": {"system": PRINCIPAL_SYSTEM, "value": actor}},
            },
        ],
        "entity": [{"role": "source", "what": {"reference": ref}} for ref in dict.fromkeys(citations)],
    }
    if not resource["entity"]:
        del resource["entity"]
    Provenance.model_validate(resource)
    return resource
