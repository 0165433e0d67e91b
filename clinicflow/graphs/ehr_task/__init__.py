"""Instruction-style EHR tasks: query the record, then act through approval-gated, idempotent writes."""

from clinicflow.graphs.ehr_task.graph import (
    build_ehr_task_graph,
    route_after_agent,
    route_after_approve,
    route_after_tools,
    route_after_write,
)
from clinicflow.graphs.ehr_task.run import (
    EhrTaskError,
    EhrTaskInputError,
    EhrTaskResult,
    EhrTaskRunError,
    WriteLog,
    open_checkpointer,
    resume_ehr_task,
    run_ehr_task,
)
from clinicflow.graphs.ehr_task.state import InputState, OutputState, State

__all__ = [
    "EhrTaskError",
    "EhrTaskInputError",
    "EhrTaskResult",
    "EhrTaskRunError",
    "InputState",
    "OutputState",
    "State",
    "WriteLog",
    "build_ehr_task_graph",
    "open_checkpointer",
    "resume_ehr_task",
    "route_after_agent",
    "route_after_approve",
    "route_after_tools",
    "route_after_write",
    "run_ehr_task",
]
