"""CDS Hooks 2.0 services, mounted in the API at `/cds-services`.

- `clinicflow-patient-view` (hook `patient-view`): cards for the active problems, current medications
  and allergies of the patient whose chart is opened, each line citing its `[Type/id]`, and a warning
  for each test a shipped guideline calls for that is overdue (`cds_monitoring.py`), citing the
  Condition, the last result and the guideline section.
- `clinicflow-order-sign` (hook `order-sign`): checks the draft orders (`context.draftOrders`, a Bundle
  of MedicationRequest / ServiceRequest) against the patient's allergies and active medications, and
  returns a warning card, with a suggestion to remove the draft, for each conflict.

Data comes from `prefetch` where the client sent it; a key it left out (or sent as null) is read from
`fhirServer` with `fhirAuthorization`'s token, else from the service's own FHIR server. Calls take the
API's bearer tokens: `read` and a patient scope covering `context.patientId`. A call that needs longer
than `cds_time_budget_s` answers with a card saying so, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ValidationError

from clinicflow.api.access import Caller, check_patient, require_read
from clinicflow.api.cds_monitoring import Overdue, monitoring_codes, overdue_monitoring
from clinicflow.api.cds_schemas import (
    SUMMARY_MAX,
    Action,
    Card,
    CdsRequest,
    CdsResponse,
    CdsService,
    Discovery,
    FhirAuthorization,
    OrderSignContext,
    PatientViewContext,
    Source,
    Suggestion,
)
from clinicflow.api.services import Services, services
from clinicflow.fhir import FhirClient, FhirError, FhirNotFoundError
from clinicflow.fhir.references import belongs_to_patient, reference_key
from clinicflow.tools.render import concept_text, render_resource, resource_date

__all__ = ["SERVICES", "cds_router", "order_sign_cards", "patient_view_cards"]

_PATIENT = "{{context.patientId}}"
_SEARCHES = {
    "conditions": "Condition",
    "medications": "MedicationRequest",
    "allergies": "AllergyIntolerance",
    "observations": "Observation",
}
# Observations: only the results the monitoring rules read.
_SEARCH_PARAMS = {"observations": {"code": monitoring_codes()}}
_PREFETCH = {"patient": f"Patient/{_PATIENT}"} | {
    key: f"{rtype}?patient={_PATIENT}" + "".join(f"&{k}={v}" for k, v in _SEARCH_PARAMS.get(key, {}).items())
    for key, rtype in _SEARCHES.items()
}
SERVICES: dict[str, CdsService] = {
    "clinicflow-patient-view": CdsService(
        hook="patient-view",
        id="clinicflow-patient-view",
        title="clinicflow record summary",
        description="Active problems, current medications, allergies and overdue monitoring the guidelines "
        "name, each citing its FHIR resources and guideline.",
        prefetch={
            k: _PREFETCH[k] for k in ("patient", "conditions", "medications", "allergies", "observations")
        },
        usageRequirements="A bearer token with `read` and a patient scope for context.patientId.",
    ),
    "clinicflow-order-sign": CdsService(
        hook="order-sign",
        id="clinicflow-order-sign",
        title="clinicflow order check",
        description="Checks draft orders against the patient's allergies and active medications.",
        prefetch={k: _PREFETCH[k] for k in ("patient", "medications", "allergies")},
        usageRequirements="A bearer token with `read` and a patient scope for context.patientId.",
    ),
}
_MAX_LINES = 20
_MAX_FETCH = 1000
_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
_NOT_TRUE = {"refuted", "entered-in-error"}
# Words of an allergy's substance name that say nothing about the substance itself.
_GENERIC_WORDS = frozenset(
    {
        "allergy", "allergic", "allergen", "disposition", "finding", "substance", "product", "medicinal",
        "containing", "intolerance", "drug", "drugs", "agent", "agents", "preparation", "oral", "tablet",
    }
)  # fmt: skip
_WORD = re.compile(r"[a-z][a-z0-9\-]{3,}")
cds_router = APIRouter()
_M = TypeVar("_M", bound=BaseModel)


class CdsRequestError(Exception):
    """A hook request the service cannot answer; `status` is the HTTP status (400, 404 or 412)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


# ---------------------------------------------------------------------------------------------- cards


