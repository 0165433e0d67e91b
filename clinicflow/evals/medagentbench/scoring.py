"""Scoring of MedAgentBench trajectories, one rule per task type, with references recomputed from the server.

The rules are the benchmark's reference scorer, ported: query tasks (1, 2, 4, 6, 7) must make no POST
and finish with the reference answer; action tasks need exactly the accepted POSTs the situation calls
for (none when the value is normal or missing), to the right endpoint, with exact field values; tasks 5,
9 and 10 also accept `FINISH([])`, and task 5 with no magnesium in 24 hours needs only "no order". The
task's own text gives its time, codes and quoted values, and the subject is the FHIR id of the patient
with the task's MRN: on the benchmark's server these are the constants and the MRN its scorer uses. A
`ProtocolVariant` decides what counts as a POST and which payload forms pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from clinicflow.evals.medagentbench.case import ScoredCase, Wrong, contains, equal, path_text, value_at
from clinicflow.evals.medagentbench.chart import ChartSource, FhirChartSource
from clinicflow.evals.medagentbench.rules import (
    age_on,
    average_within,
    latest,
    latest_within,
    magnesium_dose,
    next_day_8am,
    one_year_before,
    potassium_dose,
)
from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.evals.medagentbench.trajectory import Post, Score, Trajectory, TrajectoryStatus
from clinicflow.evals.medagentbench.variants import ProtocolVariant

__all__ = [
    "ChartSource",
    "FhirChartSource",
    "Post",
    "Score",
    "Trajectory",
    "TrajectoryStatus",
    "score_task",
]


async def _task1(case: ScoredCase) -> None:
    case.no_post("task 1 is a query")
    case.expected = case.task.sol
    case.check_answer(list(case.task.sol or []))


async def _task2(case: ScoredCase) -> None:
    case.no_post("task 2 is a query")
    patient = await case.patient()
    case.expected = [age_on(str(patient.get("birthDate")), case.now.date())]
    case.check_answer(case.expected)


async def _task3(case: ScoredCase) -> None:
    post = case.exactly(1)[0]
    case.url(post, "Observation")
    payload = post.payload
    case.expected = {"valueString": case.task.quoted, "code": {"text": case.task.flowsheet_id}}
    equal(payload, "Observation", "resourceType")
    try:
        one_coding = len(payload["category"]) == 1 and len(payload["category"][0]["coding"]) == 1
    except (KeyError, IndexError, TypeError):
        one_coding = False
    if not one_coding:
        raise Wrong(f"category must hold exactly one coding, got {value_at(payload, 'category')!r}")
    equal(
        payload,
        {
            "system": "http://hl7.org/fhir/observation-category",
            "code": "vital-signs",
            "display": "Vital Signs",
        },
        "category",
        0,
        "coding",
        0,
    )
    equal(payload, {"text": case.task.flowsheet_id}, "code")
    equal(payload, case.task.now, "effectiveDateTime")
    equal(payload, "final", "status")
    equal(payload, case.task.quoted, "valueString")
    case.subject(payload, await case.patient_id())


async def _task4(case: ScoredCase) -> None:
    case.no_post("task 4 is a query")
    _, labs = await case.labs()
    last = latest_within(labs, case.now)
    case.expected = [last[1] if last else -1]
    case.check_answer(case.expected)


async def _task5(case: ScoredCase) -> None:
    patient_id, labs = await case.labs()
    last = latest_within(labs, case.now)
    case.expected = [last[1] if last else -1]
    if last is None:
        # As the benchmark scores it: with no magnesium in 24 hours, only "no order" matters.
        case.no_post("no magnesium in the last 24 hours means no order")
        return
    dose = magnesium_dose(float(last[1]))
    if dose is None:
        case.no_post(f"magnesium {last[1]} is not low")
    else:
        post = case.exactly(1)[0]
        case.medication_order(post, patient_id, case.task.ndc)
        case.route(post.payload, "IV", fold=False)
        grams, hours = dose
        dose_and_rate = ("dosageInstruction", 0, "doseAndRate", 0)
        case.quantity(post.payload, grams, "g", *dose_and_rate, "doseQuantity")
        case.quantity(post.payload, hours, "h", *dose_and_rate, "rateQuantity")
    case.check_answer(case.expected, allow_empty=True)


async def _task6(case: ScoredCase) -> None:
    case.no_post("task 6 is a query")
    _, labs = await case.labs()
    mean = average_within(labs, case.now)
    case.expected = [mean if mean is not None else -1]
    answer = case.answer()
    try:
        ok = len(answer) == 1 and abs(answer[0] - case.expected[0]) < 0.1
    except (TypeError, KeyError, IndexError):
        ok = False
    if not ok:
        raise Wrong(f"answer {answer!r} is not within 0.1 of {case.expected!r}")


async def _task7(case: ScoredCase) -> None:
    case.no_post("task 7 is a query")
    _, labs = await case.labs()
    last = latest(labs)
    case.expected = [last[1] if last else -1]
    case.check_answer(case.expected)


async def _task8(case: ScoredCase) -> None:
    post = case.exactly(1)[0]
    patient_id = await case.patient_id()
    case.service_order(post, patient_id, "http://snomed.info/sct", case.task.snomed)
    case.expected = {"note": case.task.quoted}
    note = case.note_text(post.payload)
    try:
        ok = case.task.quoted in note
    except TypeError:
        ok = False
    if not ok:
        raise Wrong("the referral note does not hold the SBAR text from the instruction")


async def _task9(case: ScoredCase) -> None:
    patient_id, labs = await case.labs()
    last = latest(labs)
    case.expected = [last[1] if last else -1]
    if last is None or potassium_dose(float(last[1])) is None:
        case.no_post("potassium is missing or not low")
    else:
        medication, lab = case.exactly(2)
        case.medication_order(medication, patient_id, case.task.ndc)
        case.route(medication.payload, "oral", fold=True)
        quantity = ("dosageInstruction", 0, "doseAndRate", 0, "doseQuantity")
        value = value_at(medication.payload, *quantity, "value")
        dose = (3.5 - float(last[1])) / 0.1 * 10  # unrounded, as the benchmark's scorer computes it
        try:
            close = abs(value - dose) <= 0.1
        except TypeError:
            close = False
        if not close:
            raise Wrong(f"{path_text(quantity)}.value is {value!r}, expected {dose} (within 0.1)")
        equal(medication.payload, "mEq", *quantity, "unit")
        case.service_order(lab, patient_id, "http://loinc.org", case.task.loinc)
        contains(lab.payload, next_day_8am(case.now).strftime("%Y-%m-%dT08:"), "occurrenceDateTime")
    case.check_answer(case.expected, allow_empty=True)


async def _task10(case: ScoredCase) -> None:
    patient_id, labs = await case.labs()
    last = latest(labs)
    case.expected = [last[1], last[2]] if last else [-1]
    if last is None or last[0] < one_year_before(case.now):
        post = case.exactly(1)[0]
        case.service_order(post, patient_id, "http://loinc.org", case.task.loinc)
    else:
        case.no_post("the last HbA1c is less than a year old")
    case.check_answer(case.expected, allow_empty=True)


_RULES: dict[int, Callable[[ScoredCase], Awaitable[None]]] = {
    1: _task1,
    2: _task2,
    3: _task3,
    4: _task4,
    5: _task5,
    6: _task6,
    7: _task7,
    8: _task8,
    9: _task9,
    10: _task10,
}


async def score_task(
    task: MabTask,
    trajectory: Trajectory,
    chart: ChartSource,
    base_url: str,
    *,
    variant: ProtocolVariant,
) -> Score:
    """Score one trajectory by its task type's rule; `base_url` is the FHIR base POSTs must target.

    As the benchmark counts, a task is scored only when its agent finished it (or, where the variant says
    so, failed with an error); any other ending is a failure.
    """
    case = ScoredCase(task, trajectory, chart, base_url, variant)
    scored = trajectory.status == "completed" or (
        trajectory.status == "error" and variant.scores_agent_errors
    )
    try:
        if not scored:
            raise Wrong(f"not scored: the task ended without FINISH (status {trajectory.status})")
        await _RULES[task.task_type](case)
    except Wrong as wrong:
        return Score(
            task_id=task.id,
            task_type=task.task_type,
            correct=False,
            reason=str(wrong),
            expected=case.expected,
        )
    return Score(
        task_id=task.id, task_type=task.task_type, correct=True, reason="correct", expected=case.expected
    )
