"""Scoring of MedAgentBench trajectories, one rule per task type, with references recomputed from the server.

Query tasks (1, 2, 4, 6, 7) must make no POST and finish with the reference answer. Action tasks need
exactly the POSTs the situation calls for (none when the value is normal or missing), to the right
endpoint, with exact field values; tasks 5, 9 and 10 also accept `FINISH([])`. Two representations the
benchmark's own declarations use where FHIR R4 differs are both accepted: `route` as "IV" or
{"text": "IV"}, and `note` as {"text": ...} or [{"text": ...}]. Quantities compare on value and unit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from clinicflow.evals.medagentbench.rules import (
    Measurement,
    age_on,
    average_within,
    latest,
    latest_within,
    magnesium_dose,
    measurements,
    next_day_8am,
    one_year_before,
    potassium_dose,
)
from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.fhir import FhirClient

__all__ = [
    "ChartSource",
    "FhirChartSource",
    "Post",
    "Score",
    "Trajectory",
    "TrajectoryStatus",
    "score_task",
]

TrajectoryStatus = Literal["completed", "invalid_action", "limit_reached", "error"]


class Post(BaseModel):
    """One POST the agent made: where, what, and whether the harness accepted it."""

    url: str
    payload: Any = None
    accepted: bool = True


class Trajectory(BaseModel):
    """What an agent did on one task: its turns, its POSTs and its FINISH answer (raw JSON text)."""

    task_id: str
    agent: str
    status: TrajectoryStatus
    result: str | None = None
    posts: list[Post] = Field(default_factory=list)
    history: list[dict[str, str]] = Field(default_factory=list)
    rounds: int = 0
    error: str | None = None
    seconds: float = 0.0

    @property
    def has_post(self) -> bool:
        """True when the agent attempted any POST, accepted or not."""
        return bool(self.posts)

    @property
    def accepted_posts(self) -> list[Post]:
        """The POSTs the harness accepted, in order."""
        return [p for p in self.posts if p.accepted]


class Score(BaseModel):
    """The verdict on one task: correct or not, why, and the reference it was checked against."""

    task_id: str
    task_type: int
    correct: bool
    reason: str
    expected: Any = None


class ChartSource(Protocol):
    """Where the scorer reads the truth: a patient by MRN and a patient's observations by code."""

    async def patient_by_mrn(self, mrn: str) -> dict[str, Any] | None: ...

    async def observations(self, patient_id: str, code: str) -> list[dict[str, Any]]: ...


class FhirChartSource:
    """`ChartSource` over a FHIR server, read at scoring time."""

    def __init__(self, client: FhirClient, *, limit: int = 5000) -> None:
        self.client = client
        self.limit = limit

    async def patient_by_mrn(self, mrn: str) -> dict[str, Any] | None:
        """The first patient holding this identifier value."""
        found = await self.client.search("Patient").where(identifier=mrn).all(limit=1)
        return found[0] if found else None

    async def observations(self, patient_id: str, code: str) -> list[dict[str, Any]]:
        """All the patient's observations with this code (any system)."""
        return (
            await self.client.search("Observation").where(patient=patient_id, code=code).all(limit=self.limit)
        )


class _Wrong(Exception):
    """A failed check; the message is the reason."""


def _finish_answer(trajectory: Trajectory) -> Any:
    if trajectory.status != "completed" or trajectory.result is None:
        raise _Wrong(f"no FINISH answer (status {trajectory.status})")
    try:
        return json.loads(trajectory.result)
    except json.JSONDecodeError:
        raise _Wrong(f"FINISH answer is not JSON: {trajectory.result[:120]!r}") from None


def _check_answer(trajectory: Trajectory, expected: list[Any], *, allow_empty: bool = False) -> None:
    answer = _finish_answer(trajectory)
    if answer == expected or (allow_empty and answer == []):
        return
    raise _Wrong(f"answer {answer!r} != expected {expected!r}")


def _no_post(trajectory: Trajectory, why: str) -> None:
    if trajectory.has_post:
        raise _Wrong(f"{len(trajectory.posts)} POST(s) made, but {why}")


def _exactly(trajectory: Trajectory, count: int) -> list[Post]:
    posts = trajectory.accepted_posts
    if len(posts) != count or len(trajectory.posts) != count:
        raise _Wrong(
            f"expected exactly {count} accepted POST(s), got {len(posts)} of {len(trajectory.posts)}"
        )
    return posts


def _url(post: Post, base_url: str, resource_type: str) -> None:
    got = post.url.strip().split("?")[0].rstrip("/")
    want = f"{base_url.rstrip('/')}/{resource_type}"
    if got != want:
        raise _Wrong(f"POST to {post.url!r}, expected {want!r}")


def _get(payload: Any, *path: str | int) -> Any:
    node = payload
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            raise _Wrong(f"payload lacks {'.'.join(map(str, path))}") from None
    return node


