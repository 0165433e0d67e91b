"""FhirClient against the real embedded FHIR server (sekmet) loaded with the demo cohort."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from clinicflow.fhir import FhirBadRequestError, FhirClient, FhirNotFoundError

pytestmark = pytest.mark.integration


def when(resource: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(resource["effectiveDateTime"])


def codings(resource: dict[str, Any]) -> set[tuple[str | None, str | None]]:
    return {(c.get("system"), c.get("code")) for c in resource.get("code", {}).get("coding", [])}


@pytest.fixture
async def patient_observations(fhir_client: FhirClient, patient_ids: list[str]) -> list[dict[str, Any]]:
    """All Observations of the first demo patient that carry an effectiveDateTime (one page)."""
    bundle = await fhir_client.search("Observation").where(patient=patient_ids[0]).count(1000).page()
    assert bundle["total"] <= 1000, "the cohort outgrew one page; use iter() here"
    found = [e["resource"] for e in bundle.get("entry", []) if "effectiveDateTime" in e["resource"]]
    if len(found) < 20:
        pytest.skip(f"patient {patient_ids[0]} has only {len(found)} dated observations")
    return found


async def test_read_patient(fhir_client: FhirClient, patient_ids: list[str]) -> None:
    patient = await fhir_client.read("Patient", patient_ids[0])
    assert patient["resourceType"] == "Patient"
    assert patient["id"] == patient_ids[0]


async def test_read_unknown_id_is_not_found(fhir_client: FhirClient, fhir_base_url: str) -> None:
    with pytest.raises(FhirNotFoundError) as info:
        await fhir_client.read("Patient", "no-such-patient")
    err = info.value
    assert err.status == 404
    assert err.url == f"{fhir_base_url}/Patient/no-such-patient"
    assert err.issues and "no-such-patient" in err.issues[0]
    assert str(err).startswith(f"FHIR server returned 404 Not Found for GET {fhir_base_url}/Patient/")


async def test_everything_of_unknown_patient_is_not_found(fhir_client: FhirClient) -> None:
    with pytest.raises(FhirNotFoundError):
        await fhir_client.everything("no-such-patient")


async def test_token_search_with_and_without_system(
    fhir_client: FhirClient, patient_ids: list[str], patient_observations: list[dict[str, Any]]
) -> None:
    chosen = next(o for o in patient_observations if codings(o))
    system, code = sorted(codings(chosen), key=str)[0]
    assert system and code
    by_pair = (
        await fhir_client.search("Observation")
        .where(patient=patient_ids[0])
        .token("code", system, code)
        .all()
    )
    assert chosen["id"] in {o["id"] for o in by_pair}
    assert all((system, code) in codings(o) for o in by_pair)
    expected = {o["id"] for o in patient_observations if (system, code) in codings(o)}
    assert expected <= {o["id"] for o in by_pair}

    by_code = (
        await fhir_client.search("Observation").where(patient=patient_ids[0]).token("code", None, code).all()
    )
    assert {o["id"] for o in by_pair} <= {o["id"] for o in by_code}
    assert all(code in {c for _, c in codings(o)} for o in by_code)

    other_system = await (
        fhir_client.search("Observation").token("code", "urn:clinicflow:test:none", code).all()
    )
    assert other_system == []


async def test_date_prefixes_partition_the_record(
    fhir_client: FhirClient, patient_ids: list[str], patient_observations: list[dict[str, Any]]
) -> None:
    ordered = sorted(patient_observations, key=when)
    chosen = ordered[len(ordered) // 2]
    instant = chosen["effectiveDateTime"]
    base = fhir_client.search("Observation").where(patient=patient_ids[0]).count(1000)
    ids = {
        p: {o["id"] for o in await base.date("date", p, instant).all()}
        for p in ("eq", "ge", "gt", "le", "lt")
    }
    every = {o["id"] for o in patient_observations}
    t = when(chosen)

    assert chosen["id"] in ids["eq"] & ids["ge"] & ids["le"]
    assert chosen["id"] not in ids["gt"] | ids["lt"]
    assert ids["ge"] | ids["lt"] == every and not ids["ge"] & ids["lt"]
    assert ids["le"] | ids["gt"] == every and not ids["le"] & ids["gt"]
    assert ids["eq"] == {o["id"] for o in patient_observations if when(o) == t}
    assert ids["lt"] == {o["id"] for o in patient_observations if when(o) < t}
    assert ids["gt"] == {o["id"] for o in patient_observations if when(o) > t}

    window = await base.date("date", "ge", t.date()).date("date", "lt", t.date() + dt.timedelta(days=1)).all()
    assert chosen["id"] in {o["id"] for o in window}


async def test_count_and_sort(
    fhir_client: FhirClient, patient_ids: list[str], patient_observations: list[dict[str, Any]]
) -> None:
    search = fhir_client.search("Observation").where(patient=patient_ids[0]).count(10)
    newest = await search.sort("-date").page()
    oldest = await search.sort("date").page()
    newest_entries = [e["resource"] for e in newest["entry"]]
    oldest_entries = [e["resource"] for e in oldest["entry"]]
    assert len(newest_entries) == len(oldest_entries) == 10
    assert newest["total"] == oldest["total"] >= len(patient_observations)

    newest_times = [when(o) for o in newest_entries]
    assert newest_times == sorted(newest_times, reverse=True)
    assert newest_times[0] == max(when(o) for o in patient_observations)
    oldest_times = [when(o) for o in oldest_entries]
    assert oldest_times == sorted(oldest_times)
    assert oldest_times[0] == min(when(o) for o in patient_observations)


async def test_paging_over_next_links(
    fhir_client: FhirClient, patient_ids: list[str], patient_observations: list[dict[str, Any]]
) -> None:
    search = fhir_client.search("Observation").where(patient=patient_ids[0]).sort("-date").count(7)
    first = await search.page()
    assert any(link["relation"] == "next" for link in first["link"])
    total = first["total"]
    assert total > 7

    paged = await search.all()
    assert len(paged) == total
    assert len({o["id"] for o in paged}) == total
    assert {o["id"] for o in patient_observations} <= {o["id"] for o in paged}
    times = [when(o) for o in paged if "effectiveDateTime" in o]
    assert times == sorted(times, reverse=True)

    bounded = await search.all(limit=15)
    assert [o["id"] for o in bounded] == [o["id"] for o in paged[:15]]
    two_pages = await search.all(limit=None, max_pages=2)
    assert [o["id"] for o in two_pages] == [o["id"] for o in paged[:14]]


async def test_paging_past_the_server_cap_on_count(fhir_client: FhirClient) -> None:
    total = (await fhir_client.search("Observation").count(1).page())["total"]
    if total <= 1000:
        pytest.skip(f"only {total} observations in the cohort; the server cap (1000) is not reached")
    limit = min(total, 1500)
    got = await fhir_client.search("Observation").count(5000).all(limit=limit)
    assert len(got) == limit
    assert len({o["id"] for o in got}) == limit


async def test_everything_returns_the_patient_record(
    fhir_client: FhirClient, patient_ids: list[str], patient_observations: list[dict[str, Any]]
) -> None:
    record = await fhir_client.everything(patient_ids[0])
    keys = {(r["resourceType"], r["id"]) for r in record}
    assert ("Patient", patient_ids[0]) in keys
    assert all(("Observation", o["id"]) in keys for o in patient_observations)
    other = set(patient_ids[1:])
    assert not any(r["resourceType"] == "Patient" and r["id"] in other for r in record)

    limited = await fhir_client.everything(patient_ids[0], limit=5)
    assert len(limited) == 5


async def test_create_and_conditional_create(fhir_client: FhirClient) -> None:
    marker = f"clinicflow-test-{uuid.uuid4()}"
    resource = {
        "resourceType": "Basic",
        "identifier": [{"system": "urn:clinicflow:test", "value": marker}],
        "code": {"text": "client integration test"},
    }
    created = await fhir_client.create(resource)
    assert created["resourceType"] == "Basic" and created["id"]
    assert (await fhir_client.read("Basic", created["id"]))["identifier"][0]["value"] == marker

    condition = f"identifier=urn:clinicflow:test|{marker}"
    again = await fhir_client.create(resource, if_none_exist=condition)
    assert again["id"] == created["id"]

    fresh = f"{marker}-2"
    first = await fhir_client.create(
        {**resource, "identifier": [{"system": "urn:clinicflow:test", "value": fresh}]},
        if_none_exist={"identifier": f"urn:clinicflow:test|{fresh}"},
    )
    assert first["id"] != created["id"]
    matches = await fhir_client.search("Basic").token("identifier", "urn:clinicflow:test", fresh).all()
    assert [m["id"] for m in matches] == [first["id"]]


async def test_invalid_resource_is_a_bad_request(fhir_client: FhirClient) -> None:
    with pytest.raises(FhirBadRequestError) as info:
        await fhir_client.create({"resourceType": "Observation", "status": "final"})
    assert info.value.status == 400
    assert any("Observation.code" in issue for issue in info.value.issues)


async def test_invalid_search_value_is_a_bad_request(fhir_client: FhirClient) -> None:
    with pytest.raises(FhirBadRequestError, match="bogus"):
        await fhir_client.search("Observation").where(date="bogus").page()


async def test_transaction(fhir_client: FhirClient) -> None:
    marker = f"clinicflow-tx-{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Basic",
                    "identifier": [{"system": "urn:clinicflow:test", "value": marker}],
                    "code": {"text": "transaction test"},
                },
                "request": {"method": "POST", "url": "Basic"},
            }
        ],
    }
    result = await fhir_client.transaction(bundle)
    assert result["type"] == "transaction-response"
    assert result["entry"][0]["response"]["status"].startswith("201")
    found = await fhir_client.search("Basic").token("identifier", "urn:clinicflow:test", marker).all()
    assert len(found) == 1