def _summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) < SUMMARY_MAX else text[: SUMMARY_MAX - 2].rstrip() + "…"


def _coded(resource: Mapping[str, Any], path: str) -> str:
    value = resource.get(path)
    return concept_text(value) or "unnamed"


def _status_code(concept: Any) -> str | None:
    for coding in (concept or {}).get("coding") or []:
        if isinstance(coding, Mapping) and coding.get("code"):
            return str(coding["code"])
    return None


def active_conditions(resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [
        r
        for r in resources
        if _status_code(r.get("clinicalStatus")) in _ACTIVE_CLINICAL
        and _status_code(r.get("verificationStatus")) not in _NOT_TRUE
    ]


def active_medications(resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in resources if r.get("status") == "active" and r.get("intent") != "proposal"]


def active_allergies(resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Allergies not resolved, refuted or entered in error (no clinical status counts as active)."""
    return [
        r
        for r in resources
        if _status_code(r.get("clinicalStatus")) in (None, "active")
        and _status_code(r.get("verificationStatus")) not in _NOT_TRUE
    ]


def _newest_first(resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(resources, key=lambda r: resource_date(r) or "", reverse=True)


def _lines(resources: list[Mapping[str, Any]]) -> str:
    shown = [f"- {render_resource(r)}" for r in resources[:_MAX_LINES]]
    if len(resources) > _MAX_LINES:
        shown.append(f"- … and {len(resources) - _MAX_LINES} more")
    return "\n".join(shown)


def _source(resource_type: str) -> Source:
    return Source(label=f"clinicflow, from the patient's FHIR {resource_type} resources")


def _list_card(title: str, resources: list[Mapping[str, Any]], path: str, rtype: str) -> Card | None:
    if not resources:
        return None
    names = ", ".join(dict.fromkeys(_coded(r, path) for r in resources))
    return Card(
        summary=_summary(f"{len(resources)} {title}: {names}"),
        detail=_lines(resources),
        indicator="info",
        source=_source(rtype),
    )


def _overdue_card(item: Overdue) -> Card:
    when = f"last {item.last_day.isoformat()}" if item.last_day else "none in the record"
    return Card(
        summary=_summary(f"{item.rule.name} overdue ({when}; every {item.rule.interval_days} days)"),
        detail=item.line(),
        indicator="warning",
        source=Source(label=item.rule.citation().removeprefix("guideline: ")),
    )


def patient_view_cards(record: Mapping[str, list[dict[str, Any]]], today: date | None = None) -> list[Card]:
    """Cards for the chart: active problems, active medications, allergies (empty lists get no card),
    then one per test the guidelines call for that is overdue."""
    problems = _newest_first(active_conditions(record.get("conditions", [])))
    medications = _newest_first(active_medications(record.get("medications", [])))
    allergies = _newest_first(active_allergies(record.get("allergies", [])))
    cards = [
        _list_card("active problems", problems, "code", "Condition"),
        _list_card("active medications", medications, "medicationCodeableConcept", "MedicationRequest"),
    ]
    allergy_card = _list_card("allergies", allergies, "code", "AllergyIntolerance")
    if allergy_card is not None and any(a.get("criticality") == "high" for a in allergies):
        allergy_card.indicator = "warning"
    cards.append(allergy_card)
    overdue = overdue_monitoring(problems, record.get("observations", []), today)
    return [c for c in cards if c is not None] + [_overdue_card(item) for item in overdue]


def _codings(concepts: Iterable[Any]) -> set[tuple[str, str]]:
    return {
        (str(c.get("system") or ""), str(c["code"]))
        for concept in concepts
        if isinstance(concept, Mapping)
        for c in concept.get("coding") or []
        if isinstance(c, Mapping) and c.get("code")
    }


def _names(concepts: Iterable[Any]) -> set[str]:
    """Lower-case words (4+ letters) of a concept's text and displays."""
    words: set[str] = set()
    for concept in concepts:
        if not isinstance(concept, Mapping):
            continue
        texts = [concept.get("text")] + [c.get("display") for c in concept.get("coding") or []]
        for text in texts:
            if isinstance(text, str):
                words |= set(_WORD.findall(text.lower()))
    return words


def _order_concept(order: Mapping[str, Any]) -> Any:
    if order.get("resourceType") == "MedicationRequest":
        return order.get("medicationCodeableConcept")
    return order.get("code")


def _allergy_concepts(allergy: Mapping[str, Any]) -> list[Any]:
    reactions = [r for r in allergy.get("reaction") or [] if isinstance(r, Mapping)]
    return [allergy.get("code"), *(r.get("substance") for r in reactions)]


def _allergy_match(allergy: Mapping[str, Any], order: Mapping[str, Any]) -> str | None:
    """How the order matches the allergy: a shared code, or a substance word in the order's name."""
    allergens = _allergy_concepts(allergy)
    ordered = [_order_concept(order)]
    shared = _codings(allergens) & _codings(ordered)
    if shared:
        system, code = sorted(shared)[0]
        return f"the same code {system}|{code}" if system else f"the same code {code}"
    common = (_names(allergens) - _GENERIC_WORDS) & _names(ordered)
    if common:
        return f"the substance name {sorted(common)[0]!r}"
    return None


def _same_medication(current: Mapping[str, Any], order: Mapping[str, Any]) -> bool:
    concepts = [current.get("medicationCodeableConcept")], [order.get("medicationCodeableConcept")]
    if _codings(concepts[0]) & _codings(concepts[1]):
        return True
    text = [(concept_text(c[0]) or "").strip().lower() for c in concepts]
    return bool(text[0]) and text[0] == text[1]


def _remove_draft(order: Mapping[str, Any]) -> tuple[list[Suggestion] | None, str | None]:
    """A suggestion to drop the draft order, when it has an id the client can act on."""
    if not order.get("id"):
        return None, None
    target = f"{order['resourceType']}/{order['id']}"
    action = Action(type="delete", description=f"Remove the draft order {target}", resourceId=target)
    return [Suggestion(label="Remove this draft order", isRecommended=True, actions=[action])], "at-most-one"


def _cite(resource: Mapping[str, Any]) -> str:
    return f"[{resource.get('resourceType')}/{resource.get('id', 'draft')}]"


def order_sign_cards(
    orders: list[Mapping[str, Any]], record: Mapping[str, list[dict[str, Any]]]
) -> list[Card]:
    """A card per conflict of a draft order with an allergy, or with a medication already active."""
    allergies = active_allergies(record.get("allergies", []))
    medications = active_medications(record.get("medications", []))
    cards: list[Card] = []
    for order in orders:
        ordered = concept_text(_order_concept(order)) or f"unnamed {order.get('resourceType')}"
        suggestions, behaviour = _remove_draft(order)
        for allergy in allergies:
            how = _allergy_match(allergy, order)
            if how is None:
                continue
            allergen = _coded(allergy, "code")
            reactions = [
                concept_text(m)
                for r in allergy.get("reaction") or []
                for m in (r.get("manifestation") or [] if isinstance(r, Mapping) else [])
            ]
            detail = (
                f"The patient has an active allergy to **{allergen}** {_cite(allergy)}"
                + (f" (criticality {allergy['criticality']})" if allergy.get("criticality") else "")
                + (f", reaction: {', '.join(t for t in reactions if t)}" if any(reactions) else "")
                + f". The draft order **{ordered}** {_cite(order)} matches it by {how}.\n\n"
                + f"- {render_resource(allergy)}"
            )
            cards.append(
                Card(
                    summary=_summary(f"Allergy to {allergen}: review the order for {ordered}"),
                    detail=detail,
                    indicator="critical" if allergy.get("criticality") == "high" else "warning",
                    source=_source("AllergyIntolerance"),
                    suggestions=suggestions,
                    selectionBehavior=behaviour,
                )
            )
        if order.get("resourceType") != "MedicationRequest":
            continue
        for current in medications:
            if current.get("id") == order.get("id") or not _same_medication(current, order):
                continue
            cards.append(
                Card(
                    summary=_summary(f"Already prescribed: {ordered}"),
                    detail=(
                        f"The draft order **{ordered}** {_cite(order)} repeats an active prescription:\n\n"
                        f"- {render_resource(current)}"
                    ),
                    indicator="warning",
                    source=_source("MedicationRequest"),
                    suggestions=suggestions,
                    selectionBehavior=behaviour,
                )
            )
    return cards


def timeout_card(service: CdsService, budget_s: float) -> Card:
    """What the client sees when the service ran past its time budget."""
    checked = "the draft orders were NOT checked" if service.hook == "order-sign" else "no summary shown"
    return Card(
        summary=_summary(f"clinicflow ran out of time ({budget_s:g} s): {checked}"),
        detail=f"The service {service.id} did not finish within its {budget_s:g} s budget. Try again, "
        "or review the record directly.",
        indicator="warning" if service.hook == "order-sign" else "info",
        source=Source(label="clinicflow"),
    )


# --------------------------------------------------------------------------------------------- record


def _problems(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for error in exc.errors():
        where = prefix + ".".join(str(p) for p in error["loc"])
        parts.append(f"{where or 'body'}: {error['msg']}")
    return "; ".join(parts)


def _bundle_resources(key: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, Mapping) or value.get("resourceType") != "Bundle":
        raise CdsRequestError(400, f"prefetch.{key} must be a FHIR Bundle (the result of {_PREFETCH[key]})")
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
class _Reader:
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
                            search = client.search(_SEARCHES[key]).where(
                                patient=patient_id, **_SEARCH_PARAMS.get(key, {})
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
                if r.get("resourceType") == _SEARCHES[key] and belongs_to_patient(r, patient_id, base)
            ]
            for key, resources in found.items()
        }


def _draft_orders(context: OrderSignContext) -> list[Mapping[str, Any]]:
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
                f"draft order {_cite(resource)} is for {subject}, not Patient/{context.patientId}",
            )
        orders.append(resource)
    return orders


# --------------------------------------------------------------------------------------------- routes


async def _cards(
    service: CdsService, request: CdsRequest, reader: _Reader
) -> tuple[str, Callable[[], Awaitable[list[Card]]]]:
    """The context's patient, and the work that builds the cards (context checked first)."""
    keys = service.prefetch.keys()
    if service.hook == "patient-view":
        view = _context(PatientViewContext, request.context)

        async def view_cards() -> list[Card]:
            return patient_view_cards(await reader.record(keys, view.patientId))

        return view.patientId, view_cards
    sign = _context(OrderSignContext, request.context)
    orders = _draft_orders(sign)

    async def sign_cards() -> list[Card]:
        if not orders:
            return []
        return order_sign_cards(orders, await reader.record(keys, sign.patientId))

    return sign.patientId, sign_cards


def _context(model: type[_M], context: Mapping[str, Any]) -> _M:
    try:
        return model.model_validate(context)
    except ValidationError as exc:
        raise CdsRequestError(400, _problems(exc, "context.")) from None


@cds_router.get("/cds-services", include_in_schema=False)
async def discovery() -> dict[str, Any]:
    """The CDS Hooks discovery document: each service's hook, id and prefetch templates."""
    return Discovery(services=list(SERVICES.values())).model_dump(mode="json", exclude_none=True)


@cds_router.post("/cds-services/{service_id}", include_in_schema=False)
async def call_service(service_id: str, request: Request, principal: Caller) -> dict[str, Any]:
    """Answer one hook call with CDS Hooks cards."""
    svc = services(request)
    service = SERVICES.get(service_id)
    if service is None:
        raise HTTPException(404, f"no CDS service {service_id!r}; services: {', '.join(SERVICES)}")
    await require_read(svc, principal, workflow=service_id)
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "the body is not JSON") from None
    try:
        hook_request = CdsRequest.model_validate(body)
    except ValidationError as exc:
        raise HTTPException(400, _problems(exc)) from None
    if hook_request.hook != service.hook:
        raise HTTPException(
            400, f"service {service_id} answers hook {service.hook!r}, not {hook_request.hook!r}"
        )
    budget = svc.settings.cds_time_budget_s
    try:
        patient_id, work = await _cards(service, hook_request, _Reader(svc, hook_request, budget))
        await check_patient(svc, principal, patient_id, workflow=service_id)
        cards = await asyncio.wait_for(work(), timeout=budget)
    except CdsRequestError as exc:
        raise HTTPException(exc.status, exc.detail) from None
    except TimeoutError:
        cards = [timeout_card(service, budget)]
    return CdsResponse(cards=cards).model_dump(mode="json", exclude_none=True)
