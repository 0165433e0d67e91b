"""Scenario loaders: AgentClinic OSCE JSONL (MedQA and MIMIC-IV layouts) and NEJM JSONL (image cases).

A line that is not valid JSON or misses a required field is reported by line number and skipped;
the other lines load. Values reach the prompts as the file holds them. NEJM images are used when a
local copy exists (the model layer fetches nothing); otherwise each case says so.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

from clinicflow.graphs.encounter import EncounterCase

__all__ = [
    "NEJM_OBJECTIVE",
    "OSCE_REQUIRED",
    "SHIPPED_SCENARIOS",
    "ScenarioError",
    "ScenarioFileError",
    "ScenarioSet",
    "load_scenarios",
    "scenario_case",
]

OSCE_REQUIRED = (
    "Objective_for_Doctor",
    "Patient_Actor",
    "Physical_Examination_Findings",
    "Test_Results",
    "Correct_Diagnosis",
)
NEJM_REQUIRED = ("patient_info", "physical_exams", "answers")
NEJM_OBJECTIVE = "What is the most likely diagnosis?"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
SHIPPED_SCENARIOS = Path(__file__).parent / "scenarios"
"""Folder of the project's own OSCE scenarios (clinicflow_osce.jsonl)."""


class ScenarioFileError(ValueError):
    """The scenario file cannot be used at all (missing, unreadable, or no valid scenario in it)."""


@dataclass(frozen=True)
class ScenarioError:
    """One skipped line: its 1-based number and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class ScenarioSet:
    """Scenarios loaded from one file, the lines skipped, and the file's digest (for resumable runs)."""

    path: Path
    cases: list[EncounterCase]
    errors: list[ScenarioError] = field(default_factory=list)
    sha256: str = ""
    formats: dict[str, int] = field(default_factory=dict)


def load_scenarios(path: Path, *, limit: int | None = None) -> ScenarioSet:
    """Load an OSCE or NEJM JSONL file (format detected per line); `limit` keeps the first N valid cases."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ScenarioFileError(f"scenario file not found: {path}") from exc
    except OSError as exc:
        raise ScenarioFileError(f"cannot read scenario file {path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioFileError(f"scenario file {path} is not UTF-8 text: {exc}") from exc

    cases: list[EncounterCase] = []
    errors: list[ScenarioError] = []
    formats: dict[str, int] = {}
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(ScenarioError(number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        try:
            kind, case = scenario_case(record, line=number, base_dir=path.parent)
        except _Invalid as exc:
            errors.append(ScenarioError(number, str(exc)))
            continue
        if case.case_id in seen:
            errors.append(ScenarioError(number, f"duplicate scenario id {case.case_id!r}"))
            continue
        seen.add(case.case_id)
        formats[kind] = formats.get(kind, 0) + 1
        if limit is None or len(cases) < limit:
            cases.append(case)
    if not cases:
        detail = f"; first problem: {errors[0]}" if errors else ""
        raise ScenarioFileError(f"no valid scenario in {path}{detail}")
    return ScenarioSet(path, cases, errors, hashlib.sha256(raw).hexdigest(), formats)


class _Invalid(ValueError):
    pass


def _case_id(record: Mapping[str, Any], line: int) -> str:
    given = record.get("id")
    if isinstance(given, str | int) and str(given).strip():
        return re.sub(r"[^A-Za-z0-9._-]+", "_", str(given).strip())[:80]
    return f"case-{line:04d}"


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def scenario_case(record: Any, *, line: int, base_dir: Path) -> tuple[Literal["osce", "nejm"], EncounterCase]:
    """Turn one parsed JSONL record into a case; raises a ValueError naming the missing field."""
    if not isinstance(record, Mapping):
        raise _Invalid("expected a JSON object")
    if "OSCE_Examination" in record:
        return "osce", _osce(record, line)
    if "answers" in record or "patient_info" in record:
        return "nejm", _nejm(record, line, base_dir)
    raise _Invalid("missing required field OSCE_Examination (or the NEJM fields patient_info, answers)")


def _osce(record: Mapping[str, Any], line: int) -> EncounterCase:
    exam = record["OSCE_Examination"]
    if not isinstance(exam, Mapping):
        raise _Invalid("OSCE_Examination must be an object")
    missing = [name for name in OSCE_REQUIRED if not _present(exam.get(name))]
    if missing:
        raise _Invalid(
            "missing required field"
            + ("s " if len(missing) > 1 else " ")
            + ", ".join(f"OSCE_Examination.{m}" for m in missing)
        )
    diagnosis = exam["Correct_Diagnosis"]
    if not isinstance(diagnosis, str):
        raise _Invalid("OSCE_Examination.Correct_Diagnosis must be a string")
    patient_id = record.get("fhir_patient_id")
    return EncounterCase(
        case_id=_case_id(record, line),
        objective=str(exam["Objective_for_Doctor"]),
        patient_info=exam["Patient_Actor"],
        exam_findings=exam["Physical_Examination_Findings"],
        test_results=exam["Test_Results"],
        correct_diagnosis=diagnosis,
        patient_id=str(patient_id) if _present(patient_id) else None,
    )


def _nejm(record: Mapping[str, Any], line: int, base_dir: Path) -> EncounterCase:
    missing = [name for name in NEJM_REQUIRED if not _present(record.get(name))]
    if not (_present(record.get("image_url")) or _present(record.get("image_path"))):
        missing.append("image_url")
    if missing:
        raise _Invalid("missing required field" + ("s " if len(missing) > 1 else " ") + ", ".join(missing))
    answers = record["answers"]
    correct = (
        [a.get("text") for a in answers if isinstance(a, Mapping) and a.get("correct") is True]
        if isinstance(answers, list)
        else []
    )
    if len(correct) != 1 or not isinstance(correct[0], str) or not correct[0].strip():
        raise _Invalid("answers must hold exactly one entry with correct: true and a text")
    image, note = _nejm_image(record, base_dir)
    return EncounterCase(
        case_id=_case_id(record, line),
        objective=NEJM_OBJECTIVE,
        patient_info=record["patient_info"],
        exam_findings=record["physical_exams"],
        test_results={},
        correct_diagnosis=correct[0],
        image=image,
        image_note=note,
        kind="nejm",
    )


def _nejm_image(record: Mapping[str, Any], base_dir: Path) -> tuple[Path | None, str | None]:
    """A local image for the case, or a note saying it is missing (nothing is downloaded)."""
    candidates: list[Path] = []
    if _present(record.get("image_path")):
        candidates.append(base_dir / str(record["image_path"]))
    url = str(record.get("image_url") or "")
    parsed = urlparse(url)
    if parsed.scheme == "file":
        candidates.append(Path(parsed.path))
    elif url:
        image_id = (parse_qs(parsed.query).get("id") or [Path(parsed.path).stem])[0]
        if image_id:
            candidates += [base_dir / "images" / f"{image_id}{suffix}" for suffix in IMAGE_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate, None
    where = url or str(record.get("image_path"))
    return None, f"(The image for this case is not available offline: {where}.)"
