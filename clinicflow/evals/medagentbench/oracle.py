"""A scripted agent that follows each task type's reference solution through the text protocol.

It speaks the same GET/POST/FINISH actions a model would and reads the server's answers from the
protocol's feedback, so a run with it checks the whole harness: prompts, GETs, POST recording and scoring.
Its payloads take the forms the benchmark's scorer demands (`route` a string, `note` an object), which
both protocol variants accept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Sequence
from typing import Any
from urllib.parse import urlencode

from clinicflow.evals.medagentbench.rules import (
    age_on,
    average_within,
    latest,
    latest_within,
    magnesium_dose,
    measurements,
    next_day_8am,
    one_year_before,
    patient_mrn,
    potassium_dose,
)
from clinicflow.evals.medagentbench.tasks import MabTask

__all__ = ["OracleAgent", "OracleError"]

_NAME_AND_DOB = re.compile(r"name (.+?) and DOB of (\d{4}-\d{2}-\d{2})")
_DATA = re.compile(r"^Here is the response from the GET request:\n(.*)\. Please call FINISH", re.DOTALL)

Plan = Generator[str, str, None]


class OracleError(RuntimeError):
    """The oracle met feedback it cannot follow (an unreadable GET answer, an unknown task type)."""


def _bundle(feedback: str) -> list[dict[str, Any]]:
    match = _DATA.match(feedback)
    if match is None:
        raise OracleError(f"the GET failed: {feedback[:200]}")
    try:
        data = json.loads(match.group(1))
    except json.JSONDecodeError as exc:
        raise OracleError(f"the GET answer is not JSON: {exc}") from None
    return [e["resource"] for e in data.get("entry") or [] if isinstance(e, dict) and "resource" in e]


def _finish(answers: list[Any]) -> str:
    return f"FINISH({json.dumps(answers)})"


def _post(url: str, payload: dict[str, Any]) -> str:
    return f"POST {url}\n{json.dumps(payload)}"


class OracleAgent:
    """Scripted reference solutions, one plan per task, driven by the protocol's feedback."""

    name = "oracle"

    def __init__(self) -> None:
        self._plans: dict[str, Plan] = {}

    async def respond(self, task: MabTask, messages: Sequence[dict[str, str]]) -> str:
        """The next action of the task's reference solution."""
        plan = self._plans.get(task.id)
        if plan is None or len(messages) == 1:
            plan = self._plan(task, _base_from_prompt(messages[0]["content"]))
            self._plans[task.id] = plan
            action = next(plan)
        else:
            action = plan.send(messages[-1]["content"])
        if action.startswith("FINISH("):
            self._plans.pop(task.id, None)
        return action

    def _plan(self, task: MabTask, base: str) -> Plan:
        plans = {
            1: self._task1,
            2: self._task2,
            3: self._task3,
            4: self._task4,
            5: self._task5,
            6: self._task6,
            7: self._task7,
            8: self._task8,
            9: self._task9,
            10: self._task10,
        }
        if task.task_type not in plans:
            raise OracleError(f"no reference solution for task type {task.task_type}")
        return plans[task.task_type](task, base)

    @staticmethod
    def _patient(task: MabTask, base: str) -> Generator[str, str, dict[str, Any]]:
        found = _bundle((yield f"GET {base}Patient?{urlencode({'identifier': task.eval_MRN})}"))
        if not found:
            raise OracleError(f"no patient with MRN {task.eval_MRN}")
        return found[0]

    @staticmethod
    def _labs(task: MabTask, base: str, patient_id: str) -> Generator[str, str, list[Any]]:
        query = urlencode({"patient": patient_id, "code": task.lab_code, "_count": 1000})
        return measurements(_bundle((yield f"GET {base}Observation?{query}")))

    def _task1(self, task: MabTask, base: str) -> Plan:
        match = _NAME_AND_DOB.search(task.instruction)
        if match is None:
            raise OracleError(f"cannot read the name and DOB of {task.id}")
        *given, family = match.group(1).split()
        query = urlencode({"given": " ".join(given), "family": family, "birthdate": match.group(2)})
        found = _bundle((yield f"GET {base}Patient?{query}"))
        yield _finish([patient_mrn(found[0])] if found else ["Patient not found"])

    def _task2(self, task: MabTask, base: str) -> Plan:
        patient = yield from self._patient(task, base)
        yield _finish([age_on(patient["birthDate"], task.now_dt.date())])

    def _task3(self, task: MabTask, base: str) -> Plan:
        patient = yield from self._patient(task, base)
        payload = {
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
            "code": {"text": task.flowsheet_id},
            "effectiveDateTime": task.now,
            "status": "final",
            "valueString": task.quoted,
            "subject": {"reference": f"Patient/{patient['id']}"},
        }
        yield _post(f"{base}Observation", payload)
        yield _finish([])

    def _task4(self, task: MabTask, base: str) -> Plan:
        patient = yield from self._patient(task, base)
        labs = yield from self._labs(task, base, patient["id"])
        last = latest_within(labs, task.now_dt)
        yield _finish([last[1] if last else -1])

    def _task5(self, task: MabTask, base: str) -> Plan:
        patient = yield from self._patient(task, base)
        labs = yield from self._labs(task, base, patient["id"])
        last = latest_within(labs, task.now_dt)
        dose = magnesium_dose(float(last[1])) if last else None
        if dose is not None:
            grams, hours = dose
            dosage = {
                "route": "IV",
                "doseAndRate": [
                    {
                        "doseQuantity": {"value": grams, "unit": "g"},
                        "rateQuantity": {"value": hours, "unit": "h"},
                    }
                ],
            }
            yield _post(
                f"{base}MedicationRequest", _medication(task, patient["id"], "magnesium sulfate", dosage)
            )
        yield _finish([last[1] if last else -1])

    def _task6(self, task: MabTask, base: str) -> Plan:
        patient = yield from self._patient(task, base)
        labs = yield from self._labs(task, base, patient["id"])
        mean = average_within(labs, task.now_dt)
        yield _finish([mean if mean is not None else -1])

    def _task7(self, task: MabTask, base: str) -> Plan:
        patient = yield from self._patient(task, base)
        labs = yield from self._labs(task, base, patient["id"])
        last = latest(labs)
        yield _finish([last[1] if last else -1])

    def _task8(self, task: MabTask, base: str) -> Plan:
        patient = yield from self._patient(task, base)
        payload = _service(
            task, patient["id"], "http://snomed.info/sct", task.snomed, "Orthopedic surgery referral"
        )
        payload["note"] = {"text": task.quoted}
        yield _post(f"{base}ServiceRequest", payload)
        yield _finish([])

    def _task9(self, task: MabTask, base: str) -> Plan:
        patient = yield from self._patient(task, base)
        labs = yield from self._labs(task, base, patient["id"])
        last = latest(labs)
        dose = potassium_dose(float(last[1])) if last else None
        if dose is not None:
            dosage = {
                "route": "oral",
                "doseAndRate": [{"doseQuantity": {"value": dose, "unit": "mEq"}}],
            }
            yield _post(
                f"{base}MedicationRequest", _medication(task, patient["id"], "potassium chloride", dosage)
            )
            lab = _service(task, patient["id"], "http://loinc.org", task.loinc, "Serum potassium")
            lab["occurrenceDateTime"] = next_day_8am(task.now_dt).isoformat()
            yield _post(f"{base}ServiceRequest", lab)
        yield _finish([last[1] if last else -1])

    def _task10(self, task: MabTask, base: str) -> Plan:
        patient = yield from self._patient(task, base)
        labs = yield from self._labs(task, base, patient["id"])
        last = latest(labs)
        if last is None or last[0] < one_year_before(task.now_dt):
            yield _post(
                f"{base}ServiceRequest",
                _service(task, patient["id"], "http://loinc.org", task.loinc, "HbA1c"),
            )
        yield _finish([last[1], last[2]] if last else [-1])


def _medication(task: MabTask, patient_id: str, name: str, dosage: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": task.ndc, "display": name}],
            "text": name,
        },
        "authoredOn": task.now,
        "dosageInstruction": [dosage],
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def _service(task: MabTask, patient_id: str, system: str, code: str, display: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "authoredOn": task.now,
        "status": "active",
        "intent": "order",
        "priority": "stat",
        "subject": {"reference": f"Patient/{patient_id}"},
    }


_API_BASE = re.compile(r"you should use (\S+) as the api_base")


def _base_from_prompt(prompt: str) -> str:
    match = _API_BASE.search(prompt)
    if match is None:
        raise OracleError("the prompt does not name the api_base")
    return match.group(1).rstrip(".")
