"""An in-memory FHIR server on `httpx.MockTransport`: conditional create, identifier search, request log."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx

from clinicflow.fhir import FhirClient


class FakeFhir:
    """Stores created resources; honours If-None-Exist on identifier; logs every request it receives."""

    def __init__(
        self, *, fail_post: Callable[[int], Exception | None] | None = None, refuse_search: bool = False
    ) -> None:
        self.resources: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self.fail_post = fail_post
        self.refuse_search = refuse_search
        self._ids = itertools.count(1)
        self._posts = 0

    @property
    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]

    def _matching(self, rtype: str, identifier: str) -> list[dict[str, Any]]:
        system, _, value = identifier.partition("|")
        return [
            r
            for r in self.resources
            if r["resourceType"] == rtype
            and any(i.get("system") == system and i.get("value") == value for i in r.get("identifier", []))
        ]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        rtype = request.url.path.rstrip("/").split("/")[-1]
        if request.method == "GET":
            if self.refuse_search:
                return httpx.Response(400, json={"resourceType": "OperationOutcome", "issue": []})
            found = self._matching(rtype, request.url.params.get("identifier", ""))
            bundle = {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": r} for r in found],
            }
            return httpx.Response(200, json=bundle)
        if request.method == "POST":
            self._posts += 1
            if self.fail_post is not None and (error := self.fail_post(self._posts)) is not None:
                raise error
            condition = request.headers.get("If-None-Exist")
            if condition:
                params = dict(parse_qsl(condition))
                existing = self._matching(rtype, params.get("identifier", ""))
                if existing:
                    return httpx.Response(200, json=existing[0])
            body = json.loads(request.content)
            stored = {**body, "id": f"{rtype.lower()}-{next(self._ids)}"}
            self.resources.append(stored)
            return httpx.Response(201, json=stored)
        return httpx.Response(405)

    def client(self) -> FhirClient:
        return FhirClient("http://fhir.test/fhir", transport=httpx.MockTransport(self.handler), backoff=0)
