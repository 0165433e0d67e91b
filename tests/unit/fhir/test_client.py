"""FhirClient over httpx.MockTransport: paging, bounds, retries, auth, create and $everything."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from clinicflow.fhir import (
    BearerAuth,
    FhirBadRequestError,
    FhirClient,
    FhirConnectionError,
    FhirError,
    FhirNotFoundError,
    FhirServerError,
    FhirTimeoutError,
)

BASE = "http://fhir.test/fhir"
Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, **kwargs: Any) -> FhirClient:
    kwargs.setdefault("backoff", 0)
    return FhirClient(BASE, transport=httpx.MockTransport(handler), **kwargs)


def observations(n: int) -> list[dict[str, Any]]:
    return [{"resourceType": "Observation", "id": f"o{i}", "status": "final"} for i in range(n)]


class PagingServer:
    """A searchset endpoint over a fixed list: honours _count up to `cap`, links in the given style."""

    def __init__(self, resources: list[dict[str, Any]], *, cap: int = 1000, link_style: str = "absolute"):
        self.resources = resources
        self.cap = cap
        self.link_style = link_style
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        params = request.url.params
        count = min(int(params.get("_count", "20")), self.cap)
        offset = int(params.get("_offset", "0"))
        page = self.resources[offset : offset + count]
        links = [{"relation": "self", "url": str(request.url)}]
        if offset + count < len(self.resources):
            query = [(k, v) for k, v in params.multi_items() if k not in ("_count", "_offset")]
            query += [("_count", str(count)), ("_offset", str(offset + count))]
            qs = str(httpx.QueryParams(tuple(query)))
            rtype = request.url.path.rsplit("/", 1)[-1]
            url = {
                "absolute": f"{BASE}/{rtype}?{qs}",
                "relative": f"{rtype}?{qs}",
                "absolute-path": f"/fhir/{rtype}?{qs}",
            }[self.link_style]
            links.append({"relation": "next", "url": url})
        body = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(self.resources),
            "link": links,
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in page],
        }
        return httpx.Response(200, json=body)


@pytest.mark.parametrize("link_style", ["absolute", "relative", "absolute-path"])
async def test_iter_follows_next_links_of_each_style(link_style: str) -> None:
    server = PagingServer(observations(23), link_style=link_style)
    async with make_client(server) as c:
        got = await c.search("Observation").count(5).all()
    assert [r["id"] for r in got] == [f"o{i}" for i in range(23)]
    assert len(server.requests) == 5
    assert all(r.url.host == "fhir.test" and r.url.path == "/fhir/Observation" for r in server.requests)


async def test_server_cap_on_count_still_pages_to_the_limit() -> None:
    server = PagingServer(observations(2500), cap=1000)
    async with make_client(server) as c:
        got = await c.search("Observation").count(5000).all(limit=2200)
    assert len(got) == 2200
    assert len(server.requests) == 3


async def test_limit_bounds_resources_and_requests() -> None:
    server = PagingServer(observations(100))
    async with make_client(server) as c:
        got = await c.search("Observation").count(10).all(limit=25)
        assert [r["id"] for r in got] == [f"o{i}" for i in range(25)]
        assert len(server.requests) == 3
        assert await c.search("Observation").all(limit=0) == []
        with pytest.raises(ValueError, match="limit"):
            await c.search("Observation").all(limit=-1)


async def test_limit_without_count_asks_for_small_pages() -> None:
    server = PagingServer(observations(100))
    async with make_client(server) as c:
        got = await c.search("Observation").all(limit=3)
    assert len(got) == 3
    assert server.requests[0].url.params["_count"] == "3"
    assert len(server.requests) == 1


async def test_default_limit_bounds_an_endless_result_set() -> None:
    server = PagingServer(observations(12_000))
    async with make_client(server) as c:
        got = await c.search("Observation").all()
    assert len(got) == 10_000


async def test_max_pages_bounds_requests() -> None:
    server = PagingServer(observations(100))
    async with make_client(server) as c:
        got = await c.search("Observation").count(10).all(limit=None, max_pages=4)
    assert len(got) == 40
    assert len(server.requests) == 4


async def test_a_next_link_that_repeats_stops_paging() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "searchset",
                "link": [{"relation": "next", "url": f"{BASE}/Observation?page=2"}],
                "entry": [{"resource": {"resourceType": "Observation", "id": "x"}}],
            },
        )

    async with make_client(handler) as c:
        got = await c.search("Observation").all(limit=None)
    assert len(got) == 2


async def test_a_next_link_to_another_origin_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "fhir.test", "must never leave the configured server"
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "searchset",
                "link": [{"relation": "next", "url": "http://evil.test/fhir/Observation?page=2"}],
                "entry": [{"resource": {"resourceType": "Observation", "id": "x"}}],
            },
        )

    async with make_client(handler, token="secret") as c:
        with pytest.raises(FhirError, match="another origin"):
            await c.search("Observation").all()


async def test_outcome_entries_are_not_yielded() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [
                    {"resource": {"resourceType": "Observation", "id": "a"}, "search": {"mode": "match"}},
                    {"resource": {"resourceType": "Patient", "id": "p"}, "search": {"mode": "include"}},
                    {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
                ],
            },
        )

    async with make_client(handler) as c:
        got = await c.search("Observation").all()
    assert [r["resourceType"] for r in got] == ["Observation", "Patient"]


async def test_page_rejects_a_non_bundle_answer() -> None:
    async with make_client(lambda r: httpx.Response(200, json={"resourceType": "Patient", "id": "x"})) as c:
        with pytest.raises(FhirError, match="instead of a Bundle"):
            await c.search("Observation").page()


async def test_read_sends_fhir_headers_and_returns_the_resource() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})

    async with make_client(handler) as c:
        assert await c.read("Patient", "p1") == {"resourceType": "Patient", "id": "p1"}
    assert str(seen[0].url) == f"{BASE}/Patient/p1"
    assert seen[0].headers["accept"] == "application/fhir+json"
    assert "authorization" not in seen[0].headers


@pytest.mark.parametrize("bad_id", ["", "..", "a/b", "a b", "x" * 65, "p1?x=1"])
async def test_read_rejects_ids_that_are_not_fhir_ids(bad_id: str) -> None:
    async with make_client(lambda r: httpx.Response(200, json={})) as c:
        with pytest.raises(ValueError, match="invalid FHIR id"):
            await c.read("Patient", bad_id)


async def test_read_of_a_non_json_body_is_a_clear_error() -> None:
    async with make_client(lambda r: httpx.Response(200, text="<html>login</html>")) as c:
        with pytest.raises(FhirError, match="not a FHIR JSON object"):
            await c.read("Patient", "p1")


async def test_bearer_token_is_sent_on_every_request() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return PagingServer(observations(4))(request)

    async with make_client(handler, token="tok-123") as c:
        await c.search("Observation").count(2).all()
        await c.read("Observation", "o1")
    assert seen == ["Bearer tok-123"] * 3


async def test_custom_auth_subclass_is_used() -> None:
    class Rotating(BearerAuth):
        def __init__(self) -> None:
            super().__init__("t0")
            self.n = 0

        def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
            self.n += 1
            self.token = f"t{self.n}"
            yield from super().auth_flow(request)

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"resourceType": "Patient", "id": "p"})

    async with make_client(handler, auth=Rotating()) as c:
        await c.read("Patient", "p")
        await c.read("Patient", "p")
    assert seen == ["Bearer t1", "Bearer t2"]
    with pytest.raises(ValueError, match="either token or auth"):
        FhirClient(BASE, token="a", auth=BearerAuth("b"))


async def test_retries_5xx_then_succeeds() -> None:
    statuses = iter([503, 500, 200])
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        status = next(statuses)
        if status == 200:
            return httpx.Response(200, json={"resourceType": "Patient", "id": "p"})
        return httpx.Response(status, text="busy")

    async with make_client(handler, retries=3) as c:
        assert (await c.read("Patient", "p"))["id"] == "p"
    assert calls == 3


async def test_retries_are_bounded() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503)

    async with make_client(handler, retries=2) as c:
        with pytest.raises(FhirServerError) as info:
            await c.read("Patient", "p")
    assert calls == 3
    assert info.value.status == 503


async def test_4xx_is_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(404)

    async with make_client(handler, retries=3) as c:
        with pytest.raises(FhirNotFoundError):
            await c.read("Patient", "p")
    assert calls == 1


async def test_post_is_not_retried_on_5xx_but_is_on_connect_errors() -> None:
    calls = 0

    def failing(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(500)

    async with make_client(failing, retries=3) as c:
        with pytest.raises(FhirServerError):
            await c.create({"resourceType": "Basic", "code": {"text": "x"}})
    assert calls == 1

    calls = 0

    def refuses_twice(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise httpx.ConnectError("Connection refused", request=request)
        return httpx.Response(201, json={**json.loads(request.content), "id": "new"})

    async with make_client(refuses_twice, retries=3) as c:
        created = await c.create({"resourceType": "Basic", "code": {"text": "x"}})
    assert created["id"] == "new"
    assert calls == 3


async def test_post_is_not_retried_after_the_request_was_sent() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("read timed out", request=request)

    async with make_client(handler, retries=3, timeout=1.5) as c:
        with pytest.raises(FhirTimeoutError, match=r"did not answer within 1.5 s \(POST"):
            await c.create({"resourceType": "Basic"})
        assert calls == 1
        with pytest.raises(FhirTimeoutError):
            await c.read("Basic", "b")
        assert calls == 1 + 4


async def test_mock_connect_error_names_the_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with make_client(handler, retries=1) as c:
        with pytest.raises(FhirConnectionError) as info:
            await c.read("Patient", "p")
    assert str(info.value) == f"FHIR server at {BASE} is unreachable: connection refused"
    assert info.value.url == f"{BASE}/Patient/p"


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_real_connection_refused_names_the_url() -> None:
    base = f"http://127.0.0.1:{_unused_port()}/fhir"
    async with FhirClient(base, retries=1, backoff=0, timeout=5) as c:
        with pytest.raises(FhirConnectionError) as info:
            await c.search("Patient").page()
    message = str(info.value)
    assert message.startswith(f"FHIR server at {base} is unreachable: ")
    assert "refused" in message.lower() or "failed" in message.lower()


async def test_create_sends_fhir_json_and_if_none_exist() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content)
        return httpx.Response(201, json={**body, "id": "b1", "meta": {"versionId": "1"}})

    resource = {"resourceType": "Basic", "identifier": [{"system": "urn:t", "value": "1"}]}
    async with make_client(handler) as c:
        created = await c.create(resource, if_none_exist="identifier=urn:t|1")
        await c.create(resource, if_none_exist={"identifier": "urn:t|1"})
        await c.create(resource)
    assert created["id"] == "b1"
    first, second, third = seen
    assert first.method == "POST" and str(first.url) == f"{BASE}/Basic"
    assert first.headers["content-type"] == "application/fhir+json"
    assert first.headers["if-none-exist"] == "identifier=urn:t|1"
    assert httpx.QueryParams(second.headers["if-none-exist"])["identifier"] == "urn:t|1"
    assert "if-none-exist" not in third.headers
    assert json.loads(first.content) == resource


async def test_create_without_a_body_reads_the_location() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            return httpx.Response(201, headers={"Location": f"{BASE}/Basic/b9/_history/1"})
        return httpx.Response(200, json={"resourceType": "Basic", "id": "b9"})

    async with make_client(handler) as c:
        created = await c.create({"resourceType": "Basic"})
    assert created == {"resourceType": "Basic", "id": "b9"}
    assert seen == ["POST /fhir/Basic", "GET /fhir/Basic/b9"]


async def test_create_with_neither_body_nor_location_is_a_clear_error() -> None:
    async with make_client(lambda r: httpx.Response(201)) as c:
        with pytest.raises(FhirError, match="neither the resource nor a Location"):
            await c.create({"resourceType": "Basic"})


async def test_create_rejects_non_resources() -> None:
    async with make_client(lambda r: httpx.Response(201)) as c:
        for bad in ({"id": "x"}, {"resourceType": "not a type"}, ["x"]):
            with pytest.raises(ValueError):
                await c.create(bad)  # type: ignore[arg-type]


async def test_update_puts_at_the_id_and_is_retried_on_5xx() -> None:
    statuses = iter([502, 200])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        status = next(statuses)
        return httpx.Response(status, json=json.loads(request.content) if status == 200 else None)

    async with make_client(handler) as c:
        updated = await c.update({"resourceType": "Patient", "id": "p1", "active": True})
    assert updated["active"] is True
    assert seen == ["PUT /fhir/Patient/p1"] * 2


async def test_transaction_posts_to_the_base() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": [{"response": {"status": "201 Created", "location": "Patient/1/_history/1"}}],
            },
        )

    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}],
    }
    async with make_client(handler) as c:
        result = await c.transaction(bundle)
        with pytest.raises(ValueError, match="transaction or batch"):
            await c.transaction({"resourceType": "Bundle", "type": "collection"})
    assert result["type"] == "transaction-response"
    assert seen[0].method == "POST" and str(seen[0].url) == BASE
    assert seen[0].headers["prefer"] == "return=minimal"


async def test_everything_follows_paging_and_honours_the_limit() -> None:
    resources = [{"resourceType": "Patient", "id": "p1"}, *observations(9)]
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        offset = int(request.url.params.get("_offset", "0"))
        page = resources[offset : offset + 4]
        links = []
        if offset + 4 < len(resources):
            links.append({"relation": "next", "url": f"Patient/p1/$everything?_offset={offset + 4}"})
        return httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "searchset",
                "link": links,
                "entry": [{"resource": r} for r in page],
            },
        )

    async with make_client(handler) as c:
        everything = await c.everything("p1")
        limited = await c.everything("p1", limit=5)
        typed = await c.everything("p1", types=["Observation", "Condition"], limit=1)
        with pytest.raises(ValueError, match="invalid FHIR id"):
            await c.everything("../Observation")
    assert [r["id"] for r in everything] == ["p1", *(f"o{i}" for i in range(9))]
    assert len(limited) == 5
    assert seen[0].path == "/fhir/Patient/p1/$everything"
    assert len(seen) == 3 + 2 + 1
    assert seen[-1].params["_type"] == "Observation,Condition"
    assert len(typed) == 1


async def test_bad_request_from_search_maps_to_typed_error() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "value", "diagnostics": "Invalid date search value 'x'"}],
    }
    async with make_client(lambda r: httpx.Response(400, json=outcome)) as c:
        with pytest.raises(FhirBadRequestError, match="Invalid date search value 'x'"):
            await c.search("Observation").where(date="x").page()


async def test_base_url_is_validated_and_normalised() -> None:
    async with FhirClient("http://h:8080/fhir/") as c:
        assert c.base_url == "http://h:8080/fhir"
    for bad in ("fhir.test/fhir", "ftp://h/fhir", ""):
        with pytest.raises(ValueError, match="http"):
            FhirClient(bad)
