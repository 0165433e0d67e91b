"""Write tools: exact resources, patient scoping, idempotency identifiers, decisions, and the writer."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from clinicflow.tools.write_tools import (
    CREATE_MEDICATION_REQUEST,
    CREATE_OBSERVATION,
    CREATE_RESOURCE,
    CREATE_SERVICE_REQUEST,
    OBSERVATION_CATEGORY_SYSTEM,
    WRITE_IDENTIFIER_SYSTEM,
    Approve,
    Edit,
    FhirWriter,
    Reject,
    WriteArgumentsError,
    WriteUnconfirmedError,
    approval_request,
    content_hash,
    make_write_tools,
    parse_decision,
    prepare_write,
    record_references,
)

from .fake_fhir import FakeFhir

NOW = "2023-11-13T10:15:00+00:00"


def _prepare(tool: str, args: dict, **kw: object):
    defaults: dict = {"patient_id": "p1", "run_id": "thread-1", "step": 2, "tool_call_id": "c1", "now": NOW}
    return prepare_write(tool, args, **(defaults | kw))


def test_observation_is_the_exact_vital_sign_resource() -> None:
    write = _prepare(CREATE_OBSERVATION, {"code_text": "BP", "value_string": "118/77 mmHg"})
    r = write.resource
    assert r["category"] == [
        {"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": "vital-signs", "display": "Vital Signs"}]}
    ]
    assert r["code"] == {"text": "BP"}
    assert (r["status"], r["valueString"], r["effectiveDateTime"]) == ("final", "118/77 mmHg", NOW)
    assert r["subject"] == {"reference": "Patient/p1"}
    assert r["identifier"] == [{"system": WRITE_IDENTIFIER_SYSTEM, "value": write.identifier_value}]


def test_medication_request_carries_dose_rate_route_and_ndc() -> None:
    args = {
        "medication_code": "0338-1715-40",
        "dose_value": 2,
        "dose_unit": "g",
        "rate_value": 2,
        "rate_unit": "h",
        "route": "IV",
    }
    r = _prepare(CREATE_MEDICATION_REQUEST, args).resource
    assert r["medicationCodeableConcept"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/ndc",
        "code": "0338-1715-40",
    }
    dosage = r["dosageInstruction"][0]
    assert dosage["route"] == {"text": "IV"}
    assert dosage["doseAndRate"][0] == {
        "doseQuantity": {"value": 2, "unit": "g"},
        "rateQuantity": {"value": 2, "unit": "h"},
    }
    assert (r["status"], r["intent"], r["authoredOn"]) == ("active", "order", NOW)


def test_service_request_maps_short_system_names_and_keeps_note() -> None:
    args = {
        "code": "4548-4",
        "code_system": "loinc",
        "note": "SBAR",
        "occurrence": "2023-11-14T08:00:00+00:00",
    }
    r = _prepare(CREATE_SERVICE_REQUEST, args).resource
    assert r["code"]["coding"][0] == {"system": "http://loinc.org", "code": "4548-4"}
    assert r["priority"] == "stat"
    assert r["note"] == [{"text": "SBAR"}]
    assert r["occurrenceDateTime"] == "2023-11-14T08:00:00+00:00"


def test_general_create_sets_the_patient_in_context_and_drops_server_fields() -> None:
    resource = {"resourceType": "Condition", "id": "chosen-by-model", "code": {"text": "Hypertension"}}
    write = _prepare(CREATE_RESOURCE, {"resource": resource})
    assert write.resource["subject"] == {"reference": "Patient/p1"}
    assert "id" not in write.resource
    assert resource["id"] == "chosen-by-model", "the model's dict is not mutated"


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("subject", {"reference": "Patient/someone-else"}, "subject must be the patient in context"),
        ("asserter", {"reference": "Patient/someone-else"}, "points to another patient"),
        ("asserter", {"reference": "http://elsewhere.example/fhir/Practitioner/d1"}, "not a Type/id"),
        ("encounter", {"reference": "urn:uuid:7f3a0c1e-0000-4000-8000-000000000001"}, "not a Type/id"),
        ("encounter", {"reference": "Encounter?identifier=x|1"}, "not a Type/id"),
        ("encounter", {"reference": "Group/g1"}, "may hold other patients"),
        ("encounter", {"reference": "not a reference"}, "not a FHIR reference"),
    ],
)
def test_a_reference_outside_the_patient_is_refused(field: str, value: Any, fragment: str) -> None:
    resource = {"resourceType": "Condition", "code": {"text": "Hypertension"}, field: value}
    with pytest.raises(WriteArgumentsError, match=fragment):
        _prepare(CREATE_RESOURCE, {"resource": resource})


def test_record_references_are_left_for_the_server_check() -> None:
    resource = {
        "resourceType": "Condition",
        "code": {"text": "Hypertension"},
        "encounter": {"reference": "Encounter/e1"},
        "asserter": {"reference": "Practitioner/d1"},
    }
    write = _prepare(CREATE_RESOURCE, {"resource": resource})
    assert record_references(write.resource, "p1") == ["Encounter/e1"]


def test_identifier_depends_on_run_step_and_content_only() -> None:
    args = {"code_text": "BP", "value_string": "118/77 mmHg"}
    a = _prepare(CREATE_OBSERVATION, args)
    assert _prepare(CREATE_OBSERVATION, args, tool_call_id="other").identifier_value == a.identifier_value
    assert _prepare(CREATE_OBSERVATION, args, step=3).identifier_value != a.identifier_value
    assert _prepare(CREATE_OBSERVATION, args, run_id="thread-2").identifier_value != a.identifier_value
    changed = _prepare(CREATE_OBSERVATION, {**args, "value_string": "120/80 mmHg"})
    assert changed.identifier_value != a.identifier_value
    assert content_hash(a.resource) == a.content_hash, "the hash ignores the write identifier itself"
    assert a.if_none_exist == f"identifier={WRITE_IDENTIFIER_SYSTEM}|{a.identifier_value}"


@pytest.mark.parametrize(
    ("tool", "args", "fragment"),
    [
        (CREATE_OBSERVATION, {"code_text": "BP"}, "value"),
        (CREATE_OBSERVATION, {"value_string": "1"}, "code_text is required"),
        (
            CREATE_MEDICATION_REQUEST,
            {"medication_code": "x", "dose_value": "lots", "dose_unit": "g"},
            "dose_value",
        ),
        (
            CREATE_RESOURCE,
            {"resource": {"resourceType": "Patient", "name": [{"family": "X"}]}},
            "cannot create",
        ),
        (
            CREATE_RESOURCE,
            {"resource": {"resourceType": "Observation", "status": "final"}},
            "Observation.code",
        ),
        ("drop_table", {}, "unknown write tool"),
    ],
)
def test_bad_arguments_name_the_problem(tool: str, args: dict, fragment: str) -> None:
    with pytest.raises(WriteArgumentsError, match=fragment.replace(".", r"\.")):
        _prepare(tool, args)


def test_no_patient_in_context_means_no_write() -> None:
    with pytest.raises(WriteArgumentsError, match="no patient"):
        _prepare(CREATE_OBSERVATION, {"code_text": "BP", "value_string": "1"}, patient_id=None)


def test_parse_decision_accepts_the_three_answers_and_rejects_others() -> None:
    assert isinstance(parse_decision("approve"), Approve)
    assert isinstance(parse_decision({"action": "approve"}), Approve)
    assert parse_decision({"action": "reject", "reason": "wrong dose"}) == Reject(reason="wrong dose")
    edit = parse_decision({"action": "edit", "resource": {"resourceType": "Observation"}})
    assert isinstance(edit, Edit)
    for bad in ({"action": "reject"}, {"action": "maybe"}, "sure", 3, {"action": "edit"}):
        with pytest.raises(ValueError, match="a decision is"):
            parse_decision(bad)


def test_approval_request_holds_the_exact_resource() -> None:
    write = _prepare(CREATE_OBSERVATION, {"code_text": "BP", "value_string": "118/77 mmHg"})
    request = approval_request(write)
    assert request["resource"] == write.resource
    assert request["patient_id"] == "p1"
    assert request["identifier"]["value"] == write.identifier_value
    json.dumps(request)


async def test_tools_expose_no_patient_argument_and_previews_never_write() -> None:
    tools = make_write_tools()
    assert {t.name for t in tools} == {
        CREATE_OBSERVATION,
        CREATE_MEDICATION_REQUEST,
        CREATE_SERVICE_REQUEST,
        CREATE_RESOURCE,
    }
    for tool in tools:
        assert not {"patient_id", "patient", "subject"} & set(tool.args)
    preview = await tools[0].ainvoke({"code_text": "BP", "value_string": "118/77 mmHg"})
    assert "not written" in preview
    with pytest.raises(ValueError, match="unknown write tools"):
        make_write_tools(["create_everything"])


async def test_writer_creates_once_with_a_conditional_create() -> None:
    fake = FakeFhir()
    write = _prepare(CREATE_OBSERVATION, {"code_text": "BP", "value_string": "118/77 mmHg"})
    async with fake.client() as client:
        first = await FhirWriter(client).execute(write)
        again = await FhirWriter(client).execute(write)
        blind = await FhirWriter(client, search_first=False).execute(write)
    assert first.status == "created" and first.reference == "Observation/observation-1"
    assert again.status == "existing" and again.reference == first.reference
    assert blind.reference == first.reference
    assert len(fake.resources) == 1
    assert [p.headers["If-None-Exist"] for p in fake.posts] == [write.if_none_exist] * 2


async def test_writer_sends_nothing_for_an_invalid_resource() -> None:
    fake = FakeFhir()
    write = _prepare(CREATE_OBSERVATION, {"code_text": "BP", "value_string": "118/77 mmHg"})
    broken = write.model_copy(update={"resource": {**write.resource, "valueString": {"not": "a string"}}})
    async with fake.client() as client:
        outcome = await FhirWriter(client).execute(broken)
    assert outcome.status == "invalid"
    assert any("valueString" in e for e in outcome.errors)
    assert fake.requests == []


async def test_an_ambiguous_failure_is_retried_with_the_same_identifier() -> None:
    fake = FakeFhir(fail_post=lambda n: httpx.ReadError("connection lost") if n == 1 else None)
    write = _prepare(CREATE_OBSERVATION, {"code_text": "BP", "value_string": "118/77 mmHg"})
    async with fake.client() as client:
        outcome = await FhirWriter(client).execute(write)
    assert outcome.status == "created" and len(fake.resources) == 1
    assert {p.headers["If-None-Exist"] for p in fake.posts} == {write.if_none_exist}


async def test_an_unsettled_write_raises_instead_of_reporting_nothing_written() -> None:
    fake = FakeFhir(fail_post=lambda n: httpx.ReadError("connection lost"))
    write = _prepare(CREATE_OBSERVATION, {"code_text": "BP", "value_string": "118/77 mmHg"})
    async with fake.client() as client:
        with pytest.raises(WriteUnconfirmedError, match="resume the run"):
            await FhirWriter(client, retries=1).execute(write)
    assert len(fake.posts) == 2


async def test_a_server_that_cannot_search_by_identifier_still_gets_a_conditional_create() -> None:
    fake = FakeFhir(refuse_search=True)
    write = _prepare(CREATE_OBSERVATION, {"code_text": "BP", "value_string": "118/77 mmHg"})
    async with fake.client() as client:
        first = await FhirWriter(client).execute(write)
        second = await FhirWriter(client).execute(write)
    assert first.status == second.status == "created", "without a search, a repeat is not told apart"
    assert first.reference == second.reference and len(fake.resources) == 1
