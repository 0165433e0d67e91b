"""Search builder: immutability and how each parameter form is encoded."""

from __future__ import annotations

import datetime as dt
from dataclasses import FrozenInstanceError

import httpx
import pytest

from clinicflow.fhir import FhirClient, Search


@pytest.fixture
async def client():
    async with FhirClient(
        "http://fhir.test/fhir", transport=httpx.MockTransport(lambda r: httpx.Response(500))
    ) as c:
        yield c


def test_each_method_returns_a_new_search_and_leaves_the_original(client: FhirClient) -> None:
    base = client.search("Observation")
    narrowed = base.where(patient="p1")
    sorted_ = narrowed.sort("-date")
    assert base.params() == ()
    assert narrowed.params() == (("patient", "p1"),)
    assert sorted_.params() == (("patient", "p1"), ("_sort", "-date"))
    assert isinstance(sorted_, Search) and sorted_ is not narrowed
    with pytest.raises(FrozenInstanceError):
        base.query = (("x", "y"),)  # type: ignore[misc]


def test_shared_prefix_branches_do_not_leak_into_each_other(client: FhirClient) -> None:
    root = client.search("Observation").where(patient="p1")
    a = root.token("code", "http://loinc.org", "4548-4")
    b = root.token("code", "http://loinc.org", "2345-7")
    assert a.params()[-1] == ("code", "http://loinc.org|4548-4")
    assert b.params()[-1] == ("code", "http://loinc.org|2345-7")
    assert root.params() == (("patient", "p1"),)


def test_where_encodes_scalars_lists_and_modifiers(client: FhirClient) -> None:
    s = client.search("Observation").where(
        {"clinical-status": "active"},
        status=["final", "amended"],
        code__text="glucose",
        _has__x="y",
        value=7,
        active=True,
        onset=dt.date(2023, 4, 2),
    )
    assert s.params() == (
        ("clinical-status", "active"),
        ("status", "final"),
        ("status", "amended"),
        ("code:text", "glucose"),
        ("_has:x", "y"),
        ("value", "7"),
        ("active", "true"),
        ("onset", "2023-04-02"),
    )


def test_where_twice_repeats_the_parameter(client: FhirClient) -> None:
    s = client.search("Observation").where(code="a").where(code="b")
    assert s.params() == (("code", "a"), ("code", "b"))


@pytest.mark.parametrize("bad", [None, "", [], {"a": 1}, object()])
def test_where_rejects_values_it_cannot_encode(client: FhirClient, bad: object) -> None:
    with pytest.raises((TypeError, ValueError), match=r"status|unsupported|empty"):
        client.search("Observation").where(status=bad)  # type: ignore[arg-type]


def test_token_forms(client: FhirClient) -> None:
    s = (
        client.search("Condition")
        .token("code", "http://snomed.info/sct", "44054006")
        .token("code", None, "44054006")
        .token("code", "", "44054006")
        .token("category", "http://terminology.hl7.org/CodeSystem/condition-category", None)
        .token("identifier", "urn:sys", "a|b,c")
    )
    assert [v for _, v in s.params()] == [
        "http://snomed.info/sct|44054006",
        "44054006",
        "|44054006",
        "http://terminology.hl7.org/CodeSystem/condition-category|",
        "urn:sys|a\\|b\\,c",
    ]
    with pytest.raises(ValueError, match="system, a code"):
        s.token("code", None, None)


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le"])
def test_date_prefixes(client: FhirClient, prefix: str) -> None:
    s = client.search("Observation").date("date", prefix, "2023-04-02")
    assert s.params() == (("date", f"{prefix}2023-04-02"),)


def test_date_accepts_date_datetime_and_partial_strings(client: FhirClient) -> None:
    tz = dt.timezone(dt.timedelta(hours=2))
    s = (
        client.search("Observation")
        .date("date", "ge", dt.date(2020, 1, 31))
        .date("date", "lt", dt.datetime(2021, 6, 1, 8, 30, tzinfo=tz))
        .date("_lastUpdated", "gt", "2022")
        .date("date", "le", "2022-03")
        .date("date", "eq", "2022-03-04T05:06:07.5Z")
    )
    assert [v for _, v in s.params()] == [
        "ge2020-01-31",
        "lt2021-06-01T08:30:00+02:00",
        "gt2022",
        "le2022-03",
        "eq2022-03-04T05:06:07.5Z",
    ]


def test_date_rejects_bad_prefix_and_bad_values(client: FhirClient) -> None:
    s = client.search("Observation")
    with pytest.raises(ValueError, match="invalid date prefix 'gte'"):
        s.date("date", "gte", "2020-01-01")
    with pytest.raises(ValueError, match="give the prefix separately"):
        s.date("date", "ge", "ge2020-01-01")
    for bad in ("2020-13-01", "01/02/2020", "2020-01-01T25:00", "yesterday"):
        with pytest.raises(ValueError, match="invalid date value"):
            s.date("date", "ge", bad)
    with pytest.raises(TypeError):
        s.date("date", "ge", 20200101)  # type: ignore[arg-type]


def test_count_and_sort_replace_rather_than_repeat(client: FhirClient) -> None:
    s = client.search("Observation").count(50).sort("-date").count(10).sort("code", "-date")
    assert s.params() == (("_count", "10"), ("_sort", "code,-date"))
    for bad in (-1, "5", 2.5, True):
        with pytest.raises(ValueError, match="_count"):
            s.count(bad)  # type: ignore[arg-type]
    for fields in ((), ("",), ("date,code",), ("date desc",)):
        with pytest.raises(ValueError):
            s.sort(*fields)


def test_search_rejects_a_bad_resource_type(client: FhirClient) -> None:
    for bad in ("observation", "Observation/1", "", "../x"):
        with pytest.raises(ValueError, match="invalid FHIR resource type"):
            client.search(bad)


async def test_page_sends_encoded_params_on_the_wire() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": []})

    async with FhirClient("http://fhir.test/fhir", transport=httpx.MockTransport(handler)) as c:
        bundle = await (
            c.search("Observation")
            .where(patient="p1", status=["final", "amended"])
            .token("code", "http://loinc.org", "4548-4")
            .date("date", "ge", dt.datetime(2023, 1, 1, tzinfo=dt.UTC))
            .count(5)
            .sort("-date")
            .page()
        )
    assert bundle["resourceType"] == "Bundle"
    url = seen[0].url
    assert url.path == "/fhir/Observation"
    assert url.params.multi_items() == [
        ("patient", "p1"),
        ("status", "final"),
        ("status", "amended"),
        ("code", "http://loinc.org|4548-4"),
        ("date", "ge2023-01-01T00:00:00+00:00"),
        ("_count", "5"),
        ("_sort", "-date"),
    ]
    assert b"%2B00%3A00" in url.raw_path or b"%2B00:00" in url.raw_path
    assert seen[0].headers["accept"] == "application/fhir+json"
