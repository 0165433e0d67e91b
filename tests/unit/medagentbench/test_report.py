"""The report: Wilson intervals, overall / query / action / per-type rates, invalid actions, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinicflow.evals.medagentbench.report import build_report, render_markdown, wilson_interval, write_report


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (64, 100, 0.5424, 0.7273)],
)
def test_wilson_interval(k: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_of_nothing() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _records() -> list[dict]:
    rows = []
    for t in range(1, 11):
        rows.append(
            {
                "task_id": f"task{t}_1",
                "task_type": t,
                "correct": t in (1, 2, 3),
                "status": "completed",
                "reason": "r",
            }
        )
        rows.append(
            {
                "task_id": f"task{t}_2",
                "task_type": t,
                "correct": False,
                "status": "invalid_action",
                "reason": "r",
            }
        )
    return rows


def test_build_report_groups_the_rates() -> None:
    report = build_report(_records(), run={"agent": "text"})
    assert (report["overall"]["k"], report["overall"]["n"]) == (3, 20)
    assert (report["query"]["k"], report["query"]["n"]) == (2, 10)
    assert (report["action"]["k"], report["action"]["n"]) == (1, 10)
    assert report["by_type"]["1"]["rate"] == 0.5 and report["by_type"]["4"]["rate"] == 0.0
    assert report["invalid_action"]["rate"] == 0.5
    assert report["statuses"] == {"completed": 10, "invalid_action": 10}
    assert report["overall"]["ci95"] == list(wilson_interval(3, 20))


def test_write_report_writes_json_markdown_and_a_plot(tmp_path: Path) -> None:
    report = build_report(_records(), run={"agent": "oracle", "tasks": "x.json"})
    paths = write_report(report, tmp_path)
    assert json.loads(paths["json"].read_text())["overall"]["n"] == 20
    markdown = paths["markdown"].read_text()
    assert "| overall | 15.0% (3/20; 95% CI" in markdown
    assert "| 10 | last HbA1c, reorder if old | 0.0% (0/2;" in markdown
    assert "![success by task type](success_by_type.png)" in markdown
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_groups_render_as_not_available() -> None:
    only_queries = [r for r in _records() if r["task_type"] == 1]
    text = render_markdown(build_report(only_queries, run={}))
    assert "| action tasks (3, 5, 8, 9, 10) | n/a |" in text


def test_echoes_count_as_invalid_actions() -> None:
    rows = [{"task_id": "task1_1", "task_type": 1, "correct": False, "status": "echo", "reason": "r"}]
    report = build_report(rows, run={})
    assert report["invalid_action"]["k"] == 1 and report["statuses"] == {"echo": 1}


def test_a_clinicflow_run_states_its_differences_and_hides_the_published_rates() -> None:
    run = {
        "protocol": "clinicflow",
        "agent": "text",
        "model": "medgemma-4b-it",
        "task_set": "synthetic",
        "server": "embedded",
        "max_rounds": 5,
        "max_response_chars": 2000,
        "functions": "built-in",
    }
    report = build_report(_records(), run=run)
    differences = "\n".join(report["differences_from_published"])
    for fragment in (
        "protocol `clinicflow`",
        "model: medgemma-4b-it",
        "synthetic tasks of the 10 types on clinicflow's synthetic patients (the embedded FHIR server)",
        "round limit 5, not 8",
        "GET answers cut to 2000 characters",
        "clinicflow's built-in ones",
        "ends the task as an echo",
    ):
        assert fragment in differences, fragment
    markdown = render_markdown(report)
    assert "- protocol: `clinicflow`" in markdown and "GPT-4o" not in markdown
    assert "Not shown: the published rates were scored under the `original` protocol" in markdown


def test_an_original_run_on_a_task_file_prints_the_published_rates_beside() -> None:
    run = {
        "protocol": "original",
        "agent": "text",
        "model": "m",
        "task_set": "file",
        "tasks": "test_data_v2.json",
        "tasks_total": 300,
        "tasks_selected": 30,
        "fhir_url": "http://localhost:8080/fhir",
        "max_rounds": 8,
        "functions": "funcs_v1.json",
    }
    report = build_report(_records(), run=run)
    differences = report["differences_from_published"]
    assert not any(d.startswith("protocol") for d in differences)
    assert "only 30 of the file's 300 tasks" in differences
    assert any(
        d.startswith("tasks: test_data_v2.json on the FHIR server http://localhost:8080/fhir")
        for d in differences
    )
    assert not any("declarations" in d or "round limit" in d for d in differences)
    assert "- GPT-4o: 64.0%" in render_markdown(report)
