"""Small patient-scoped fake FHIR tools over an in-memory record, for graph unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from langchain_core.tools import BaseTool, ToolException, tool
from langgraph.prebuilt import InjectedState

RECORDS: dict[str, dict[str, list[str]]] = {
    "pat-1": {
        "Observation": [
            "2023-04-02 Hemoglobin A1c [4548-4] 7.9 % [Observation/obs-a1c-2]",
            "2022-01-05 Hemoglobin A1c [4548-4] 8.4 % [Observation/obs-a1c-1]",
            "2023-04-02 Body weight [29463-7] 81 kg [Observation/obs-wt-1]",
        ],
        "Condition": ["2019-06-11 Diabetes mellitus type 2 [44054006] active [Condition/cond-dm2]"],
    },
    "pat-2": {
        "Observation": ["2021-03-03 Hemoglobin A1c [4548-4] 5.2 % [Observation/other-patient]"],
    },
}


@dataclass
class RecordTools:
    """The fake tools and a log of the patient each call read."""

    patients_read: list[str] = field(default_factory=list)
    fail_searches: bool = False
    errors_as_messages: bool = False

    def build(self) -> list[BaseTool]:
        log = self.patients_read
        fail = self.fail_searches

        @tool
        def record_manifest(patient_id: Annotated[str, InjectedState("patient_id")]) -> str:
            """Resource types, codes, counts and date spans in the patient's record."""
            log.append(patient_id)
            record = RECORDS.get(patient_id, {})
            return "\n".join(f"{rtype}: {len(lines)} resources" for rtype, lines in record.items())

        @tool
        def search_record(
            resource_type: str,
            patient_id: Annotated[str, InjectedState("patient_id")],
            code: str | None = None,
        ) -> str:
            """Search the patient's record by resource type and optional code."""
            log.append(patient_id)
            if fail:
                message = "FHIR server at http://127.0.0.1:9/fhir is unreachable"
                raise (
                    ToolException(f"Tool failed: {message}")
                    if self.errors_as_messages
                    else ConnectionError(message)
                )
            lines = RECORDS.get(patient_id, {}).get(resource_type, [])
            hits = [line for line in lines if code is None or f"[{code}]" in line]
            return "\n".join(hits) if hits else f"No {resource_type} matches."

        tools = [record_manifest, search_record]
        if self.errors_as_messages:
            for t in tools:
                t.handle_tool_error = True
                t.handle_validation_error = "Bad arguments: check the arguments against the schema"
        return tools
