"""Approval-gated FHIR writes: the tools a model calls to propose a resource, and the writer that creates it.

A write tool call never writes by itself. `prepare_write` turns it into the exact resource to create: the
subject set to the patient in context, server-owned fields dropped, an idempotency identifier derived
from (run id, step, content hash) added, and the result validated as FHIR R4. Every reference in it must
point to the patient in context, to a shared resource outside every patient's compartment (Practitioner,
Organization, Medication, Location, ...) or to a resource of the patient's own record, which
`FhirWriter.check_references` verifies on the server; anything else is refused before any approval.
A graph shows that resource for approval (`approve`, `reject` with a reason, or `edit` with a
replacement) and only then calls `FhirWriter.execute`, a conditional create
(`If-None-Exist: identifier=system|value`) preceded by a search on the same identifier, so a retried or
resumed run never creates the same resource twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

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
from clinicflow.fhir.references import (
    OUTSIDE_COMPARTMENTS,
    PATIENT_COMPARTMENT,
    PATIENT_IDENTITY_TYPES,
    belongs_to_patient,
    parse_reference,
    references_in,
)

__all__ = [
    "APPROVAL_REQUEST_KIND",
    "CREATE_MEDICATION_REQUEST",
    "CREATE_OBSERVATION",
    "CREATE_RESOURCE",
    "CREATE_SERVICE_REQUEST",
    "NDC_SYSTEM",
    "OBSERVATION_CATEGORY_SYSTEM",
    "WRITABLE_TYPES",
    "WRITE_IDENTIFIER_SYSTEM",
    "WRITE_TOOL_NAMES",
    "ApprovalDecision",
    "ApprovalPolicy",
    "Approve",
    "Edit",
    "FhirWriter",
    "GeneralCreateArgs",
    "MedicationRequestArgs",
    "ObservationArgs",
    "PreparedWrite",
    "Reject",
    "ServiceRequestArgs",
    "WriteArgumentsError",
    "WriteOutcome",
    "WriteUnconfirmedError",
    "approval_request",
    "content_hash",
    "finalize_resource",
    "make_write_tools",
    "parse_decision",
    "prepare_write",
    "record_references",
]

log = logging.getLogger(__name__)

WRITE_IDENTIFIER_SYSTEM = "urn:clinicflow:write"
"""System of the identifier every approved write carries; its value makes the create idempotent."""

OBSERVATION_CATEGORY_SYSTEM = "http://hl7.org/fhir/observation-category"
"""Category system that Epic's Observation.Create (Vitals) documents, and MedAgentBench scores against."""

NDC_SYSTEM = "http://hl7.org/fhir/sid/ndc"
APPROVAL_REQUEST_KIND = "fhir_write_approval"

CREATE_OBSERVATION = "create_observation"
CREATE_MEDICATION_REQUEST = "create_medication_request"
CREATE_SERVICE_REQUEST = "create_service_request"
CREATE_RESOURCE = "create_resource"
WRITE_TOOL_NAMES: frozenset[str] = frozenset(
    {CREATE_OBSERVATION, CREATE_MEDICATION_REQUEST, CREATE_SERVICE_REQUEST, CREATE_RESOURCE}
)

ApprovalPolicy = Literal["require", "auto_approve"]
"""`require`: every write waits for a person's decision; `auto_approve`: an explicit eval policy approves."""

_SUBJECT_FIELD: dict[str, str] = {
    "Observation": "subject",
    "MedicationRequest": "subject",
    "ServiceRequest": "subject",
    "Condition": "subject",
    "Procedure": "subject",
    "CarePlan": "subject",
    "DiagnosticReport": "subject",
    "DocumentReference": "subject",
    "Communication": "subject",
    "CommunicationRequest": "subject",
    "MedicationStatement": "subject",
    "MedicationAdministration": "subject",
    "NutritionOrder": "patient",
    "AllergyIntolerance": "patient",
    "Immunization": "patient",
}
WRITABLE_TYPES: tuple[str, ...] = tuple(sorted(_SUBJECT_FIELD))
"""Resource types a write tool may create: those that belong to one patient."""

_SERVER_OWNED = ("id", "meta", "text")
_CATEGORY_DISPLAY = {
    "vital-signs": "Vital Signs",
    "laboratory": "Laboratory",
    "social-history": "Social History",
    "imaging": "Imaging",
    "procedure": "Procedure",
    "survey": "Survey",
    "exam": "Exam",
    "therapy": "Therapy",
    "activity": "Activity",
}
_CODE_SYSTEMS = {
    "loinc": "http://loinc.org",
    "snomed": "http://snomed.info/sct",
    "sct": "http://snomed.info/sct",
    "snomedct": "http://snomed.info/sct",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "ndc": NDC_SYSTEM,
    "cpt": "http://www.ama-assn.org/go/cpt",
}


