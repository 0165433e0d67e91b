"""Scopes, hashed API keys, JWT verification against a JWKS, and patient access through FHIR Groups."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from clinicflow.api.auth import (
    AuthError,
    ForbiddenError,
    JwtVerifier,
    PatientAccess,
    Principal,
    hash_secret,
    issue_api_key,
    parse_scopes,
    verify_api_key,
)
from clinicflow.api.routes import AuthFailureSampler
from clinicflow.api.store import Store
from clinicflow.fhir import FhirClient


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    found = Store(f"sqlite:///{tmp_path}/keys.sqlite")
    await found.init()
    yield found
    await found.close()


def test_scopes_parse_into_grants_and_unknown_ones_are_refused() -> None:
    grants = parse_scopes(["workflow:ehr_qa", "write", "patient:p-1", "group:g1", "audit"])
    assert grants.may_run("ehr_qa") and not grants.may_run("ehr_task")
    assert grants.read and grants.write and grants.audit and not grants.all_patients
    assert grants.patients == {"p-1"} and grants.groups == {"g1"}
    assert parse_scopes(["workflow:*", "patient:*"]).all_workflows
    with pytest.raises(ValueError, match="unknown scope 'patients:all'"):
        parse_scopes(["patients:all"])
    assert parse_scopes(["openid", "read"], strict=False).read


def test_principal_requires_workflow_read_and_write_scopes() -> None:
    reader = Principal.of("key:r", "api_key", ["workflow:*", "read"])
    reader.require_workflow("ehr_qa", write=False)
    with pytest.raises(ForbiddenError, match="lacks `write`") as denied:
        reader.require_workflow("ehr_task", write=True)
    assert denied.value.reason == "write"
    with pytest.raises(ForbiddenError, match="no scope for workflow"):
        Principal.of("key:x", "api_key", ["workflow:ehr_qa", "write"]).require_workflow(
            "encounter", write=False
        )


async def test_api_keys_are_stored_hashed_and_verified(store: Store) -> None:
    issued = await issue_api_key(store, "pipeline-a", ["workflow:ehr_qa", "read", "patient:*"])
    row = await store.get_key(issued.key_id)
    assert row is not None and issued.token.split(".", 1)[1] not in {row.digest, row.salt}
    assert row.digest == hash_secret(row.salt, issued.token.split(".", 1)[1])
    principal = await verify_api_key(store, issued.token)
    assert principal.subject == f"key:pipeline-a:{issued.key_id}" and principal.grants.all_patients
    with pytest.raises(AuthError, match="unknown API key"):
        await verify_api_key(store, issued.token[:-3] + "xyz")
    assert await store.revoke_key(issued.key_id)
    with pytest.raises(AuthError, match="revoked"):
        await verify_api_key(store, issued.token)
    with pytest.raises(ValueError):
        await issue_api_key(store, "bad", ["everything"])


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks_file(tmp_path: Path, key: rsa.RSAPrivateKey) -> str:
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "k1"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return str(path)


def _token(key: rsa.RSAPrivateKey, **claims: object) -> str:
    now = int(time.time())
    body = {
        "iss": "https://idp",
        "aud": "cf",
        "sub": "svc-1",
        "exp": now + 60,
        "scope": "workflow:ehr_qa read",
    }
    return jwt.encode(body | claims, key, algorithm="RS256", headers={"kid": "k1"})


async def test_jwt_verification_checks_signature_issuer_audience_and_expiry(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = JwtVerifier(
        _jwks_file(tmp_path, rsa_key), issuer="https://idp", audience="cf", algorithms=["RS256"]
    )
    principal = await verifier.verify(_token(rsa_key, patient="p-9"))
    assert principal.subject == "jwt:svc-1" and principal.grants.patients == {"p-9"}
    assert principal.grants.may_run("ehr_qa") and principal.grants.read
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad, message in (
        (_token(rsa_key, iss="https://evil"), "(?i)issuer"),
        (_token(rsa_key, aud="other"), "(?i)audience"),
        (_token(rsa_key, exp=int(time.time()) - 3600), "(?i)expired"),
        (_token(other), "(?i)signature"),
        ("abc.def", "malformed"),
    ):
        with pytest.raises(AuthError, match=message):
            await verifier.verify(bad)


async def test_group_scopes_resolve_members_through_fhir() -> None:
    reads: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        reads.append(request.url.path)
        if request.url.path.endswith("/Group/g1"):
            members = [
                {"entity": {"reference": "Patient/a"}},
                {"entity": {"reference": "Patient/b"}, "inactive": True},
            ]
            return httpx.Response(200, json={"resourceType": "Group", "id": "g1", "member": members})
        return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []})

    async with FhirClient(
        "http://fhir.test/fhir", transport=httpx.MockTransport(handler), retries=0
    ) as client:
        access = PatientAccess(client)
        principal = Principal.of("key:g", "api_key", ["group:g1", "group:missing", "patient:c"])
        assert await access.allowed(principal, "a") and await access.allowed(principal, "c")
        assert not await access.allowed(principal, "b")
        assert await access.allowed(principal, None)
        assert await access.visible(principal) == {"a", "c"}
    assert reads.count("/fhir/Group/g1") == 1


def test_the_sampler_writes_a_few_rows_a_minute_and_says_how_many_it_left_out() -> None:
    now = [0.0]
    sampler = AuthFailureSampler(per_minute=2, clock=lambda: now[0])
    assert [sampler.admit() for _ in range(5)] == [0, 0, None, None, None]
    now[0] = 61.0
    assert [sampler.admit() for _ in range(3)] == [3, 0, None]