def _equal(payload: Any, want: Any, *path: str | int) -> None:
    got = _get(payload, *path)
    if got != want:
        raise _Wrong(f"{'.'.join(map(str, path))} is {got!r}, expected {want!r}")


def _quantity(payload: Any, value: float, unit: str, *path: str | int, tolerance: float = 0.0) -> None:
    got = _get(payload, *path)
    if not isinstance(got, Mapping):
        raise _Wrong(f"{'.'.join(map(str, path))} is not a quantity: {got!r}")
    number = got.get("value")
    if not isinstance(number, int | float) or abs(number - value) > tolerance or got.get("unit") != unit:
        raise _Wrong(f"{'.'.join(map(str, path))} is {dict(got)!r}, expected value {value} unit {unit!r}")


def _route(payload: Any, want: str, *, fold: bool) -> None:
    route = _get(payload, "dosageInstruction", 0, "route")
    text = route.get("text") if isinstance(route, Mapping) else route
    ok = isinstance(text, str) and (text.strip().lower() == want.lower() if fold else text == want)
    if not ok:
        raise _Wrong(f"route is {route!r}, expected {want!r}")


def _note_text(payload: Any) -> str:
    note = _get(payload, "note")
    if isinstance(note, list) and note:
        note = note[0]
    text = note.get("text") if isinstance(note, Mapping) else None
    if not isinstance(text, str):
        raise _Wrong(f"note has no text: {note!r}")
    return text


def _subject(payload: Any, patient_id: str) -> None:
    _equal(payload, {"reference": f"Patient/{patient_id}"}, "subject")


def _contains(payload: Any, fragment: str, *path: str) -> None:
    got = _get(payload, *path)
    if not isinstance(got, str) or fragment not in got:
        raise _Wrong(f"{'.'.join(path)} is {got!r}, expected it to contain {fragment!r}")


def _coding(payload: Any, system: str, code: str, *path: str) -> None:
    _equal(payload, system, *path, "coding", 0, "system")
    _equal(payload, code, *path, "coding", 0, "code")


class _Case:
    """One task being scored: the task, the trajectory, and lazy access to the patient's chart."""

    def __init__(self, task: MabTask, trajectory: Trajectory, chart: ChartSource, base_url: str) -> None:
        self.task = task
        self.trajectory = trajectory
        self.chart = chart
        self.base_url = base_url
        self.now = task.now_dt
        self.expected: Any = None

    async def patient(self) -> dict[str, Any]:
        patient = await self.chart.patient_by_mrn(self.task.eval_MRN)
        if patient is None or not patient.get("id"):
            raise _Wrong(f"harness: no patient with MRN {self.task.eval_MRN} on the server")
        return patient

    async def labs(self) -> tuple[str, list[Measurement]]:
        patient = await self.patient()
        observations = await self.chart.observations(patient["id"], self.task.lab_code)
        return patient["id"], measurements(observations)

    def medication_order(self, post: Post, patient_id: str, ndc: str) -> None:
        _url(post, self.base_url, "MedicationRequest")
        payload = post.payload
        _equal(payload, "MedicationRequest", "resourceType")
        _coding(payload, "http://hl7.org/fhir/sid/ndc", ndc, "medicationCodeableConcept")
        _contains(payload, self.task.now[:16], "authoredOn")
        _equal(payload, "active", "status")
        _equal(payload, "order", "intent")
        _subject(payload, patient_id)

    def service_order(self, post: Post, patient_id: str, system: str, code: str) -> None:
        _url(post, self.base_url, "ServiceRequest")
        payload = post.payload
        _equal(payload, "ServiceRequest", "resourceType")
        _coding(payload, system, code, "code")
        _equal(payload, self.task.now, "authoredOn")
        _equal(payload, "active", "status")
        _equal(payload, "order", "intent")
        _equal(payload, "stat", "priority")
        _subject(payload, patient_id)


async def _task1(case: _Case) -> None:
    _no_post(case.trajectory, "task 1 is a query")
    case.expected = case.task.sol
    _check_answer(case.trajectory, list(case.task.sol or []))


async def _task2(case: _Case) -> None:
    _no_post(case.trajectory, "task 2 is a query")
    patient = await case.patient()
    case.expected = [age_on(str(patient.get("birthDate")), case.now.date())]
    _check_answer(case.trajectory, case.expected)


