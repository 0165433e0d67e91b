"""LangGraph state machines, one sub-package per workflow."""

from clinicflow.graphs.ehr_qa import (
    EhrQaError,
    EhrQaInputError,
    EhrQaResult,
    EhrQaRunError,
    build_ehr_qa_graph,
    open_checkpointer,
    resume_ehr_qa,
    run_ehr_qa,
)

__all__ = [
    "EhrQaError",
    "EhrQaInputError",
    "EhrQaResult",
    "EhrQaRunError",
    "build_ehr_qa_graph",
    "open_checkpointer",
    "resume_ehr_qa",
    "run_ehr_qa",
]
