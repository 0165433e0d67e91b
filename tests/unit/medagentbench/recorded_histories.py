"""Recorded agent replies for MedAgentBench tasks in the benchmark's format, with a chart to score them on.

Three patients (whose FHIR ids are their MRNs, as on the benchmark's server) cover every branch of the
conditional tasks: S1000001 has low values and an old HbA1c, S1000002 normal, recent values, and S1000003
no magnesium in 24 hours, no potassium and no HbA1c. Each case is one agent's replies on one task: right
and wrong answers, accepted and rejected forms, malformed actions, missing FINISHes, agent errors and
echoes of the prompt. `ORIGINAL_FORMS_ONLY` and `CLINICFLOW_ACCEPTS` name the cases where the variants
part.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tests.unit.medagentbench.original_refsol import FHIR_API_BASE, MEDAGENTBENCH_PROMPT, SBAR, Server

NOW = "2023-11-13T10:15:00+00:00"
T0 = datetime.fromisoformat(NOW)
BASE = FHIR_API_BASE.rstrip("/")
LOW, NORMAL, ABSENT = "S1000001", "S1000002", "S1000003"


def _at(hours: float) -> str:
    return (T0 - timedelta(hours=hours)).isoformat()


A1C_OLD, A1C_RECENT = _at(24 * 400), _at(24 * 100)
SERVER = Server(
    birth_dates={LOW: "1980-11-14", NORMAL: "1975-01-02", ABSENT: "1990-06-30"},
    labs={
        (LOW, "MG"): [(_at(30), 2.0), (_at(5), 1.3)],
        (LOW, "GLU"): [(_at(30), 300), (_at(20), 100), (_at(2), 150)],
        (LOW, "K"): [(_at(50), 4.0), (_at(6), 3.1)],
        (LOW, "A1C"): [(A1C_OLD, 6.0)],
        (NORMAL, "MG"): [(_at(3), 2.1)],
        (NORMAL, "K"): [(_at(5), 4.2)],
        (NORMAL, "A1C"): [(A1C_RECENT, 6.1)],
        (ABSENT, "MG"): [(_at(30), 1.0)],
        (ABSENT, "GLU"): [(_at(30), 120)],
    },
)

_NOW_IS = f"It's {NOW} now."
_MG_DOSING = (
    "Dosing instructions: (1) Mild deficiency (eg, serum magnesium 1.5 to 1.9 mg/dL):\nIV: 1 g over 1 hour.\n"
    "(2) Moderate deficiency (eg, serum magnesium 1 to <1.5 mg/dL):\nIV: 2 g over 2 hours.\n"
    "(3) Severe deficiency (eg, serum magnesium <1 mg/dL):\nIV: 4 g over 4 hours.\n"
)


def _task(task_id: str, mrn: str, instruction: str, context: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "instruction": instruction, "context": context, "eval_MRN": mrn, **extra}


def _mg(task_id: str, mrn: str) -> dict[str, Any]:
    return _task(
        task_id,
        mrn,
        f"Check patient {mrn}'s last serum magnesium level within last 24 hours. If low, then order "
        "replacement IV magnesium according to dosing instructions. If no magnesium level has been recorded "
        "in the last 24 hours, don't order anything.\n",
        f'{_NOW_IS} The code for magnesium is "MG". The NDC for replacement IV magnesium is 0338-1715-40. '
        + _MG_DOSING,
    )


def _k(task_id: str, mrn: str) -> dict[str, Any]:
    return _task(
        task_id,
        mrn,
        f"Check patient {mrn}'s most recent potassium level. If low, then order replacement potassium "
        "according to dosing instructions. Also pair this order with a morning serum potassium level to be "
        "completed the next day at 8am. \n",
        f'{_NOW_IS} The code for potassium is "K".The NDC for replacement potassium is 40032-917-01. Dosing '
        "instructions: for every 0.1 mEq/L (or mmol/L) below threshold, order 10 mEq potassium oral "
        "repletion) to reach a goal of 3.5 serum level. The LOINC code for serum potassium level is 2823-3.",
    )


def _a1c(task_id: str, mrn: str) -> dict[str, Any]:
    return _task(
        task_id,
        mrn,
        f"What's the last HbA1C (hemoglobin A1C) value in the chart for patient {mrn} and when was it "
        "recorded? If the lab value result date is greater than 1 year old, order a new HbA1C lab test. ",
        f'{_NOW_IS} The code for HbA1C is "A1C". The LOINC code for ordering HbA1C lab is: 4548-4. The '
        "answer should be [-1] if a measurement is not available.",
    )


def _query(task_id: str, mrn: str, what: str, lab: str, code: str) -> dict[str, Any]:
    return _task(
        task_id,
        mrn,
        f"What is the {what} of the patient {mrn}?",
        f'{_NOW_IS} The code for {lab} is "{code}". The answer should be a single number converted to a '
        "unit of mg/dL, and it should be -1 if a measurement is not available.",
    )


TASKS: dict[str, dict[str, Any]] = {
    t["id"]: t
    for t in [
        _task(
            "task1_1",
            LOW,
            "What's the MRN of the patient with name Ann Lee and DOB of 1980-11-14? If the patient does not "
            'exist, the answer should be "Patient not found"',
            "",
            sol=[LOW],
        ),
        _task(
            "task2_1",
            LOW,
            f"What's the age of the patient with MRN of {LOW}?",
            f"It's {NOW} now, and the answer should be rounded down to an integer.",
        ),
        _task(
            "task3_1",
            LOW,
            f"I just measured the blood pressure for patient with MRN of {LOW}, and it is "
            '"118/77 mmHg". Help me record it.',
            f"{_NOW_IS} The flowsheet ID for blood pressure is BP.",
        ),
        _query("task4_1", LOW, "most recent magnesium level within last 24 hours", "magnesium", "MG"),
        _query("task4_2", ABSENT, "most recent magnesium level within last 24 hours", "magnesium", "MG"),
        _mg("task5_1", LOW),
        _mg("task5_2", NORMAL),
        _mg("task5_3", ABSENT),
        _query("task6_1", LOW, "average CBG over the last 24 hours", "CBG", "GLU"),
        _query("task6_2", ABSENT, "average CBG over the last 24 hours", "CBG", "GLU"),
        _query("task7_1", LOW, "most recent CBG", "CBG", "GLU"),
        _task(
            "task8_1",
            LOW,
            f"Order orthopedic surgery referral for patient {LOW}. Specify within the free text of the "
            f'referral, "{SBAR}"',
            f"{_NOW_IS} The SNOMED code for orthopedic surgery referral is 306181000000106.",
        ),
        _k("task9_1", LOW),
        _k("task9_2", NORMAL),
        _k("task9_3", ABSENT),
        _a1c("task10_1", LOW),
        _a1c("task10_2", NORMAL),
        _a1c("task10_3", ABSENT),
    ]
}


def prompt(task_id: str) -> str:
    """The opening message the agent saw (no function declarations)."""
    task = TASKS[task_id]
    return MEDAGENTBENCH_PROMPT.format(
        api_base=FHIR_API_BASE, functions="[]", context=task["context"], question=task["instruction"]
    )


# Replies.


def get(query: str) -> str:
    return f"GET {BASE}/{query}"


def post(resource: str, payload: Any, *, url: str | None = None) -> str:
    return f"POST {url or f'{BASE}/{resource}'}\n{json.dumps(payload)}"


def finish(answers: Any) -> str:
    return f"FINISH({json.dumps(answers)})"


def edit(payload: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _subject(mrn: str = LOW) -> dict[str, str]:
    return {"reference": f"Patient/{mrn}"}


BP = {
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
    "subject": _subject(),
}
MG_ORDER = {
    "resourceType": "MedicationRequest",
    "medicationCodeableConcept": {
        "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "0338-1715-40"}]
    },
    "authoredOn": NOW,
    "dosageInstruction": [
        {
            "route": "IV",
            "doseAndRate": [
                {"doseQuantity": {"value": 2, "unit": "g"}, "rateQuantity": {"value": 2, "unit": "h"}}
            ],
        }
    ],
    "status": "active",
    "intent": "order",
    "subject": _subject(),
}
K_ORDER = {
    "resourceType": "MedicationRequest",
    "medicationCodeableConcept": {
        "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "40032-917-01"}]
    },
    "authoredOn": NOW,
    "dosageInstruction": [{"route": "oral", "doseAndRate": [{"doseQuantity": {"value": 40, "unit": "mEq"}}]}],
    "status": "active",
    "intent": "order",
    "subject": _subject(),
}


def service(system: str, code: str, mrn: str = LOW, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "code": {"coding": [{"system": system, "code": code}]},
        "authoredOn": NOW,
        "status": "active",
        "intent": "order",
        "priority": "stat",
        "subject": _subject(mrn),
        **extra,
    }


K_LAB = service("http://loinc.org", "2823-3", occurrenceDateTime="2023-11-14T08:00:00+00:00")
REFERRAL = service("http://snomed.info/sct", "306181000000106", note={"text": SBAR})
QUANTITY = ["dosageInstruction", 0, "doseAndRate", 0]


@dataclass(frozen=True)
class RecordedCase:
    """One agent's replies on one task; an exception stands for an agent that failed at that turn."""

    name: str
    task_id: str
    replies: tuple[str | BaseException, ...]
    echo: bool = False


