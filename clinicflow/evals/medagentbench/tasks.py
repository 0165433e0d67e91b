"""MedAgentBench task files: loading, the 10 task types, and the parameters a task states in its text.

A task is `{"id": "task3_1", "instruction": ..., "context": ..., "eval_MRN": ..., "sol": [...]}`; its type
is the number after `task` in the id. Codes, NDCs and the current time are read from the task's own text,
with the benchmark's values as defaults, so synthetic tasks and the original file are scored alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinicflow.agents.ehr_task import current_time_from_context
from clinicflow.evals.input_files import read_input, validation_problems

__all__ = [
    "ACTION_TYPES",
    "BENCHMARK_NOW",
    "DEFAULT_FUNCTIONS",
    "QUERY_TYPES",
    "TASK_TYPE_NAMES",
    "MabTask",
    "TaskFileError",
    "load_functions",
    "load_tasks",
    "save_tasks",
]

BENCHMARK_NOW = "2023-11-13T10:15:00+00:00"
"""The current time every MedAgentBench v1/v2 task states."""

TASK_TYPE_NAMES: dict[int, str] = {
    1: "find MRN by name and DOB",
    2: "patient age",
    3: "record blood pressure",
    4: "magnesium in last 24 h",
    5: "magnesium check and IV replacement",
    6: "average CBG over 24 h",
    7: "most recent CBG",
    8: "orthopedic referral (SBAR)",
    9: "potassium replacement and next-day lab",
    10: "last HbA1c, reorder if old",
}
QUERY_TYPES: frozenset[int] = frozenset({1, 2, 4, 6, 7})
ACTION_TYPES: frozenset[int] = frozenset({3, 5, 8, 9, 10})

_TYPE_IN_ID = re.compile(r"^task(\d+)_")
_LAB_CODE = re.compile(r'code for [^"\n]*?is\s*"([A-Za-z0-9]+)"', re.IGNORECASE)
_NDC = re.compile(r"NDC[^0-9]*(\d[\d-]*\d)")
_LOINC = re.compile(r"LOINC code[^0-9]*(\d+-\d)")
_SNOMED = re.compile(r"SNOMED code[^0-9]*(\d+)")
_FLOWSHEET = re.compile(r"flowsheet ID for blood pressure is\s*([A-Za-z0-9]+)", re.IGNORECASE)
_QUOTED = re.compile(r'"([^"]+)"|“([^”]+)”')
_DEFAULT_LAB = {4: "MG", 5: "MG", 6: "GLU", 7: "GLU", 9: "K", 10: "A1C"}
_DEFAULT_NDC = {5: "0338-1715-40", 9: "40032-917-01"}
_DEFAULT_LOINC = {9: "2823-3", 10: "4548-4"}


class TaskFileError(ValueError):
    """A task or function file that cannot be read; the message names the file and the entry."""


class MabTask(BaseModel):
    """One MedAgentBench task; extra fields of a file are kept."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    instruction: str = Field(min_length=1)
    context: str = ""
    eval_MRN: str = ""
    sol: list[Any] | None = None

    @property
    def task_type(self) -> int:
        """The task type, 1-10, from the id (`task5_3` is type 5)."""
        match = _TYPE_IN_ID.match(self.id)
        if match is None:
            raise TaskFileError(f"task id {self.id!r} does not start with task<N>_")
        return int(match.group(1))

    @property
    def kind(self) -> str:
        """`query` or `action`, as the benchmark groups the types."""
        return "action" if self.task_type in ACTION_TYPES else "query"

    @property
    def now(self) -> str:
        """The current time the context states, else the benchmark's."""
        return current_time_from_context(self.context) or BENCHMARK_NOW

    @property
    def now_dt(self) -> datetime:
        """`now` as an aware datetime."""
        return datetime.fromisoformat(self.now.replace("Z", "+00:00"))

    def _stated(self, pattern: re.Pattern[str], default: str | Mapping[int, str]) -> str:
        """What the context states in `pattern`'s group, else the default (for this task type)."""
        match = pattern.search(self.context)
        if match:
            return match.group(1)
        return default if isinstance(default, str) else default.get(self.task_type, "")

    @property
    def lab_code(self) -> str:
        """The lab code the context names ("MG", "GLU", "K", "A1C")."""
        return self._stated(_LAB_CODE, _DEFAULT_LAB)

    @property
    def ndc(self) -> str:
        """The NDC of the medication to order."""
        return self._stated(_NDC, _DEFAULT_NDC)

    @property
    def loinc(self) -> str:
        """The LOINC code of the lab to order."""
        return self._stated(_LOINC, _DEFAULT_LOINC)

    @property
    def snomed(self) -> str:
        """The SNOMED code of the referral to order."""
        return self._stated(_SNOMED, "306181000000106")

    @property
    def flowsheet_id(self) -> str:
        """The flowsheet id for blood pressure."""
        return self._stated(_FLOWSHEET, "BP")

    @property
    def quoted(self) -> str:
        """The longest quoted text of the instruction: the value to record or the note to write."""
        found = [a or b for a, b in _QUOTED.findall(self.instruction)]
        return max(found, key=len) if found else ""

    def mentions_mrn(self) -> bool:
        """True when the instruction names the patient by `eval_MRN` (every type but 1)."""
        return bool(self.eval_MRN) and self.eval_MRN in self.instruction