class WriteArgumentsError(ValueError):
    """A write tool call whose arguments cannot make a valid resource; the message says what to fix."""

    def __init__(self, detail: str, errors: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)


def _system(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    return _CODE_SYSTEMS.get(value.lower().replace(" ", "").replace("-", ""), value)


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ObservationArgs(_Args):
    """Arguments of `create_observation`: one measured value for the patient in context."""

    code_text: str = Field(min_length=1, description='What was measured: a flowsheet id or name, e.g. "BP".')
    code: str | None = Field(None, description="Optional code of the measurement, e.g. a LOINC code.")
    code_system: str | None = Field(None, description='System of `code`: "loinc", "snomed" or a URL.')
    category: str = Field(
        "vital-signs", description='Observation category, e.g. "vital-signs", "laboratory".'
    )
    value_string: str | None = Field(None, description='The value as text, e.g. "118/77 mmHg".')
    value: float | None = Field(None, description="The value as a number (give `unit` with it).")
    unit: str | None = Field(None, description='Unit of `value`, e.g. "mg/dL".')
    effective: str | None = Field(
        None, description="When it was measured, ISO 8601; default: the current time of the task."
    )


class MedicationRequestArgs(_Args):
    """Arguments of `create_medication_request`: a medication order for the patient in context."""

    medication_code: str = Field(min_length=1, description='Medication code, e.g. the NDC "0338-1715-40".')
    medication_system: str = Field("ndc", description='System of the code: "ndc", "rxnorm" or a URL.')
    medication_name: str | None = Field(None, description="Display name of the medication.")
    dose_value: float = Field(description="Dose amount, e.g. 2.")
    dose_unit: str = Field(min_length=1, description='Dose unit, e.g. "g" or "mEq".')
    route: str | None = Field(None, description='Route, e.g. "IV" or "oral".')
    rate_value: float | None = Field(None, description="Rate or duration amount, e.g. 2 (for over 2 hours).")
    rate_unit: str | None = Field(None, description='Unit of the rate, e.g. "h".')
    authored_on: str | None = Field(None, description="When the order is written, ISO 8601; default: now.")
    note: str | None = Field(None, description="Free-text comment on the order.")


class ServiceRequestArgs(_Args):
    """Arguments of `create_service_request`: a lab test, referral or procedure order for the patient."""

    code: str = Field(min_length=1, description='Code of what is ordered, e.g. LOINC "4548-4".')
    code_system: str = Field(description='System of the code: "loinc", "snomed" or a URL.')
    display: str | None = Field(None, description="Display name of what is ordered.")
    note: str | None = Field(None, description="Free-text comment, e.g. an SBAR referral note.")
    occurrence: str | None = Field(None, description="When it should be done, ISO 8601 date-time.")
    priority: Literal["routine", "urgent", "asap", "stat"] = Field("stat", description="Order priority.")
    authored_on: str | None = Field(None, description="When the order is signed, ISO 8601; default: now.")


class GeneralCreateArgs(_Args):
    """Arguments of `create_resource`: any patient-owned FHIR R4 resource as JSON."""

    resource: dict[str, Any] = Field(
        description=(
            "The FHIR R4 resource as a JSON object with resourceType; the patient reference is set by the "
            f"system. Types: {', '.join(WRITABLE_TYPES)}."
        )
    )


_ARGS_MODELS: dict[str, type[_Args]] = {
    CREATE_OBSERVATION: ObservationArgs,
    CREATE_MEDICATION_REQUEST: MedicationRequestArgs,
    CREATE_SERVICE_REQUEST: ServiceRequestArgs,
    CREATE_RESOURCE: GeneralCreateArgs,
}


class PreparedWrite(BaseModel):
    """The exact resource a write will create, with its idempotency identifier and where it came from."""

    tool: str
    tool_call_id: str
    resource_type: str
    resource: dict[str, Any]
    identifier_system: str = WRITE_IDENTIFIER_SYSTEM
    identifier_value: str
    patient_id: str
    run_id: str
    step: int
    content_hash: str
    notes: list[str] = Field(default_factory=list)

    @property
    def if_none_exist(self) -> str:
        """The conditional-create query: `identifier=system|value`."""
        return f"identifier={self.identifier_system}|{self.identifier_value}"


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


class Approve(BaseModel):
    """Create the resource as shown."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["approve"] = "approve"


class Reject(BaseModel):
    """Do not write; the reason goes back to the agent."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["reject"] = "reject"
    reason: str = Field(min_length=1)


class Edit(BaseModel):
    """Create this replacement resource instead (edit, then approve)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["edit"] = "edit"
    resource: dict[str, Any]


ApprovalDecision = Annotated[Approve | Reject | Edit, Field(discriminator="action")]
_DECISION = TypeAdapter(ApprovalDecision)


def parse_decision(value: Any) -> Approve | Reject | Edit:
    """A reviewer's decision from `Command(resume=...)`: a model, a dict with `action`, or "approve".

    Raises `ValueError` naming the accepted shapes.
    """
    if isinstance(value, Approve | Reject | Edit):
        return value
    if isinstance(value, str) and value.strip().lower() in ("approve", "approved", "yes"):
        return Approve()
    try:
        return _DECISION.validate_python(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'decision'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(
            'a decision is {"action": "approve"}, {"action": "reject", "reason": "..."} or '
            f'{{"action": "edit", "resource": {{...}}}}; got {value!r} ({problems})'
        ) from None


def content_hash(resource: Mapping[str, Any]) -> str:
    """SHA-256 of the resource's canonical JSON, leaving out server-owned fields and write identifiers."""
    body = {k: v for k, v in resource.items() if k not in (*_SERVER_OWNED, "identifier")}
    others = [
        i
        for i in resource.get("identifier") or []
        if not (isinstance(i, Mapping) and i.get("system") == WRITE_IDENTIFIER_SYSTEM)
    ]
    if others:
        body["identifier"] = others
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _identifier_value(run_id: str, step: int, digest: str) -> str:
    return hashlib.sha256(f"{run_id}\x00{step}\x00{digest}".encode()).hexdigest()[:40]


def _validation_errors(exc: FhirValidationError) -> list[str]:
    return [f"{path}: {msg}" for path, msg in exc.errors] or [str(exc)]


def _reference_problem(value: str, patient_id: str, contained: set[str]) -> str | None:
    """Why a reference may not be written (None when it may, or needs a server check)."""
    try:
        ref = parse_reference(value)
    except ValueError as exc:
        return str(exc)
    if ref.kind == "contained":
        return None if ref.id in contained else f"{value!r} names no contained resource"
    if ref.kind != "relative":
        return f"{value!r} is not a Type/id reference on this server; write references as Type/id"
    if ref.resource_type == "Patient" and ref.id != patient_id:
        return f"{value!r} points to another patient; a write may reference only the patient in context"
    if ref.resource_type in PATIENT_IDENTITY_TYPES - {"Patient", "RelatedPerson"}:
        return f"{value!r} names a {ref.resource_type}, which may hold other patients"
    return None


def record_references(resource: Mapping[str, Any], patient_id: str) -> list[str]:
    """The references to patient-owned resources (`Type/id`) that must be the patient's own, checked on
    the server by `FhirWriter.check_references`; raises `WriteArgumentsError` listing every reference
    that may not be written at all."""
    contained = {str(c.get("id")) for c in resource.get("contained") or [] if isinstance(c, Mapping)}
    problems: list[str] = []
    verify: dict[str, None] = {}
    for element in references_in(resource):
        value = element["reference"]
        problem = _reference_problem(value, patient_id, contained)
        if problem is not None:
            problems.append(problem)
            continue
        ref = parse_reference(value)
        rtype = ref.resource_type
        if ref.key and rtype != "Patient" and rtype not in OUTSIDE_COMPARTMENTS:
            verify[ref.key] = None
    if problems:
        raise WriteArgumentsError("refused: " + "; ".join(dict.fromkeys(problems)))
    return list(verify)


def finalize_resource(
    resource: Mapping[str, Any],
    *,
    patient_id: str,
    run_id: str,
    step: int,
    validate: bool = True,
) -> tuple[dict[str, Any], str, str, list[str]]:
    """Scope a resource to the patient and add its idempotency identifier.

    Returns (resource, identifier value, content hash, notes on what was changed). Raises
    `WriteArgumentsError` for a reference that may not be written (another patient, another server, a
    urn or search) and, with `validate`, listing every FHIR R4 validation error.
    """
    if not isinstance(resource, Mapping):
        raise WriteArgumentsError(f"a resource must be a JSON object, got {type(resource).__name__}")
    resource_type = resource.get("resourceType")
    field_name = _SUBJECT_FIELD.get(resource_type) if isinstance(resource_type, str) else None
    if field_name is None:
        raise WriteArgumentsError(
            f"cannot create resourceType {resource_type!r}; use one of {', '.join(WRITABLE_TYPES)}"
        )
    out = copy.deepcopy(dict(resource))
    notes: list[str] = []
    for key in _SERVER_OWNED:
        if key in out:
            notes.append(f"dropped server-owned field {key!r}")
            out.pop(key)
    wanted = {"reference": f"Patient/{patient_id}"}
    given = out.get(field_name)
    if given is not None and not (
        isinstance(given, Mapping) and given.get("reference") == wanted["reference"]
    ):
        raise WriteArgumentsError(
            f"refused: {field_name} must be the patient in context (Patient/{patient_id}) or left out"
        )
    out[field_name] = wanted
    record_references(out, patient_id)
    identifiers = [
        i
        for i in out.get("identifier") or []
        if not (isinstance(i, Mapping) and i.get("system") == WRITE_IDENTIFIER_SYSTEM)
    ]
    digest = content_hash({**out, "identifier": identifiers})
    value = _identifier_value(run_id, step, digest)
    out["identifier"] = [*identifiers, {"system": WRITE_IDENTIFIER_SYSTEM, "value": value}]
    if validate:
        try:
            parse_resource(out)
        except FhirValidationError as exc:
            errors = _validation_errors(exc)
            raise WriteArgumentsError(
                f"invalid FHIR R4 {resource_type}: " + "; ".join(errors), exc.errors
            ) from None
    return out, value, digest, notes


def _coding(system: str | None, code: str | None, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {}
    if system:
        coding["system"] = system
    if code:
        coding["code"] = code
    if display:
        coding["display"] = display
    return coding


def _quantity(value: float, unit: str | None) -> dict[str, Any]:
    number: float | int = int(value) if float(value).is_integer() else value
    return {"value": number, "unit": unit} if unit else {"value": number}


def _observation(args: ObservationArgs, now: str | None) -> dict[str, Any]:
    if args.value_string is None and args.value is None:
        raise WriteArgumentsError("give the measured value: value_string, or value with unit")
    category = args.category.strip()
    code: dict[str, Any] = {"text": args.code_text}
    if args.code:
        code = {"coding": [_coding(_system(args.code_system), args.code)], "text": args.code_text}
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "category": [
            {"coding": [_coding(OBSERVATION_CATEGORY_SYSTEM, category, _CATEGORY_DISPLAY.get(category))]}
        ],
        "code": code,
        "status": "final",
    }
    effective = args.effective or now
    if effective:
        resource["effectiveDateTime"] = effective
    if args.value_string is not None:
        resource["valueString"] = args.value_string
    elif args.value is not None:
        resource["valueQuantity"] = _quantity(args.value, args.unit)
    return resource


def _medication_request(args: MedicationRequestArgs, now: str | None) -> dict[str, Any]:
    concept: dict[str, Any] = {
        "coding": [_coding(_system(args.medication_system), args.medication_code, args.medication_name)]
    }
    if args.medication_name:
        concept["text"] = args.medication_name
    dose_and_rate: dict[str, Any] = {"doseQuantity": _quantity(args.dose_value, args.dose_unit)}
    if args.rate_value is not None:
        dose_and_rate["rateQuantity"] = _quantity(args.rate_value, args.rate_unit)
    dosage: dict[str, Any] = {"doseAndRate": [dose_and_rate]}
    if args.route:
        dosage["route"] = {"text": args.route}
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": concept,
        "dosageInstruction": [dosage],
    }
    authored = args.authored_on or now
    if authored:
        resource["authoredOn"] = authored
    if args.note:
        resource["note"] = [{"text": args.note}]
    return resource


