"""The real API server (uvicorn subprocess) over the session's FHIR server, with API keys and a JWT issuer.

Keys (see KEY_SCOPES): `admin` (everything), readers scoped to patient A, to all patients, or to a FHIR
Group holding patient A, a writer scoped to patient A, and an auditor. JWTs are signed by a key whose
JWKS is served over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from clinicflow.api.auth import create_api_key
from clinicflow.client import Client, Event
from tests.integration.api.server import PLUGIN, ApiServer, ehr_qa_script

ISSUER = "https://idp.test.example"
AUDIENCE = "clinicflow-api"
KEY_SCOPES = {
    "admin": ["workflow:*", "write", "patient:*", "audit"],
    "reader_a": ["workflow:ehr_qa", "read", "patient:{a}"],
    "reader_all": ["workflow:ehr_qa", "read", "patient:*"],
    "read_any": ["workflow:*", "read", "patient:*"],
    "writer_a": ["workflow:*", "write", "patient:{a}"],
    "group": ["workflow:ehr_qa", "read", "group:{group}"],
    "auditor": ["audit"],
}


@dataclass
class ApiEnv:
    """A running API server and what tests need to call it."""

    url: str
    tokens: dict[str, str]
    patient_a: str
    patient_b: str
    fhir_url: str
    group_id: str
    signing_key: rsa.RSAPrivateKey
    server: ApiServer

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def client(self, who: str = "admin") -> Client:
        return Client(self.url, self.tokens[who])

    def jwt(self, scope: str, *, audience: str = AUDIENCE, expires_in: int = 300, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": audience, "sub": "pipeline-7", "iat": now, "exp": now + expires_in}
        return jwt.encode(
            body | {"scope": scope} | claims, self.signing_key, algorithm="RS256", headers={"kid": "k1"}
        )

    def post_run(
        self, who: str, workflow: str, data: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/runs",
            json={"workflow": workflow, "input": data},
            headers=self.headers(who) | (headers or {}),
        )

    def events(self, run_id: str, who: str = "admin") -> list[Event]:
        with self.client(who) as cf:
            return list(cf.events(run_id))

    def audit(self, **params: Any) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/v1/audit", params=params | {"limit": 1000}, headers=self.headers("admin")
        )
        response.raise_for_status()
        return list(response.json()["entries"])

    def metric(self, name: str, **labels: str) -> float:
        """The value of one Prometheus sample (0 when absent)."""
        text = httpx.get(f"{self.url}/metrics").text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            head, _, rest = series.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if head == name and got == want:
                return float(value)
        return 0.0


class _Jwks(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def jwks_url(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    """A JWKS document with the signing key's public half, served on 127.0.0.1."""
    jwk = json.loads(RSAAlgorithm.to_jwk(signing_key.public_key())) | {
        "kid": "k1",
        "alg": "RS256",
        "use": "sig",
    }
    handler = type("Jwks", (_Jwks,), {"body": json.dumps({"keys": [jwk]}).encode()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json"
    httpd.shutdown()
    httpd.server_close()


def create_group(fhir_url: str, patient_id: str) -> str:
    response = httpx.post(
        f"{fhir_url}/Group",
        json={
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{patient_id}"}}],
        },
        headers={"Content-Type": "application/fhir+json"},
    )
    response.raise_for_status()
    return str(response.json()["id"])


def issue_keys(database_url: str, patient_a: str, group_id: str) -> dict[str, str]:
    return {
        name: create_api_key(
            name, [s.format(a=patient_a, group=group_id) for s in scopes], database_url=database_url
        ).token
        for name, scopes in KEY_SCOPES.items()
    }


def server_env(work: Path, fhir_url: str, database_url: str, script: Path, **extra: str) -> dict[str, str]:
    return {
        "CLINICFLOW_DATABASE_URL": database_url,
        "CLINICFLOW_CHECKPOINT_DB": str(work / "checkpoints.sqlite"),
        "CLINICFLOW_FHIR_URL": fhir_url,
        "CLINICFLOW_MODEL": f"scripted:{script}",
        "CLINICFLOW_API_PLUGINS": PLUGIN,
        "CLINICFLOW_API_WORKERS": "8",
    } | extra


@pytest.fixture(scope="session")
def api(
    fhir_base_url: str,
    patient_ids: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    signing_key: rsa.RSAPrivateKey,
    jwks_url: str,
) -> Iterator[ApiEnv]:
    """The API server on SQLite with the fast ehr_qa script, shared by the API tests."""
    work = tmp_path_factory.mktemp("api")
    database_url = f"sqlite:///{work}/api.sqlite"
    patient_a, patient_b = patient_ids[0], patient_ids[1]
    group_id = create_group(fhir_base_url, patient_a)
    tokens = issue_keys(database_url, patient_a, group_id)
    env = server_env(
        work,
        fhir_base_url,
        database_url,
        ehr_qa_script(work / "ehr_qa.json"),
        CLINICFLOW_AUTH_JWKS=jwks_url,
        CLINICFLOW_AUTH_JWT_ISSUER=ISSUER,
        CLINICFLOW_AUTH_JWT_AUDIENCE=AUDIENCE,
    )
    with ApiServer(work, env) as server:
        yield ApiEnv(server.url, tokens, patient_a, patient_b, fhir_base_url, group_id, signing_key, server)
