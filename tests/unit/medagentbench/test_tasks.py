"""Task files: the benchmark's own v1 file (when present), parameters read from task text, bad files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from clinicflow.evals.medagentbench.tasks import (
    BENCHMARK_NOW,
    DEFAULT_FUNCTIONS,
    MabTask,
    TaskFileError,
    load_functions,
    load_tasks,
    save_tasks,
)
from tests.unit.medagentbench.original_refsol import SBAR

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "medagentbench"


@pytest.fixture(scope="module")
def v1_tasks() -> list[MabTask]:
    path = SHARED / "test_data_v1.json"
    if not path.exists():
        pytest.skip(f"MedAgentBench v1 task file not found at {path}")
    return load_tasks(path)


def test_the_v1_file_holds_10_tasks_of_each_type(v1_tasks: list[MabTask]) -> None:
    assert len(v1_tasks) == 100
    assert Counter(t.task_type for t in v1_tasks) == {t: 10 for t in range(1, 11)}
    assert {t.kind for t in v1_tasks if t.task_type in (3, 5, 8, 9, 10)} == {"action"}


def test_parameters_read_from_the_v1_text(v1_tasks: list[MabTask]) -> None:
    first = {t.task_type: t for t in reversed(v1_tasks)}
    assert all(t.now == BENCHMARK_NOW for t in v1_tasks if t.task_type != 1)
    assert [first[t].lab_code for t in (4, 5, 6, 7, 9, 10)] == ["MG", "MG", "GLU", "GLU", "K", "A1C"]
    assert (first[5].ndc, first[9].ndc) == ("0338-1715-40", "40032-917-01")
    assert (first[9].loinc, first[10].loinc, first[8].snomed) == ("2823-3", "4548-4", "306181000000106")
    assert first[3].flowsheet_id == "BP" and first[3].quoted.endswith("mmHg")
    assert first[8].quoted.startswith("Situation:") and first[8].quoted.endswith("recommendations.")
    assert all(t.mentions_mrn() for t in v1_tasks if t.task_type != 1)
    assert not any(t.mentions_mrn() for t in v1_tasks if t.task_type == 1)


def test_every_v1_task_states_the_constants_the_benchmarks_scorer_uses(v1_tasks: list[MabTask]) -> None:
    """The scorer reads times, codes and quoted values from each task's text; on the benchmark's own tasks
    they must be the constants its reference scorer has built in."""
    constants = {
        3: lambda t: (t.now, t.flowsheet_id, t.quoted) == (BENCHMARK_NOW, "BP", "118/77 mmHg"),
        4: lambda t: (t.now, t.lab_code) == (BENCHMARK_NOW, "MG"),
        5: lambda t: (t.now, t.lab_code, t.ndc) == (BENCHMARK_NOW, "MG", "0338-1715-40"),
        6: lambda t: (t.now, t.lab_code) == (BENCHMARK_NOW, "GLU"),
        7: lambda t: t.lab_code == "GLU",
        8: lambda t: (t.now, t.snomed, t.quoted) == (BENCHMARK_NOW, "306181000000106", SBAR),
        9: lambda t: (t.now, t.lab_code, t.ndc, t.loinc) == (BENCHMARK_NOW, "K", "40032-917-01", "2823-3"),
        10: lambda t: (t.now, t.lab_code, t.loinc) == (BENCHMARK_NOW, "A1C", "4548-4"),
    }
    wrong = [t.id for t in v1_tasks if t.task_type in constants and not constants[t.task_type](t)]
    assert wrong == []
    assert all(t.now_dt.date().isoformat() == "2023-11-13" for t in v1_tasks if t.task_type == 2)


def test_the_v1_function_declarations_load() -> None:
    path = SHARED / "funcs_v1.json"
    if not path.exists():
        pytest.skip(f"MedAgentBench function declarations not found at {path}")
    functions = load_functions(path)
    assert len(functions) == 9 and all("name" in f for f in functions)
    assert load_functions(None) == [dict(f) for f in DEFAULT_FUNCTIONS]


def test_round_trip_and_json_lines(tmp_path: Path) -> None:
    tasks = [
        MabTask(
            id="task2_a", instruction="Age of S1?", context="It's 2024-01-01T00:00:00Z now.", eval_MRN="S1"
        )
    ]
    again = load_tasks(save_tasks(tasks, tmp_path / "t.json"))
    assert again == tasks and again[0].now == "2024-01-01T00:00:00Z"
    lines = tmp_path / "t.jsonl"
    lines.write_text("\n".join(json.dumps(t.model_dump()) for t in tasks))
    assert load_tasks(lines) == tasks


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "neither a JSON list"),
        ('{"id": "task1_1"}', "must hold a JSON list"),
        ("[]", "holds no tasks"),
        ('[{"id": "task1_1", "instruction": "x"}]', "sol is required"),
        ('[{"id": "task2_1", "instruction": "x"}]', "eval_MRN is required"),
        ('[{"id": "task11_1", "instruction": "x", "eval_MRN": "S"}]', "unknown task type 11"),
        ('[{"id": "t1", "instruction": "x", "eval_MRN": "S"}]', "does not start with task"),
        ('[{"id": "task2_1", "eval_MRN": "S"}]', "task 0: instruction"),
        (
            json.dumps([{"id": "task2_1", "instruction": "x", "eval_MRN": "S"}] * 2),
            "duplicate id",
        ),
    ],
)
def test_bad_task_files_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(content)
    with pytest.raises(TaskFileError, match=message):
        load_tasks(path)


def test_missing_files_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match="cannot read task file"):
        load_tasks(tmp_path / "nope.json")
    with pytest.raises(TaskFileError, match="cannot read function file"):
        load_functions(tmp_path / "nope.json")
    (tmp_path / "f.json").write_text('[{"description": "no name"}]')
    with pytest.raises(TaskFileError, match="each with a name"):
        load_functions(tmp_path / "f.json")