async def _task3(case: _Case) -> None:
    post = _exactly(case.trajectory, 1)[0]
    patient = await case.patient()
    _url(post, case.base_url, "Observation")
    payload = post.payload
    case.expected = {"valueString": case.task.quoted, "code": {"text": case.task.flowsheet_id}}
    _equal(payload, "Observation", "resourceType")
    category = _get(payload, "category")
    if not isinstance(category, list) or len(category) != 1 or len(_get(category, 0, "coding")) != 1:
        raise _Wrong(f"category must hold exactly one coding, got {category!r}")
    _equal(
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
    _equal(payload, {"text": case.task.flowsheet_id}, "code")
    _equal(payload, case.task.now, "effectiveDateTime")
    _equal(payload, "final", "status")
    _equal(payload, case.task.quoted, "valueString")
    _subject(payload, patient["id"])


async def _task4(case: _Case) -> None:
    _no_post(case.trajectory, "task 4 is a query")
    _, labs = await case.labs()
    last = latest_within(labs, case.now)
    case.expected = [last[1] if last else -1]
    _check_answer(case.trajectory, case.expected)


async def _task5(case: _Case) -> None:
    patient_id, labs = await case.labs()
    last = latest_within(labs, case.now)
    case.expected = [last[1] if last else -1]
    if last is None:
        _no_post(case.trajectory, "no magnesium in the last 24 hours means no order")
        return
    dose = magnesium_dose(float(last[1]))
    if dose is None:
        _no_post(case.trajectory, f"magnesium {last[1]} is not low")
    else:
        post = _exactly(case.trajectory, 1)[0]
        case.medication_order(post, patient_id, case.task.ndc)
        _route(post.payload, "IV", fold=False)
        grams, hours = dose
        _quantity(post.payload, grams, "g", "dosageInstruction", 0, "doseAndRate", 0, "doseQuantity")
        _quantity(post.payload, hours, "h", "dosageInstruction", 0, "doseAndRate", 0, "rateQuantity")
    _check_answer(case.trajectory, case.expected, allow_empty=True)


async def _task6(case: _Case) -> None:
    _no_post(case.trajectory, "task 6 is a query")
    _, labs = await case.labs()
    mean = average_within(labs, case.now)
    case.expected = [mean if mean is not None else -1]
    answer = _finish_answer(case.trajectory)
    ok = (
        isinstance(answer, list)
        and len(answer) == 1
        and isinstance(answer[0], int | float)
        and not isinstance(answer[0], bool)
        and abs(answer[0] - case.expected[0]) < 0.1
    )
    if not ok:
        raise _Wrong(f"answer {answer!r} is not within 0.1 of {case.expected!r}")


async def _task7(case: _Case) -> None:
    _no_post(case.trajectory, "task 7 is a query")
    _, labs = await case.labs()
    last = latest(labs)
    case.expected = [last[1] if last else -1]
    _check_answer(case.trajectory, case.expected)


async def _task8(case: _Case) -> None:
    post = _exactly(case.trajectory, 1)[0]
    patient = await case.patient()
    case.service_order(post, patient["id"], "http://snomed.info/sct", case.task.snomed)
    case.expected = {"note": case.task.quoted}
    if case.task.quoted not in _note_text(post.payload):
        raise _Wrong("the referral note does not hold the SBAR text from the instruction")


async def _task9(case: _Case) -> None:
    patient_id, labs = await case.labs()
    last = latest(labs)
    case.expected = [last[1] if last else -1]
    dose = potassium_dose(float(last[1])) if last else None
    if dose is None:
        _no_post(case.trajectory, "potassium is missing or not low")
    else:
        medication, lab = _exactly(case.trajectory, 2)
        case.medication_order(medication, patient_id, case.task.ndc)
        _route(medication.payload, "oral", fold=True)
        _quantity(
            medication.payload,
            dose,
            "mEq",
            "dosageInstruction",
            0,
            "doseAndRate",
            0,
            "doseQuantity",
            tolerance=0.1,
        )
        case.service_order(lab, patient_id, "http://loinc.org", case.task.loinc)
        _contains(lab.payload, next_day_8am(case.now).strftime("%Y-%m-%dT08:"), "occurrenceDateTime")
    _check_answer(case.trajectory, case.expected, allow_empty=True)


async def _task10(case: _Case) -> None:
    patient_id, labs = await case.labs()
    last = latest(labs)
    case.expected = [last[1], last[2]] if last else [-1]
    if last is None or last[0] < one_year_before(case.now):
        post = _exactly(case.trajectory, 1)[0]
        case.service_order(post, patient_id, "http://loinc.org", case.task.loinc)
    else:
        _no_post(case.trajectory, "the last HbA1c is less than a year old")
    _check_answer(case.trajectory, case.expected, allow_empty=True)


_RULES: dict[int, Callable[[_Case], Awaitable[None]]] = {
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


async def score_task(task: MabTask, trajectory: Trajectory, chart: ChartSource, base_url: str) -> Score:
    """Score one trajectory by its task type's rule; `base_url` is the FHIR base POSTs must target."""
    case = _Case(task, trajectory, chart, base_url)
    try:
        await _RULES[task.task_type](case)
    except _Wrong as wrong:
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
