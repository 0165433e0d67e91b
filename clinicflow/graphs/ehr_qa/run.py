"""Run the EHR question-answering graph for one question and return a typed, traced result.

A run is checkpointed per `thread_id` when the graph has a checkpointer: running again with the
same thread id continues an interrupted run from its last finished step.
"""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig

from clinicflow.graphs.ehr_qa.result import EhrQaInputError, EhrQaResult
from clinicflow.graphs.ehr_qa.workflow import EHR_QA
from clinicflow.graphs.runner import check_patient_id, check_text, resume_workflow, run_workflow
from clinicflow.graphs.workflow import Graph

__all__ = ["resume_ehr_qa", "run_ehr_qa"]


async def run_ehr_qa(
    graph: Graph,
    question: str,
    patient_id: str,
    *,
    thread_id: str | None = None,
    config: RunnableConfig | None = None,
) -> EhrQaResult:
    """Answer one question about one patient; with a known `thread_id`, continue or return that run."""
    question = question.strip()
    check_text(EhrQaInputError, "question", question, required=True)
    check_patient_id(EhrQaInputError, patient_id)
    payload = {"question": question, "patient_id": patient_id}
    result: EhrQaResult = await run_workflow(EHR_QA, graph, payload, thread_id=thread_id, config=config)
    return result


async def resume_ehr_qa(graph: Graph, thread_id: str, *, config: RunnableConfig | None = None) -> EhrQaResult:
    """Continue the run checkpointed under `thread_id` (or return it if it finished)."""
    result: EhrQaResult = await resume_workflow(EHR_QA, graph, thread_id, config=config)
    return result
