"""Agent roles of EHR question answering: planner, extractor and answerer.

Each role is a system prompt, a tool set and an output contract. The extractor and the answerer
reply through one forced tool call (`record_facts`, `final_answer`) so that a backend with
grammar-constrained decoding always returns output of the contract's schema.

Citations come in three kinds: record resources `[ResourceType/id]` (the patient's FHIR record),
guideline passages `[guideline: <title> § <section>]` and images `[image: <path>]`. Only record
citations are evidence about the patient; guideline passages and images found outside the record
are reference material (see `ANSWERER_PROMPT` for the rule the graph enforces).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field, create_model

__all__ = [
    "ANSWERER",
    "BAD_ARGUMENTS_TEMPLATE",
    "EXTRACTOR",
    "FHIR_RESOURCE_TYPES",
    "FINISH_TOOL_NAME",
    "GUIDANCE_PREFIX",
    "INVALID_REPLY_TEMPLATE",
    "NOT_FOUND",
    "PLANNER",
    "TOOL_FAILED_TEMPLATE",
    "UNKNOWN_TOOL_TEMPLATE",
    "CitationKind",
    "ExtractedFacts",
    "Fact",
    "FinalAnswer",
    "Role",
    "answerer_messages",
    "bind_role",
    "citation_kind",
    "citations_in",
    "extractor_messages",
    "finish_tool",
    "invalid_reply_message",
    "is_record_citation",
    "is_refusal",
    "normalize_citation",
    "planner_messages",
    "render_call",
    "render_reply",
    "strip_citations",
]

NOT_FOUND = "not found in the record"
FINISH_TOOL_NAME = "finish_retrieval"
GUIDANCE_PREFIX = "General guidance, not from this patient's record:"

INVALID_REPLY_TEMPLATE = (
    "Your last reply was not a valid tool call: {error}\n"
    "Reply with exactly one call of one of these tools: {tools}."
)
BAD_ARGUMENTS_TEMPLATE = "Bad arguments for tool {tool}: {error}\nFix the arguments and call it again."
UNKNOWN_TOOL_TEMPLATE = "Unknown tool {tool}. Call one of: {tools}."
TOOL_FAILED_TEMPLATE = (
    "Tool {tool} failed: {error}\nThe arguments were accepted; the failure is on the data source's side. "
    "Try another search or finish with the evidence you have."
)

_RESOURCE_TYPE_NAMES = (
    "Account ActivityDefinition AdministrableProductDefinition AdverseEvent AllergyIntolerance "
    "Appointment AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure "
    "Bundle CapabilityStatement CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Citation "
    "Claim ClaimResponse ClinicalImpression ClinicalUseDefinition CodeSystem Communication "
    "CommunicationRequest CompartmentDefinition Composition ConceptMap Condition Consent Contract "
    "Coverage CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device "
    "DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest "
    "DocumentReference EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest EnrollmentResponse "
    "EpisodeOfCare EventDefinition Evidence EvidenceReport EvidenceVariable ExampleScenario "
    "ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse "
    "HealthcareService ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation "
    "ImplementationGuide Ingredient InsurancePlan Invoice Library Linkage List Location "
    "ManufacturedItemDefinition Measure MeasureReport Media Medication MedicationAdministration "
    "MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct "
    "MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductDefinition "
    "MedicinalProductIndication MedicinalProductIngredient MedicinalProductInteraction "
    "MedicinalProductManufactured MedicinalProductPackaged MedicinalProductPharmaceutical "
    "MedicinalProductUndesirableEffect MessageDefinition MessageHeader MolecularSequence NamingSystem "
    "NutritionOrder NutritionProduct Observation ObservationDefinition OperationDefinition "
    "OperationOutcome Organization OrganizationAffiliation PackagedProductDefinition Parameters Patient "
    "PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole Procedure "
    "Provenance Questionnaire QuestionnaireResponse RegulatedAuthorization RelatedPerson RequestGroup "
    "ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment "
    "RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition "
    "StructureDefinition StructureMap Subscription SubscriptionStatus SubscriptionTopic Substance "
    "SubstanceDefinition SubstanceNucleicAcid SubstancePolymer SubstanceProtein "
    "SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification SupplyDelivery "
    "SupplyRequest Task TerminologyCapabilities TestReport TestScript ValueSet VerificationResult "
    "VisionPrescription "
)
FHIR_RESOURCE_TYPES = frozenset(_RESOURCE_TYPE_NAMES.split())
"""FHIR R4 / R4B resource types: `[Mass/volume]` in a LOINC display is not a citation, `[Media/1]` is."""

CitationKind = Literal["record", "guideline", "image"]

_RECORD = r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}"
_REFERENCE = r"(?i:guideline|image)[ \t]*:[ \t]*[^\[\]\s][^\[\]\n]{0,299}"
_CITATION = rf"{_RECORD}|{_REFERENCE}"
_BRACKETED = re.compile(rf"\[[ \t]*({_CITATION})[ \t]*\]")
_BARE = re.compile(rf"^\[?\s*({_CITATION})\s*\]?$")
_RECORD_ONLY = re.compile(rf"^{_RECORD}$")
_STRIPPABLE = re.compile(r"\s*\[[ \t]*([A-Z][A-Za-z]+/[^\]\s]{1,64}|" + _REFERENCE + r")[ \t]*\]")

PLANNER_PROMPT = f"""\
You retrieve evidence from one patient's FHIR record to answer a clinical question.
The first tool result is a manifest of the record: resource types, codes with display names, \
counts and date spans.
Search with the resource types, codes, words and date ranges from the manifest that can answer \
the question. Every result line ends with its citation [ResourceType/id].
A question that links several records needs several searches; you may call several tools at once.
When offered, search_guidelines finds guideline passages [guideline: <title> § <section>] for \
targets, thresholds and recommendations, and search_images finds the patient's images \
[image: <path>] [ResourceType/id]. Guideline passages are general: they say nothing about this patient.
When the results hold what the question needs, or the manifest shows the record lacks it, \
call {FINISH_TOOL_NAME}.
The patient is fixed by the system: never pass a patient id."""

EXTRACTOR_PROMPT = """\
You select evidence for a clinical question about one patient.
From the evidence lines, keep only the facts that bear on the question. State each fact briefly \
with its value, unit and date, and give the citation(s) copied exactly from the line(s) it comes \
from: [ResourceType/id] for the patient's record, [guideline: ...] for a guideline passage, \
[image: ...] for an image. Never add a fact that is not in the lines.
If no line bears on the question, return an empty list of facts.
Reply by calling record_facts."""

ANSWERER_PROMPT = f"""\
You answer a clinical question about one patient using only the facts given.
Answer briefly, in the form the question asks for (yes/no, a value with its unit, a date, a name), \
and list the citation of every fact the answer rests on, copied exactly.
Facts citing [ResourceType/id] come from the patient's record. Facts citing [guideline: ...] are \
general recommendations and facts citing only [image: ...] are reference images: neither says \
anything about this patient. Anything you state about the patient (values, dates, diagnoses, \
medications, findings) must cite a record fact; a guideline may be cited beside it, e.g. to \
compare a value with a target.
If the facts do not answer the question, the answer is exactly "{NOT_FOUND}" with no citations; \
so is a question about the patient that only guideline facts touch.
Only when the question asks for general guidance, not about this patient, may the answer rest on \
guideline facts alone: then set about_record to false.
Never guess. Reply by calling final_answer."""
"""The answerer's rule, enforced by the graph: an answer citing no record resource is replaced by
"not found in the record", unless the answerer marked it `about_record=false` (general guidance),
in which case it is shown after `GUIDANCE_PREFIX` so that it is never read as a fact of the record."""


class Fact(BaseModel):
    """One fact relevant to the question, with the citations it rests on."""

    text: str = Field(description="The fact, briefly: what, value with unit, date.")
    citations: list[str] = Field(description="Citations copied from the evidence, e.g. Observation/abc.")


class ExtractedFacts(BaseModel):
    """The extractor's output contract."""

    facts: list[Fact] = Field(description="Facts that bear on the question; empty when none does.")


