"""Tools mode against the real server: scripted correct tool calls score 1, writes really land (auto-approved
by the recorded eval policy), and a write on a query task scores 0."""

from __future__ import annotations

from typing import Any

import pytest

from clinicflow.evals.medagentbench.rules import magnesium_dose, next_day_8am, potassium_dose
from clinicflow.evals.medagentbench.scoring import FhirChartSource, score_task
from clinicflow.evals.medagentbench.synthetic import SyntheticPatient
from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.evals.medagentbench.tools_agent import ToolsAgent
from clinicflow.evals.medagentbench.variants import CLINICFLOW
from clinicflow.fhir import FhirClient
from tests.fakes import ScriptedChatModel, calls, tool_call


def _script(task: MabTask, patients: list[SyntheticPatient]) -> list[Any]:
    finish = calls(tool_call("finish_task", answers=task.sol or []))
    sol = task.sol or []
    match task.task_type:
        case 1:
            patient = next(p for p in patients if p.mrn == task.eval_MRN)
            return [
                calls(
                    tool_call(
                        "find_patient",
                        given=patient.given,
                        family=patient.family,
                        birthdate=patient.birth_date,
                    )
                ),
                finish,
            ]
        case 3:
            return [calls(tool_call("create_observation", code_text="BP", value_string=task.quoted)), finish]
        case 4:
            return [calls(tool_call("lab_results", code="MG")), finish]
        case 5:
            grams, hours = magnesium_dose(sol[0]) or (0, 0)
            order = tool_call(
                "create_medication_request",
                medication_code=task.ndc,
                dose_value=grams,
                dose_unit="g",
                rate_value=hours,
                rate_unit="h",
                route="IV",
            )
            return [calls(tool_call("lab_results", code="MG")), calls(order), finish]
        case 8:
            return [
                calls(
                    tool_call(
                        "create_service_request", code=task.snomed, code_system="snomed", note=task.quoted
                    )
                ),
                finish,
            ]
        case 9:
            dose = potassium_dose(sol[0])
            medication = tool_call(
                "create_medication_request",
                medication_code=task.ndc,
                dose_value=dose,
                dose_unit="mEq",
                route="oral",
            )
            lab = tool_call(
                "create_service_request",
                code=task.loinc,
                code_system="loinc",
                occurrence=next_day_8am(task.now_dt).isoformat(),
            )
            return [calls(tool_call("lab_results", code="K")), calls(medication, lab), finish]
        case 10:
            return [
                calls(tool_call("lab_results", code="A1C")),
                calls(tool_call("create_service_request", code=task.loinc, code_system="loinc")),
                finish,
            ]
    raise AssertionError(f"no script for {task.id}")


@pytest.mark.parametrize(
    "task_id",
    ["task1_syn1", "task3_syn1", "task4_syn1", "task5_syn1", "task8_syn1", "task9_syn1", "task10_syn1"],
)
async def test_correct_tool_calls_score_1(
    mab_server: str, mab_tasks: list[MabTask], mab_patients: list[SyntheticPatient], task_id: str
) -> None:
    task = next(t for t in mab_tasks if t.id == task_id)
    model = ScriptedChatModel(script=_script(task, mab_patients))
    async with FhirClient(mab_server) as client:
        trajectory = await ToolsAgent(model, client).run(task)
        score = await score_task(
            task, trajectory, FhirChartSource(client), client.base_url, variant=CLINICFLOW
        )
        for post in trajectory.posts:
            stored = (
                await client.search(post.payload["resourceType"])
                .token("identifier", *post.payload["identifier"][-1].values())
                .all()
            )
            assert len(stored) == 1, "the auto-approved write is on the server, once"
    assert score.correct, (score.reason, trajectory.model_dump())
    assert trajectory.agent == "tools (auto_approve)"
    prompt = model.calls[0].text
    assert task.now in prompt or task.task_type == 1, "the current time comes from the task context"


async def test_a_write_on_a_query_task_scores_0(mab_server: str, mab_tasks: list[MabTask]) -> None:
    task = next(t for t in mab_tasks if t.id == "task4_syn1")
    model = ScriptedChatModel(
        script=[
            calls(
                tool_call(
                    "create_observation", code_text="MG", value=1.0, unit="mg/dL", category="laboratory"
                )
            ),
            calls(tool_call("finish_task", answers=task.sol)),
        ]
    )
    async with FhirClient(mab_server) as client:
        trajectory = await ToolsAgent(model, client).run(task)
        score = await score_task(
            task, trajectory, FhirChartSource(client), client.base_url, variant=CLINICFLOW
        )
    assert not score.correct and "POST" in score.reason
