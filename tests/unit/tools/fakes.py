"""An in-memory FHIR server behind `httpx.MockTransport`, enough for the FHIR tools' searches and reads."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx

from clinicflow.fhir import FhirClient

BASE = "http://fhir.test/fhir"

_PATIENT_PARAMS = ("subject", "patient", "beneficiary")
_CODE_PARAMS = {"code", "vaccine-code", "type", "category"}
_CODE_FIELDS = ("code", "vaccineCode", "medicationCodeableConcept", "type", "category", "procedureCode")


def _refers_to(resource: dict[str, Any], patient_id: str) -> bool:
    if resource.get("resourceType") == "Patient":
        return resource.get("id") == patient_id
    return any(
        (resource.get(name) or {}).get("reference") == f"Patient/{patient_id}" for name in _PATIENT_PARAMS
    )


def _codings(resource: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in _CODE_FIELDS:
        value = resource.get(name)
        for concept in value if isinstance(value, list) else [value]:
            if isinstance(concept, dict):
                out.extend(concept.get("coding") or [])
    return out


def _token_matches(resource: dict[str, Any], token: str) -> bool:
    system, sep, code = token.rpartition("|")
    return any(c.get("code") == code and (not sep or c.get("system") == system) for c in _codings(resource))


def _outcome(status: int, text: str) -> httpx.Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }
    return httpx.Response(status, json=body)


class FakeFhirServer:
    """Serves reads, searches (patient and token filters only) and `$everything` from a dict of resources.

    `leak` resources are appended to every search and `$everything` answer, as a faulty server might do;
    `fail_with` makes every request answer that HTTP status; `everything = False` turns the operation off.
    """

    def __init__(self, resources: Iterable[dict[str, Any]] = ()) -> None:
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.leak: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self.everything = True
        self.requests: list[httpx.Request] = []
        for resource in resources:
            self.add(resource)

    def add(self, resource: dict[str, Any]) -> None:
        self.store[(resource["resourceType"], resource["id"])] = resource

    def client(self) -> FhirClient:
        """A real FhirClient talking to this fake through a MockTransport (no retries, no backoff)."""
        return FhirClient(BASE, transport=httpx.MockTransport(self.handle), retries=0, backoff=0)

    def searches(self, resource_type: str) -> list[httpx.QueryParams]:
        """Query params of the searches received for one type."""
        return [r.url.params for r in self.requests if r.url.path == f"/fhir/{resource_type}"]

    def _bundle(self, resources: list[dict[str, Any]]) -> httpx.Response:
        entries = [{"resource": r, "search": {"mode": "match"}} for r in resources]
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_with is not None:
            return _outcome(self.fail_with, "simulated failure")
        parts = request.url.path.removeprefix("/fhir/").split("/")
        if len(parts) == 3 and parts[0] == "Patient" and parts[2] == "$everything":
            if not self.everything:
                return _outcome(404, "Unknown operation $everything")
            if ("Patient", parts[1]) not in self.store:
                return _outcome(404, f"Patient/{parts[1]} not found")
            found = [r for r in self.store.values() if _refers_to(r, parts[1])]
            return self._bundle(found + self.leak)
        if len(parts) == 2:
            resource = self.store.get((parts[0], parts[1]))
            if resource is None:
                return _outcome(404, f"{parts[0]}/{parts[1]} not found")
            return httpx.Response(200, content=json.dumps(resource).encode())
        if len(parts) == 1:
            rtype = parts[0]
            found = [r for r in self.store.values() if r["resourceType"] == rtype]
            for name, value in request.url.params.multi_items():
                if name in ("patient", "subject"):
                    found = [r for r in found if _refers_to(r, value.removeprefix("Patient/"))]
                elif name == "_id":
                    found = [r for r in found if r["id"] in value.split(",")]
                elif name in _CODE_PARAMS:
                    found = [r for r in found if _token_matches(r, value)]
            return self._bundle(found + [r for r in self.leak if r["resourceType"] == rtype])
        return _outcome(400, f"unsupported request {request.url}")
