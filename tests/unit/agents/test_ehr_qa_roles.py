"""EHR QA agent roles: tool sets, forced tool choices, output contracts, prompts and citation helpers."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from pydantic import ValidationError

from clinicflow.agents.ehr_qa import (
    ANSWERER,
    EXTRACTOR,
    FINISH_TOOL_NAME,
    NOT_FOUND,
    PLANNER,
    Fact,
    FinalAnswer,
    answerer_messages,
    bind_role,
    citation_kind,
    citations_in,
    extractor_messages,
    invalid_reply_message,
    is_record_citation,
    is_refusal,
    normalize_citation,
    planner_messages,
    strip_citations,
)
from tests.fakes import ScriptedChatModel, calls, tool_call


@tool
def search_record(resource_type: str, code: str | None = None) -> str:
    """Search the record."""
    return ""


async def test_each_role_binds_its_tools_with_a_forced_choice() -> None:
    model = ScriptedChatModel(script=[calls(tool_call(FINISH_TOOL_NAME))] * 3)
    await bind_role(model, PLANNER, [search_record]).ainvoke("q")
    await bind_role(model, EXTRACTOR).ainvoke("q")
    await bind_role(model, ANSWERER).ainvoke("q")

    bound = [(c.tool_names, c.tool_choice) for c in model.calls]
    assert bound == [
        (["search_record", FINISH_TOOL_NAME], "any"),
        (["record_facts"], "record_facts"),
        (["final_answer"], "final_answer"),
    ]
    answer_schema = model.calls[2].tools[0]["function"]["parameters"]
    assert answer_schema["required"] == ["answer", "citations"]
    facts_schema = model.calls[1].tools[0]["function"]["parameters"]
    assert facts_schema["properties"]["facts"]["items"]["required"] == ["text", "citations"]


def test_output_contracts_reject_missing_fields() -> None:
    with pytest.raises(ValidationError):
        FinalAnswer.model_validate({"answer": "7.9 %"})
    assert FinalAnswer.model_validate({"answer": "7.9 %", "citations": ["Observation/a"]}).citations == [
        "Observation/a"
    ]


def test_prompts_carry_question_evidence_and_facts() -> None:
    planner = planner_messages("Last HbA1c?", [])
    assert isinstance(planner[0], SystemMessage) and "never pass a patient id" in planner[0].text
    assert planner[1] == HumanMessage("Question: Last HbA1c?")

    line = "2023-04-02 Hemoglobin A1c 7.9 % [Observation/abc]"
    extractor = extractor_messages("Last HbA1c?", [line])
    assert f"- {line}" in extractor[1].text

    answerer = answerer_messages("Last HbA1c?", [Fact(text="A1c 7.9 %", citations=["Observation/abc"])])
    assert "- A1c 7.9 % [Observation/abc]" in answerer[1].text
    assert f'exactly "{NOT_FOUND}"' in answerer[0].text


def test_invalid_reply_message_names_the_error_and_the_tools() -> None:
    message = invalid_reply_message("no JSON object found", ["search_record", FINISH_TOOL_NAME])
    assert "no JSON object found" in message.text
    assert f"search_record, {FINISH_TOOL_NAME}" in message.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Observation/abc", "Observation/abc"),
        (" [MedicationRequest/m-1.2] ", "MedicationRequest/m-1.2"),
        ("observation/abc", None),
        ("Observation/", None),
        ("Observation/a b", None),
        ("see Observation/abc", None),
        (
            "[guideline: Diabetes targets § Glycemic targets]",
            "guideline: Diabetes targets § Glycemic targets",
        ),
        ("Guideline:Diabetes  targets §  Glycemic targets", "guideline: Diabetes targets § Glycemic targets"),
        ("[image: /imaging/cxr 1.png]", "image: /imaging/cxr 1.png"),
        ("[guideline: ]", None),
        ("guidelines: T § S", None),
    ],
)
def test_normalize_citation(value: str, expected: str | None) -> None:
    assert normalize_citation(value) == expected


def test_citations_in_finds_bracketed_citations_once_in_order() -> None:
    text = "7.9 % [Observation/b] then [Condition/a], again [Observation/b]; not Observation/c"
    assert citations_in(text) == ["Observation/b", "Condition/a"]


def test_citations_in_finds_guideline_and_image_citations_normalized() -> None:
    text = (
        "[guideline: Diabetes § Glycemic targets, p. 3] (ADA, 2024) goal below 7% "
        "2021-03-04 Chest X-ray similarity 0.312 [image: /x/cxr.png] [Media/1] "
        "[Guideline:  Diabetes § Glycemic targets, p. 3] [4548-4]"
    )
    found = citations_in(text)
    assert found == ["guideline: Diabetes § Glycemic targets, p. 3", "image: /x/cxr.png", "Media/1"]
    assert [citation_kind(c) for c in found] == ["guideline", "image", "record"]
    assert [is_record_citation(c) for c in found] == [False, False, True]


def test_bracketed_units_in_code_displays_are_not_citations() -> None:
    line = "2023-04-02 Glucose [Mass/volume] in Blood 5.4 mmol/L [Observation/g1]"
    assert citations_in(line) == ["Observation/g1"]
    assert normalize_citation("[Mass/volume]") is None and not is_record_citation("Mass/volume")
    assert strip_citations(line) == "2023-04-02 Glucose [Mass/volume] in Blood 5.4 mmol/L"


def test_strip_citations_keeps_only_the_given_ones() -> None:
    text = "7.9 % [Observation/a] [Observation/x_y] above goal [guideline:  D § T] [image: /p.png]"
    assert strip_citations(text) == "7.9 % above goal"
    assert strip_citations(text, keep={"guideline: D § T", "Observation/a"}) == (
        "7.9 % [Observation/a] above goal [guideline:  D § T]"
    )


def test_answer_contract_and_prompt_state_the_record_rule() -> None:
    answer = FinalAnswer.model_validate({"answer": "x", "citations": []})
    assert answer.about_record is True, "an answer is about the record unless the model says otherwise"
    prompt = ANSWERER.system_prompt
    assert "must cite a record fact" in prompt and "about_record to false" in prompt
    assert "[guideline: ...]" in EXTRACTOR.system_prompt
    assert "search_guidelines" in PLANNER.system_prompt and "search_images" in PLANNER.system_prompt


@pytest.mark.parametrize(
    ("answer", "refuses"),
    [("Not found in the record.", True), ("not  found in the\nrecord", True), ("7.9 %", False)],
)
def test_is_refusal(answer: str, refuses: bool) -> None:
    assert is_refusal(answer) is refuses


def test_contract_citations_are_narrowed_to_the_evidence() -> None:
    from langchain_core.utils.function_calling import convert_to_openai_tool

    from clinicflow.agents.ehr_qa import ANSWERER, EXTRACTOR

    evidence = ["Observation/a", "Condition/b", "Observation/a"]
    for role in (EXTRACTOR, ANSWERER):
        tool = role.tools(citations=evidence)[0]
        text = json.dumps(convert_to_openai_tool(tool)["function"]["parameters"])
        assert '"enum": ["Observation/a", "Condition/b"]' in text, text
    answer_schema = ANSWERER.tools(citations=evidence)[0].args_schema
    assert isinstance(answer_schema, type)
    answer_schema.model_validate({"answer": "x", "citations": ["Condition/b"]})
    with pytest.raises(ValidationError):
        answer_schema.model_validate({"answer": "x", "citations": ["Observation/invented"]})