class FinalAnswer(BaseModel):
    """The answerer's output contract."""

    answer: str = Field(description=f'The answer, or exactly "{NOT_FOUND}".')
    citations: list[str] = Field(
        description="Citations of the facts the answer rests on, e.g. Observation/abc."
    )
    about_record: bool = Field(
        True,
        description="False only for general guidance from guideline facts, saying nothing about the patient.",
    )


def _echo(**kwargs: Any) -> str:
    return json.dumps(kwargs, default=str)


def _finish() -> str:
    return "Retrieval finished."


def finish_tool() -> BaseTool:
    """The planner's tool for saying the evidence is complete."""
    return StructuredTool.from_function(
        func=_finish,
        name=FINISH_TOOL_NAME,
        description="Call when the evidence retrieved so far answers the question, or the record lacks it.",
    )


def _contract_tool(name: str, description: str, schema: type[BaseModel]) -> BaseTool:
    return StructuredTool.from_function(func=_echo, name=name, description=description, args_schema=schema)


@dataclass(frozen=True)
class Role:
    """An agent role: its system prompt, its output contract (if any) and the tool it replies through."""

    name: str
    system_prompt: str
    output_schema: type[BaseModel] | None = None
    output_tool_name: str | None = None

    def tools(self, tools: Sequence[BaseTool] = (), citations: Sequence[str] = ()) -> list[BaseTool]:
        """The tools this role is bound to: the given search tools for the planner, else its contract.

        With `citations`, the contract may cite only those, so a constrained decoder cannot invent one.
        """
        if self.output_schema is None or self.output_tool_name is None:
            return [*tools, finish_tool()]
        description = (self.output_schema.__doc__ or self.name).strip()
        schema = _citing_only(self.output_schema, citations)
        return [_contract_tool(self.output_tool_name, description, schema)]

    @property
    def tool_choice(self) -> str:
        """`any` for the planner (some tool call is required), else the contract tool's name."""
        return self.output_tool_name or "any"


