"""The shipped tuned default on the demo cohort, which no training example came from (seed 42 vs 1001)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.language_models import BaseChatModel

from clinicflow.cli.ask import DEMO_LIMITS, demo_question
from clinicflow.evals.ehrqa.scoring import is_refusal, score
from clinicflow.fhir import FhirClient
from clinicflow.graphs.ehr_qa import build_ehr_qa_graph, run_ehr_qa
from clinicflow.model import load_chat_model
from clinicflow.settings import Settings
from clinicflow.tools import make_fhir_tools

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


@pytest.fixture(scope="module")
def tuned() -> BaseChatModel:
    settings = Settings().model_copy(update=DEMO_LIMITS)  # type: ignore[call-arg]
    return load_chat_model(settings, progress=False)


async def test_the_demo_question_is_searched_and_never_answered_wrong(
    tuned: BaseChatModel, fhir_client: FhirClient, cohort_dir: Path, patient_ids: list[str]
) -> None:
    settings = Settings()  # type: ignore[call-arg]
    question = await asyncio.to_thread(demo_question, cohort_dir, patient_ids[-1])
    tools = make_fhir_tools(fhir_client, manifest_budget=settings.manifest_token_budget)
    graph = build_ehr_qa_graph(tuned, tools, max_steps=int(DEMO_LIMITS["max_steps"]))
    result = await run_ehr_qa(graph, question.text, question.patient_id)
    print("\n" + result.render())
    planner_calls = [e for e in result.trace if e.kind == "model" and e.name == "planner"]
    assert planner_calls and not any(e.error for e in planner_calls)
    assert any(e.kind == "tool" and e.name == "search_record" for e in result.trace)
    # Right and citing its evidence, or refused: a wrong answer never reaches the user as a fact.
    if result.status == "answered":
        assert score(question, result.answer), (result.answer, question.answer_text)
        assert set(question.gold_ids) & set(result.citations)
    else:
        assert result.status in ("not_found", "unsupported") and is_refusal(result.answer)
