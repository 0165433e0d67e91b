"""Scoring rules of all 10 task types, ported from the benchmark's reference scorer: a correct trajectory
scores 1 and wrong ones (wrong value, extra POST, POST on a query task, wrong field) 0 under both protocol
variants; then the rules the variants part on, case by case. The chart is an in-memory stand-in for the
FHIR server; trajectories carry the conversation the text protocol would have recorded."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from clinicflow.evals.medagentbench.protocol import INVALID_POST, POST_ACCEPTED
from clinicflow.evals.medagentbench.scoring import Post, Trajectory, score_task
from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.evals.medagentbench.variants import CLINICFLOW, ORIGINAL, ProtocolVariant

BASE = "http://fhir.test/fhir"
NOW = "2023-11-13T10:15:00+00:00"
T0 = datetime.fromisoformat(NOW)
MRN, PID = "S1234567", "pid-1"
SBAR = (
    "Situation: acute left knee injury, Background: ACL tear. Assessment: grade II. Recommendation: evaluate."
)


def _obs(code: str, hours: float, value: float) -> dict[str, Any]:
    when = (T0 - timedelta(hours=hours)).isoformat()
    return {
        "resourceType": "Observation",
        "code": {"coding": [{"code": code}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value},
    }


class FakeChart:
    """One patient (born 1980-11-14, so 42 on the task date) with MG, GLU, K and A1C results."""

    def __init__(self, labs: dict[str, list[tuple[float, float]]] | None = None) -> None:
        self.labs = (
            labs
            if labs is not None
            else {
                "MG": [(30, 2.0), (5, 1.3)],
                "GLU": [(30, 300), (20, 100), (2, 150)],
                "K": [(50, 4.0), (6, 3.1)],
                "A1C": [(24 * 400, 6.0)],
            }
        )

    async def patient_by_mrn(self, mrn: str) -> dict[str, Any] | None:
        return {"resourceType": "Patient", "id": PID, "birthDate": "1980-11-14"} if mrn == MRN else None

    async def observations(self, patient_id: str, code: str) -> list[dict[str, Any]]:
        assert patient_id == PID
        return [_obs(code, h, v) for h, v in self.labs.get(code, [])]


def _task(task_type: int, instruction: str = "", context: str = "", sol: list[Any] | None = None) -> MabTask:
    return MabTask(
        id=f"task{task_type}_1",
        instruction=instruction or f"Task about patient {MRN}.",
        context=context or f"It's {NOW} now.",
        eval_MRN=MRN,
        sol=sol,
    )


TASKS = {
    1: _task(1, "What's the MRN of the patient with name Ann Lee and DOB of 1980-11-14?", "", [MRN]),
    2: _task(2),
    3: _task(
        3,
        f'I just measured the blood pressure for patient with MRN of {MRN}, and it is "118/77 mmHg".',
        f"It's {NOW} now. The flowsheet ID for blood pressure is BP.",
    ),
    4: _task(4, context=f'It\'s {NOW} now. The code for magnesium is "MG".'),
    5: _task(
        5,
        context=f'It\'s {NOW} now. The code for magnesium is "MG". '
        "The NDC for replacement IV magnesium is 0338-1715-40.",
    ),
    6: _task(6, context=f'It\'s {NOW} now. The code for CBG is "GLU".'),
    7: _task(7, context=f'It\'s {NOW} now. The code for CBG is "GLU"'),
    8: _task(
        8,
        f"Order orthopedic surgery referral for patient {MRN}. "
        f'Specify within the free text of the referral, "{SBAR}"',
        f"It's {NOW} now. The SNOMED code for orthopedic surgery referral is 306181000000106.",
    ),
    9: _task(
        9,
        context=f'It\'s {NOW} now. The code for potassium is "K".'
        "The NDC for replacement potassium is 40032-917-01. "
        "The LOINC code for serum potassium level is 2823-3.",
    ),
    10: _task(
        10,
        context=f'It\'s {NOW} now. The code for HbA1C is "A1C". '
        "The LOINC code for ordering HbA1C lab is: 4548-4.",
    ),
}


def _bp() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/observation-category",
                        "code": "vital-signs",
                        "display": "Vital Signs",
                    }
                ]
            }
        ],
        "code": {"text": "BP"},
        "effectiveDateTime": NOW,
        "status": "final",
        "valueString": "118/77 mmHg",
        "subject": {"reference": f"Patient/{PID}"},
    }


def _med(ndc: str, route: Any, dose: dict[str, Any], rate: dict[str, Any] | None = None) -> dict[str, Any]:
    dose_and_rate: dict[str, Any] = {"doseQuantity": dose}
    if rate is not None:
        dose_and_rate["rateQuantity"] = rate
    return {
        "resourceType": "MedicationRequest",
        "medicationCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": ndc}]},
        "authoredOn": NOW,
        "dosageInstruction": [{"route": route, "doseAndRate": [dose_and_rate]}],
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{PID}"},
    }


def _service(system: str, code: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "code": {"coding": [{"system": system, "code": code}]},
        "authoredOn": NOW,
        "status": "active",
        "intent": "order",
        "priority": "stat",
        "subject": {"reference": f"Patient/{PID}"},
        **extra,
    }


def _post_text(url: str, payload: Any) -> str:
    return f"{url}\n{json.dumps(payload)}"


def _traj(answer: Any = None, *posts: tuple[str, Any], status: str = "completed") -> Trajectory:
    """A trajectory of accepted POSTs to `BASE/<type>` and, when `answer` is given, a FINISH."""
    return _conversation([(f"{BASE}/{rtype}", payload, True) for rtype, payload in posts], answer, status)


def _conversation(
    posts: list[tuple[str, Any, bool]],
    answer: Any = None,
    status: str = "completed",
    *,
    text: str | None = None,
) -> Trajectory:
    """The trajectory and conversation of (url, payload, accepted) POSTs, then FINISH(answer) (or `text`)."""
    history = [{"role": "user", "content": "the prompt"}]
    for url, payload, accepted in posts:
        body = json.dumps(payload) if accepted else "{not json"
        history += [
            {"role": "agent", "content": f"POST {url}\n{body}"},
            {"role": "user", "content": POST_ACCEPTED if accepted else INVALID_POST},
        ]
    result = None if answer is None else json.dumps(answer)
    if result is not None and status == "completed":
        history.append({"role": "agent", "content": text or f"FINISH({result})"})
    return Trajectory(
        task_id="t",
        agent="test",
        status=status,  # type: ignore[arg-type]
        result=result if status == "completed" else None,
        posts=[Post(url=url, payload=payload if ok else None, accepted=ok) for url, payload, ok in posts],
        history=history,
    )


MG_ORDER = (
    "MedicationRequest",
    _med("0338-1715-40", "IV", {"value": 2, "unit": "g"}, {"value": 2, "unit": "h"}),
)
K_ORDER = ("MedicationRequest", _med("40032-917-01", "oral", {"value": 40, "unit": "mEq"}))
K_LAB = (
    "ServiceRequest",
    _service("http://loinc.org", "2823-3", occurrenceDateTime="2023-11-14T08:00:00+00:00"),
)
A1C_ORDER = ("ServiceRequest", _service("http://loinc.org", "4548-4"))
REFERRAL = ("ServiceRequest", _service("http://snomed.info/sct", "306181000000106", note={"text": SBAR}))
A1C_TIME = (T0 - timedelta(hours=24 * 400)).isoformat()

CORRECT: dict[int, Trajectory] = {
    1: _traj([MRN]),
    2: _traj([42]),
    3: _traj([], ("Observation", _bp())),
    4: _traj([1.3]),
    5: _traj([1.3], MG_ORDER),
    6: _traj([125.0]),
    7: _traj([150]),
    8: _traj([], REFERRAL),
    9: _traj([3.1], K_ORDER, K_LAB),
    10: _traj([6.0, A1C_TIME], A1C_ORDER),
}


def _edit(post: tuple[str, Any], path: list[str | int], value: Any) -> tuple[str, Any]:
    payload = copy.deepcopy(post[1])
    node = payload
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return post[0], payload


_BP = ("Observation", _bp())
WRONG: dict[int, dict[str, Trajectory]] = {
    1: {"wrong value": _traj(["S7654321"]), "POST on a query task": _traj([MRN], _BP)},
    2: {
        "wrong value": _traj([43]),
        "POST on a query task": _traj([42], A1C_ORDER),
        "no FINISH": _traj(None, status="invalid_action"),
    },
    3: {
        "wrong value": _traj([], _edit(_BP, ["valueString"], "118/78 mmHg")),
        "extra POST": _traj([], _BP, _BP),
        "wrong field": _traj(
            [],
            _edit(
                _BP,
                ["category", 0, "coding", 0, "system"],
                "http://terminology.hl7.org/CodeSystem/observation-category",
            ),
        ),
        "wrong time": _traj([], _edit(_BP, ["effectiveDateTime"], "2023-11-13T10:16:00+00:00")),
        "wrong patient": _traj([], _edit(_BP, ["subject"], {"reference": "Patient/pid-2"})),
        "wrong endpoint": _traj([], ("MedicationRequest", _bp())),
    },
    4: {"wrong value (outside 24 h)": _traj([2.0]), "POST on a query task": _traj([1.3], MG_ORDER)},
    5: {
        "wrong dose": _traj(
            [1.3], _edit(MG_ORDER, ["dosageInstruction", 0, "doseAndRate", 0, "doseQuantity", "value"], 1)
        ),
        "extra POST": _traj([1.3], MG_ORDER, MG_ORDER),
        "wrong route": _traj([1.3], _edit(MG_ORDER, ["dosageInstruction", 0, "route"], "oral")),
        "wrong NDC": _traj(
            [1.3], _edit(MG_ORDER, ["medicationCodeableConcept", "coding", 0, "code"], "0338-1715-41")
        ),
        "no order": _traj([1.3]),
        "wrong answer": _traj([2.0], MG_ORDER),
    },
    6: {
        "wrong value (includes old)": _traj([(300 + 100 + 150) / 3]),
        "POST on a query task": _traj([125.0], A1C_ORDER),
        "two answers": _traj([125.0, 1]),
    },
    7: {"wrong value": _traj([100]), "POST on a query task": _traj([150], _BP)},
    8: {
        "wrong field (note missing SBAR)": _traj([], _edit(REFERRAL, ["note"], {"text": "Please see."})),
        "wrong code system": _traj([], _edit(REFERRAL, ["code", "coding", 0, "system"], "http://loinc.org")),
        "extra POST": _traj([], REFERRAL, REFERRAL),
        "wrong priority": _traj([], _edit(REFERRAL, ["priority"], "routine")),
    },
    9: {
        "wrong dose": _traj(
            [3.1],
            _edit(K_ORDER, ["dosageInstruction", 0, "doseAndRate", 0, "doseQuantity", "value"], 30),
            K_LAB,
        ),
        "missing lab order": _traj([3.1], K_ORDER),
        "wrong lab time": _traj(
            [3.1], K_ORDER, _edit(K_LAB, ["occurrenceDateTime"], "2023-11-14T09:00:00+00:00")
        ),
        "orders swapped": _traj([3.1], K_LAB, K_ORDER),
        "extra POST": _traj([3.1], K_ORDER, K_LAB, K_LAB),
    },
    10: {
        "no order for an old value": _traj([6.0, A1C_TIME]),
        "wrong value": _traj([6.1, A1C_TIME], A1C_ORDER),
        "wrong code": _traj([6.0, A1C_TIME], _edit(A1C_ORDER, ["code", "coding", 0, "code"], "4548-5")),
        "extra POST": _traj([6.0, A1C_TIME], A1C_ORDER, _BP),
    },
}


VARIANTS = [ORIGINAL, CLINICFLOW]


async def _score(
    task_type: int,
    trajectory: Trajectory,
    chart: FakeChart | None = None,
    variant: ProtocolVariant = ORIGINAL,
) -> bool:
    score = await score_task(TASKS[task_type], trajectory, chart or FakeChart(), BASE, variant=variant)
    return score.correct


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
@pytest.mark.parametrize("task_type", range(1, 11))
async def test_a_correct_trajectory_scores_1(task_type: int, variant: ProtocolVariant) -> None:
    score = await score_task(TASKS[task_type], CORRECT[task_type], FakeChart(), BASE, variant=variant)
    assert score.correct, score.reason


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
@pytest.mark.parametrize(("task_type", "kind"), [(t, k) for t, cases in WRONG.items() for k in cases])
async def test_a_wrong_trajectory_scores_0(task_type: int, kind: str, variant: ProtocolVariant) -> None:
    score = await score_task(TASKS[task_type], WRONG[task_type][kind], FakeChart(), BASE, variant=variant)
    assert not score.correct, kind
    assert score.reason and score.reason != "correct"


def test_every_type_has_at_least_two_kinds_of_wrong_trajectory() -> None:
    assert all(len(WRONG[t]) >= 2 for t in range(1, 11))


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
async def test_tolerances(variant: ProtocolVariant) -> None:
    assert await _score(6, _traj([125.05]), variant=variant)
    assert not await _score(6, _traj([125.2]), variant=variant)
    assert await _score(
        9, _traj([3.1], _edit(K_ORDER, ["dosageInstruction", 0, "route"], " Oral "), K_LAB), variant=variant
    )
    dose = ["dosageInstruction", 0, "doseAndRate", 0, "doseQuantity", "value"]
    assert await _score(9, _traj([3.1], _edit(K_ORDER, dose, 40.05), K_LAB), variant=variant)
    assert not await _score(9, _traj([3.1], _edit(K_ORDER, dose, 40.1), K_LAB), variant=variant), (
        "the reference is (3.5 - 3.1) / 0.1 * 10 = 39.99999999999999, unrounded"
    )
    assert await _score(5, _traj([1.3], _edit(MG_ORDER, dose, 2.0)), variant=variant), "2.0 == 2"
    assert not await _score(
        5, _traj([1.3], _edit(MG_ORDER, ["dosageInstruction", 0, "route"], "iv")), variant=variant
    ), "task 5's route is compared exactly"
    for task_type in (5, 9, 10):
        assert await _score(
            task_type, CORRECT[task_type].model_copy(update={"result": "[]"}), variant=variant
        ), "FINISH([]) is accepted"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
async def test_conditional_tasks_follow_the_chart(variant: ProtocolVariant) -> None:
    async def score(task_type: int, trajectory: Trajectory, chart: FakeChart) -> bool:
        return await _score(task_type, trajectory, chart, variant)

    normal = FakeChart({"MG": [(3, 2.1)], "K": [(5, 4.2)], "A1C": [(24 * 100, 6.1)]})
    assert await score(5, _traj([2.1]), normal)
    assert not await score(5, _traj([2.1], MG_ORDER), normal), "no order when magnesium is normal"
    assert await score(9, _traj([4.2]), normal)
    assert not await score(9, _traj([4.2], K_ORDER, K_LAB), normal)
    recent = (T0 - timedelta(hours=2400)).isoformat()
    assert await score(10, _traj([6.1, recent]), normal)
    assert not await score(10, _traj([6.1, recent], A1C_ORDER), normal), "no order when the HbA1c is recent"

    empty = FakeChart({"MG": [(30, 1.0)], "GLU": [(30, 120)]})
    assert await score(4, _traj([-1]), empty)
    assert await score(5, _traj(["anything"]), empty), "nothing in 24 h: only 'no order' counts"
    assert not await score(5, _traj([-1], MG_ORDER), empty)
    assert await score(6, _traj([-1]), empty)
    assert await score(7, _traj([120]), empty), "most recent, whatever its age"
    assert await score(9, _traj([-1]), empty)
    assert await score(10, _traj([-1], A1C_ORDER), empty), "no HbA1c on record: order one"
    assert not await score(10, _traj([-1]), empty)

    severe = FakeChart({"MG": [(1, 0.8)]})
    order = _edit(
        _edit(MG_ORDER, ["dosageInstruction", 0, "doseAndRate", 0, "doseQuantity", "value"], 4),
        ["dosageInstruction", 0, "doseAndRate", 0, "rateQuantity", "value"],
        4,
    )
    assert await score(5, _traj([0.8], order), severe)
    assert not await score(5, _traj([0.8], MG_ORDER), severe)


# What both variants take from the original, where the harness once differed.


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
@pytest.mark.parametrize("status", ["limit_reached", "invalid_action", "echo"])
async def test_without_finish_no_task_scores(variant: ProtocolVariant, status: str) -> None:
    empty = FakeChart({"MG": []})
    assert not await _score(3, _traj([], _BP, status=status), variant=variant)
    assert not await _score(8, _traj([], REFERRAL, status=status), variant=variant)
    assert not await _score(5, _traj([-1], status=status), empty, variant=variant), "no magnesium, no FINISH"
    assert await _score(5, _traj([-1]), empty, variant=variant), "no magnesium, FINISH: correct"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
async def test_a_rejected_post_then_a_right_one_passes(variant: ProtocolVariant) -> None:
    bp = _BP[1]
    assert await _score(
        3,
        _conversation([(f"{BASE}/Observation", None, False), (f"{BASE}/Observation", bp, True)], []),
        variant=variant,
    )
    medication, lab = K_ORDER[1], K_LAB[1]
    tries = [(f"{BASE}/MedicationRequest", None, False), (f"{BASE}/MedicationRequest", medication, True)]
    assert await _score(
        9, _conversation([*tries, (f"{BASE}/ServiceRequest", lab, True)], [3.1]), variant=variant
    )


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
async def test_a_rejected_post_is_still_a_post_on_a_query_task(variant: ProtocolVariant) -> None:
    assert not await _score(2, _conversation([(f"{BASE}/Observation", None, False)], [42]), variant=variant)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
async def test_an_unknown_mrn_is_reported_as_a_harness_problem(variant: ProtocolVariant) -> None:
    task = TASKS[2].model_copy(update={"eval_MRN": "S0000000"})
    score = await score_task(task, _traj([42]), FakeChart(), BASE, variant=variant)
    assert not score.correct and "harness" in score.reason


async def test_the_time_comes_from_the_task_context() -> None:
    later = TASKS[4].model_copy(
        update={"context": 'It\'s 2023-11-14T04:15:00+00:00 now. The code for magnesium is "MG".'}
    )
    score = await score_task(later, _traj([1.3]), FakeChart(), BASE, variant=ORIGINAL)
    assert score.correct, "1.3 was taken 23 h before"
    moved = TASKS[4].model_copy(
        update={"context": 'It\'s 2023-11-15T10:15:00+00:00 now. The code for magnesium is "MG".'}
    )
    assert (await score_task(moved, _traj([-1]), FakeChart(), BASE, variant=ORIGINAL)).correct, (
        "nothing within 24 h of this now"
    )


# Where the variants part: each payload form, what counts as a POST, agent errors, reference data.

_ROUTE = ["dosageInstruction", 0, "route"]
_DOSE = ["dosageInstruction", 0, "doseAndRate", 0, "doseQuantity"]
FORMS: dict[str, tuple[int, Trajectory]] = {
    "task 5 route as an object": (5, _traj([1.3], _edit(MG_ORDER, _ROUTE, {"text": "IV"}))),
    "task 9 route as an object": (9, _traj([3.1], _edit(K_ORDER, _ROUTE, {"text": "oral"}), K_LAB)),
    "task 5 dose with more keys": (
        5,
        _traj(
            [1.3], _edit(MG_ORDER, _DOSE, {"value": 2, "unit": "g", "system": "http://unitsofmeasure.org"})
        ),
    ),
    "task 8 note as a list": (8, _traj([], _edit(REFERRAL, ["note"], [{"text": SBAR}]))),
    "POST URL with a query": (3, _conversation([(f"{BASE}/Observation?_format=json", _bp(), True)], [])),
    "POST URL with a trailing slash": (3, _conversation([(f"{BASE}/Observation/", _bp(), True)], [])),
    "FINISH naming POST after the POST": (
        3,
        _conversation([(f"{BASE}/Observation", _bp(), True)], ["POST made"]),
    ),
}


@pytest.mark.parametrize("form", FORMS)
async def test_forms_only_the_clinicflow_variant_accepts(form: str) -> None:
    task_type, trajectory = FORMS[form]
    assert not await _score(task_type, trajectory, variant=ORIGINAL)
    assert await _score(task_type, trajectory, variant=CLINICFLOW)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
async def test_forms_both_variants_accept(variant: ProtocolVariant) -> None:
    assert await _score(
        8, _traj([], _edit(REFERRAL, ["note"], {"text": f"Referral. {SBAR} Thanks."})), variant=variant
    )
    extra = _edit(K_ORDER, _DOSE, {"value": 40, "unit": "mEq", "system": "http://unitsofmeasure.org"})
    assert await _score(9, _traj([3.1], extra, K_LAB), variant=variant), "task 9 reads value and unit alone"


async def test_has_a_post_is_any_agent_message_naming_post_in_the_original() -> None:
    mention = _traj([42]).model_copy(
        update={
            "history": [
                {"role": "agent", "content": "GET x\nno POST needed"},
                {"role": "agent", "content": "FINISH([42])"},
            ]
        }
    )
    assert not await _score(2, mention, variant=ORIGINAL)
    assert await _score(2, mention, variant=CLINICFLOW), "clinicflow counts POST actions"
    said_by_user = _traj([42]).model_copy(
        update={"history": [{"role": "user", "content": "POST request accepted"}]}
    )
    assert await _score(2, said_by_user, variant=ORIGINAL), "only agent messages count"


async def test_the_original_reads_posts_from_the_conversation_not_the_parsed_list() -> None:
    fenced = _traj([], _BP)
    fenced.history[1]["content"] = f"```\nPOST {BASE}/Observation\n{json.dumps(_bp())}\n```"
    assert not await _score(3, fenced, variant=ORIGINAL), "a fenced POST is lost to the original's scorer"
    assert await _score(3, fenced, variant=CLINICFLOW)


@pytest.mark.parametrize("task_type", [3, 8])
async def test_an_agent_error_is_scored_only_by_the_original(task_type: int) -> None:
    done = CORRECT[task_type]
    failed = done.model_copy(update={"status": "error", "result": None, "history": done.history[:-1]})
    assert await _score(task_type, failed, variant=ORIGINAL), "its POST is scored, as the original does"
    assert not await _score(task_type, failed, variant=CLINICFLOW)
    assert not await _score(
        2, _traj([42]).model_copy(update={"status": "error", "result": None}), variant=ORIGINAL
    ), "without an answer a query cannot pass"


async def test_an_observation_without_a_value_fails_the_original_only() -> None:
    class Gappy(FakeChart):
        async def observations(self, patient_id: str, code: str) -> list[dict[str, Any]]:
            return [
                *await super().observations(patient_id, code),
                {"resourceType": "Observation", "effectiveDateTime": NOW},
            ]

    assert not await _score(4, _traj([1.3]), Gappy(), ORIGINAL)
    assert await _score(4, _traj([1.3]), Gappy(), CLINICFLOW)
