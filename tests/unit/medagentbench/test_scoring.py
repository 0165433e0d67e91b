"""Scoring rules of all 10 task types: a correct trajectory scores 1; wrong ones (wrong value, extra POST,
POST on a query task, wrong field) score 0. The chart is an in-memory stand-in for the FHIR server."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from clinicflow.evals.medagentbench.scoring import Post, Trajectory, score_task
from clinicflow.evals.medagentbench.tasks import MabTask

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


def _traj(answer: Any = None, *posts: tuple[str, Any], status: str = "completed") -> Trajectory:
    return Trajectory(
        task_id="t",
        agent="test",
        status=status,  # type: ignore[arg-type]
        result=None if answer is None else json.dumps(answer),
        posts=[Post(url=f"{BASE}/{rtype}", payload=payload) for rtype, payload in posts],
    )


MG_ORDER = (
    "MedicationRequest",
    _med("0338-1715-40", {"text": "IV"}, {"value": 2, "unit": "g"}, {"value": 2, "unit": "h"}),
)
K_ORDER = ("MedicationRequest", _med("40032-917-01", {"text": "oral"}, {"value": 40, "unit": "mEq"}))
K_LAB = (
    "ServiceRequest",
    _service("http://loinc.org", "2823-3", occurrenceDateTime="2023-11-14T08:00:00+00:00"),
)
A1C_ORDER = ("ServiceRequest", _service("http://loinc.org", "4548-4"))
REFERRAL = ("ServiceRequest", _service("http://snomed.info/sct", "306181000000106", note=[{"text": SBAR}]))
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
        "wrong route": _traj([1.3], _edit(MG_ORDER, ["dosageInstruction", 0, "route"], {"text": "oral"})),
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
        "wrong field (note missing SBAR)": _traj([], _edit(REFERRAL, ["note"], [{"text": "Please see."}])),
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


async def _score(task_type: int, trajectory: Trajectory, chart: FakeChart | None = None) -> bool:
    score = await score_task(TASKS[task_type], trajectory, chart or FakeChart(), BASE)
    return score.correct


@pytest.mark.parametrize("task_type", range(1, 11))
async def test_a_correct_trajectory_scores_1(task_type: int) -> None:
    score = await score_task(TASKS[task_type], CORRECT[task_type], FakeChart(), BASE)
    assert score.correct, score.reason


@pytest.mark.parametrize(("task_type", "kind"), [(t, k) for t, cases in WRONG.items() for k in cases])
async def test_a_wrong_trajectory_scores_0(task_type: int, kind: str) -> None:
    score = await score_task(TASKS[task_type], WRONG[task_type][kind], FakeChart(), BASE)
    assert not score.correct, kind
    assert score.reason and score.reason != "correct"


def test_every_type_has_at_least_two_kinds_of_wrong_trajectory() -> None:
    assert all(len(WRONG[t]) >= 2 for t in range(1, 11))


async def test_tolerances_and_alternative_representations() -> None:
    assert await _score(6, _traj([125.05]))
    assert not await _score(6, _traj([125.2]))
    assert await _score(5, _traj([1.3], _edit(MG_ORDER, ["dosageInstruction", 0, "route"], "IV"))), (
        "route as text"
    )
    assert await _score(8, _traj([], _edit(REFERRAL, ["note"], {"text": f"Note: {SBAR}"}))), "note as object"
    assert await _score(9, _traj([3.1], _edit(K_ORDER, ["dosageInstruction", 0, "route"], " Oral "), K_LAB))
    quantity = {"value": 2.0, "unit": "g", "system": "http://unitsofmeasure.org", "code": "g"}
    with_ucum = _edit(MG_ORDER, ["dosageInstruction", 0, "doseAndRate", 0, "doseQuantity"], quantity)
    assert await _score(5, _traj([1.3], with_ucum)), "quantities compare on value and unit"
    for task_type in (5, 9, 10):
        assert await _score(task_type, CORRECT[task_type].model_copy(update={"result": "[]"})), (
            "FINISH([]) is accepted"
        )


async def test_conditional_tasks_follow_the_chart() -> None:
    normal = FakeChart({"MG": [(3, 2.1)], "K": [(5, 4.2)], "A1C": [(24 * 100, 6.1)]})
    assert await _score(5, _traj([2.1]), normal)
    assert not await _score(5, _traj([2.1], MG_ORDER), normal), "no order when magnesium is normal"
    assert await _score(9, _traj([4.2]), normal)
    assert not await _score(9, _traj([4.2], K_ORDER, K_LAB), normal)
    recent = (T0 - timedelta(hours=2400)).isoformat()
    assert await _score(10, _traj([6.1, recent]), normal)
    assert not await _score(10, _traj([6.1, recent], A1C_ORDER), normal), "no order when the HbA1c is recent"

    empty = FakeChart({"MG": [(30, 1.0)], "GLU": [(30, 120)]})
    assert await _score(4, _traj([-1]), empty)
    assert await _score(5, _traj(None, status="limit_reached"), empty), (
        "nothing in 24 h: only 'no order' counts"
    )
    assert not await _score(5, _traj([-1], MG_ORDER), empty)
    assert await _score(6, _traj([-1]), empty)
    assert await _score(7, _traj([120]), empty), "most recent, whatever its age"
    assert await _score(9, _traj([-1]), empty)
    assert await _score(10, _traj([-1], A1C_ORDER), empty), "no HbA1c on record: order one"
    assert not await _score(10, _traj([-1]), empty)

    severe = FakeChart({"MG": [(1, 0.8)]})
    order = _edit(
        _edit(MG_ORDER, ["dosageInstruction", 0, "doseAndRate", 0, "doseQuantity", "value"], 4),
        ["dosageInstruction", 0, "doseAndRate", 0, "rateQuantity", "value"],
        4,
    )
    assert await _score(5, _traj([0.8], order), severe)
    assert not await _score(5, _traj([0.8], MG_ORDER), severe)


async def test_an_unaccepted_post_counts_as_a_post() -> None:
    rejected = _traj([42]).model_copy(
        update={"posts": [Post(url=f"{BASE}/Observation", payload=None, accepted=False)]}
    )
    assert not await _score(2, rejected)
    failed_write = CORRECT[3].model_copy(
        update={"posts": [CORRECT[3].posts[0].model_copy(update={"accepted": False})]}
    )
    assert not await _score(3, failed_write)


async def test_an_unknown_mrn_is_reported_as_a_harness_problem() -> None:
    task = TASKS[2].model_copy(update={"eval_MRN": "S0000000"})
    score = await score_task(task, _traj([42]), FakeChart(), BASE)
    assert not score.correct and "harness" in score.reason


async def test_the_time_comes_from_the_task_context() -> None:
    later = TASKS[4].model_copy(
        update={"context": 'It\'s 2023-11-14T04:15:00+00:00 now. The code for magnesium is "MG".'}
    )
    assert (await score_task(later, _traj([1.3]), FakeChart(), BASE)).correct, "1.3 was taken 23 h before"
    moved = TASKS[4].model_copy(
        update={"context": 'It\'s 2023-11-15T10:15:00+00:00 now. The code for magnesium is "MG".'}
    )
    assert (await score_task(moved, _traj([-1]), FakeChart(), BASE)).correct, (
        "nothing within 24 h of this now"
    )
