"""End-to-end runs of the EHR QA graph with a scripted fake model and fake patient-scoped tools."""

from __future__ import annotations

from datetime import datetime

import pytest

from clinicflow.agents.ehr_qa import FINISH_TOOL_NAME, NOT_FOUND
from clinicflow.graphs.ehr_qa import EhrQaInputError, EhrQaResult, build_ehr_qa_graph, run_ehr_qa
from clinicflow.graphs.ehr_qa.nodes import FAILED_ANSWER
from tests.fakes import ScriptedChatModel, calls, invalid_call, text_reply, tool_call
from tests.unit.graphs.record_tools import RecordTools

QUESTION = "What was the most recent HbA1c?"
A1C = "Observation/obs-a1c-2"


def search_a1c(**extra: str) -> object:
    return calls(tool_call("search_record", resource_type="Observation", code="4548-4", **extra))


def finish() -> object:
    return calls(tool_call(FINISH_TOOL_NAME))


def facts(*items: tuple[str, list[str]]) -> object:
    return calls(tool_call("record_facts", facts=[{"text": t, "citations": c} for t, c in items]))


def final(answer: str, citations: list[str]) -> object:
    return calls(tool_call("final_answer", answer=answer, citations=citations))


async def ask(
    model: ScriptedChatModel, tools: RecordTools | None = None, *, max_steps: int = 8, max_retries: int = 2
) -> EhrQaResult:
    graph = build_ehr_qa_graph(
        model, (tools or RecordTools()).build(), max_steps=max_steps, max_retries=max_retries
    )
    return await run_ehr_qa(graph, QUESTION, "pat-1")


def kinds(result: EhrQaResult) -> list[tuple[str, str]]:
    return [(e.kind, e.name) for e in result.trace]


async def test_full_run_plans_retrieves_extracts_and_answers_with_citations() -> None:
    tools = RecordTools()
    model = ScriptedChatModel(
        script=[
            search_a1c(),
            finish(),
            facts(("Hemoglobin A1c 7.9 % on 2023-04-02", [f"[{A1C}]"])),
            final("7.9 % on 2023-04-02", [A1C]),
        ]
    )
    result = await ask(model, tools)

    assert result.status == "answered"
    assert result.answer == f"7.9 % on 2023-04-02 [{A1C}]"
    assert result.citations == [A1C]
    assert [e.text for e in result.evidence] == [
        "2023-04-02 Hemoglobin A1c [4548-4] 7.9 % [Observation/obs-a1c-2]",
        "2022-01-05 Hemoglobin A1c [4548-4] 8.4 % [Observation/obs-a1c-1]",
    ]
    assert [(f.text, f.citations) for f in result.facts] == [("Hemoglobin A1c 7.9 % on 2023-04-02", [A1C])]
    assert kinds(result) == [
        ("tool", "record_manifest"),
        ("model", "planner"),
        ("tool", "search_record"),
        ("model", "planner"),
        ("tool", FINISH_TOOL_NAME),
        ("model", "extractor"),
        ("model", "answerer"),
        ("check", "claims"),
    ]
    assert len([e for e in result.trace if e.kind == "model"]) == len(model.calls)
    for event in result.trace:
        assert isinstance(event.started, datetime) and event.duration_ms >= 0 and event.error is None
    assert all(e.tokens_in and e.tokens_out is not None for e in result.trace if e.kind == "model")
    assert result.trace[2].args == {"resource_type": "Observation", "code": "4548-4"}
    rendered = result.render()
    assert f"Answer: 7.9 % on 2023-04-02 [{A1C}]" in rendered
    assert "search_record" in rendered and "8.4 % [Observation/obs-a1c-1]" in rendered

    planner, _, extractor, answerer = model.calls
    assert planner.tool_choice == "any"
    assert planner.tool_names == ["record_manifest", "search_record", FINISH_TOOL_NAME]  # as in training data
    assert "Observation: 3 resources" in planner.text, "the planner sees the manifest before choosing"
    assert (extractor.tool_names, extractor.tool_choice) == (["record_facts"], "record_facts")
    assert "8.4 % [Observation/obs-a1c-1]" in extractor.text
    assert (answerer.tool_names, answerer.tool_choice) == (["final_answer"], "final_answer")
    assert f"Hemoglobin A1c 7.9 % on 2023-04-02 [{A1C}]" in answerer.text
    assert "8.4 %" not in answerer.text, "the answerer sees only the extracted facts"


async def test_step_limit_stops_a_planner_that_never_finishes() -> None:
    tools = RecordTools()
    model = ScriptedChatModel(
        script=[search_a1c(), search_a1c(), search_a1c(), facts(("A1c 7.9 %", [A1C])), final("7.9 %", [A1C])]
    )
    result = await ask(model, tools, max_steps=3)

    assert result.steps == 3
    assert [c.tool_choice for c in model.calls] == ["any", "any", "any", "record_facts", "final_answer"]
    assert kinds(result).count(("tool", "search_record")) == 3
    assert result.status == "answered"
    assert len(result.evidence) == 2, "repeated lines are kept once"