def _service_request(args: ServiceRequestArgs, now: str | None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": args.priority,
        "code": {"coding": [_coding(_system(args.code_system), args.code, args.display)]},
    }
    authored = args.authored_on or now
    if authored:
        resource["authoredOn"] = authored
    if args.occurrence:
        resource["occurrenceDateTime"] = args.occurrence
    if args.note:
        resource["note"] = [{"text": args.note}]
    return resource


def _build(tool: str, args: _Args, now: str | None) -> dict[str, Any]:
    if isinstance(args, ObservationArgs):
        return _observation(args, now)
    if isinstance(args, MedicationRequestArgs):
        return _medication_request(args, now)
    if isinstance(args, ServiceRequestArgs):
        return _service_request(args, now)
    if isinstance(args, GeneralCreateArgs):
        return dict(args.resource)
    raise WriteArgumentsError(f"unknown write tool {tool!r}")


def _args_errors(exc: ValidationError) -> str:
    problems = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "arguments"
        problems.append(f"{where} is required" if e["type"] == "missing" else f"{where}: {e['msg']}")
    return "; ".join(problems)


def prepare_write(
    tool: str,
    args: Mapping[str, Any],
    *,
    patient_id: str | None,
    run_id: str,
    step: int,
    tool_call_id: str = "",
    now: str | None = None,
) -> PreparedWrite:
    """The exact, validated resource a write tool call asks for; raises `WriteArgumentsError` otherwise."""
    model = _ARGS_MODELS.get(tool)
    if model is None:
        raise WriteArgumentsError(
            f"unknown write tool {tool!r}; use one of {', '.join(sorted(WRITE_TOOL_NAMES))}"
        )
    if not patient_id:
        raise WriteArgumentsError("no patient is in context, so nothing can be written")
    try:
        parsed = model.model_validate(dict(args))
    except ValidationError as exc:
        raise WriteArgumentsError(_args_errors(exc)) from None
    resource, value, digest, notes = finalize_resource(
        _build(tool, parsed, now), patient_id=patient_id, run_id=run_id, step=step
    )
    return PreparedWrite(
        tool=tool,
        tool_call_id=tool_call_id,
        resource_type=resource["resourceType"],
        resource=resource,
        identifier_value=value,
        patient_id=patient_id,
        run_id=run_id,
        step=step,
        content_hash=digest,
        notes=notes,
    )


