"""Generation and constrained tool calls with the real Gemma 3 270M on CPU."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Literal, cast

import jsonschema
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langgraph.prebuilt import InjectedState
from pydantic import BaseModel

from clinicflow.model import ToolSpec, TransformersChatModel

QUESTION = [
    SystemMessage("You answer questions about one patient's health record, using the tools."),
    HumanMessage("What was the patient's most recent HbA1c?"),
]


@tool
def search_record(
    resource_type: Literal["Observation", "Condition", "MedicationRequest"],
    patient_id: Annotated[str, InjectedState("patient_id")],
    code: str | None = None,
    date_from: str | None = None,
) -> str:
    """Search the patient's record by resource type, code and earliest date (YYYY-MM-DD)."""
    return f"{patient_id}: {resource_type} {code} {date_from}"


CALL_SCHEMA = cast(type[BaseModel], search_record.tool_call_schema)
"""The tool's own pydantic schema of what the model may send (without the injected patient id)."""


class Answer(BaseModel):
    """The final answer and the resources it cites."""

    answer: str
    citations: list[str]


@pytest.mark.slow
def test_a_forced_call_parses_and_validates_against_the_tool_schema(gemma: TransformersChatModel) -> None:
    reply = gemma.bind_tools([search_record], tool_choice="search_record").invoke(QUESTION)
    assert isinstance(reply, AIMessage)
    print(f"\n{reply.response_metadata}")
    assert reply.invalid_tool_calls == []
    [call] = reply.tool_calls
    assert call["name"] == "search_record"
    assert "patient_id" not in call["args"]
    jsonschema.validate(call["args"], ToolSpec.from_tool(search_record).parameters)
    CALL_SCHEMA.model_validate(call["args"])
    assert json.loads(reply.response_metadata["raw_text"]) == {
        "name": "search_record",
        "arguments": call["args"],
    }
    assert reply.response_metadata["constrained"] is True
    assert reply.response_metadata["finish_reason"] == "stop"
    usage = reply.usage_metadata
    budget = reply.response_metadata["token_budget"]
    assert budget >= 48  # the asked 48, raised so that the longest call the grammar admits fits
    assert usage is not None and usage["input_tokens"] > 50 and 0 < usage["output_tokens"] <= budget


@pytest.mark.slow
def test_any_choice_over_two_tools_gives_one_valid_call(gemma: TransformersChatModel) -> None:
    chat = gemma.bind_tools([search_record, Answer], tool_choice="any")
    reply = chat.invoke([*QUESTION, HumanMessage("Answer now, citing Observation/abc.")])
    assert reply.invalid_tool_calls == []
    [call] = reply.tool_calls
    if call["name"] == "Answer":
        Answer.model_validate(call["args"])
    else:
        CALL_SCHEMA.model_validate(call["args"])


def test_greedy_decoding_is_deterministic(gemma: TransformersChatModel) -> None:
    first = gemma.invoke(QUESTION, max_new_tokens=6)
    second = gemma.invoke(QUESTION, max_new_tokens=6)
    assert first.response_metadata["raw_text"] == second.response_metadata["raw_text"]
    assert first.usage_metadata is not None and first.usage_metadata["output_tokens"] == 6
    assert first.response_metadata["finish_reason"] == "length"


async def test_concurrent_runs_share_the_loaded_model(gemma: TransformersChatModel) -> None:
    other = TransformersChatModel(model_path=gemma.model_path, device="cpu")
    assert other.load() is gemma.load()
    replies = await asyncio.gather(
        gemma.ainvoke(QUESTION, max_new_tokens=3), other.ainvoke(QUESTION, max_new_tokens=3)
    )
    assert replies[0].content == replies[1].content
    assert all(r.usage_metadata and r.usage_metadata["output_tokens"] == 3 for r in replies)