PLANNER = Role(name="planner", system_prompt=PLANNER_PROMPT)
EXTRACTOR = Role(
    name="extractor",
    system_prompt=EXTRACTOR_PROMPT,
    output_schema=ExtractedFacts,
    output_tool_name="record_facts",
)
ANSWERER = Role(
    name="answerer",
    system_prompt=ANSWERER_PROMPT,
    output_schema=FinalAnswer,
    output_tool_name="final_answer",
)


def bind_role(
    model: BaseChatModel, role: Role, tools: Sequence[BaseTool] = (), citations: Sequence[str] = ()
) -> Runnable[LanguageModelInput, BaseMessage]:
    """Bind a chat model to a role's tools with its forced tool choice."""
    return model.bind_tools(role.tools(tools, citations), tool_choice=role.tool_choice)


def _citing_only(schema: type[BaseModel], citations: Sequence[str]) -> type[BaseModel]:
    """The contract with each `citations` list narrowed to the given values (unchanged when none)."""
    if not citations:
        return schema
    cite: Any = Literal[tuple(dict.fromkeys(citations))]  # type: ignore[valid-type]
    cited = (list[cite], Field(description="Citations of the evidence it rests on, copied exactly."))
    if schema is ExtractedFacts:
        fact = create_model("Fact", __base__=Fact, citations=cited)
        facts = (list[fact], ExtractedFacts.model_fields["facts"])  # type: ignore[valid-type]
        return create_model("ExtractedFacts", __base__=ExtractedFacts, facts=facts)
    if "citations" in schema.model_fields:
        return create_model(schema.__name__, __base__=schema, citations=cited)
    return schema


