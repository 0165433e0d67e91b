"""SMART backend-services auth: discovery, a signed client assertion, token caching and refresh on 401."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from clinicflow.api.smart import SmartAuthError, SmartBackendAuth

BASE = "https://ehr.test/fhir"
TOKEN_URL = "https://ehr.test/oauth2/token"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class TokenServer:
    """Discovery document and token endpoint that check the client assertion."""

    def __init__(self, key: rsa.RSAPrivateKey, refuse: bool = False) -> None:
        self.public = key.public_key()
        self.refuse = refuse
        self.tokens = 0
        self.assertions: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/smart-configuration"):
            return httpx.Response(200, json={"token_endpoint": TOKEN_URL})
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        assert form["grant_type"] == "client_credentials" and form["scope"] == "system/Observation.rs"
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        claims = jwt.decode(form["client_assertion"], self.public, algorithms=["RS384"], audience=TOKEN_URL)
        self.assertions.append(
            claims | {"kid": jwt.get_unverified_header(form["client_assertion"]).get("kid")}
        )
        if self.refuse:
            return httpx.Response(401, json={"error": "invalid_client", "error_description": "unknown key"})
        self.tokens += 1
        return httpx.Response(200, json={"access_token": f"tok-{self.tokens}", "expires_in": 300})


def _fhir(expired: set[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token in expired or not token:
            return httpx.Response(401, json={"resourceType": "OperationOutcome"})
        return httpx.Response(200, json={"resourceType": "Patient", "id": "p1", "token": token})

    return httpx.MockTransport(handler)


def _auth(key: rsa.RSAPrivateKey, server: TokenServer) -> SmartBackendAuth:
    return SmartBackendAuth(
        client_id="clinicflow-svc",
        private_key=_pem(key),
        scopes="system/Observation.rs",
        fhir_base_url=BASE,
        key_id="k-2024",
        transport=httpx.MockTransport(server),
    )


async def test_token_is_discovered_fetched_once_and_sent(key: rsa.RSAPrivateKey) -> None:
    server = TokenServer(key)
    async with httpx.AsyncClient(auth=_auth(key, server), transport=_fhir(set())) as client:
        first = (await client.get(f"{BASE}/Patient/p1")).json()
        second = (await client.get(f"{BASE}/Patient/p1")).json()
    assert first["token"] == second["token"] == "tok-1" and server.tokens == 1
    claims = server.assertions[0]
    assert claims["iss"] == claims["sub"] == "clinicflow-svc" and claims["kid"] == "k-2024"
    assert claims["exp"] - claims["iat"] <= 300 and claims["jti"]


async def test_a_401_fetches_a_new_token_once(key: rsa.RSAPrivateKey) -> None:
    server = TokenServer(key)
    async with httpx.AsyncClient(auth=_auth(key, server), transport=_fhir({"tok-1"})) as client:
        assert (await client.get(f"{BASE}/Patient/p1")).json()["token"] == "tok-2"
    assert server.tokens == 2


async def test_a_refused_client_is_a_clear_error(key: rsa.RSAPrivateKey) -> None:
    async with httpx.AsyncClient(
        auth=_auth(key, TokenServer(key, refuse=True)), transport=_fhir(set())
    ) as client:
        with pytest.raises(
            SmartAuthError, match="refused client 'clinicflow-svc' \\(HTTP 401\\): unknown key"
        ):
            await client.get(f"{BASE}/Patient/p1")
    with pytest.raises(ValueError, match="RS384 or ES384"):
        SmartBackendAuth(client_id="x", private_key=b"", token_url=TOKEN_URL, algorithm="HS256")


def test_assertion_is_signed_for_the_token_url(key: rsa.RSAPrivateKey) -> None:
    auth = SmartBackendAuth(client_id="c", private_key=_pem(key), token_url=TOKEN_URL)
    claims = jwt.decode(
        auth.client_assertion(TOKEN_URL), key.public_key(), algorithms=["RS384"], audience=TOKEN_URL
    )
    assert json.loads(json.dumps(claims))["aud"] == TOKEN_URL
