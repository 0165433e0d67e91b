"""The patient's record for a CDS Hooks call: what the client prefetched, and what it left out read from
its `fhirServer` (with its `fhirAuthorization`) or from the service's own FHIR server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from clinicflow.api.cds_cards import cite
from clinicflow.api.cds_monitoring import monitoring_codes
from clinicflow.api.cds_schemas import CdsRequest, FhirAuthorization, OrderSignContext
from clinicflow.api.services import Services
from clinicflow.fhir import FhirClient, FhirError, FhirNotFoundError
from clinicflow.fhir.references import belongs_to_patient, reference_key

__all__ = ["PREFETCH", "SEARCHES", "SEARCH_PARAMS", "CdsRequestError", "PrefetchReader", "draft_orders"]

_PATIENT = "{{context.patientId}}"
SEARCHES = {
    "conditions": "Condition",
    "medications": "MedicationRequest",
    "allergies": "AllergyIntolerance",
    "observations": "Observation",
}
# Observations: only the results the monitoring rules read.
SEARCH_PARAMS = {"observations": {"code": monitoring_codes()}}
PREFETCH = {"patient": f"Patient/{_PATIENT}"} | {
    key: f"{rtype}?patient={_PATIENT}" + "".join(f"&{k}={v}" for k, v in SEARCH_PARAMS.get(key, {}).items())
    for key, rtype in SEARCHES.items()
}
_MAX_FETCH = 1000


class CdsRequestError(Exception):
    """A hook request the service cannot answer; `status` is the HTTP status (400, 404 or 412)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _bundle_resources(key: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, Mapping) or value.get("resourceType") != "Bundle":
        raise CdsRequestError(400, f"prefetch.{key} must be a FHIR Bundle (the result of {PREFETCH[key]})")
    return [
        e["resource"]
        for e in value.get("entry") or []
        if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)
    ]


def _check_token(auth: FhirAuthorization, patient_id: str) -> None:
    """The client's FHIR token must be for this patient when it is patient-scoped."""
    if auth.patient is not None and auth.patient != patient_id:
        raise CdsRequestError(
            400,
            f"fhirAuthorization is for patient {auth.patient!r}, but context.patientId is {patient_id!r}",
        )
    scopes = auth.scope.split()
    if auth.patient is None and scopes and all(s.startswith("patient/") for s in scopes):
        raise CdsRequestError(400, "fhirAuthorization has patient/ scopes but names no patient")


@dataclass
class PrefetchReader:
    """Where keys missing from prefetch are read: the client's server or the service's own."""

    svc: Services
    request: CdsRequest
    budget_s: float

    def _allowed_servers(self) -> set[str]:
        own = self.svc.deps.fhir.base_url if self.svc.deps.fhir is not None else None
        listed = self.svc.settings.cds_fhir_server_list()
        return {u.rstrip("/") for u in [own, *listed] if u}

    @contextlib.asynccontextmanager
    async def client(self, patient_id: str) -> AsyncIterator[FhirClient]:
        own = self.svc.deps.fhir
        if self.request.fhirServer is None:
            if own is None:
                raise CdsRequestError(
                    412, "the request has no prefetch and no fhirServer, and this service has no FHIR server"
                )
            yield own
            return
        server = str(self.request.fhirServer).rstrip("/")
        if server not in self._allowed_servers():
            raise CdsRequestError(
                400,
                f"fhirServer {server} is not a server this service reads; "
                "list it in CLINICFLOW_CDS_FHIR_SERVERS",
            )
        auth = self.request.fhirAuthorization
        if auth is None:
            if own is not None and own.base_url.rstrip("/") == server:
                yield own
                return
            raise CdsRequestError(412, f"reading {server} needs fhirAuthorization (an access token)")
        _check_token(auth, patient_id)
        async with FhirClient(server, token=auth.access_token, timeout=self.budget_s, retries=1) as client:
            yield client

    async def record(self, keys: Iterable[str], patient_id: str) -> dict[str, list[dict[str, Any]]]:
        """The prefetch keys' resources of this patient (others dropped), reading what is missing."""
        given = self.request.prefetch or {}
        found: dict[str, list[dict[str, Any]]] = {}
        missing = []
        for key in keys:
            if given.get(key) is None:
                missing.append(key)
            elif key == "patient":
                patient = given[key]
                if not isinstance(patient, Mapping) or patient.get("resourceType") != "Patient":
                    raise CdsRequestError(400, "prefetch.patient must be a FHIR Patient resource")
                if patient.get("id") != patient_id:
                    raise CdsRequestError(
                        400, f"prefetch.patient is Patient/{patient.get('id')}, not Patient/{patient_id}"
                    )
            else:
                found[key] = _bundle_resources(key, given[key])
        base = str(self.request.fhirServer) if self.request.fhirServer else None
        if missing:
            async with self.client(patient_id) as client:
                base = client.base_url
                try:
                    if "patient" in missing:
                        await client.read("Patient", patient_id)
                    for key in missing:
                        if key != "patient":
                            search = client.search(SEARCHES[key]).where(
                                patient=patient_id, **SEARCH_PARAMS.get(key, {})
                            )
                            found[key] = await search.all(limit=_MAX_FETCH)
                except FhirNotFoundError:
                    raise CdsRequestError(404, f"no Patient/{patient_id} on {client.base_url}") from None
                except FhirError as exc:
                    raise CdsRequestError(502, f"reading the FHIR server failed: {exc}") from None
        return {
            key: [
                r
                for r in resources
                if r.get("resourceType") == SEARCHES[key] and belongs_to_patient(r, patient_id, base)
            ]
            for key, resources in found.items()
        }


def draft_orders(context: OrderSignContext) -> list[Mapping[str, Any]]:
    """The MedicationRequest / ServiceRequest drafts; 400 for one that names another patient."""
    orders = []
    for entry in context.draftOrders.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(resource, Mapping):
            raise CdsRequestError(400, "every context.draftOrders entry needs a resource")
        if resource.get("resourceType") not in ("MedicationRequest", "ServiceRequest"):
            continue
        subject = reference_key(resource.get("subject"))
        if subject is not None and subject != f"Patient/{context.patientId}":
            raise CdsRequestError(
                400,
                f"draft order {cite(resource)} is for {subject}, not Patient/{context.patientId}",
            )
        orders.append(resource)
    return orders
