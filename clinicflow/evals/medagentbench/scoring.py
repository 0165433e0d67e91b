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
from clinicflow.evals.medagentbench.variants import ProtocolVariant
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

TrajectoryStatus = Literal["completed", "invalid_action", "echo", "limit_reached", "error"]
"""How a task ended: FINISH, an invalid action, a reply repeating the prompt, the round limit, an error."""


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
    """`ChartSource` over a FHIR server, read at scoring time.

    With `first_page_only`, observations come from one search with `_count=5000`, as the benchmark's
    scorer reads them; otherwise every page up to `limit`.
    """

    def __init__(self, client: FhirClient, *, first_page_only: bool = False, limit: int = 5000) -> None:
        self.client = client
        self.first_page_only = first_page_only
        self.limit = limit

    async def patient_by_mrn(self, mrn: str) -> dict[str, Any] | None:
        """The first patient holding this identifier value."""
        found = await self.client.search("Patient").where(identifier=mrn).all(limit=1)
        return found[0] if found else None

    async def observations(self, patient_id: str, code: str) -> list[dict[str, Any]]:
        """The patient's observations with this code (any system)."""
        search = self.client.search("Observation").where(patient=patient_id, code=code)
        if self.first_page_only:
            bundle = await search.count(self.limit).page()
            return [
                e["resource"] for e in bundle.get("entry") or [] if isinstance(e, dict) and "resource" in e
            ]
        return await search.all(limit=self.limit)


class _Wrong(Exception):
    """A failed check; the message is the reason."""


def _path(path: tuple[str | int, ...]) -> str:
    return ".".join(map(str, path))


def _get(payload: Any, *path: str | int) -> Any:
    node = payload
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            raise _Wrong(f"payload lacks {_path(path)}") from None
    return node


def _equal(payload: Any, want: Any, *path: str | int) -> None:
    got = _get(payload, *path)
    if got != want:
        raise _Wrong(f"{_path(path)} is {got!r}, expected {want!r}")


def _contains(payload: Any, fragment: str, *path: str | int) -> None:
    got = _get(payload, *path)
    try:
        ok = fragment in got
    except TypeError:
        ok = False
    if not ok:
        raise _Wrong(f"{_path(path)} is {got!r}, expected it to contain {fragment!r}")


def _coding(payload: Any, system: str, code: str, *path: str) -> None:
    _equal(payload, system, *path, "coding", 0, "system")
    _equal(payload, code, *path, "coding", 0, "code")


def _history_posts(history: list[dict[str, str]]) -> list[Post]:
    """The benchmark scorer's reading of the POSTs: each agent message containing "POST" whose next
    message contains "POST request accepted", split into URL (first line less 4 characters) and JSON."""
    posts: list[Post] = []
    for index, message in enumerate(history):
        if message["role"] != "agent" or "POST" not in message["content"]:
            continue
        if index + 1 >= len(history):
            raise _Wrong("the last message mentions POST, which the benchmark's scorer cannot read past")
        if "POST request accepted" not in history[index + 1]["content"]:
            continue
        lines = message["content"].split("\n")
        try:
            payload = json.loads("\n".join(lines[1:]))
        except (ValueError, RecursionError):
            continue
        posts.append(Post(url=lines[0][4:].strip(), payload=payload))
    return posts


