"""The patient-scoped FHIR tools against an in-memory FHIR server (httpx.MockTransport)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, NamedTuple

import httpx
import pytest
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from typing_extensions import TypedDict

from clinicflow.fhir import FhirClient
from clinicflow.tools import SEARCHABLE_TYPES, make_fhir_tools

from . import records as rec
from .fakes import FakeFhirServer


class _State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    patient_id: str


@pytest.fixture
def server() -> FakeFhirServer:
    return FakeFhirServer(rec.record())


@pytest.fixture
async def tools(server: FakeFhirServer) -> AsyncIterator[dict[str, BaseTool]]:
    client = server.client()
    try:
        yield {t.name: t for t in make_fhir_tools(client)}
    finally:
        await client.aclose()


class Reply(NamedTuple):
    status: str
    content: str


async def call(tool: BaseTool, patient_id: str = rec.PID, **args: Any) -> Reply:
    """Invoke a tool as ToolNode does (a tool call), with the patient injected."""
    message = await tool.ainvoke(
        {"name": tool.name, "args": {**args, "patient_id": patient_id}, "id": "call-1", "type": "tool_call"}
    )
    assert isinstance(message, ToolMessage) and isinstance(message.content, str)
    return Reply(message.status, message.content)


def test_patient_id_is_hidden_from_the_model_schema(tools: dict[str, BaseTool]) -> None:
    assert set(tools) == {"record_manifest", "search_record"}
    for tool in tools.values():
        schema = tool.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
        assert "patient_id" not in schema.get("properties", {})
        parameters = convert_to_openai_tool(tool)["function"]["parameters"]
        assert not [name for name in parameters.get("properties", {}) if "patient" in name.lower()]
        assert not [name for name in parameters.get("required", []) if "patient" in name.lower()]
    search = convert_to_openai_tool(tools["search_record"])["function"]["parameters"]
    assert set(search["properties"]) == {"resource_type", "code", "text", "date_from", "date_to", "limit"}
    assert search["required"] == ["resource_type"]
    assert search["properties"]["resource_type"]["enum"] == list(SEARCHABLE_TYPES)


async def test_tool_node_injects_the_patient_from_graph_state(tools: dict[str, BaseTool]) -> None:
    graph = StateGraph(_State)
    graph.add_node("tools", ToolNode(list(tools.values())))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    calls = [
        {"name": "search_record", "args": {"resource_type": "Observation", "code": "4548-4"}, "id": "1"},
        {"name": "record_manifest", "args": {}, "id": "2"},
    ]
    state: _State = {"messages": [AIMessage(content="", tool_calls=calls)], "patient_id": rec.PID}
    out = await graph.compile().ainvoke(state)
    _, search, manifest = out["messages"]
    assert "[Observation/o3]" in search.content and "[Observation/o9]" not in search.content
    assert manifest.content.startswith("Patient Jane Q Doe")


async def test_search_by_code_forms(tools: dict[str, BaseTool], server: FakeFhirServer) -> None:
    search = tools["search_record"]
    by_token = await call(search, resource_type="Observation", code="http://loinc.org|4548-4")
    lines = by_token.content.splitlines()
    assert lines[0] == "3 Observation found with code http://loinc.org|4548-4, newest first:"
    assert lines[1:] == [
        "2023-04-02 Hemoglobin A1c/Hemoglobin.total in Blood 6.8 % [Observation/o3]",
        "2022-06-15 Hemoglobin A1c/Hemoglobin.total in Blood 7.1 % [Observation/o2]",
        "2021-03-01 Hemoglobin A1c/Hemoglobin.total in Blood 7.9 % [Observation/o1]",
    ]
    params = server.searches("Observation")[-1]
    assert params["patient"] == rec.PID and params["code"] == "http://loinc.org|4548-4"
    bare = await call(search, resource_type="Observation", code="4548-4")
    assert bare.content.splitlines()[1:] == lines[1:]
    alias = await call(search, resource_type="Observation", code="LOINC|4548-4")
    assert alias.content.splitlines()[1:] == lines[1:]
    by_display = await call(search, resource_type="Observation", code="hemoglobin a1c")
    assert by_display.content.splitlines()[1:] == lines[1:]
    assert "code" not in server.searches("Observation")[-1]


async def test_text_and_dates(tools: dict[str, BaseTool], server: FakeFhirServer) -> None:
    search = tools["search_record"]
    ranged = await call(
        search, resource_type="Observation", code="4548-4", date_from="2022-01-01", date_to="2022-12"
    )
    assert ranged.content.splitlines()[1:] == [
        "2022-06-15 Hemoglobin A1c/Hemoglobin.total in Blood 7.1 % [Observation/o2]"
    ]
    assert server.searches("Observation")[-1].get_list("date") == ["ge2021-12-31", "le2023-01-01"]
    by_year = await call(search, resource_type="Immunization", date_from="2023", date_to="2023")
    assert by_year.content.splitlines()[1:] == [
        "2023-10-03 Influenza, seasonal, injectable, preservative free [Immunization/i2]"
    ]
    text = await call(search, resource_type="Condition", text="SINUSITIS")
    assert text.content.splitlines()[1:] == [
        "2019-01-10 Viral sinusitis (disorder); resolved; diagnosed at visit 2019-01-12; abated 2019-01-24 "
        "[Condition/c2]"
    ]
    by_reason = await call(search, resource_type="MedicationRequest", text="diabetes")
    assert by_reason.content.splitlines()[1:] == [
        "2021-03-01 24 HR Metformin hydrochloride 500 MG; active; encounter performer Dr. Ann Lee; "
        "reason Diabetes mellitus type 2 (disorder) [Condition/c1]; dosage dose 1 2x per 1 d "
        "[MedicationRequest/m1]"
    ]


async def test_limit_and_budget_state_what_is_left_out(server: FakeFhirServer) -> None:
    for i in range(40):
        server.add(rec.observation(f"w{i}", "29463-7", "Body Weight", f"{1980 + i}-01-01", 60 + i, "kg"))
    client = server.client()
    try:
        tools = {t.name: t for t in make_fhir_tools(client, token_budget=200)}
        out = (
            await call(tools["search_record"], resource_type="Observation", code="29463-7", limit=30)
        ).content
    finally:
        await client.aclose()
    lines = out.splitlines()
    assert lines[0] == "41 Observation found with code 29463-7, newest first (limit 30):"
    assert lines[1] == "2023-04-02 Body Weight 81.5 kg [Observation/o4]"
    assert lines[2] == "2019-01-01 Body Weight 99 kg [Observation/w39]"
    shown = len(lines) - 2
    assert lines[-1] == f"… {41 - shown} more not shown; narrow by code or date"
    assert len(out) / 4 <= 200 + 1


async def test_other_patients_resources_are_dropped(
    tools: dict[str, BaseTool], server: FakeFhirServer
) -> None:
    server.leak = [
        rec.observation("x1", "4548-4", "Hemoglobin A1c", "2024-01-01", 12.0, pid=rec.OTHER),
        {**rec.observation("x2", "4548-4", "Hemoglobin A1c", "2024-01-02", 13.0), "subject": None},
        rec.condition("x3", "44054006", "Diabetes", "2024-01-01", pid=rec.OTHER),
    ]
    out = (await call(tools["search_record"], resource_type="Observation", code="4548-4")).content
    assert "Observation/x1" not in out and "Observation/x2" not in out and "12" not in out
    assert out.startswith("3 Observation found")
    manifest = (await call(tools["record_manifest"])).content
    assert "Observation: 5," in manifest and "Condition: 2," in manifest


async def test_manifest_without_everything_uses_one_search_per_type(
    tools: dict[str, BaseTool], server: FakeFhirServer
) -> None:
    with_everything = (await call(tools["record_manifest"])).content
    server.everything = False
    without = (await call(tools["record_manifest"])).content
    assert without == with_everything
    assert "Observation: 5, 2021-03-01..2023-04-02" in without
    assert server.searches("Condition")[-1]["patient"] == rec.PID


async def test_not_found_in_the_record(tools: dict[str, BaseTool]) -> None:
    out = await call(tools["search_record"], resource_type="Condition", code="snomed|59621000")
    assert out.status == "success"
    assert out.content == (
        "No Condition found in the record with code http://snomed.info/sct|59621000 "
        "(not found in the record)."
    )


async def test_a_concept_searched_under_the_wrong_type_is_found_where_it_is_recorded(
    tools: dict[str, BaseTool],
) -> None:
    search = tools["search_record"]
    out = (
        await call(search, resource_type="MedicationRequest", code="Hemoglobin A1c/Hemoglobin.total in Blood")
    ).content
    lines = out.splitlines()
    assert lines[0] == (
        "No MedicationRequest found with code matching 'Hemoglobin A1c/Hemoglobin.total in Blood'; "
        "that concept is recorded as Observation:"
    )
    assert lines[1].startswith("3 Observation found with code matching")
    assert [line[-16:] for line in lines[2:]] == ["[Observation/o3]", "[Observation/o2]", "[Observation/o1]"]
    tagless = (await call(search, resource_type="MedicationRequest", code="diabetes mellitus type 2")).content
    assert tagless.splitlines()[0].endswith("that concept is recorded as Condition:")
    assert tagless.endswith("[Condition/c1]")
    by_code = (await call(search, resource_type="Condition", code="4548-4", date_from="2023")).content
    assert by_code.splitlines()[1:] == [
        "1 Observation found with code 4548-4, dated 2023-01-01 to …, newest first:",
        by_code.splitlines()[2],
    ]
    assert by_code.endswith("[Observation/o3]")


@pytest.mark.parametrize(
    ("resource_type", "code"),
    [
        ("MedicationRequest", "Hemoglobin A1c"),  # part of a display, not a whole one: no redirect
        ("Condition", "Essential hypertension (disorder)"),  # only another patient has it
        ("MedicationRequest", "Hemoglobin A1c/Hemoglobin.total in Blood|x"),  # a system|code form
    ],
)
async def test_no_redirect_without_an_exact_concept_of_this_patient(
    tools: dict[str, BaseTool], resource_type: str, code: str
) -> None:
    out = (await call(tools["search_record"], resource_type=resource_type, code=code)).content
    assert out.startswith(f"No {resource_type} found in the record") and "(not found in the record)" in out


async def test_no_redirect_when_the_dates_leave_nothing(tools: dict[str, BaseTool]) -> None:
    out = await call(tools["search_record"], resource_type="Condition", code="Body Weight", date_to="2020")
    assert out.content == (
        "No Condition found in the record with code matching 'Body Weight', dated … to 2020-12-31 "
        "(not found in the record)."
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            {"resource_type": "Lab"},
            "resource_type 'Lab' is not searchable; use one of Patient, Condition, Observation",
        ),
        (
            {"resource_type": "Observation", "date_from": "01/02/2020"},
            "date_from '01/02/2020' is not a date; use YYYY-MM-DD",
        ),
        ({"resource_type": "Observation", "date_to": "2020-02-30"}, "date_to '2020-02-30' is not a date"),
        (
            {"resource_type": "Observation", "date_from": "2021", "date_to": "2020"},
            "date_from '2021' is after date_to '2020'",
        ),
        ({"resource_type": "Observation", "limit": 0}, "limit must be a whole number from 1 to 100"),
        ({"resource_type": "Observation", "code": "http://loinc.org|"}, "has no code after '|'"),
        ({"code": "4548-4"}, "resource_type is required; use one of Patient"),
    ],
)
async def test_bad_arguments_come_back_as_readable_messages(
    tools: dict[str, BaseTool], args: dict[str, Any], expected: str
) -> None:
    out = await call(tools["search_record"], **args)
    assert out.status == "error"
    assert out.content.startswith("Bad arguments: ")
    assert expected in out.content


async def test_unknown_patient_and_missing_patient(tools: dict[str, BaseTool]) -> None:
    for tool, args in (
        (tools["search_record"], {"resource_type": "Condition"}),
        (tools["record_manifest"], {}),
    ):
        out = await call(tool, "nobody", **args)
        assert out.status == "error"
        assert out.content == "Tool failed: patient 'nobody' not found on the FHIR server"
    out = await call(tools["search_record"], "", resource_type="Condition")
    assert out.content == "Tool failed: no patient is in context"


async def test_server_failure_is_a_tool_failure_not_bad_arguments(
    tools: dict[str, BaseTool], server: FakeFhirServer
) -> None:
    server.fail_with = 500
    out = await call(tools["search_record"], resource_type="Condition")
    assert out.status == "error"
    assert out.content.startswith(
        "Tool failed: FHIR server error: FHIR server returned 500 Internal Server Error"
    )
    assert "simulated failure" in out.content


async def test_patient_type_returns_the_demographics_line(tools: dict[str, BaseTool]) -> None:
    out = (await call(tools["search_record"], resource_type="Patient")).content
    assert out.splitlines()[1] == "Patient Jane Q Doe; female; born 1970-05-01; MRN MRN-42 [Patient/p1]"


async def test_unreachable_server_is_named() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = FhirClient(
        "http://fhir.down:8765/fhir", transport=httpx.MockTransport(refuse), retries=0, backoff=0
    )
    try:
        search = {t.name: t for t in make_fhir_tools(client)}["search_record"]
        out = await call(search, resource_type="Condition")
    finally:
        await client.aclose()
    assert out.status == "error"
    assert out.content.startswith(
        "Tool failed: FHIR server error: FHIR server at http://fhir.down:8765/fhir is unreachable"
    )
