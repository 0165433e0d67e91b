"""An offline MedAgentBench task set: the 10 task types instantiated on clinicflow's synthetic cohort.

`prepare_synthetic_cohort` gives each patient an MRN identifier ("S" + 7 digits, system `MRN_SYSTEM`) and
adds the labs the tasks read (codes MG, GLU, K, A1C, each with its LOINC coding, units and realistic
values and times relative to the task set's "now"). Patients take turns at three lab profiles, so every
branch of the conditional tasks occurs: low values that need orders, normal values that need none, and
missing or out-of-window values. Writes are conditional creates, so preparing a server twice adds nothing.
`generate_tasks` then writes tasks in the benchmark's format, with reference answers in `sol`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from clinicflow.evals.medagentbench.rules import (
    MRN_SYSTEM,
    age_on,
    average_within,
    latest,
    latest_within,
    measurements,
)
from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.fhir import FhirClient

__all__ = [
    "LABS",
    "LAB_CODE_SYSTEM",
    "SYNTHETIC_LAB_SYSTEM",
    "SYNTHETIC_NOW",
    "LabSpec",
    "SyntheticPatient",
    "generate_tasks",
    "lab_observations",
    "prepare_synthetic_cohort",
]

SYNTHETIC_NOW = "2026-01-01T10:15:00+00:00"
"""The current time of the synthetic tasks: the demo cohort is simulated up to 2026-01-01."""

LAB_CODE_SYSTEM = "urn:clinicflow:lab-code"
SYNTHETIC_LAB_SYSTEM = "urn:clinicflow:synthetic-lab"

Profile = Literal["low", "normal", "absent"]
PROFILES: tuple[Profile, ...] = ("low", "normal", "absent")


@dataclass(frozen=True)
class LabSpec:
    """One lab the tasks use: its task code, LOINC coding and unit."""

    code: str
    loinc: str
    display: str
    unit: str


LABS: dict[str, LabSpec] = {
    "MG": LabSpec("MG", "2601-3", "Magnesium [Mass/volume] in Serum or Plasma", "mg/dL"),
    "GLU": LabSpec("GLU", "41653-7", "Glucose [Mass/volume] in Capillary blood by Glucometer", "mg/dL"),
    "K": LabSpec("K", "2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L"),
    "A1C": LabSpec("A1C", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%"),
}


@dataclass
class SyntheticPatient:
    """A cohort patient as the task set sees it: id, MRN, name, birth date, lab profile and labs."""

    patient_id: str
    mrn: str
    given: str
    family: str
    birth_date: str
    profile: Profile
    labs: list[dict[str, Any]] = field(default_factory=list)

    def observations(self, code: str) -> list[dict[str, Any]]:
        """This patient's synthetic observations with a task code."""
        return [o for o in self.labs if any(c.get("code") == code for c in o["code"]["coding"])]


def _when(now: datetime, hours_before: float) -> str:
    moment = (now - timedelta(hours=hours_before)).replace(microsecond=0)
    return moment.isoformat()


def _lab_plan(profile: Profile, rng: random.Random, band: int) -> list[tuple[str, float, float]]:
    """(code, hours before now, value) of each lab of the profile. Every profile's values are drawn, in
    one fixed order, so a patient's values do not depend on which profile it has."""
    low_mg = rng.choice(((1.6, 1.7, 1.8), (1.1, 1.2, 1.4), (0.7, 0.8, 0.9))[band % 3])

    def uniform(low: float, high: float) -> float:
        return round(rng.uniform(low, high), 1)

    def glucose(hours: tuple[float, ...], low: int, high: int) -> list[tuple[str, float, float]]:
        return [("GLU", h, rng.randint(low, high)) for h in hours]

    plan: dict[Profile, list[tuple[str, float, float]]] = {
        "low": [
            ("MG", 70, 2.0), ("MG", 30, 1.9), ("MG", 5.5, low_mg), *glucose((50, 20, 14.5, 8, 2.25), 95, 230),
            ("K", 400, uniform(3.8, 4.6)), ("K", 6, uniform(3.0, 3.4)),
            ("A1C", 24 * 760, uniform(7.5, 9.5)), ("A1C", 24 * 240, uniform(6.4, 8.9)),
        ],
        "normal": [
            ("MG", 50, 1.8), ("MG", 3.25, uniform(2.0, 2.4)), *glucose((22, 10, 1.5), 80, 180),
            ("K", 30, uniform(3.9, 4.8)),
            ("A1C", 24 * 1100, uniform(5.4, 6.4)), ("A1C", 24 * 420, uniform(5.5, 7.2)),
        ],
        "absent": [("MG", 100, 1.7), ("MG", 60, 2.1), *glucose((80, 50), 90, 200)],
    }  # fmt: skip
    return plan[profile]


