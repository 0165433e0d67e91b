"""Oracle retrieval against the real embedded FHIR server: every gold call returns its gold resources."""

from __future__ import annotations

import collections

from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.retrieval import check_retrieval
from clinicflow.fhir import FhirClient
from clinicflow.tools.fhir_tools import make_fhir_tools


async def test_every_demo_question_retrieves_its_gold_resources(
    fhir_client: FhirClient, demo_questions: list[Question]
) -> None:
    report = await check_retrieval(demo_questions, make_fhir_tools(fhir_client))
    assert report.checked == len(demo_questions)
    assert not report.misses, "\n".join(str(m) for m in report.misses)
    assert report.hit_rate == 1.0
    absent = sum(c.expect_absent for q in demo_questions for c in q.gold_calls)
    assert absent > 0, "no question checked that a 'no' answer's evidence is absent"
    assert collections.Counter(q.kind for q in demo_questions)["yes_no"] > 0
