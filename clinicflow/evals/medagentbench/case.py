"""One task being scored: the checks a rule makes on the agent's answer and POSTs, and lazy access to the
chart the reference is computed from. A failed check raises `Wrong`, whose message is the reason."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from clinicflow.evals.medagentbench.chart import ChartSource
from clinicflow.evals.medagentbench.rules import Measurement, measurements
from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.evals.medagentbench.trajectory import Post, Trajectory
from clinicflow.evals.medagentbench.variants import ProtocolVariant

__all__ = ["ScoredCase", "Wrong", "contains", "equal", "path_text", "value_at"]


class Wrong(Exception):
    """A failed check; the message is the reason."""


def path_text(path: tuple[str | int, ...]) -> str:
    """A payload path as the reasons print it (`dosageInstruction.0.route`)."""
    return ".".join(map(str, path))


def value_at(payload: Any, *path: str | int) -> Any:
    """The payload's value at `path`; Wrong when it has none."""
    node = payload
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            raise Wrong(f"payload lacks {path_text(path)}") from None
    return node


def equal(payload: Any, want: Any, *path: str | int) -> None:
    """Wrong unless the value at `path` equals `want`."""
    got = value_at(payload, *path)
    if got != want:
        raise Wrong(f"{path_text(path)} is {got!r}, expected {want!r}")


def contains(payload: Any, fragment: str, *path: str | int) -> None:
    """Wrong unless the value at `path` contains `fragment`."""
    got = value_at(payload, *path)
    try:
        ok = fragment in got
    except TypeError:
        ok = False
    if not ok:
        raise Wrong(f"{path_text(path)} is {got!r}, expected it to contain {fragment!r}")


def _coding(payload: Any, system: str, code: str, *path: str) -> None:
    equal(payload, system, *path, "coding", 0, "system")
    equal(payload, code, *path, "coding", 0, "code")


def _history_posts(history: list[dict[str, str]]) -> list[Post]:
    """The benchmark scorer's reading of the POSTs: each agent message containing "POST" whose next
    message contains "POST request accepted", split into URL (first line less 4 characters) and JSON."""
    posts: list[Post] = []
    for index, message in enumerate(history):
        if message["role"] != "agent" or "POST" not in message["content"]:
            continue
        if index + 1 >= len(history):
            raise Wrong("the last message mentions POST, which the benchmark's scorer cannot read past")
        if "POST request accepted" not in history[index + 1]["content"]:
            continue
        lines = message["content"].split("\n")
        try:
            payload = json.loads("\n".join(lines[1:]))
        except (ValueError, RecursionError):
            continue
        posts.append(Post(url=lines[0][4:].strip(), payload=payload))
    return posts


class ScoredCase:
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
            raise Wrong(f"no FINISH answer (status {self.trajectory.status})")
        try:
            return json.loads(result)
        except (ValueError, RecursionError):
            raise Wrong(f"FINISH answer is not JSON: {result[:120]!r}") from None

    def check_answer(self, expected: list[Any], *, allow_empty: bool = False) -> None:
        answer = self.answer()
        if answer == expected or (allow_empty and answer == []):
            return
        raise Wrong(f"answer {answer!r} != expected {expected!r}")

    def has_post(self) -> bool:
        if self.variant.has_post_is_any_mention:
            return any(m["role"] == "agent" and "POST" in m["content"] for m in self.trajectory.history)
        return bool(self.trajectory.posts)

    def no_post(self, why: str) -> None:
        if self.has_post():
            raise Wrong(f"a POST was made, but {why}")

    def exactly(self, count: int) -> list[Post]:
        """The accepted POSTs, which must be `count` in number."""
        if self.variant.posts_from_history_text:
            posts = _history_posts(self.trajectory.history)
        else:
            posts = self.trajectory.accepted_posts
        if len(posts) != count:
            raise Wrong(f"expected exactly {count} accepted POST(s), got {len(posts)}")
        return posts

    def url(self, post: Post, resource_type: str) -> None:
        want = f"{self.base_url}/{resource_type}"
        got = post.url if self.variant.exact_payload_forms else post.url.split("?")[0].rstrip("/")
        if got != want:
            raise Wrong(f"POST to {post.url!r}, expected {want!r}")

    def route(self, payload: Any, want: str, *, fold: bool) -> None:
        route = value_at(payload, "dosageInstruction", 0, "route")
        text = (
            route.get("text")
            if isinstance(route, Mapping) and not self.variant.exact_payload_forms
            else route
        )
        ok = isinstance(text, str) and (text.lower().strip() == want if fold else text == want)
        if not ok:
            raise Wrong(f"route is {route!r}, expected {want!r}")

    def quantity(self, payload: Any, value: float, unit: str, *path: str | int) -> None:
        got = value_at(payload, *path)
        if self.variant.exact_payload_forms:
            ok = got == {"value": value, "unit": unit}
        else:
            number = got.get("value") if isinstance(got, Mapping) else None
            ok = isinstance(number, int | float) and number == value and got.get("unit") == unit
        if not ok:
            raise Wrong(f"{path_text(path)} is {got!r}, expected value {value} unit {unit!r}")

    def note_text(self, payload: Any) -> Any:
        note = value_at(payload, "note")
        if isinstance(note, list) and note and not self.variant.exact_payload_forms:
            return value_at(payload, "note", 0, "text")
        return value_at(payload, "note", "text")

    # The chart's side: the patient and the labs the reference is computed from.

    async def patient_id(self) -> str:
        patient = await self.patient()
        return str(patient["id"])

    async def patient(self) -> dict[str, Any]:
        patient = await self.chart.patient_by_mrn(self.task.eval_MRN)
        if patient is None or not patient.get("id"):
            raise Wrong(f"harness: no patient with MRN {self.task.eval_MRN} on the server")
        return patient

    async def labs(self) -> tuple[str, list[Measurement]]:
        patient_id = await self.patient_id()
        observations = await self.chart.observations(patient_id, self.task.lab_code)
        found = measurements(observations)
        if self.variant.reference_first_page_only and len(found) != len(observations):
            raise Wrong(
                "an observation lacks a time or a numeric value, which the benchmark's scorer fails on"
            )
        return patient_id, found

    # Orders, checked field by field as the benchmark's scorer does.

    def subject(self, payload: Any, patient_id: str) -> None:
        equal(payload, {"reference": f"Patient/{patient_id}"}, "subject")

    def medication_order(self, post: Post, patient_id: str, ndc: str) -> None:
        self.url(post, "MedicationRequest")
        payload = post.payload
        equal(payload, "MedicationRequest", "resourceType")
        _coding(payload, "http://hl7.org/fhir/sid/ndc", ndc, "medicationCodeableConcept")
        contains(payload, self.task.now[:16], "authoredOn")
        equal(payload, "active", "status")
        equal(payload, "order", "intent")
        self.subject(payload, patient_id)

    def service_order(self, post: Post, patient_id: str, system: str, code: str) -> None:
        self.url(post, "ServiceRequest")
        payload = post.payload
        equal(payload, "ServiceRequest", "resourceType")
        _coding(payload, system, code, "code")
        equal(payload, self.task.now, "authoredOn")
        equal(payload, "active", "status")
        equal(payload, "order", "intent")
        equal(payload, "stat", "priority")
        self.subject(payload, patient_id)