def load_tasks(path: Path | str) -> list[MabTask]:
    """Read a task file (a JSON list, or JSON lines); raises `TaskFileError` naming the bad entry."""
    path = Path(path)
    text = read_input(path, "task file", TaskFileError)
    try:
        data = json.loads(text) if path.suffix != ".jsonl" else None
    except json.JSONDecodeError:
        data = None
    if data is None:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise TaskFileError(f"{path} is neither a JSON list nor JSON lines: {exc}") from None
    if not isinstance(data, list):
        raise TaskFileError(f"{path} must hold a JSON list of tasks, not a {type(data).__name__}")
    tasks: list[MabTask] = []
    seen: set[str] = set()
    for index, item in enumerate(data):
        try:
            task = MabTask.model_validate(item)
        except ValidationError as exc:
            problems = validation_problems(exc, "task")
            raise TaskFileError(f"{path}: task {index}: {problems}") from None
        if task.task_type not in TASK_TYPE_NAMES:
            raise TaskFileError(f"{path}: task {index} ({task.id}): unknown task type {task.task_type}")
        if task.task_type != 1 and not task.eval_MRN:
            raise TaskFileError(f"{path}: task {index} ({task.id}): eval_MRN is required")
        if task.task_type == 1 and task.sol is None:
            raise TaskFileError(f"{path}: task {index} ({task.id}): sol is required for type 1")
        if task.id in seen:
            raise TaskFileError(f"{path}: task {index}: duplicate id {task.id!r}")
        seen.add(task.id)
        tasks.append(task)
    if not tasks:
        raise TaskFileError(f"{path} holds no tasks")
    return tasks


def save_tasks(tasks: list[MabTask], path: Path | str) -> Path:
    """Write tasks as a JSON list in the benchmark's format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps([t.model_dump(exclude_none=True) for t in tasks], indent=1, ensure_ascii=False)
    )
    return path


def load_functions(path: Path | str | None) -> list[dict[str, Any]]:
    """Endpoint declarations for the text protocol's prompt: a file like `funcs_v1.json`, or the built-in."""
    if path is None:
        return [dict(f) for f in DEFAULT_FUNCTIONS]
    path = Path(path)
    text = read_input(path, "function file", TaskFileError)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskFileError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(f, dict) and "name" in f for f in data):
        raise TaskFileError(f"{path} must hold a JSON list of declarations, each with a name")
    return data


DEFAULT_FUNCTIONS: tuple[dict[str, Any], ...] = tuple(
    json.loads(
        resources.files("clinicflow.evals.medagentbench")
        .joinpath("functions.json")
        .read_text(encoding="utf-8")
    )
)
"""clinicflow's own short declarations of the benchmark's endpoints (functions.json, in the format of
the benchmark's funcs_v1.json), used when no function file is given."""
