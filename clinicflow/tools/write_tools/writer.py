"""Running an approved write: a conditional create, at most once per idempotency identifier."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from clinicflow.fhir import (
    FhirBadRequestError,
    FhirClient,
    FhirConnectionError,
    FhirError,
    FhirResponseError,
    FhirServerError,
    FhirTimeoutError,
    FhirValidationError,
    parse_resource,
)
from clinicflow.fhir.references import PATIENT_COMPARTMENT, belongs_to_patient

from .prepared import PreparedWrite, WriteArgumentsError
from .scope import record_references, validation_errors

__all__ = ["FhirWriter", "WriteOutcome", "WriteUnconfirmedError"]

log = logging.getLogger(__name__)


class WriteOutcome(BaseModel):
    """What `FhirWriter.execute` did: created, found the same write already done, invalid, or failed."""

    status: Literal["created", "existing", "invalid", "failed"]
    reference: str | None = None
    errors: list[str] = Field(default_factory=list)
    resource: dict[str, Any] | None = None

    @property
    def written(self) -> bool:
        """True when the resource is on the server (created now or by an earlier try of the same write)."""
        return self.status in ("created", "existing")


class WriteUnconfirmedError(FhirError):
    """A create may or may not have reached the server, and retries with its identifier did not settle it.

    The run should stop here and be resumed later: the same identifier keeps the write from doubling.
    """

    def __init__(self, write: PreparedWrite, cause: FhirError) -> None:
        super().__init__(
            f"could not confirm the {write.resource_type} write ({write.if_none_exist}): {cause}; "
            "resume the run to retry it safely"
        )
        self.write = write
        self.cause = cause


_AMBIGUOUS = (FhirConnectionError, FhirTimeoutError, FhirServerError)


class FhirWriter:
    """Runs approved writes against one FHIR server, at most once per idempotency identifier.

    A create that may have reached the server (dropped connection, timeout, 5xx) is retried with the same
    identifier up to `retries` times; if still unsettled, `WriteUnconfirmedError` is raised.
    """

    def __init__(self, client: FhirClient, *, search_first: bool = True, retries: int = 2) -> None:
        self.client = client
        self.search_first = search_first
        self.retries = retries

    async def find_existing(self, write: PreparedWrite) -> dict[str, Any] | None:
        """The resource an earlier try of this write created, found by its identifier, if any."""
        found = (
            await self.client.search(write.resource_type)
            .token("identifier", write.identifier_system, write.identifier_value)
            .all(limit=2)
        )
        return found[0] if found else None

    async def check_references(self, write: PreparedWrite) -> None:
        """Raise `WriteArgumentsError` unless every reference to a patient-owned resource points into the
        patient's own record; each is looked up with a search scoped to the patient, so another patient's
        resource is never read."""
        missing: list[str] = []
        for key in record_references(write.resource, write.patient_id):
            rtype, _, rid = key.partition("/")
            params = PATIENT_COMPARTMENT.get(rtype)
            found: list[dict[str, Any]] = []
            if params:
                scope = {next(iter(params)): f"Patient/{write.patient_id}"}
                try:
                    found = await self.client.search(rtype).where(_id=rid).where(scope).all(limit=2)
                except FhirBadRequestError:
                    found = []
            base = self.client.base_url
            if not any(r.get("id") == rid and belongs_to_patient(r, write.patient_id, base) for r in found):
                missing.append(key)
        if missing:
            raise WriteArgumentsError(
                "refused: " + "; ".join(f"{key} is not in this patient's record" for key in missing)
            )

    async def _create_once(self, write: PreparedWrite) -> WriteOutcome:
        if self.search_first:
            try:
                existing = await self.find_existing(write)
            except FhirResponseError as exc:
                log.info("identifier search refused (%s); relying on If-None-Exist alone", exc)
                existing = None
            if existing is not None:
                return _outcome("existing", existing)
        stored = await self.client.create(write.resource, if_none_exist=write.if_none_exist)
        return _outcome("created", stored)

    async def execute(self, write: PreparedWrite) -> WriteOutcome:
        """Validate, then create unless this write is already on the server.

        Bad input and refusals come back as an outcome; only an unconfirmable create raises.
        """
        try:
            parse_resource(write.resource)
        except FhirValidationError as exc:
            return WriteOutcome(status="invalid", errors=validation_errors(exc))
        ours = [
            i
            for i in write.resource.get("identifier") or []
            if isinstance(i, Mapping)
            and (i.get("system"), i.get("value")) == (write.identifier_system, write.identifier_value)
        ]
        if not ours:
            return WriteOutcome(status="invalid", errors=["the resource lost its write identifier"])
        try:
            record_references(write.resource, write.patient_id)
            await self.check_references(write)
        except WriteArgumentsError as exc:
            return WriteOutcome(status="invalid", errors=[exc.detail])
        for attempt in range(self.retries + 1):
            try:
                return await self._create_once(write)
            except _AMBIGUOUS as exc:
                if attempt >= self.retries:
                    raise WriteUnconfirmedError(write, exc) from exc
            except FhirResponseError as exc:
                if exc.status in (400, 422):
                    return WriteOutcome(status="invalid", errors=exc.issues or [str(exc)])
                return WriteOutcome(status="failed", errors=[str(exc)])
            except FhirError as exc:
                return WriteOutcome(status="failed", errors=[str(exc)])
        raise AssertionError("unreachable: the last attempt returns or raises")


def _outcome(status: Literal["created", "existing"], stored: Mapping[str, Any]) -> WriteOutcome:
    reference = f"{stored.get('resourceType')}/{stored.get('id')}" if stored.get("id") else None
    return WriteOutcome(status=status, reference=reference, resource=dict(stored))