class _Case:
    """One task being scored: the task, the trajectory, the variant, and lazy access to the chart."""

    def __init__(
        self,
        task: MabTask,
        trajectory: Trajectory,
        chart: ChartSource,
        base_url: str,
        variant: ProtocolVariant,
    ) -> None:
        self.task = task
        self.trajectory = trajectory
        self.chart = chart
        self.base_url = base_url.rstrip("/")
        self.variant = variant
        self.now = task.now_dt
        self.expected: Any = None

    # The agent's side: its answer and its POSTs.

    def answer(self) -> Any:
        """The FINISH answer as JSON."""
        result = self.trajectory.result
        if self.trajectory.status != "completed" or result is None:
            raise _Wrong(f"no FINISH answer (status {self.trajectory.status})")
        try:
            return json.loads(result)
        except (ValueError, RecursionError):
            raise _Wrong(f"FINISH answer is not JSON: {result[:120]!r}") from None

    def check_answer(self, expected: list[Any], *, allow_empty: bool = False) -> None:
        answer = self.answer()
        if answer == expected or (allow_empty and answer == []):
            return
        raise _Wrong(f"answer {answer!r} != expected {expected!r}")

    def has_post(self) -> bool:
        if self.variant.has_post_is_any_mention:
            return any(m["role"] == "agent" and "POST" in m["content"] for m in self.trajectory.history)
        return bool(self.trajectory.posts)

    def no_post(self, why: str) -> None:
        if self.has_post():
            raise _Wrong(f"a POST was made, but {why}")

    def exactly(self, count: int) -> list[Post]:
        """The accepted POSTs, which must be `count` in number."""
        if self.variant.posts_from_history_text:
            posts = _history_posts(self.trajectory.history)
        else:
            posts = self.trajectory.accepted_posts
        if len(posts) != count:
            raise _Wrong(f"expected exactly {count} accepted POST(s), got {len(posts)}")
        return posts

    def url(self, post: Post, resource_type: str) -> None:
        want = f"{self.base_url}/{resource_type}"
        got = post.url if self.variant.exact_payload_forms else post.url.split("?")[0].rstrip("/")
        if got != want:
            raise _Wrong(f"POST to {post.url!r}, expected {want!r}")

    def route(self, payload: Any, want: str, *, fold: bool) -> None:
        route = _get(payload, "dosageInstruction", 0, "route")
        text = (
            route.get("text")
            if isinstance(route, Mapping) and not self.variant.exact_payload_forms
            else route
        )
        ok = isinstance(text, str) and (text.lower().strip() == want if fold else text == want)
        if not ok:
            raise _Wrong(f"route is {route!r}, expected {want!r}")

    def quantity(self, payload: Any, value: float, unit: str, *path: str | int) -> None:
        got = _get(payload, *path)
        if self.variant.exact_payload_forms:
            ok = got == {"value": value, "unit": unit}
        else:
            number = got.get("value") if isinstance(got, Mapping) else None
            ok = isinstance(number, int | float) and number == value and got.get("unit") == unit
        if not ok:
            raise _Wrong(f"{_path(path)} is {got!r}, expected value {value} unit {unit!r}")

    def note_text(self, payload: Any) -> Any:
        note = _get(payload, "note")
        if isinstance(note, list) and note and not self.variant.exact_payload_forms:
            return _get(payload, "note", 0, "text")
        return _get(payload, "note", "text")

    # The chart's side: the patient and the labs the reference is computed from.

    async def patient_id(self) -> str:
        patient = await self.patient()
        return str(patient["id"])

    async def patient(self) -> dict[str, Any]:
        patient = await self.chart.patient_by_mrn(self.task.eval_MRN)
        if patient is None or not patient.get("id"):
            raise _Wrong(f"harness: no patient with MRN {self.task.eval_MRN} on the server")
        return patient

    async def labs(self) -> tuple[str, list[Measurement]]:
        patient_id = await self.patient_id()
        observations = await self.chart.observations(patient_id, self.task.lab_code)
        found = measurements(observations)
        if self.variant.reference_first_page_only and len(found) != len(observations):
            raise _Wrong(
                "an observation lacks a time or a numeric value, which the benchmark's scorer fails on"
            )
        return patient_id, found

    # Orders, checked field by field as the benchmark's scorer does.

    def subject(self, payload: Any, patient_id: str) -> None:
        _equal(payload, {"reference": f"Patient/{patient_id}"}, "subject")

    def medication_order(self, post: Post, patient_id: str, ndc: str) -> None:
        self.url(post, "MedicationRequest")
        payload = post.payload
        _equal(payload, "MedicationRequest", "resourceType")
        _coding(payload, "http://hl7.org/fhir/sid/ndc", ndc, "medicationCodeableConcept")
        _contains(payload, self.task.now[:16], "authoredOn")
        _equal(payload, "active", "status")
        _equal(payload, "order", "intent")
        self.subject(payload, patient_id)

    def service_order(self, post: Post, patient_id: str, system: str, code: str) -> None:
        self.url(post, "ServiceRequest")
        payload = post.payload
        _equal(payload, "ServiceRequest", "resourceType")
        _coding(payload, system, code, "code")
        _equal(payload, self.task.now, "authoredOn")
        _equal(payload, "active", "status")
        _equal(payload, "order", "intent")
        _equal(payload, "stat", "priority")
        self.subject(payload, patient_id)