async def test_invalid_calls_go_back_to_the_model_then_fail_clearly_after_the_retries() -> None:
    model = ScriptedChatModel(
        script=[
            invalid_call(
                "search_record", '{"resource_type": Observation', "Expecting value: line 1 column 19"
            ),
            text_reply("I think the HbA1c is fine."),
            invalid_call("search_record", '{"resource_type": 7}', "resource_type: Input should be a string"),
        ]
    )
    result = await ask(model, max_retries=2)

    assert len(model.calls) == 3, "one call and two retries, then no extractor/answerer call without evidence"
    second, third = model.calls[1].text, model.calls[2].text
    assert "not a valid tool call: search_record: Expecting value: line 1 column 19" in second
    assert "not a valid tool call: the reply held no tool call" in third
    assert result.answer == NOT_FOUND
    assert result.status == "failed"
    assert result.errors and "planner gave up after 3 invalid tool calls" in result.errors[0]
    failures = [e for e in result.trace if e.kind == "model" and e.error]
    assert len(failures) == 4
    assert "gave up" in (failures[-1].error or "")


async def test_an_invalid_call_is_retried_and_the_run_recovers() -> None:
    model = ScriptedChatModel(
        script=[
            invalid_call(None, "search Observation please", "no JSON object found"),
            search_a1c(),
            finish(),
            facts(("A1c 7.9 %", [A1C])),
            final("7.9 %", [A1C]),
        ]
    )
    result = await ask(model)

    assert result.status == "answered" and result.errors == []
    assert result.trace[1].error == "invalid tool call: ?: no JSON object found"


async def test_citations_not_in_the_evidence_are_dropped_and_recorded() -> None:
    model = ScriptedChatModel(
        script=[
            search_a1c(),
            finish(),
            facts(
                ("A1c 7.9 %", [A1C, "Observation/obs-invented"]), ("Weight 81 kg", ["Observation/obs-wt-1"])
            ),
            final(f"7.9 % [{A1C}] [Observation/other-patient]", [A1C, "MedicationRequest/made-up"]),
        ]
    )
    result = await ask(model)

    assert result.answer == f"7.9 % [{A1C}]"
    assert result.citations == [A1C]
    assert [(f.text, f.citations) for f in result.facts] == [("A1c 7.9 %", [A1C])]
    checks = [e for e in result.trace if e.kind == "check"]
    dropped = [c for e in checks for c in e.args.get("dropped", [])]
    assert dropped == [
        "Observation/obs-invented",
        "Observation/obs-wt-1",
        "MedicationRequest/made-up",
        "Observation/other-patient",
    ], "obs-wt-1 exists in the record but was never retrieved"
    assert any("fact dropped" in e.summary and "Weight 81 kg" in e.summary for e in checks)


async def test_an_answer_citing_nothing_retrieved_becomes_the_refusal() -> None:
    model = ScriptedChatModel(
        script=[
            search_a1c(),
            finish(),
            facts(("A1c 7.9 %", [A1C])),
            final("5.2 %", ["Observation/other-patient"]),
        ]
    )
    result = await ask(model)

    assert (result.answer, result.citations, result.status) == (NOT_FOUND, [], "not_found")
    assert any(e.kind == "check" and e.error and "unsupported answer: 5.2 %" in e.error for e in result.trace)


async def test_no_evidence_gives_not_found_without_asking_extractor_or_answerer() -> None:
    model = ScriptedChatModel(script=[finish()])
    result = await ask(model)

    assert result.answer == NOT_FOUND
    assert (result.status, result.citations, result.evidence, result.facts) == ("not_found", [], [], [])
    assert len(model.calls) == 1


async def test_no_relevant_fact_gives_not_found_without_asking_the_answerer() -> None:
    model = ScriptedChatModel(script=[search_a1c(), finish(), facts()])
    result = await ask(model)

    assert (result.answer, result.status) == (NOT_FOUND, "not_found")
    assert result.evidence and len(model.calls) == 3


async def test_a_refusal_from_the_answerer_is_exactly_not_found_with_no_citations() -> None:
    model = ScriptedChatModel(
        script=[search_a1c(), finish(), facts(("A1c 7.9 %", [A1C])), final("Not found in the record.", [A1C])]
    )
    result = await ask(model)

    assert (result.answer, result.citations, result.status) == (NOT_FOUND, [], "not_found")


async def test_patient_id_comes_from_state_even_when_the_model_passes_another() -> None:
    tools = RecordTools()
    model = ScriptedChatModel(
        script=[search_a1c(patient_id="pat-2"), finish(), facts(("A1c 7.9 %", [A1C])), final("7.9 %", [A1C])]
    )
    result = await ask(model, tools)

    assert tools.patients_read == ["pat-1", "pat-1"]
    assert all("other-patient" not in e.text for e in result.evidence)
    assert result.trace[1].args["ignored_args"] == ["search_record.patient_id"]
    assert "patient_id" not in result.trace[2].args
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in model.calls[0].tools}
    assert all("patient_id" not in s.get("properties", {}) for s in schemas.values())