def approval_request(write: PreparedWrite, *, error: str | None = None) -> dict[str, Any]:
    """The interrupt payload a reviewer sees: the exact resource, its patient, and how to answer."""
    request: dict[str, Any] = {
        "kind": APPROVAL_REQUEST_KIND,
        "question": f"Create this {write.resource_type} for Patient/{write.patient_id}?",
        "tool": write.tool,
        "tool_call_id": write.tool_call_id,
        "resource_type": write.resource_type,
        "resource": copy.deepcopy(write.resource),
        "patient_id": write.patient_id,
        "identifier": {"system": write.identifier_system, "value": write.identifier_value},
        "notes": list(write.notes),
        "answers": [
            '{"action": "approve"}',
            '{"action": "reject", "reason": "..."}',
            '{"action": "edit", "resource": {...}}',
        ],
    }
    if error:
        request["error"] = error
    return request


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
            return WriteOutcome(status="invalid", errors=_validation_errors(exc))
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


def _preview(tool: str) -> Any:
    async def preview(**kwargs: Any) -> str:
        try:
            write = prepare_write(tool, kwargs, patient_id="in-context", run_id="preview", step=0)
        except WriteArgumentsError as exc:
            return f"Bad arguments: {exc.detail}"
        return (
            f"Proposed {write.resource_type} (not written; a write runs only after approval):\n"
            + json.dumps(write.resource, indent=1)
        )

    return preview


