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

The modules: `args` (tool names and argument models), `prepared` (the prepared write and its errors),
`scope` (patient scoping, references, identifier, validation), `proposal` (tool call to resource),
`approval` (request and decision), `writer` (the create) and `tools` (the preview tools).
"""

from .approval import (
    APPROVAL_REQUEST_KIND,
    ApprovalDecision,
    ApprovalPolicy,
    Approve,
    Edit,
    Reject,
    approval_request,
    parse_decision,
)
from .args import (
    CREATE_MEDICATION_REQUEST,
    CREATE_OBSERVATION,
    CREATE_RESOURCE,
    CREATE_SERVICE_REQUEST,
    NDC_SYSTEM,
    WRITE_TOOL_NAMES,
    GeneralCreateArgs,
    MedicationRequestArgs,
    ObservationArgs,
    ServiceRequestArgs,
)
from .prepared import WRITE_IDENTIFIER_SYSTEM, PreparedWrite, WriteArgumentsError
from .proposal import OBSERVATION_CATEGORY_SYSTEM, prepare_write
from .scope import WRITABLE_TYPES, content_hash, finalize_resource, record_references
from .tools import make_write_tools
from .writer import FhirWriter, WriteOutcome, WriteUnconfirmedError

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