async def test_bad_arguments_and_tool_failures_are_distinct_messages_to_the_model() -> None:
    model = ScriptedChatModel(
        script=[calls(tool_call("search_record", code="4548-4")), search_a1c(), finish()]
    )
    result = await ask(model, RecordTools(fail_searches=True))

    after_bad_args, after_failure = model.calls[1].text, model.calls[2].text
    assert "Bad arguments for tool search_record: resource_type: Field required" in after_bad_args
    assert (
        "Tool search_record failed: ConnectionError: FHIR server at http://127.0.0.1:9/fhir" in after_failure
    )
    tool_errors = [e.error for e in result.trace if e.kind == "tool" and e.error]
    assert tool_errors[0].startswith("bad arguments:") and tool_errors[1].startswith("tool failed:")
    assert (
        result.errors == [e for e in result.errors if "search_record failed" in e] and len(result.errors) == 1
    )
    assert (result.answer, result.status) == (NOT_FOUND, "failed"), (
        "a refusal after a failure is not a clean one"
    )


async def test_errors_a_tool_reports_itself_are_classified_the_same_way() -> None:
    model = ScriptedChatModel(
        script=[calls(tool_call("search_record", code="4548-4")), search_a1c(), finish()]
    )
    result = await ask(model, RecordTools(fail_searches=True, errors_as_messages=True))

    assert "Bad arguments: check the arguments" in model.calls[1].text
    assert "Tool failed: FHIR server at http://127.0.0.1:9/fhir is unreachable" in model.calls[2].text
    tool_errors = [e.error or "" for e in result.trace if e.kind == "tool" and e.error]
    assert [e.split(":")[0] for e in tool_errors] == ["bad arguments", "tool failed"]
    assert len(result.errors) == 1 and result.status == "failed"


async def test_an_unknown_tool_name_is_answered_as_a_message() -> None:
    model = ScriptedChatModel(script=[calls(tool_call("delete_record", id="x")), finish()])
    result = await ask(model)

    assert "Unknown tool delete_record. Call one of: record_manifest, search_record" in model.calls[1].text
    assert result.trace[2].error and result.trace[2].error.startswith("unknown tool:")


async def test_extractor_invalid_output_is_retried_then_the_answerer_runs() -> None:
    model = ScriptedChatModel(
        script=[
            search_a1c(),
            finish(),
            calls(tool_call("record_facts", facts=[{"text": "A1c 7.9 %"}])),
            facts(("A1c 7.9 %", [A1C])),
            final("7.9 %", [A1C]),
        ]
    )
    result = await ask(model)

    assert "record_facts arguments do not match its schema: facts.0.citations: Field required" in (
        model.calls[3].text
    )
    assert result.status == "answered"


async def test_a_failed_extractor_passes_all_evidence_to_the_answerer() -> None:
    model = ScriptedChatModel(
        script=[search_a1c(), finish(), text_reply("facts"), text_reply("facts"), final("7.9 %", [A1C])]
    )
    result = await ask(model, max_retries=1)

    assert "- 2022-01-05 Hemoglobin A1c [4548-4] 8.4 % [Observation/obs-a1c-1]" in model.calls[-1].text
    assert result.status == "answered" and len(result.facts) == 2
    assert result.errors[-1] == "extractor failed: all evidence lines are passed on as facts"


async def test_answerer_that_never_returns_valid_output_fails_clearly() -> None:
    model = ScriptedChatModel(
        script=[search_a1c(), finish(), facts(("A1c 7.9 %", [A1C])), text_reply("7.9"), text_reply("7.9")]
    )
    result = await ask(model, max_retries=1)

    assert (result.answer, result.status) == (FAILED_ANSWER, "failed")
    assert "answerer gave up after 2 invalid replies" in result.errors[0]


async def test_bad_input_is_a_typed_error() -> None:
    graph = build_ehr_qa_graph(ScriptedChatModel(), RecordTools().build())
    with pytest.raises(EhrQaInputError, match="empty"):
        await run_ehr_qa(graph, "  ", "pat-1")
    with pytest.raises(EhrQaInputError, match="not a FHIR patient id"):
        await run_ehr_qa(graph, QUESTION, "Patient/../x y")
    with pytest.raises(ValueError, match="max_steps"):
        build_ehr_qa_graph(ScriptedChatModel(), [], max_steps=0)


@pytest.mark.parametrize("patient_id", [".", ".."])
async def test_a_patient_id_of_dots_alone_is_refused(patient_id: str) -> None:
    graph = build_ehr_qa_graph(ScriptedChatModel(), RecordTools().build())
    with pytest.raises(EhrQaInputError, match="not a FHIR patient id"):
        await run_ehr_qa(graph, QUESTION, patient_id)


@pytest.mark.parametrize("bad", ["\x00", "\ud800"])
async def test_a_question_a_store_cannot_hold_is_refused_before_any_model_call(bad: str) -> None:
    model = ScriptedChatModel()
    graph = build_ehr_qa_graph(model, RecordTools().build())
    with pytest.raises(EhrQaInputError, match=r"position 4.*remove it"):
        await run_ehr_qa(graph, f"What{bad} was the last HbA1c?", "pat-1")
    assert model.calls == []
