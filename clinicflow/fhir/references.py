"""FHIR references and the Patient compartment: the one place that parses a reference or decides whose
record a resource is.

`parse_reference` reads every literal form: relative (`Type/id`), absolute (`<base>/Type/id`, compared
with the server in use by `Reference.is_local`), versioned (`.../_history/<v>`), `urn:uuid:` /
`urn:oid:`, contained (`#id`) and conditional (`Type?identifier=...`).

Membership follows the FHIR R4 Patient CompartmentDefinition: a resource is in a patient's compartment
when one of the search parameters the definition names for its type refers to that Patient.
`patient_owners` lists every patient a resource's compartment parameters point to; the resource is
one patient's own (`belongs_to_patient`) only when that patient is the single owner, on this server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "OUTSIDE_COMPARTMENTS",
    "PATIENT_COMPARTMENT",
    "PATIENT_IDENTITY_TYPES",
    "InvalidReferenceError",
    "Reference",
    "belongs_to_patient",
    "in_patient_compartment",
    "parse_reference",
    "patient_owners",
    "reference_key",
    "reference_of",
    "references_in",
    "same_base",
    "sole_patient",
]

ReferenceKind = Literal["relative", "absolute", "urn", "contained", "conditional"]

_TYPE = r"[A-Z][A-Za-z]{1,63}"
_ID = r"[A-Za-z0-9\-.]{1,64}"
_RELATIVE = re.compile(rf"^({_TYPE})/({_ID})(?:/_history/([A-Za-z0-9\-.]{{1,64}}))?$")
_ABSOLUTE = re.compile(rf"^(https?://[^?#\s]+?)/({_TYPE})/({_ID})(?:/_history/([A-Za-z0-9\-.]{{1,64}}))?/?$")
_CONDITIONAL = re.compile(rf"^({_TYPE})\?(\S+)$")
_URN = re.compile(r"^urn:(?:uuid|oid):\S+$")
_CONTAINED = re.compile(rf"^#({_ID})?$")


class InvalidReferenceError(ValueError):
    """A reference string none of the FHIR literal forms matches; the message quotes it."""


@dataclass(frozen=True)
class Reference:
    """One parsed literal reference. `base` is set for absolute references, `query` for conditional ones."""

    raw: str
    kind: ReferenceKind
    resource_type: str | None = None
    id: str | None = None
    base: str | None = None
    version: str | None = None
    query: str | None = None

    @property
    def key(self) -> str | None:
        """`Type/id` when the reference names one resource by type and id (relative or absolute)."""
        return f"{self.resource_type}/{self.id}" if self.resource_type and self.id else None

    def is_local(self, server_base: str | None) -> bool:
        """Whether it points to a resource on the server in use: relative, or absolute with its base.

        With no `server_base` known, only relative references are local.
        """
        if self.kind == "relative":
            return True
        return self.kind == "absolute" and server_base is not None and same_base(self.base, server_base)

    def local_key(self, server_base: str | None) -> str | None:
        """`Type/id` of a reference to this server, else None (another server, contained, urn, search)."""
        return self.key if self.is_local(server_base) else None


def _normal_base(base: str) -> str:
    scheme, _, rest = base.strip().partition("://")
    host, _, path = rest.partition("/")
    host = host.lower()
    default = {"http": ":80", "https": ":443"}.get(scheme.lower(), "")
    if default and host.endswith(default):
        host = host[: -len(default)]
    return f"{scheme.lower()}://{host}/{path.strip('/')}".rstrip("/")


def same_base(a: str | None, b: str | None) -> bool:
    """Whether two service base URLs name the same server (scheme and host case, default port, `/`)."""
    return a is not None and b is not None and _normal_base(a) == _normal_base(b)


def parse_reference(value: str) -> Reference:
    """Parse `Reference.reference`; raises `InvalidReferenceError` for text no literal form matches."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidReferenceError(f"a reference must be a non-empty string, got {value!r}")
    text = value.strip()
    if match := _RELATIVE.match(text):
        return Reference(text, "relative", match.group(1), match.group(2), version=match.group(3))
    if match := _ABSOLUTE.match(text):
        return Reference(
            text, "absolute", match.group(2), match.group(3), base=match.group(1), version=match.group(4)
        )
    if match := _CONDITIONAL.match(text):
        return Reference(text, "conditional", match.group(1), query=match.group(2))
    if _URN.match(text):
        return Reference(text, "urn")
    if match := _CONTAINED.match(text):
        return Reference(text, "contained", id=match.group(1))
    raise InvalidReferenceError(
        f"{text!r} is not a FHIR reference: expected Type/id, <base>/Type/id, urn:uuid:..., #id or Type?query"
    )


def reference_of(element: Any) -> Reference | None:
    """The parsed `reference` of a Reference element (or a bare string); None when absent or malformed."""
    value = element.get("reference") if isinstance(element, Mapping) else element
    if not isinstance(value, str):
        return None
    try:
        return parse_reference(value)
    except InvalidReferenceError:
        return None


def reference_key(element: Any, server_base: str | None = None) -> str | None:
    """`Type/id` of a Reference element (or string) that points to this server; None for anything else."""
    ref = reference_of(element)
    return ref.local_key(server_base) if ref is not None else None


