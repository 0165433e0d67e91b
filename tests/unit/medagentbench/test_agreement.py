"""The harness decides every recorded case as the published evaluation does (its loop, counting and
scorer, kept in `original_refsol.py`), under the `original` protocol; the `clinicflow` variant parts
from it only on the documented cases; an echo of the prompt never counts under either."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from clinicflow.evals.medagentbench.protocol import PROMPT_TEMPLATE, FhirGetter, build_prompt, run_text_task
from clinicflow.evals.medagentbench.scoring import score_task
from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.evals.medagentbench.variants import CLINICFLOW, ORIGINAL, ProtocolVariant
from tests.unit.medagentbench.original_refsol import MEDAGENTBENCH_PROMPT, original_decision, start_sample
from tests.unit.medagentbench.recorded_histories import (
    BASE,
    CASES,
    CLINICFLOW_REFUSES,
    ORIGINAL_FORMS_ONLY,
    SERVER,
    TASKS,
    RecordedCase,
    prompt,
)


class Recorded:
    """A text agent replaying one case's replies (an exception is raised at its turn)."""

    name = "recorded"

    def __init__(self, replies: Sequence[str | BaseException]) -> None:
        self.replies = list(replies)

    async def respond(self, task: MabTask, messages: Sequence[dict[str, str]]) -> str:
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply


class ServerChart:
    """The recorded server as the harness's `ChartSource`: patient ids are MRNs, as on the benchmark."""

    async def patient_by_mrn(self, mrn: str) -> dict[str, Any] | None:
        born = SERVER.birth_dates.get(mrn)
        return {"resourceType": "Patient", "id": mrn, "birthDate": born} if born else None

    async def observations(self, patient_id: str, code: str) -> list[dict[str, Any]]:
        return [
            {"resourceType": "Observation", "effectiveDateTime": t, "valueQuantity": {"value": v}}
            for t, v in SERVER.labs.get((patient_id, code), [])
        ]


async def ours(case: RecordedCase, variant: ProtocolVariant) -> bool:
    task = MabTask.model_validate(TASKS[case.task_id])
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"resourceType": "Bundle"}))
    async with httpx.AsyncClient(transport=transport) as http:
        trajectory = await run_text_task(
            task, Recorded(case.replies), FhirGetter(BASE, http), [], variant=variant
        )
    score = await score_task(task, trajectory, ServerChart(), BASE, variant=variant)
    return score.correct


def original(case: RecordedCase) -> bool:
    task = TASKS[case.task_id]
    return original_decision(task, start_sample(task, case.replies), SERVER)


def _ids(cases: list[RecordedCase]) -> list[str]:
    return [c.name for c in cases]


ACTIONS = [c for c in CASES if not c.echo]
ECHOES = [c for c in CASES if c.echo]


@pytest.mark.parametrize("case", ACTIONS, ids=_ids(ACTIONS))
async def test_the_original_protocol_decides_as_the_original(case: RecordedCase) -> None:
    assert await ours(case, ORIGINAL) == original(case)


@pytest.mark.parametrize("case", ACTIONS, ids=_ids(ACTIONS))
async def test_the_clinicflow_variant_parts_only_where_documented(case: RecordedCase) -> None:
    expected = original(case)
    if case.name in ORIGINAL_FORMS_ONLY:
        assert expected is False
        expected = True
    if case.name in CLINICFLOW_REFUSES:
        assert expected is True
        expected = False
    assert await ours(case, CLINICFLOW) == expected


@pytest.mark.parametrize("case", ECHOES, ids=_ids(ECHOES))
async def test_an_echo_never_counts(case: RecordedCase) -> None:
    assert not await ours(case, ORIGINAL)
    assert not await ours(case, CLINICFLOW)


def test_the_original_would_count_some_echoes() -> None:
    fooled = {c.name for c in ECHOES if original(c)}
    assert fooled == {
        "echo: the prompt's FINISH line",
        "echo: the prompt from its FINISH line",
        "echo: the prompt's GET line",
    }


def test_the_cases_cover_both_verdicts_of_every_task_type() -> None:
    verdicts = {(int(c.task_id[4:].split("_")[0]), original(c)) for c in ACTIONS}
    assert verdicts == {(t, v) for t in range(1, 11) for v in (True, False)}
    assert {c.name for c in CASES} >= ORIGINAL_FORMS_ONLY | CLINICFLOW_REFUSES


def test_the_prompt_is_the_benchmarks_verbatim() -> None:
    assert PROMPT_TEMPLATE == MEDAGENTBENCH_PROMPT
    for task_id, task in TASKS.items():
        assert build_prompt(MabTask.model_validate(task), [], BASE) == prompt(task_id)