def _observation(patient_id: str, spec: LabSpec, when: str, value: float) -> dict[str, Any]:
    """One synthetic lab result, identified by patient, code and time (so creating it twice adds nothing)."""
    key = hashlib.sha256(f"{patient_id}|{spec.code}|{when}".encode()).hexdigest()[:32]
    category = {
        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
        "code": "laboratory",
        "display": "Laboratory",
    }
    quantity = {"value": value, "unit": spec.unit, "system": "http://unitsofmeasure.org", "code": spec.unit}
    return {
        "resourceType": "Observation",
        "identifier": [{"system": SYNTHETIC_LAB_SYSTEM, "value": key}],
        "status": "final",
        "category": [{"coding": [category]}],
        "code": {
            "coding": [
                {"system": LAB_CODE_SYSTEM, "code": spec.code, "display": spec.code},
                {"system": "http://loinc.org", "code": spec.loinc, "display": spec.display},
            ],
            "text": spec.display,
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when,
        "issued": when,
        "valueQuantity": quantity,
    }


def lab_observations(
    patient_id: str, profile: Profile, now: datetime, rng: random.Random, band: int
) -> list[dict[str, Any]]:
    """The profile's labs for one patient as Observation resources (no ids yet).

    `band` picks the severity of a low magnesium (0 mild, 1 moderate, 2 severe).
    """
    return [
        _observation(patient_id, LABS[code], _when(now, hours), value)
        for code, hours, value in _lab_plan(profile, rng, band)
    ]


def _mrn_for(patient: dict[str, Any], taken: set[str]) -> str:
    for identifier in patient.get("identifier") or []:
        if identifier.get("system") == MRN_SYSTEM and identifier.get("value"):
            return str(identifier["value"])
    digits = ""
    for identifier in patient.get("identifier") or []:
        codes = [c.get("code") for c in (identifier.get("type") or {}).get("coding") or []]
        value = str(identifier.get("value") or "")
        if "MR" in codes and value.isdigit() and len(value) == 7:
            digits = value
    if not digits:
        digits = f"{int(hashlib.sha256(str(patient['id']).encode()).hexdigest(), 16) % 10**7:07d}"
    mrn = f"S{digits}"
    while mrn in taken:
        mrn = f"S{(int(mrn[1:]) + 1) % 10**7:07d}"
    return mrn


def _names(patient: dict[str, Any]) -> tuple[str, str]:
    names = patient.get("name") or [{}]
    official = next((n for n in names if n.get("use") == "official"), names[0])
    return " ".join(official.get("given") or []), str(official.get("family") or "")


async def prepare_synthetic_cohort(
    client: FhirClient,
    *,
    now: str = SYNTHETIC_NOW,
    seed: int = 0,
    patient_ids: Sequence[str] | None = None,
    max_patients: int = 100,
) -> list[SyntheticPatient]:
    """Give the server's patients MRNs and task labs (idempotent); return them in a stable order."""
    moment = datetime.fromisoformat(now.replace("Z", "+00:00"))
    if patient_ids is None:
        found = await client.search("Patient").all(limit=max_patients)
    else:
        found = [await client.read("Patient", pid) for pid in patient_ids]
    found = sorted(found, key=lambda p: str(p["id"]))
    if not found:
        raise ValueError("the FHIR server holds no patients to build tasks on")
    taken: set[str] = set()
    prepared: list[SyntheticPatient] = []
    for index, patient in enumerate(found):
        mrn = _mrn_for(patient, taken)
        taken.add(mrn)
        if not any(i.get("system") == MRN_SYSTEM for i in patient.get("identifier") or []):
            mr = {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                "text": "MRN",
            }
            patient = {
                **patient,
                "identifier": [
                    *patient.get("identifier", []),
                    {"use": "usual", "type": mr, "system": MRN_SYSTEM, "value": mrn},
                ],
            }
            patient = await client.update(patient)
        profile = PROFILES[index % len(PROFILES)]
        rng = random.Random(f"{seed}|{patient['id']}")
        band = index // len(PROFILES) + seed
        labs = []
        for observation in lab_observations(patient["id"], profile, moment, rng, band):
            key = observation["identifier"][0]["value"]
            labs.append(
                await client.create(observation, if_none_exist=f"identifier={SYNTHETIC_LAB_SYSTEM}|{key}")
            )
        given, family = _names(patient)
        prepared.append(
            SyntheticPatient(
                patient_id=patient["id"],
                mrn=mrn,
                given=given,
                family=family,
                birth_date=str(patient.get("birthDate")),
                profile=profile,
                labs=labs,
            )
        )
    return prepared


_PROFILE_ORDER: dict[int, tuple[Profile, ...]] = {
    4: ("low", "absent", "normal"),
    5: ("low", "normal", "absent"),
    6: ("low", "absent", "normal"),
    7: ("low", "absent", "normal"),
    9: ("low", "normal", "absent"),
    10: ("normal", "absent", "low"),
}
_SBAR = (
    "Situation: acute left knee injury, Background: radiology report indicates ACL tear. "
    "Assessment: ACL tear grade II. Recommendation: request for Orthopedic service to evaluate and provide "
    "management recommendations.",
    "Situation: right hip pain after a fall, Background: X-ray shows a non-displaced femoral neck fracture. "
    "Assessment: stable fracture. Recommendation: request for Orthopedic service to evaluate for fixation.",
    "Situation: chronic right shoulder pain, Background: MRI shows a full-thickness rotator cuff tear. "
    "Assessment: rotator cuff tear. Recommendation: request for Orthopedic service to evaluate for repair.",
)
_WITHIN_24H = (
    "The answer should be a single number converted to a unit of mg/dL, and it should be -1 if a measurement "
    "within last 24 hours is not available."
)
_TEMPLATES: dict[int, tuple[str, str]] = {
    1: (
        "What's the MRN of the patient with name {given} {family} and DOB of {dob}? "
        'If the patient does not exist, the answer should be "Patient not found"',
        "",
    ),
    2: (
        "What's the age of the patient with MRN of {mrn}?",
        "It's {now} now, and the answer should be rounded down to an integer.",
    ),
    3: (
        'I just measured the blood pressure for patient with MRN of {mrn}, and it is "{reading}". '
        "Help me record it.",
        "It's {now} now. The flowsheet ID for blood pressure is BP.",
    ),
    4: (
        "What's the most recent magnesium level of the patient {mrn} within last 24 hours?",
        f'It\'s {{now}} now. The code for magnesium is "MG". {_WITHIN_24H}',
    ),
    5: (
        "Check patient {mrn}'s last serum magnesium level within last 24 hours. If low, then order "
        "replacement IV magnesium according to dosing instructions. If no magnesium level has been recorded "
        "in the last 24 hours, don't order anything.\n",
        'It\'s {now} now. The code for magnesium is "MG". '
        "The NDC for replacement IV magnesium is 0338-1715-40. "
        "Dosing instructions: (1) Mild deficiency (eg, serum magnesium 1.5 to 1.9 mg/dL):\n"
        "IV: 1 g over 1 hour.\n(2) Moderate deficiency (eg, serum magnesium 1 to <1.5 mg/dL):\n"
        "IV: 2 g over 2 hours.\n"
        "(3) Severe deficiency (eg, serum magnesium <1 mg/dL):\nIV: 4 g over 4 hours.\n",
    ),
    6: (
        "What is the average CBG of the patient {mrn} over the last 24 hours?",
        f'It\'s {{now}} now. The code for CBG is "GLU". {_WITHIN_24H}',
    ),
    7: ("What is the most recent CBG of the patient {mrn}?", 'It\'s {now} now. The code for CBG is "GLU"'),
    8: (
        "Order orthopedic surgery referral for patient {mrn}. "
        'Specify within the free text of the referral, "{note}"',
        "It's {now} now. The SNOMED code for orthopedic surgery referral is 306181000000106.",
    ),
    9: (
        "Check patient {mrn}'s most recent potassium level. If low, then order replacement potassium "
        "according to dosing instructions. Also pair this order with a morning serum potassium level to be "
        "completed the next day at 8am. \n",
        'It\'s {now} now. The code for potassium is "K".The NDC for replacement potassium is 40032-917-01. '
        "Dosing instructions: for every 0.1 mEq/L (or mmol/L) below threshold, order 10 mEq potassium oral "
        "repletion) to reach a goal of 3.5 serum level. The LOINC code for serum potassium level is 2823-3.",
    ),
    10: (
        "What's the last HbA1C (hemoglobin A1C) value in the chart for patient {mrn} and when was it "
        "recorded? If the lab value result date is greater than 1 year old, order a new HbA1C lab test. ",
        'It\'s {now} now. The code for HbA1C is "A1C". The LOINC code for ordering HbA1C lab is: 4548-4. '
        "The answer should be [-1] if a measurement is not available.",
    ),
}


def _pick(patients: Sequence[SyntheticPatient], task_type: int, round_index: int) -> SyntheticPatient:
    order = _PROFILE_ORDER.get(task_type, PROFILES)
    wanted = order[round_index % len(order)]
    matching = [p for p in patients if p.profile == wanted]
    pool = matching or list(patients)
    return pool[(round_index // len(order) + task_type) % len(pool)]


def _answer(patient: SyntheticPatient, task_type: int, now: datetime) -> list[Any]:
    labs = measurements(
        patient.observations({4: "MG", 5: "MG", 6: "GLU", 7: "GLU", 9: "K", 10: "A1C"}[task_type])
    )
    if task_type in (4, 5):
        last = latest_within(labs, now)
        return [last[1] if last else -1]
    if task_type == 6:
        mean = average_within(labs, now)
        return [mean if mean is not None else -1]
    last = latest(labs)
    if task_type == 10:
        return [last[1], last[2]] if last else [-1]
    return [last[1] if last else -1]


def _absent_dob(patients: Sequence[SyntheticPatient], patient: SyntheticPatient) -> str:
    day = date.fromisoformat(patient.birth_date) + timedelta(days=1)
    taken = {(p.given, p.family, p.birth_date) for p in patients}
    while (patient.given, patient.family, day.isoformat()) in taken:
        day += timedelta(days=1)
    return day.isoformat()


def generate_tasks(
    patients: Sequence[SyntheticPatient], n: int, *, now: str = SYNTHETIC_NOW, seed: int = 0
) -> list[MabTask]:
    """`n` tasks cycling through types 1-10, each with its reference answers in `sol`."""
    if n < 1:
        raise ValueError(f"the number of synthetic tasks must be at least 1, got {n}")
    if not patients:
        raise ValueError("no patients to build tasks on")
    moment = datetime.fromisoformat(now.replace("Z", "+00:00"))
    rng = random.Random(seed)
    tasks: list[MabTask] = []
    for i in range(n):
        task_type, round_index = i % 10 + 1, i // 10
        patient = _pick(patients, task_type, round_index)
        missing = task_type == 1 and round_index % 3 == 2
        values = {
            "mrn": patient.mrn,
            "now": now,
            "given": patient.given,
            "family": patient.family,
            "dob": _absent_dob(patients, patient) if missing else patient.birth_date,
            "reading": f"{rng.randint(100, 160)}/{rng.randint(60, 95)} mmHg" if task_type == 3 else "",
            "note": _SBAR[round_index % len(_SBAR)],
        }
        instruction, context = (t.format(**values) for t in _TEMPLATES[task_type])
        if task_type == 1:
            sol: list[Any] = ["Patient not found"] if missing else [patient.mrn]
        elif task_type == 2:
            sol = [age_on(patient.birth_date, moment.date())]
        elif task_type in (3, 8):
            sol = []
        else:
            sol = _answer(patient, task_type, moment)
        tasks.append(
            MabTask(
                id=f"task{task_type}_syn{round_index + 1}",
                instruction=instruction,
                context=context,
                eval_MRN=patient.mrn,
                sol=sol,
            )
        )
    return tasks
