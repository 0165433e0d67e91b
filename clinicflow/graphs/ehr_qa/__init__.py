"""EHR question answering over one patient's FHIR record: plan, retrieve, extract, answer with citations."""

from clinicflow.graphs.checkpoints import open_checkpointer
from clinicflow.graphs.ehr_qa.graph import build_ehr_qa_graph, route_after_plan, route_after_retrieve
from clinicflow.graphs.ehr_qa.result import (
    EhrQaError,
    EhrQaInputError,
    EhrQaResult,
    EhrQaRunError,
    EvidenceLine,
)
from clinicflow.graphs.ehr_qa.run import resume_ehr_qa, run_ehr_qa
from clinicflow.graphs.ehr_qa.state import InputState, OutputState, State

__all__ = [
    "EhrQaError",
    "EhrQaInputError",
    "EhrQaResult",
    "EhrQaRunError",
    "EvidenceLine",
    "InputState",
    "OutputState",
    "State",
    "build_ehr_qa_graph",
    "open_checkpointer",
    "resume_ehr_qa",
    "route_after_plan",
    "route_after_retrieve",
    "run_ehr_qa",
]