def _case(name: str, task_id: str, *replies: str | BaseException, echo: bool = False) -> RecordedCase:
    return RecordedCase(name, task_id, replies, echo)


_FEEDBACK_ECHO = (
    "POST request accepted and executed successfully. Please call FINISH if you have got answers for all the "
    "questions and finished all the requested tasks"
)
_LIMIT = tuple(get(f"Patient?identifier={LOW}") for _ in range(8))

CASES: list[RecordedCase] = [
    # Task 1: find a patient's MRN.
    _case("t1 right", "task1_1", get("Patient?given=Ann&family=Lee&birthdate=1980-11-14"), finish([LOW])),
    _case("t1 wrong MRN", "task1_1", finish([NORMAL])),
    _case("t1 FINISH without ')'", "task1_1", f'FINISH(["{LOW}"]'),
    _case(
        "t1 a GET with a second line naming POST",
        "task1_1",
        get(f"Patient?identifier={LOW}\nNo POST needed."),
        finish([LOW]),
    ),
    _case("t1 a rejected POST", "task1_1", f"POST {BASE}/Observation\nnot json", finish([LOW])),
    _case("t1 round limit", "task1_1", *_LIMIT),
    # Task 2: age.
    _case("t2 right", "task2_1", get(f"Patient?identifier={LOW}"), finish([42])),
    _case("t2 wrong", "task2_1", finish([43])),
    _case("t2 FINISH in code fences", "task2_1", "```\nFINISH([42])\n```"),
    _case("t2 text after FINISH", "task2_1", "FINISH([42]) I hope this helps"),
    _case("t2 answer as text", "task2_1", "The patient is 42."),
    # Task 3: record a blood pressure.
    _case("t3 right", "task3_1", get(f"Patient?identifier={LOW}"), post("Observation", BP), finish([])),
    _case("t3 no FINISH", "task3_1", post("Observation", BP), *_LIMIT[:7]),
    _case("t3 POST then invalid action", "task3_1", post("Observation", BP), "Done."),
    _case(
        "t3 rejected POST, then a right one",
        "task3_1",
        f"POST {BASE}/Observation\n{{oops",
        post("Observation", BP),
        finish([]),
    ),
    _case("t3 two POSTs", "task3_1", post("Observation", BP), post("Observation", BP), finish([])),
    _case("t3 POST in code fences", "task3_1", f"```\n{post('Observation', BP)}\n```", finish([])),
    _case(
        "t3 URL with a trailing slash",
        "task3_1",
        post("Observation", BP, url=f"{BASE}/Observation/"),
        finish([]),
    ),
    _case(
        "t3 URL with a query",
        "task3_1",
        post("Observation", BP, url=f"{BASE}/Observation?_format=json"),
        finish([]),
    ),
    _case("t3 space before POST", "task3_1", " " + post("Observation", BP), finish([])),
    _case("t3 FINISH naming POST", "task3_1", post("Observation", BP), finish(["POST done"])),
    _case(
        "t3 agent fails after the POST", "task3_1", post("Observation", BP), RuntimeError("model server down")
    ),
    _case(
        "t3 wrong value", "task3_1", post("Observation", edit(BP, ["valueString"], "118/78 mmHg")), finish([])
    ),
    _case(
        "t3 extra coding key",
        "task3_1",
        post("Observation", edit(BP, ["category", 0, "coding", 0, "version"], "1")),
        finish([]),
    ),
    _case(
        "t3 wrong subject",
        "task3_1",
        post("Observation", edit(BP, ["subject"], _subject(NORMAL))),
        finish([]),
    ),
    # Task 4: magnesium in the last 24 hours.
    _case("t4 right", "task4_1", finish([1.3])),
    _case("t4 outside the window", "task4_1", finish([2.0])),
    _case("t4 none in 24 h", "task4_2", finish([-1])),
    _case("t4 POST on a query", "task4_1", post("Observation", BP), finish([1.3])),
    # Task 5: magnesium replacement.
    _case("t5 low: right order", "task5_1", post("MedicationRequest", MG_ORDER), finish([1.3])),
    _case("t5 low: FINISH([])", "task5_1", post("MedicationRequest", MG_ORDER), finish([])),
    _case(
        "t5 low: route as an object",
        "task5_1",
        post("MedicationRequest", edit(MG_ORDER, ["dosageInstruction", 0, "route"], {"text": "IV"})),
        finish([1.3]),
    ),
    _case(
        "t5 low: dose with a UCUM code",
        "task5_1",
        post(
            "MedicationRequest",
            edit(
                MG_ORDER,
                [*QUANTITY, "doseQuantity"],
                {"value": 2, "unit": "g", "system": "http://unitsofmeasure.org"},
            ),
        ),
        finish([1.3]),
    ),
    _case(
        "t5 low: dose as 2.0",
        "task5_1",
        post("MedicationRequest", edit(MG_ORDER, [*QUANTITY, "doseQuantity", "value"], 2.0)),
        finish([1.3]),
    ),
    _case(
        "t5 low: wrong dose",
        "task5_1",
        post("MedicationRequest", edit(MG_ORDER, [*QUANTITY, "doseQuantity", "value"], 1)),
        finish([1.3]),
    ),
    _case("t5 low: no order", "task5_1", finish([1.3])),
    _case("t5 low: wrong answer", "task5_1", post("MedicationRequest", MG_ORDER), finish([2.0])),
    _case("t5 normal: no order", "task5_2", finish([2.1])),
    _case(
        "t5 normal: an order",
        "task5_2",
        post("MedicationRequest", edit(MG_ORDER, ["subject"], _subject(NORMAL))),
        finish([2.1]),
    ),
    _case("t5 none: no order", "task5_3", finish([-1])),
    _case("t5 none: any answer", "task5_3", finish(["whatever"])),
    _case("t5 none: no FINISH", "task5_3", *_LIMIT),
    _case("t5 none: invalid action", "task5_3", "I cannot find a magnesium level."),
    _case(
        "t5 none: an order",
        "task5_3",
        post("MedicationRequest", edit(MG_ORDER, ["subject"], _subject(ABSENT))),
        finish([-1]),
    ),
    # Task 6: average glucose.
    _case("t6 right", "task6_1", finish([125.0])),
    _case("t6 within 0.1", "task6_1", finish([125.05])),
    _case("t6 off by 0.2", "task6_1", finish([125.2])),
    _case("t6 as a string", "task6_1", finish(["125"])),
    _case("t6 two numbers", "task6_1", finish([125.0, 1])),
    _case("t6 none in 24 h", "task6_2", finish([-1])),
    # Task 7: most recent glucose.
    _case("t7 right", "task7_1", finish([150])),
    _case("t7 wrong", "task7_1", finish([100])),
    # Task 8: referral.
    _case("t8 right", "task8_1", post("ServiceRequest", REFERRAL), finish([])),
    _case("t8 no FINISH", "task8_1", post("ServiceRequest", REFERRAL), *_LIMIT[:7]),
    _case(
        "t8 note as a list",
        "task8_1",
        post("ServiceRequest", edit(REFERRAL, ["note"], [{"text": SBAR}])),
        finish([]),
    ),
    _case(
        "t8 note with more text",
        "task8_1",
        post("ServiceRequest", edit(REFERRAL, ["note"], {"text": f"Referral. {SBAR}"})),
        finish([]),
    ),
    _case(
        "t8 rejected POST, then a right one",
        "task8_1",
        f"POST {BASE}/ServiceRequest\n{{",
        post("ServiceRequest", REFERRAL),
        finish([]),
    ),
    _case(
        "t8 wrong priority",
        "task8_1",
        post("ServiceRequest", edit(REFERRAL, ["priority"], "routine")),
        finish([]),
    ),
    # Task 9: potassium replacement and a lab.
    _case(
        "t9 low: right orders",
        "task9_1",
        post("MedicationRequest", K_ORDER),
        post("ServiceRequest", K_LAB),
        finish([3.1]),
    ),
    _case(
        "t9 low: route ' Oral '",
        "task9_1",
        post("MedicationRequest", edit(K_ORDER, ["dosageInstruction", 0, "route"], " Oral ")),
        post("ServiceRequest", K_LAB),
        finish([]),
    ),
    _case(
        "t9 low: route as an object",
        "task9_1",
        post("MedicationRequest", edit(K_ORDER, ["dosageInstruction", 0, "route"], {"text": "oral"})),
        post("ServiceRequest", K_LAB),
        finish([3.1]),
    ),
    _case(
        "t9 low: dose 40.05",
        "task9_1",
        post("MedicationRequest", edit(K_ORDER, [*QUANTITY, "doseQuantity", "value"], 40.05)),
        post("ServiceRequest", K_LAB),
        finish([3.1]),
    ),
    _case(
        "t9 low: orders swapped",
        "task9_1",
        post("ServiceRequest", K_LAB),
        post("MedicationRequest", K_ORDER),
        finish([3.1]),
    ),
    _case(
        "t9 low: lab at 9",
        "task9_1",
        post("MedicationRequest", K_ORDER),
        post("ServiceRequest", edit(K_LAB, ["occurrenceDateTime"], "2023-11-14T09:00:00+00:00")),
        finish([3.1]),
    ),
    _case("t9 low: no lab", "task9_1", post("MedicationRequest", K_ORDER), finish([3.1])),
    _case("t9 normal: no order", "task9_2", finish([4.2])),
    _case("t9 none: no order", "task9_3", finish([-1])),
    _case(
        "t9 none: an order",
        "task9_3",
        post("MedicationRequest", edit(K_ORDER, ["subject"], _subject(ABSENT))),
        finish([-1]),
    ),
    # Task 10: HbA1c.
    _case(
        "t10 old: order",
        "task10_1",
        post("ServiceRequest", service("http://loinc.org", "4548-4")),
        finish([6.0, A1C_OLD]),
    ),
    _case("t10 old: no order", "task10_1", finish([6.0, A1C_OLD])),
    _case("t10 recent: no order", "task10_2", finish([6.1, A1C_RECENT])),
    _case(
        "t10 recent: an order",
        "task10_2",
        post("ServiceRequest", service("http://loinc.org", "4548-4", NORMAL)),
        finish([6.1, A1C_RECENT]),
    ),
    _case(
        "t10 none: order",
        "task10_3",
        post("ServiceRequest", service("http://loinc.org", "4548-4", ABSENT)),
        finish([-1]),
    ),
    # Echoes: the agent repeats its prompt, whole or in part, or the feedback.
    _case("echo: the whole prompt", "task5_3", prompt("task5_3"), echo=True),
    _case("echo: the prompt's FINISH line", "task5_3", "FINISH([answer1, answer2, ...])", echo=True),
    _case(
        "echo: the prompt from its FINISH line",
        "task5_3",
        prompt("task5_3")[prompt("task5_3").index("FINISH(") :],
        echo=True,
    ),
    _case(
        "echo: the prompt from its POST line",
        "task9_3",
        prompt("task9_3")[prompt("task9_3").index("POST url") :],
        *_LIMIT[:7],
        echo=True,
    ),
    _case(
        "echo: the prompt's GET line",
        "task10_2",
        "GET url?param_name1=param_value1&param_name2=param_value2...",
        finish([6.1, A1C_RECENT]),
        echo=True,
    ),
    _case("echo: the POST feedback", "task5_3", *([_FEEDBACK_ECHO] * 8), echo=True),
    _case("echo: the whole prompt on a query", "task2_1", prompt("task2_1"), echo=True),
]

ORIGINAL_FORMS_ONLY = frozenset(
    {
        "t1 FINISH without ')'",
        "t1 a GET with a second line naming POST",
        "t3 POST in code fences",
        "t3 URL with a trailing slash",
        "t3 URL with a query",
        "t3 space before POST",
        "t3 FINISH naming POST",
        "t5 low: route as an object",
        "t5 low: dose with a UCUM code",
        "t8 note as a list",
        "t9 low: route as an object",
    }
)
"""Cases the original scores 0 and the clinicflow variant 1."""

CLINICFLOW_REFUSES = frozenset({"t3 agent fails after the POST"})
"""Cases the original scores 1 and the clinicflow variant 0."""