def references_in(node: Any) -> Iterator[dict[str, Any]]:
    """Every Reference element (an object with a string `reference`) inside a resource, contained ones too;
    the objects themselves, so a caller may rewrite them."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node
        for value in node.values():
            yield from references_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from references_in(value)


# The FHIR R4 Patient compartment, ported from http://hl7.org/fhir/R4/compartmentdefinition-patient.html
# (CompartmentDefinition/patient, version 4.0.1): for each resource type, the search parameters that put
# a resource in a patient's compartment, each with the element path(s) its R4 SearchParameter expression
# reads. Types the definition lists without parameters are never in the compartment and are left out.
PATIENT_COMPARTMENT: dict[str, dict[str, tuple[str, ...]]] = {
    "Account": {"subject": ("subject",)},
    "AdverseEvent": {"subject": ("subject",)},
    "AllergyIntolerance": {"patient": ("patient",), "recorder": ("recorder",), "asserter": ("asserter",)},
    "Appointment": {"actor": ("participant.actor",)},
    "AppointmentResponse": {"actor": ("actor",)},
    "AuditEvent": {"patient": ("agent.who", "entity.what")},
    "Basic": {"patient": ("subject",), "author": ("author",)},
    "BodyStructure": {"patient": ("patient",)},
    "CarePlan": {"patient": ("subject",), "performer": ("activity.detail.performer",)},
    "CareTeam": {"patient": ("subject",), "participant": ("participant.member",)},
    "ChargeItem": {"subject": ("subject",)},
    "Claim": {"patient": ("patient",), "payee": ("payee.party",)},
    "ClaimResponse": {"patient": ("patient",)},
    "ClinicalImpression": {"subject": ("subject",)},
    "Communication": {"subject": ("subject",), "sender": ("sender",), "recipient": ("recipient",)},
    "CommunicationRequest": {
        "subject": ("subject",),
        "sender": ("sender",),
        "recipient": ("recipient",),
        "requester": ("requester",),
    },
    "Composition": {"subject": ("subject",), "author": ("author",), "attester": ("attester.party",)},
    "Condition": {"patient": ("subject",), "asserter": ("asserter",)},
    "Consent": {"patient": ("patient",)},
    "Coverage": {
        "policy-holder": ("policyHolder",),
        "subscriber": ("subscriber",),
        "beneficiary": ("beneficiary",),
        "payor": ("payor",),
    },
    "CoverageEligibilityRequest": {"patient": ("patient",)},
    "CoverageEligibilityResponse": {"patient": ("patient",)},
    "DetectedIssue": {"patient": ("patient",)},
    # Not in the R4 definition (it lists Device as never in the compartment), but Device.patient names
    # the patient a device is used by, and the record tools search devices by that patient.
    "Device": {"patient": ("patient",)},
    "DeviceRequest": {"subject": ("subject",), "performer": ("performer",)},
    "DeviceUseStatement": {"subject": ("subject",)},
    "DiagnosticReport": {"subject": ("subject",)},
    "DocumentManifest": {"subject": ("subject",), "author": ("author",), "recipient": ("recipient",)},
    "DocumentReference": {"subject": ("subject",), "author": ("author",)},
    "Encounter": {"patient": ("subject",)},
    "EnrollmentRequest": {"subject": ("candidate",)},
    "EpisodeOfCare": {"patient": ("patient",)},
    "ExplanationOfBenefit": {"patient": ("patient",), "payee": ("payee.party",)},
    "FamilyMemberHistory": {"patient": ("patient",)},
    "Flag": {"patient": ("subject",)},
    "Goal": {"patient": ("subject",)},
    "Group": {"member": ("member.entity",)},
    "ImagingStudy": {"patient": ("subject",)},
    "Immunization": {"patient": ("patient",)},
    "ImmunizationEvaluation": {"patient": ("patient",)},
    "ImmunizationRecommendation": {"patient": ("patient",)},
    "Invoice": {"subject": ("subject",), "patient": ("subject",), "recipient": ("recipient",)},
    "List": {"subject": ("subject",), "source": ("source",)},
    "MeasureReport": {"patient": ("subject",)},
    "Media": {"subject": ("subject",)},
    "MedicationAdministration": {
        "patient": ("subject",),
        "performer": ("performer.actor",),
        "subject": ("subject",),
    },
    "MedicationDispense": {"subject": ("subject",), "patient": ("subject",), "receiver": ("receiver",)},
    "MedicationRequest": {"subject": ("subject",)},
    "MedicationStatement": {"subject": ("subject",)},
    "MolecularSequence": {"patient": ("patient",)},
    "NutritionOrder": {"patient": ("patient",)},
    "Observation": {"subject": ("subject",), "performer": ("performer",)},
    "Patient": {"link": ("link.other",)},
    "Person": {"patient": ("link.target",)},
    "Procedure": {"patient": ("subject",), "performer": ("performer.actor",)},
    "Provenance": {"patient": ("target",)},
    "QuestionnaireResponse": {"subject": ("subject",), "author": ("author",)},
    "RelatedPerson": {"patient": ("patient",)},
    "RequestGroup": {"subject": ("subject",), "participant": ("action.participant",)},
    "ResearchSubject": {"individual": ("individual",)},
    "RiskAssessment": {"subject": ("subject",)},
    "Schedule": {"actor": ("actor",)},
    "ServiceRequest": {"subject": ("subject",), "performer": ("performer",)},
    "Specimen": {"subject": ("subject",)},
    "SupplyDelivery": {"patient": ("patient",)},
    "SupplyRequest": {"subject": ("deliverTo",)},
    "VisionPrescription": {"patient": ("patient",)},
}

_OUTSIDE = (
    "ActivityDefinition Binary BiologicallyDerivedProduct Bundle CapabilityStatement CatalogEntry "
    "ChargeItemDefinition CodeSystem CompartmentDefinition ConceptMap Contract DeviceDefinition "
    "DeviceMetric EffectEvidenceSynthesis Endpoint EnrollmentResponse EventDefinition Evidence "
    "EvidenceVariable ExampleScenario GraphDefinition GuidanceResponse HealthcareService "
    "ImplementationGuide InsurancePlan Library Linkage Location Measure Medication MedicationKnowledge "
    "MedicinalProduct MessageDefinition MessageHeader NamingSystem ObservationDefinition "
    "OperationDefinition OperationOutcome Organization OrganizationAffiliation PaymentNotice "
    "PaymentReconciliation PlanDefinition Practitioner PractitionerRole Questionnaire ResearchDefinition "
    "ResearchElementDefinition ResearchStudy RiskEvidenceSynthesis SearchParameter Slot SpecimenDefinition "
    "StructureDefinition StructureMap Subscription Substance Task TerminologyCapabilities TestReport "
    "TestScript ValueSet VerificationResult"
)
OUTSIDE_COMPARTMENTS: frozenset[str] = frozenset(_OUTSIDE.split())
"""Types the same definition lists as never in the Patient compartment (shared, not any one patient's)."""

PATIENT_IDENTITY_TYPES: frozenset[str] = frozenset({"Patient", "RelatedPerson", "Person", "Group"})
"""Types that identify people (or sets of them) rather than record care: never read for another patient."""


def in_patient_compartment(resource_type: str) -> bool:
    """Whether resources of this type can be a patient's (a type the definition does not name counts)."""
    return resource_type in PATIENT_COMPARTMENT or resource_type not in OUTSIDE_COMPARTMENTS


def _at(node: Any, path: str) -> Iterator[Any]:
    head, _, rest = path.partition(".")
    values = node.get(head) if isinstance(node, Mapping) else None
    for value in values if isinstance(values, list) else [values]:
        if value is None:
            continue
        if rest:
            yield from _at(value, rest)
        else:
            yield value


def _contained_type(resource: Mapping[str, Any], contained_id: str | None) -> str | None:
    for item in resource.get("contained") or []:
        if isinstance(item, Mapping) and item.get("id") == contained_id:
            return str(item.get("resourceType"))
    return None


def _owner(resource: Mapping[str, Any], element: Any, server_base: str | None) -> str | None:
    """The patient a compartment reference names: its id on this server, or the reference text for a
    patient elsewhere (another server, a contained or unresolved one). None when it names no patient."""
    if not isinstance(element, Mapping):
        return None
    ref = reference_of(element)
    if ref is None:
        declared = element.get("type")
        identifier = element.get("identifier")
        return f"identifier:{identifier}" if declared == "Patient" and identifier else None
    rtype = ref.resource_type or element.get("type")
    if ref.kind == "contained":
        rtype = _contained_type(resource, ref.id)
    if rtype not in (None, "Patient"):
        return None
    if rtype == "Patient" and ref.is_local(server_base):
        return ref.id
    return ref.raw


def patient_owners(resource: Mapping[str, Any], server_base: str | None = None) -> frozenset[str]:
    """Every patient whose compartment holds the resource: local patient ids, or the reference text of a
    patient that is not on this server. A Patient is its own owner."""
    rtype = resource.get("resourceType")
    owners: set[str] = set()
    if rtype == "Patient" and isinstance(resource.get("id"), str):
        owners.add(resource["id"])
    for paths in PATIENT_COMPARTMENT.get(str(rtype), {}).values():
        for path in paths:
            for element in _at(resource, path):
                owner = _owner(resource, element, server_base)
                if owner is not None:
                    owners.add(owner)
    return frozenset(owners)


def sole_patient(resource: Mapping[str, Any], server_base: str | None = None) -> str | None:
    """The one local patient whose compartment holds the resource, or None (no patient, or several)."""
    owners = patient_owners(resource, server_base)
    return next(iter(owners)) if len(owners) == 1 else None


def belongs_to_patient(resource: Mapping[str, Any], patient_id: str, server_base: str | None = None) -> bool:
    """True when the resource is in this patient's compartment and in no other patient's.

    A Patient is the patient's own when it has their id (its links may name other patients)."""
    if not patient_id:
        return False
    if resource.get("resourceType") == "Patient":
        return resource.get("id") == patient_id
    return patient_owners(resource, server_base) == {patient_id}
