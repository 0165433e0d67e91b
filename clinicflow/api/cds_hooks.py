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

The services and their routes are here; the cards are built in `cds_cards.py`, from the record
`cds_record.py` gathers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ValidationError

from clinicflow.api.access import Caller, check_patient, require_read
from clinicflow.api.cds_cards import (
    active_allergies,
    active_conditions,
    active_medications,
    order_sign_cards,
    patient_view_cards,
    timeout_card,
)
from clinicflow.api.cds_record import PREFETCH, CdsRequestError, PrefetchReader, draft_orders
from clinicflow.api.cds_schemas import (
    Card,
    CdsRequest,
    CdsResponse,
    CdsService,
    Discovery,
    OrderSignContext,
    PatientViewContext,
)
from clinicflow.api.services import services

__all__ = [
    "SERVICES",
    "CdsRequestError",
    "active_allergies",
    "active_conditions",
    "active_medications",
    "cds_router",
    "order_sign_cards",
    "patient_view_cards",
    "timeout_card",
]

SERVICES: dict[str, CdsService] = {
    "clinicflow-patient-view": CdsService(
        hook="patient-view",
        id="clinicflow-patient-view",
        title="clinicflow record summary",
        description="Active problems, current medications, allergies and overdue monitoring the guidelines "
        "name, each citing its FHIR resources and guideline.",
        prefetch={
            k: PREFETCH[k] for k in ("patient", "conditions", "medications", "allergies", "observations")
        },
        usageRequirements="A bearer token with `read` and a patient scope for context.patientId.",
    ),
    "clinicflow-order-sign": CdsService(
        hook="order-sign",
        id="clinicflow-order-sign",
        title="clinicflow order check",
        description="Checks draft orders against the patient's allergies and active medications.",
        prefetch={k: PREFETCH[k] for k in ("patient", "medications", "allergies")},
        usageRequirements="A bearer token with `read` and a patient scope for context.patientId.",
    ),
}
cds_router = APIRouter()
_M = TypeVar("_M", bound=BaseModel)


def _problems(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for error in exc.errors():
        where = prefix + ".".join(str(p) for p in error["loc"])
        parts.append(f"{where or 'body'}: {error['msg']}")
    return "; ".join(parts)


async def _cards(
    service: CdsService, request: CdsRequest, reader: PrefetchReader
) -> tuple[str, Callable[[], Awaitable[list[Card]]]]:
    """The context's patient, and the work that builds the cards (context checked first)."""
    keys = service.prefetch.keys()
    if service.hook == "patient-view":
        view = _context(PatientViewContext, request.context)

        async def view_cards() -> list[Card]:
            return patient_view_cards(await reader.record(keys, view.patientId))

        return view.patientId, view_cards
    sign = _context(OrderSignContext, request.context)
    orders = draft_orders(sign)

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
        patient_id, work = await _cards(service, hook_request, PrefetchReader(svc, hook_request, budget))
        await check_patient(svc, principal, patient_id, workflow=service_id)
        cards = await asyncio.wait_for(work(), timeout=budget)
    except CdsRequestError as exc:
        raise HTTPException(exc.status, exc.detail) from None
    except TimeoutError:
        cards = [timeout_card(service, budget)]
    return CdsResponse(cards=cards).model_dump(mode="json", exclude_none=True)
