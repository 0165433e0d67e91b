"""The tools-mode adapter: a graph result becomes a trajectory that the same scoring rules read."""

from __future__ import annotations

from datetime import UTC, datetime

from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.evals.medagentbench.tools_agent import _trajectory
from clinicflow.graphs.ehr_task import EhrTaskResult, WriteLog

TASK = MabTask(id="task3_1", instruction="Record BP for S1.", eval_MRN="S1")


def _write(status: str, resource_type: str | None = "Observation") -> WriteLog:
    return WriteLog(
        tool_call_id="c",
        tool="create_observation",
        resource_type=resource_type,
        status=status,  # type: ignore[arg-type]
        resource={"resourceType": resource_type} if resource_type else None,
        at=datetime.now(UTC),
    )


def test_finished_run_with_writes() -> None:
    result = EhrTaskResult(
        thread_id="t",
        instruction="x",
        status="finished",
        answers=[1.5],
        approval_policy="auto_approve",
        writes=[_write("created"), _write("rejected"), _write("bad_arguments", None)],
    )
    trajectory = _trajectory(TASK, result, "http://f/fhir", 1.0)
    assert trajectory.status == "completed" and trajectory.result == "[1.5]"
    assert [(p.url, p.accepted) for p in trajectory.posts] == [
        ("http://f/fhir/Observation", True),
        ("http://f/fhir/Observation", False),
        ("http://f/fhir/create_observation", False),
    ]
    assert trajectory.agent == "tools (auto_approve)"


def test_failed_and_limited_runs() -> None:
    failed = EhrTaskResult(thread_id="t", instruction="x", status="failed", errors=["gave up"])
    assert _trajectory(TASK, failed, "http://f/fhir", 0).status == "invalid_action"
    limited = EhrTaskResult(thread_id="t", instruction="x", status="step_limit")
    trajectory = _trajectory(TASK, limited, "http://f/fhir", 0)
    assert trajectory.status == "limit_reached" and trajectory.result is None
