"""The console's login, session cookie, CSRF protection and patient scopes, in process (Starlette's
TestClient) over SQLite, a stub FHIR server holding two patients, and a scripted model.

Runs waiting for approval are put in the store directly (no graph runs here); the decision then goes
through the API's own approval path, which is what these tests look at."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinicflow.api.app import create_app
from clinicflow.api.auth import create_api_key
from clinicflow.api.config import ApiSettings
from clinicflow.api.store import NewAudit, NewEvent, RunRow, utcnow
from clinicflow.console.session import COOKIE
from tests.fakes import ScriptedChatModel

RESOURCES = {
    "Patient/p1": {"resourceType": "Patient", "id": "p1", "name": [{"given": ["Ada"], "family": "One"}]},
    "Patient/p2": {"resourceType": "Patient", "id": "p2", "name": [{"given": ["Bo"], "family": "Two"}]},
    "Observation/o1": {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"}},
    "Observation/o2": {"resourceType": "Observation", "id": "o2", "subject": {"reference": "Patient/p2"}},
    "Observation/orphan": {"resourceType": "Observation", "id": "orphan", "status": "final"},
    "Medication/m1": {"resourceType": "Medication", "id": "m1", "code": {"text": "metformin"}},
}
SCOPES = {
    "admin": ["workflow:*", "write", "patient:*", "audit"],
    "writer_p1": ["workflow:*", "write", "patient:p1"],
    "nobody": ["workflow:*"],
}
ORDER = {
    "resourceType": "ServiceRequest",
    "status": "active",
    "intent": "order",
    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]},
    "note": [{"text": "yearly check"}],
}


class _Fhir(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0].strip("/")
        if path == "Patient":
            entries = [{"resource": r} for k, r in RESOURCES.items() if k.startswith("Patient/")]
            body: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        else:
            body = RESOURCES.get(path) or {"resourceType": "OperationOutcome"}
        self.send_response(200 if body["resourceType"] != "OperationOutcome" else 404)
        self.send_header("Content-Type", "application/fhir+json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fhir_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Fhir)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class Console:
    """A TestClient over the app, with API keys for each of SCOPES."""

    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    @property
    def store(self) -> Any:
        return self.client.app.state.services.store  # type: ignore[attr-defined]

    def csrf(self, html: str) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match, html
        return match.group(1)

    def login(self, who: str) -> str:
        """Log in as `who`; returns the CSRF token of the session."""
        form = self.client.get("/console/login")
        response = self.client.post(
            "/console/login",
            data={"token": self.tokens[who], "csrf_token": self.csrf(form.text), "next": "/console/queue"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        return self.csrf(self.client.get("/console/queue").text)

    def pending_run(self, patient_id: str, resource: dict[str, Any] | None = None) -> str:
        run_id = uuid.uuid4().hex
        now = utcnow()
        row = RunRow(
            id=run_id,
            workflow="ehr_task",
            status="waiting_approval",
            input={"instruction": "Order an HbA1c.", "patient_id": patient_id},
            patient_id=patient_id,
            principal="key:admin:x",
            principal_kind="api_key",
            scopes=[],
            idempotency_key=None,
            created_at=now,
            updated_at=now,
            owner=None,
            heartbeat_at=now,
            attempts=1,
            cancel_requested=False,
            pending={
                "interrupt_id": f"i-{run_id[:6]}",
                "count": 1,
                "request": {
                    "kind": "fhir_write_approval",
                    "resource_type": "ServiceRequest",
                    "patient_id": patient_id,
                    "resource": (resource or ORDER) | {"subject": {"reference": f"Patient/{patient_id}"}},
                    "notes": [],
                },
            },
        )
        audit = NewAudit(actor="key:admin:x", actor_kind="api_key", action="run.create", run_id=run_id)
        self.client.portal.call(self.store.create_run, row, NewEvent("run.queued", {}), audit)  # type: ignore[union-attr]
        return run_id

    def audit(self, **filters: Any) -> list[Any]:
        return list(self.client.portal.call(lambda: self.store.list_audit(**filters)))  # type: ignore[union-attr]


def _app(tmp_path: Path, fhir_url: str, **extra: Any) -> tuple[Any, dict[str, str]]:
    database_url = f"sqlite:///{tmp_path}/api.sqlite"
    tokens = {
        name: create_api_key(name, scopes, database_url=database_url).token for name, scopes in SCOPES.items()
    }
    settings = ApiSettings(  # type: ignore[call-arg]
        cache_dir=tmp_path,
        database_url=database_url,
        checkpoint_db=tmp_path / "checkpoints.sqlite",
        fhir_url=fhir_url,
        fhir_retries=0,
        api_resume_on_startup=False,
        **extra,
    )
    return create_app(settings, model=ScriptedChatModel()), tokens


@pytest.fixture
def console(tmp_path: Path, fhir_url: str) -> Iterator[Console]:
    app, tokens = _app(tmp_path, fhir_url)
    with TestClient(app) as client:
        yield Console(client, tokens)


def test_the_console_is_left_out_of_the_openapi_document(console: Console) -> None:
    paths = console.client.get("/openapi.json").json()["paths"]
    assert paths and not [p for p in paths if p.startswith("/console")]


def test_a_page_without_a_session_sends_the_browser_to_the_login_form(console: Console) -> None:
    response = console.client.get("/console/runs?status=completed", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=%2Fconsole%2Fruns%3Fstatus%3Dcompleted"
    assert console.client.post("/console/ask", data={}).status_code == 401


def test_login_sets_an_httponly_samesite_cookie_and_audits_the_login(console: Console) -> None:
    form = console.client.get("/console/login")
    assert form.status_code == 200 and "Content-Security-Policy" in form.headers
    response = console.client.post(
        "/console/login",
        data={"token": console.tokens["admin"], "csrf_token": console.csrf(form.text), "next": "//evil.test"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/console/queue"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/console" in cookie and "Secure" not in cookie
    assert console.tokens["admin"] not in cookie  # sealed, not the token itself
    assert console.client.get("/console/queue").status_code == 200
    assert [a.actor.split(":")[1] for a in console.audit(action="console.login")] == ["admin"]


def test_the_cookie_is_secure_over_tls(tmp_path: Path, fhir_url: str) -> None:
    app, _ = _app(tmp_path, fhir_url)
    with TestClient(app, base_url="https://testserver") as client:
        assert "Secure" in client.get("/console/login").headers["set-cookie"]


def test_a_wrong_token_is_refused_and_audited_like_the_api_does(console: Console) -> None:
    form = console.client.get("/console/login")
    response = console.client.post(
        "/console/login",
        data={"token": "cfk_000000000000.nope-nope-nope-nope-nope", "csrf_token": console.csrf(form.text)},
    )
    assert response.status_code == 401 and "Login failed: unknown API key" in response.text
    failures = console.audit(action="auth.failure")
    assert failures and failures[-1].detail["path"] == "/console/login"


def test_a_login_without_the_csrf_token_is_refused(console: Console) -> None:
    console.client.get("/console/login")
    response = console.client.post("/console/login", data={"token": console.tokens["admin"]})
    assert response.status_code == 403 and "CSRF" in response.text
    assert console.client.get("/console/queue", follow_redirects=False).status_code == 303


def test_a_tampered_or_foreign_cookie_is_no_session(console: Console, tmp_path: Path, fhir_url: str) -> None:
    console.login("admin")
    sealed = console.client.cookies[COOKIE]
    console.client.cookies.clear()
    console.client.cookies.set(COOKIE, sealed[:-4] + "AAAA")
    assert console.client.get("/console/queue", follow_redirects=False).status_code == 303
    (tmp_path / "other").mkdir()
    other_app, _ = _app(tmp_path / "other", fhir_url)  # another process: another random session key
    with TestClient(other_app) as other:
        other.cookies.set(COOKIE, sealed)
        assert other.get("/console/queue", follow_redirects=False).status_code == 303


def test_a_form_posted_without_the_csrf_token_is_refused(console: Console) -> None:
    run_id = console.pending_run("p1")
    csrf = console.login("admin")
    url = f"/console/queue/{run_id}/decide"
    assert console.client.post(url, data={"action": "approve"}).status_code == 403
    assert console.client.post(url, data={"action": "approve", "csrf_token": "0" * 64}).status_code == 403
    cross = console.client.post(
        url, data={"action": "approve", "csrf_token": csrf}, headers={"Origin": "https://evil.test"}
    )
    assert cross.status_code == 403
    assert console.client.post("/console/logout", data={}).status_code == 403
    assert console.audit(action="approval.decide") == []


def test_a_decision_goes_through_the_api_approval_path_and_is_audited(console: Console) -> None:
    run_id = console.pending_run("p1")
    csrf = console.login("admin")
    queue = console.client.get("/console/queue").text
    assert "Hemoglobin A1c" in queue and "Ada One" in queue and 'name="f:note.0.text"' in queue
    response = console.client.post(
        f"/console/queue/{run_id}/decide",
        data={
            "csrf_token": csrf,
            "action": "edit",
            "interrupt_id": f"i-{run_id[:6]}",
            "f:note.0.text": "fasting",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == f"/console/runs/{run_id}"
    [row] = console.audit(action="approval.decide", run_id=run_id)
    assert row.actor.startswith("key:admin:") and row.detail["action"] == "edit"
    again = console.client.post(
        f"/console/queue/{run_id}/decide", data={"csrf_token": csrf, "action": "approve"}
    )
    assert again.status_code == 409
    unreasoned = console.pending_run("p1")
    refused = console.client.post(
        f"/console/queue/{unreasoned}/decide", data={"csrf_token": csrf, "action": "reject", "reason": " "}
    )
    assert refused.status_code == 422 and "reason" in refused.text


def test_a_user_scoped_to_one_patient_sees_nothing_of_another(console: Console) -> None:
    mine, theirs = console.pending_run("p1"), console.pending_run("p2")
    csrf = console.login("writer_p1")
    queue = console.client.get("/console/queue").text
    assert mine in queue and theirs not in queue and "Bo Two" not in queue
    runs = console.client.get("/console/runs").text
    assert mine[:8] in runs and theirs[:8] not in runs
    assert console.client.get(f"/console/runs/{theirs}").status_code == 403
    assert console.client.get(f"/console/runs/{theirs}/live").status_code == 403
    assert console.client.get(f"/console/runs/{theirs}/events").status_code == 403
    decided = console.client.post(
        f"/console/queue/{theirs}/decide", data={"csrf_token": csrf, "action": "approve"}
    )
    assert decided.status_code == 403
    assert console.client.get(f"/console/runs/{uuid.uuid4().hex}").status_code == 404
    ask = console.client.get("/console/ask").text
    assert 'value="p1"' in ask and 'value="p2"' not in ask
    started = console.client.post(
        "/console/ask", data={"csrf_token": csrf, "workflow": "ehr_qa", "patient_id": "p2", "text": "Any?"}
    )
    assert started.status_code == 403
    assert console.audit(action="approval.decide") == []


def test_a_citation_opens_only_within_the_patient_compartment(console: Console) -> None:
    console.login("writer_p1")
    mine = console.client.get("/console/fhir/Observation/o1")
    assert mine.status_code == 200 and "&#34;Patient/p1&#34;" in mine.text
    assert console.client.get("/console/fhir/Medication/m1").status_code == 200
    for url in ("Observation/o2", "Patient/p2", "Observation/orphan"):
        assert console.client.get(f"/console/fhir/{url}").status_code == 403, url
    assert console.client.get("/console/fhir/Observation/nope").status_code == 404
    assert console.client.get("/console/fhir/observation/o1").status_code == 404
    denied = console.audit(action="access.denied")
    assert {a.patient_id for a in denied} >= {"p2"}


def test_a_bearer_header_needs_no_cookie_and_a_token_without_read_gets_403(console: Console) -> None:
    run_id = console.pending_run("p1")
    headers = {"Authorization": f"Bearer {console.tokens['writer_p1']}"}
    assert run_id in console.client.get("/console/queue", headers=headers).text
    posted = console.client.post(
        f"/console/queue/{run_id}/decide", data={"action": "approve"}, headers=headers, follow_redirects=False
    )
    assert posted.status_code == 303
    nobody = {"Authorization": f"Bearer {console.tokens['nobody']}"}
    assert console.client.get("/console/queue", headers=nobody).status_code == 403


def test_static_files_and_unknown_ones(console: Console) -> None:
    assert console.client.get("/console/static/console.css").headers["content-type"].startswith("text/css")
    assert console.client.get("/console/static/secret.css").status_code == 404
    assert console.client.get("/console/static/..%2Fsession.py").status_code == 404


def _reports(root: Path) -> None:
    ehrqa = root / "ehrqa" / "seed1"
    ehrqa.mkdir(parents=True)
    cats = {"condition_existence": {"n": 4, "correct": 3, "accuracy": 0.75}}
    mode = {"n": 4, "categories": cats, "mean_category_accuracy": 0.75, "overall_accuracy": 0.75}
    (ehrqa / "report.json").write_text(
        json.dumps(
            {
                "run": {"model": "m"},
                "questions": {"by_category": {"condition_existence": 4}},
                "modes": {"agentic": mode},
            }
        )
    )
    (ehrqa / "accuracy.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    clinic = root / "agentclinic"
    clinic.mkdir()
    (clinic / "report.json").write_text(
        json.dumps(
            {"run": {}, "accuracy": 0.5, "accuracy_ci95": [0.2, 0.8], "correct": 5, "cases_finished": 10}
        )
    )
    mab = root / "mab"
    mab.mkdir()
    rate = {"n": 10, "k": 4, "rate": 0.4, "ci95": [0.17, 0.69]}
    (mab / "report.json").write_text(
        json.dumps(
            {
                "run": {},
                "overall": rate,
                "query": rate,
                "action": rate,
                "by_type": {"1": rate | {"name": "patient lookup"}},
            }
        )
    )
    (root / "junk").mkdir()
    (root / "junk" / "report.json").write_text("{}")


def test_reports_are_found_by_kind_and_their_plots_served(tmp_path: Path, fhir_url: str) -> None:
    _reports(tmp_path / "runs")
    app, tokens = _app(tmp_path, fhir_url, console_reports_dir=tmp_path / "runs")
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {tokens['writer_p1']}"}
        listing = client.get("/console/reports", headers=headers).text
        assert "EHRQA: ehrqa/seed1" in listing and "AgentClinic: agentclinic" in listing
        assert "MedAgentBench: mab" in listing and "junk" not in listing
        ehrqa = client.get("/console/reports/view", params={"run": "ehrqa/seed1"}, headers=headers).text
        assert "Condition existence" in ehrqa and "75.0%" in ehrqa
        clinic = client.get("/console/reports/view", params={"run": "agentclinic"}, headers=headers).text
        assert "50.0%" in clinic and "20.0% – 80.0%" in clinic
        mab = client.get("/console/reports/view", params={"run": "mab"}, headers=headers).text
        assert "patient lookup" in mab and "17.0% – 69.0%" in mab
        plot = client.get(
            "/console/reports/plot", params={"run": "ehrqa/seed1", "file": "accuracy.png"}, headers=headers
        )
        assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
        for params in (
            {"run": "ehrqa/seed1", "file": "tokens.png"},
            {"run": "../runs/mab", "file": "report.png"},
        ):
            assert client.get("/console/reports/plot", params=params, headers=headers).status_code == 404
        assert client.get("/console/reports/view", params={"run": ".."}, headers=headers).status_code == 404
