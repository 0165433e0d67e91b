"""LangGraph state machines, one sub-package per workflow, each with its descriptor (`workflow.py`) that
the one runner (`runner.py`) runs; see docs/workflows.md."""

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
from clinicflow.graphs.ehr_task import (
    EhrTaskError,
    EhrTaskInputError,
    EhrTaskResult,
    EhrTaskRunError,
    build_ehr_task_graph,
    resume_ehr_task,
    run_ehr_task,
)
from clinicflow.graphs.encounter import build_encounter_graph, run_encounter
from clinicflow.graphs.runner import resume_workflow, run_input, run_workflow
from clinicflow.graphs.workflow import Workflow, WorkflowDeps

__all__ = [
    "EhrQaError",
    "EhrQaInputError",
    "EhrQaResult",
    "EhrQaRunError",
    "EhrTaskError",
    "EhrTaskInputError",
    "EhrTaskResult",
    "EhrTaskRunError",
    "Workflow",
    "WorkflowDeps",
    "build_ehr_qa_graph",
    "build_ehr_task_graph",
    "build_encounter_graph",
    "open_checkpointer",
    "resume_ehr_qa",
    "resume_ehr_task",
    "resume_workflow",
    "run_ehr_qa",
    "run_ehr_task",
    "run_encounter",
    "run_input",
    "run_workflow",
]