_DESCRIPTIONS = {
    CREATE_OBSERVATION: (
        "Record a measured value (e.g. a vital sign) for the patient in context. "
        "The write waits for approval."
    ),
    CREATE_MEDICATION_REQUEST: (
        "Order a medication (code, dose, route, rate) for the patient in context. "
        "The write waits for approval."
    ),
    CREATE_SERVICE_REQUEST: (
        "Order a lab test, referral or procedure (code, note, when) for the patient in context. "
        "The write waits for approval."
    ),
    CREATE_RESOURCE: (
        "Create any patient-owned FHIR R4 resource given as JSON for the patient in context. "
        "The write waits for approval."
    ),
}


def make_write_tools(names: Sequence[str] | None = None) -> list[BaseTool]:
    """The write tools a model may call; calling one directly only previews the resource, it never writes."""
    chosen = (
        list(names)
        if names is not None
        else [
            CREATE_OBSERVATION,
            CREATE_MEDICATION_REQUEST,
            CREATE_SERVICE_REQUEST,
            CREATE_RESOURCE,
        ]
    )
    unknown = [n for n in chosen if n not in WRITE_TOOL_NAMES]
    if unknown:
        raise ValueError(f"unknown write tools {unknown}; choose from {sorted(WRITE_TOOL_NAMES)}")
    return [
        StructuredTool(
            name=name,
            description=_DESCRIPTIONS[name],
            args_schema=_ARGS_MODELS[name],
            coroutine=_preview(name),
            func=None,
        )
        for name in chosen
    ]
