"""Authentication and scopes against the real server: 401 without a valid token, 403 across patients,
workflows and write scope (before anything runs), FHIR Group scopes, and OAuth2 JWTs."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.api.conftest import ApiEnv

pytestmark = pytest.mark.integration


def _question(patient: str) -> dict[str, str]:
    return {"question": "Most recent observations?", "patient_id": patient}


def _runs_count(api: ApiEnv) -> int:
    return len(
        httpx.get(f"{api.url}/v1/runs", params={"limit": 200}, headers=api.headers("admin")).json()["runs"]
    )


def test_no_or_bad_token_is_401_and_audited(api: ApiEnv) -> None:
    body = {"workflow": "ehr_qa", "input": _question(api.patient_a)}
    missing = httpx.post(f"{api.url}/v1/runs", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    forged = api.tokens["admin"][:-4] + "AAAA"
    assert (
        httpx.post(f"{api.url}/v1/runs", json=body, headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )
    assert httpx.get(f"{api.url}/v1/runs", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    for path in ("/v1/runs", f"/v1/runs/{'a' * 32}", "/v1/workflows", "/v1/audit"):
        assert httpx.get(f"{api.url}{path}").status_code == 401
    failures = [r for r in api.audit(action="auth.failure")]
    assert {r["detail"]["reason"] for r in failures} >= {"missing", "invalid_token"}
    assert all(r["outcome"] == "denied" and r["actor"] == "anonymous" for r in failures)


def test_token_for_patient_a_gets_403_for_patient_b_before_any_model_call(api: ApiEnv) -> None:
    runs_before = _runs_count(api)
    model_calls = api.metric("clinicflow_model_calls_total", workflow="ehr_qa")
    denied = api.post_run("reader_a", "ehr_qa", _question(api.patient_b))
    assert denied.status_code == 403 and api.patient_b in denied.json()["detail"]
    assert _runs_count(api) == runs_before
    assert api.metric("clinicflow_model_calls_total", workflow="ehr_qa") == model_calls
    row = [r for r in api.audit(action="access.denied") if r["patient_id"] == api.patient_b][-1]
    assert row["actor"].startswith("key:reader_a:") and row["detail"]["reason"] == "patient"
    assert row["outcome"] == "denied" and row["run_id"] is None

    theirs = api.post_run("admin", "ehr_qa", _question(api.patient_b)).json()
    api.events(theirs["id"])
    assert httpx.get(f"{api.url}/v1/runs/{theirs['id']}", headers=api.headers("reader_a")).status_code == 403
    events = httpx.get(f"{api.url}/v1/runs/{theirs['id']}/events", headers=api.headers("reader_a"))
    assert events.status_code == 403
    listed = httpx.get(f"{api.url}/v1/runs", params={"limit": 200}, headers=api.headers("reader_a")).json()
    assert theirs["id"] not in {r["id"] for r in listed["runs"]}


def test_workflow_and_write_scopes(api: ApiEnv) -> None:
    probe = {"patient_id": api.patient_a}
    assert api.post_run("reader_a", "write_probe", probe).status_code == 403
    no_write = api.post_run("read_any", "write_probe", probe)
    assert no_write.status_code == 403 and "write" in no_write.json()["detail"]
    denied = [r for r in api.audit(action="access.denied") if r["workflow"] == "write_probe"]
    assert {r["detail"]["reason"] for r in denied} == {"workflow", "write"}

    run = api.post_run("writer_a", "write_probe", probe).json()
    with api.client("writer_a") as cf:
        waiting = cf.wait(run["id"], timeout=30)
    assert waiting["status"] == "waiting_approval"
    assert (
        httpx.post(
            f"{api.url}/v1/runs/{run['id']}/approval",
            json={"action": "approve"},
            headers=api.headers("read_any"),
        ).status_code
        == 403
    )
    assert (
        httpx.post(f"{api.url}/v1/runs/{run['id']}/cancel", headers=api.headers("writer_a")).status_code
        == 200
    )
    assert httpx.get(f"{api.url}/v1/audit", headers=api.headers("reader_all")).status_code == 403
    assert httpx.get(f"{api.url}/v1/runs", headers=api.headers("auditor")).status_code == 403


def test_group_scope_follows_the_fhir_group(api: ApiEnv) -> None:
    allowed = api.post_run("group", "ehr_qa", _question(api.patient_a))
    assert allowed.status_code == 201
    assert api.post_run("group", "ehr_qa", _question(api.patient_b)).status_code == 403
    api.events(allowed.json()["id"], "group")
    group_reads = [r for r in api.audit(action="fhir.read") if f"Group/{api.group_id}" in r["resources"]]
    assert group_reads and group_reads[0]["actor"].startswith("key:group:")


def test_jwt_bearer_tokens_from_the_configured_issuer(api: ApiEnv) -> None:
    token = api.jwt("workflow:ehr_qa read", patient=api.patient_a)
    headers = {"Authorization": f"Bearer {token}"}
    created = httpx.post(
        f"{api.url}/v1/runs", json={"workflow": "ehr_qa", "input": _question(api.patient_a)}, headers=headers
    )
    assert created.status_code == 201 and created.json()["created_by"] == "jwt:pipeline-7"
    other = httpx.post(
        f"{api.url}/v1/runs", json={"workflow": "ehr_qa", "input": _question(api.patient_b)}, headers=headers
    )
    assert other.status_code == 403
    api.events(created.json()["id"])
    assert httpx.get(f"{api.url}/v1/workflows", headers=headers).status_code == 200

    for bad in (
        api.jwt("workflow:ehr_qa read patient:*", audience="someone-else"),
        api.jwt("workflow:ehr_qa read patient:*", expires_in=-120),
        token[:-6] + "AAAAAA",
    ):
        assert (
            httpx.get(f"{api.url}/v1/workflows", headers={"Authorization": f"Bearer {bad}"}).status_code
            == 401
        )