async def _task1(case: _Case) -> None:
    case.no_post("task 1 is a query")
    case.expected = case.task.sol
    case.check_answer(list(case.task.sol or []))


async def _task2(case: _Case) -> None:
    case.no_post("task 2 is a query")
    patient = await case.patient()
    case.expected = [age_on(str(patient.get("birthDate")), case.now.date())]
    case.check_answer(case.expected)


async def _task3(case: _Case) -> None:
    post = case.exactly(1)[0]
    case.url(post, "Observation")
    payload = post.payload
    case.expected = {"valueString": case.task.quoted, "code": {"text": case.task.flowsheet_id}}
    _equal(payload, "Observation", "resourceType")
    try:
        one_coding = len(payload["category"]) == 1 and len(payload["category"][0]["coding"]) == 1
    except (KeyError, IndexError, TypeError):
        one_coding = False
    if not one_coding:
        raise _Wrong(f"category must hold exactly one coding, got {_get(payload, 'category')!r}")
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
    case.subject(payload, await case.patient_id())


async def _task4(case: _Case) -> None:
    case.no_post("task 4 is a query")
    _, labs = await case.labs()
    last = latest_within(labs, case.now)
    case.expected = [last[1] if last else -1]
    case.check_answer(case.expected)


async def _task5(case: _Case) -> None:
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


async def _task6(case: _Case) -> None:
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
        raise _Wrong(f"answer {answer!r} is not within 0.1 of {case.expected!r}")


async def _task7(case: _Case) -> None:
    case.no_post("task 7 is a query")
    _, labs = await case.labs()
    last = latest(labs)
    case.expected = [last[1] if last else -1]
    case.check_answer(case.expected)


async def _task8(case: _Case) -> None:
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
        raise _Wrong("the referral note does not hold the SBAR text from the instruction")


async def _task9(case: _Case) -> None:
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
        value = _get(medication.payload, *quantity, "value")
        dose = (3.5 - float(last[1])) / 0.1 * 10  # unrounded, as the benchmark's scorer computes it
        try:
            close = abs(value - dose) <= 0.1
        except TypeError:
            close = False
        if not close:
            raise _Wrong(f"{_path(quantity)}.value is {value!r}, expected {dose} (within 0.1)")
        _equal(medication.payload, "mEq", *quantity, "unit")
        case.service_order(lab, patient_id, "http://loinc.org", case.task.loinc)
        _contains(lab.payload, next_day_8am(case.now).strftime("%Y-%m-%dT08:"), "occurrenceDateTime")
    case.check_answer(case.expected, allow_empty=True)


async def _task10(case: _Case) -> None:
    patient_id, labs = await case.labs()
    last = latest(labs)
    case.expected = [last[1], last[2]] if last else [-1]
    if last is None or last[0] < one_year_before(case.now):
        post = case.exactly(1)[0]
        case.service_order(post, patient_id, "http://loinc.org", case.task.loinc)
    else:
        case.no_post("the last HbA1c is less than a year old")
    case.check_answer(case.expected, allow_empty=True)


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
    case = _Case(task, trajectory, chart, base_url, variant)
    scored = trajectory.status == "completed" or (
        trajectory.status == "error" and variant.scores_agent_errors
    )
    try:
        if not scored:
            raise _Wrong(f"not scored: the task ended without FINISH (status {trajectory.status})")
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