def planner_messages(question: str, history: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The planner's prompt: role, question, then the tool calls and results so far."""
    return [
        SystemMessage(PLANNER.system_prompt),
        HumanMessage(f"Question: {question}"),
        *history,
    ]


def extractor_messages(question: str, evidence: Sequence[str]) -> list[BaseMessage]:
    """The extractor's prompt: role, question and the retrieved evidence lines."""
    lines = "\n".join(f"- {line}" for line in evidence)
    return [
        SystemMessage(EXTRACTOR.system_prompt),
        HumanMessage(f"Question: {question}\n\nEvidence lines:\n{lines}"),
    ]


def answerer_messages(question: str, facts: Sequence[Fact]) -> list[BaseMessage]:
    """The answerer's prompt: role, question and the extracted facts with their citations."""
    lines = "\n".join(f"- {f.text} " + " ".join(f"[{c}]" for c in f.citations) for f in facts)
    return [
        SystemMessage(ANSWERER.system_prompt),
        HumanMessage(f"Question: {question}\n\nFacts:\n{lines}"),
    ]


def invalid_reply_message(error: str, tool_names: Iterable[str]) -> HumanMessage:
    """The message that tells the model its reply was not a valid tool call."""
    return HumanMessage(INVALID_REPLY_TEMPLATE.format(error=error, tools=", ".join(tool_names)))


def render_call(name: str, args: dict[str, Any] | str | None) -> str:
    """A tool call as one short line, e.g. `search_record(resource_type='Observation')`."""
    if isinstance(args, dict):
        inner = ", ".join(f"{k}={v!r}" for k, v in args.items() if v is not None)
    else:
        inner = args or ""
    return f"{name}({inner})"


def render_reply(reply: AIMessage) -> str:
    """What a model reply said, as text: its content, else its (possibly invalid) calls."""
    if reply.text.strip():
        return reply.text
    calls = [render_call(c["name"], c["args"]) for c in reply.tool_calls]
    calls += [render_call(c.get("name") or "?", c.get("args")) for c in reply.invalid_tool_calls]
    return "\n".join(calls)


def _canonical(citation: str) -> str | None:
    """The normalized citation, or None for a record-shaped one whose type is no FHIR resource type."""
    if "/" in citation and ":" not in citation.split("/", 1)[0]:
        return citation if citation.split("/", 1)[0] in FHIR_RESOURCE_TYPES else None
    kind, _, rest = citation.partition(":")
    return f"{kind.strip().lower()}: {' '.join(rest.split())}"


def normalize_citation(value: str) -> str | None:
    """`[Observation/abc]` -> `Observation/abc`, `[Guideline:  T § S]` -> `guideline: T § S`; else None."""
    match = _BARE.match(value.strip())
    return _canonical(match.group(1)) if match else None


def citations_in(text: str) -> list[str]:
    """The bracketed citations in a text (record, guideline, image), normalized, in order, without repeats."""
    found = (_canonical(c) for c in _BRACKETED.findall(text))
    return list(dict.fromkeys(c for c in found if c is not None))


def citation_kind(citation: str) -> CitationKind:
    """Which kind a normalized citation is: a record resource, a guideline passage or an image."""
    if citation.startswith("guideline:"):
        return "guideline"
    if citation.startswith("image:"):
        return "image"
    return "record"


def is_record_citation(citation: str) -> bool:
    """Whether a normalized citation names a resource of the patient's record, `ResourceType/id`."""
    return bool(_RECORD_ONLY.match(citation)) and citation.split("/", 1)[0] in FHIR_RESOURCE_TYPES


def strip_citations(text: str, keep: Collection[str] = ()) -> str:
    """The text without its bracketed citations, except those whose normalized form is in `keep`."""

    def _replace(match: re.Match[str]) -> str:
        citation = _canonical(match.group(1))
        return match.group(0) if citation is None or citation in keep else ""

    return _STRIPPABLE.sub(_replace, text).strip()


def is_refusal(answer: str) -> bool:
    """Whether an answer says the record does not hold the answer."""
    return NOT_FOUND in " ".join(answer.lower().split())
