"""FHIR reads for the console, each under the API's patient-scope checks and in the audit trail: a cited
resource, patient names, the patients a user may pick."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from fastapi import HTTPException, Request

from clinicflow.api.access import RequestAudit, check_patient, deny, require_read
from clinicflow.api.audit import audit_scope
from clinicflow.api.auth import ForbiddenError, Principal
from clinicflow.api.services import Services, services
from clinicflow.console.present import patient_label
from clinicflow.fhir import FhirClient, FhirError, FhirNotFoundError
from clinicflow.fhir.references import PATIENT_IDENTITY_TYPES, in_patient_compartment, patient_owners

__all__ = ["patient_labels", "pickable_patients", "visible_resource"]

MAX_PATIENTS = 200


def _fhir(svc: Services) -> FhirClient:
    if svc.deps.fhir is None:
        raise HTTPException(404, "this server has no FHIR server configured")
    return svc.deps.fhir


async def _read(svc: Services, principal: Principal, rtype: str, rid: str, **where: Any) -> dict[str, Any]:
    """One resource read on the principal's behalf (the FHIR transport audits it)."""
    fhir = _fhir(svc)
    record = RequestAudit(svc, principal, **where)
    try:
        with audit_scope(record.scope):
            return await fhir.read(rtype, rid)
    except FhirNotFoundError:
        raise HTTPException(404, f"no {rtype}/{rid} on the FHIR server") from None
    except (FhirError, ValueError) as exc:
        raise HTTPException(502, f"the FHIR server could not read {rtype}/{rid}: {exc}") from None
    finally:
        await record.save()


async def visible_resource(request: Request, principal: Principal, rtype: str, rid: str) -> dict[str, Any]:
    """A resource the principal may see: one in a patient's compartment only when the token's patient
    scopes cover every patient it belongs to (the FHIR Patient compartment, `clinicflow.fhir.references`);
    403 (audited) otherwise. Shared resources (Medication, Practitioner, ...) need only `read`."""
    svc = services(request)
    await require_read(svc, principal)
    if rtype == "Patient":
        await check_patient(svc, principal, rid)
    resource = await _read(svc, principal, rtype, rid)
    if not (in_patient_compartment(rtype) or rtype in PATIENT_IDENTITY_TYPES):
        return resource
    owners = patient_owners(resource, _fhir(svc).base_url)
    if not owners and not principal.grants.all_patients:
        raise await deny(
            svc,
            principal,
            ForbiddenError(
                f"{rtype}/{rid} names no patient; only an all-patients token may read it", "patient"
            ),
        )
    for owner in sorted(owners):
        await check_patient(svc, principal, owner)
    return resource


async def patient_labels(request: Request, principal: Principal, ids: Iterable[str | None]) -> dict[str, str]:
    """Readable names of patients the principal may see (others keep their id only)."""
    svc = services(request)
    wanted = sorted({i for i in ids if i})
    if svc.deps.fhir is None or not wanted:
        return {i: patient_label(None, i) for i in wanted}

    async def one(patient_id: str) -> tuple[str, str]:
        if not await svc.access.allowed(principal, patient_id):
            return patient_id, patient_label(None, patient_id)
        try:
            patient = await _read(svc, principal, "Patient", patient_id, patient_id=patient_id)
        except HTTPException:
            patient = None
        return patient_id, patient_label(patient, patient_id)

    return dict(await asyncio.gather(*(one(i) for i in wanted)))


async def pickable_patients(request: Request, principal: Principal) -> list[tuple[str, str]]:
    """(id, label) of the patients the principal may ask about, by label."""
    svc = services(request)
    try:
        visible = await svc.access.visible(principal)
    except ForbiddenError as exc:
        raise await deny(svc, principal, exc) from None
    if visible is None:
        fhir = _fhir(svc)
        record = RequestAudit(svc, principal)
        try:
            with audit_scope(record.scope):
                found = await fhir.search("Patient").all(limit=MAX_PATIENTS)
        except FhirError as exc:
            raise HTTPException(502, f"the FHIR server could not list patients: {exc}") from None
        finally:
            await record.save()
        labels = {str(p["id"]): patient_label(p, str(p["id"])) for p in found if p.get("id")}
    else:
        labels = await patient_labels(request, principal, sorted(visible)[:MAX_PATIENTS])
    return sorted(labels.items(), key=lambda item: item[1].lower())
