"""CDS Hooks 2.0 over the real embedded FHIR server: discovery, patient-view and order-sign, with prefetch
and without it (read from `fhirServer` with a token), bad requests, scopes and the time budget.

The app runs in process (Starlette's TestClient) with API keys; cards are checked against the spec's
shapes by re-validating them with the response models."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clinicflow.api.app import create_app
from clinicflow.api.auth import create_api_key
from clinicflow.api.cds_schemas import CdsResponse, Discovery
from clinicflow.api.config import ApiSettings
from clinicflow.fhir import FhirClient
from tests.fakes import ScriptedChatModel

pytestmark = pytest.mark.integration

LISINOPRIL = {
    "coding": [
        {
            "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
            "code": "314076",
            "display": "lisinopril 10 MG Oral Tablet",
        }
    ]
}
METFORMIN = {
    "coding": [
        {
            "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
            "code": "860975",
            "display": "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet",
        }
    ]
}


async def _allergic_patient(base_url: str) -> tuple[str, str, list[dict[str, Any]]]:
    """The demo patient allergic to ACE inhibitors (Lisinopril): id, the allergy's id, all allergies."""
    async with FhirClient(base_url) as client:
        for allergy in await client.search("AllergyIntolerance").all(limit=1000):
            displays = [c.get("display") for c in allergy.get("code", {}).get("coding", [])]
            if "Lisinopril" in displays:
                patient = allergy["patient"]["reference"].rpartition("/")[2]
                every = await client.search("AllergyIntolerance").where(patient=patient).all()
                return patient, allergy["id"], every
    raise AssertionError("the demo cohort has no patient allergic to Lisinopril")


class _Silent:
    """A TCP server that accepts connections and never answers: a FHIR server that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/fhir"
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture(scope="module")
def silent() -> Iterator[_Silent]:
    server = _Silent()
    yield server
    server.close()


@pytest.fixture(scope="module")
def allergic(fhir_base_url: str) -> tuple[str, str, list[dict[str, Any]]]:
    return asyncio.run(_allergic_patient(fhir_base_url))


class Cds:
    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    def call(self, service: str, body: Any, who: str = "reader") -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.post(f"/cds-services/{service}", json=body, headers=headers)


@pytest.fixture(scope="module")
def cds(
    tmp_path_factory: pytest.TempPathFactory,
    fhir_base_url: str,
    silent: _Silent,
    allergic: tuple[str, str, list[dict[str, Any]]],
) -> Iterator[Cds]:
    tmp_path: Path = tmp_path_factory.mktemp("cds")
    database_url = f"sqlite:///{tmp_path}/api.sqlite"
    patient = allergic[0]
    tokens = {
        "reader": create_api_key("reader", ["read", f"patient:{patient}"], database_url=database_url).token,
        "other": create_api_key("other", ["read", "patient:someone-else"], database_url=database_url).token,
        "no_read": create_api_key(
            "no-read", ["workflow:*", f"patient:{patient}"], database_url=database_url
        ).token,
    }
    settings = ApiSettings(  # type: ignore[call-arg]
        cache_dir=tmp_path,
        database_url=database_url,
        checkpoint_db=tmp_path / "checkpoints.sqlite",
        fhir_url=fhir_base_url,
        cds_fhir_servers=silent.url,
        cds_time_budget_s=1.0,
        api_workers=1,
    )
    with TestClient(create_app(settings, model=ScriptedChatModel())) as client:
        yield Cds(client, tokens)


def _request(hook: str, context: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, **more}


def _cards(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    CdsResponse.model_validate(response.json())  # the spec's shapes: summary < 140, indicator, source
    cards: list[dict[str, Any]] = response.json()["cards"]
    for card in cards:
        assert len(card["summary"]) < 140 and card["source"]["label"]
    return cards


def _order(concept: dict[str, Any], patient: str, order_id: str = "draft-1") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": concept,
    }


def _sign(patient: str, *orders: dict[str, Any]) -> dict[str, Any]:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in orders]}
    return {"userId": "Practitioner/1", "patientId": patient, "draftOrders": bundle}


def test_discovery_lists_both_services_with_prefetch_templates(cds: Cds) -> None:
    response = cds.client.get("/cds-services")
    assert response.status_code == 200
    services = {s.id: s for s in Discovery.model_validate(response.json()).services}
    assert services["clinicflow-patient-view"].hook == "patient-view"
    assert services["clinicflow-order-sign"].hook == "order-sign"
    assert services["clinicflow-order-sign"].prefetch["allergies"] == (
        "AllergyIntolerance?patient={{context.patientId}}"
    )


def test_patient_view_warns_of_overdue_monitoring_citing_record_and_guideline(
    cds: Cds, allergic: Any
) -> None:
    patient = allergic[0]
    subject = {"reference": f"Patient/{patient}"}
    diabetes = {
        "resourceType": "Condition",
        "id": "dm-1",
        "subject": subject,
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"}]},
    }
    old = (datetime.now(UTC) - timedelta(days=400)).date().isoformat()
    recent = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()

    def result(oid: str, code: str, day: str) -> dict[str, Any]:
        coding = [{"system": "http://loinc.org", "code": code}]
        return {
            "resourceType": "Observation",
            "id": oid,
            "subject": subject,
            "code": {"coding": coding},
            "status": "final",
            "effectiveDateTime": day,
        }

    def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}

    prefetch = {
        "patient": {"resourceType": "Patient", "id": patient},
        "conditions": bundle(diabetes),
        "medications": bundle(),
        "allergies": bundle(),
        "observations": bundle(
            result("a1c-1", "4548-4", old),
            result("gfr-1", "33914-3", recent),
            result("acr-1", "9318-7", recent),
        ),
    }
    context = {"userId": "Practitioner/1", "patientId": patient}
    cards = _cards(cds.call("clinicflow-patient-view", _request("patient-view", context, prefetch=prefetch)))
    overdue = [c for c in cards if "overdue" in c["summary"]]
    assert len(overdue) == 1, [c["summary"] for c in cards]
    card = overdue[0]
    assert card["indicator"] == "warning" and card["summary"].startswith(f"HbA1c overdue (last {old}")
    assert "[Condition/dm-1]" in card["detail"] and "[Observation/a1c-1]" in card["detail"]
    assert (
        "[guideline: Diabetes diagnosis, glycemic targets and monitoring § HbA1c monitoring frequency]"
        in (card["detail"])
    )
    discovery = cds.client.get("/cds-services").json()["services"]
    view = next(s for s in discovery if s["id"] == "clinicflow-patient-view")
    assert view["prefetch"]["observations"].startswith("Observation?patient={{context.patientId}}&code=")


def test_patient_view_from_the_server_cites_each_resource(cds: Cds, allergic: Any) -> None:
    patient, allergy_id, _ = allergic
    context = {"userId": "Practitioner/1", "patientId": patient}
    cards = _cards(cds.call("clinicflow-patient-view", _request("patient-view", context)))
    by_source = {c["source"]["label"].rsplit(" ", 2)[1]: c for c in cards}
    assert set(by_source) == {"Condition", "MedicationRequest", "AllergyIntolerance"}
    assert "[Condition/" in by_source["Condition"]["detail"]
    assert "Penicillin V Potassium 250 MG Oral Tablet" in by_source["MedicationRequest"]["detail"]
    assert f"[AllergyIntolerance/{allergy_id}]" in by_source["AllergyIntolerance"]["detail"]
    assert "active problems" in by_source["Condition"]["summary"]


def test_patient_view_honours_prefetch_and_drops_other_patients_resources(cds: Cds, allergic: Any) -> None:
    patient, _, _ = allergic
    mine = {
        "resourceType": "Condition",
        "id": "c-mine",
        "subject": {"reference": f"Patient/{patient}"},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"text": "Prefetched asthma"},
    }
    foreign = mine | {"id": "c-foreign", "subject": {"reference": "Patient/other"}, "code": {"text": "Gout"}}
    empty = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    prefetch = {
        "patient": {"resourceType": "Patient", "id": patient},
        "conditions": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": mine}, {"resource": foreign}],
        },
        "medications": empty,
        "allergies": empty,
        "observations": empty,
    }
    context = {"userId": "Practitioner/1", "patientId": patient}
    cards = _cards(cds.call("clinicflow-patient-view", _request("patient-view", context, prefetch=prefetch)))
    assert len(cards) == 1  # only what the prefetch holds: nothing was read from the server
    assert cards[0]["summary"] == "1 active problems: Prefetched asthma"
    assert "[Condition/c-mine]" in cards[0]["detail"] and "Gout" not in cards[0]["detail"]


def test_order_sign_warns_of_an_allergy_citing_the_allergy(cds: Cds, allergic: Any) -> None:
    patient, allergy_id, _ = allergic
    body = _request("order-sign", _sign(patient, _order(LISINOPRIL, patient)))
    cards = _cards(cds.call("clinicflow-order-sign", body))
    assert len(cards) == 1
    card = cards[0]
    assert card["indicator"] in ("warning", "critical")
    assert card["summary"].startswith("Allergy to Lisinopril")
    assert f"[AllergyIntolerance/{allergy_id}]" in card["detail"]
    assert "'lisinopril'" in card["detail"]
    assert card["selectionBehavior"] == "at-most-one"
    action = card["suggestions"][0]["actions"][0]
    assert action == {
        "type": "delete",
        "description": "Remove the draft order MedicationRequest/draft-1",
        "resourceId": "MedicationRequest/draft-1",
    }


def test_order_sign_flags_a_medication_already_active_and_passes_a_safe_one(cds: Cds, allergic: Any) -> None:
    patient, _, _ = allergic
    amoxicillin = {
        "coding": [
            {
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "308192",
                "display": "amoxicillin 500 MG Oral Tablet",
            }
        ]
    }
    body = _request(
        "order-sign", _sign(patient, _order(amoxicillin, patient), _order(METFORMIN, patient, "d2"))
    )
    cards = _cards(cds.call("clinicflow-order-sign", body))
    assert [c["summary"] for c in cards] == ["Already prescribed: amoxicillin 500 MG Oral Tablet"]
    assert "[MedicationRequest/" in cards[0]["detail"]


def test_order_sign_with_prefetch_and_without_a_server_read(cds: Cds, allergic: Any) -> None:
    patient, _, allergies = allergic
    prefetch = {
        "patient": {"resourceType": "Patient", "id": patient},
        "allergies": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": a} for a in allergies],
        },
        "medications": {"resourceType": "Bundle", "type": "searchset", "entry": []},
    }
    # fhirServer names the hanging server: any read from it would time out, so the card comes from prefetch
    body = _request(
        "order-sign",
        _sign(patient, _order(LISINOPRIL, patient)),
        prefetch=prefetch,
        fhirServer=_silent_url(cds),
    )
    cards = _cards(cds.call("clinicflow-order-sign", body))
    assert [c["summary"][:22] for c in cards] == ["Allergy to Lisinopril:"]


def _silent_url(cds: Cds) -> str:
    return str(cds.client.app.state.services.settings.cds_fhir_servers)  # type: ignore[attr-defined]


def _token(patient: str | None, scope: str = "patient/*.read") -> dict[str, Any]:
    token = {
        "access_token": "t0k3n",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": scope,
        "subject": "ehr",
    }
    return token | ({"patient": patient} if patient else {})


def test_without_prefetch_the_client_fhir_server_is_read_with_its_token(
    cds: Cds, allergic: Any, fhir_base_url: str
) -> None:
    patient, allergy_id, _ = allergic
    body = _request(
        "order-sign",
        _sign(patient, _order(LISINOPRIL, patient)),
        fhirServer=fhir_base_url,
        fhirAuthorization=_token(patient),
    )
    cards = _cards(cds.call("clinicflow-order-sign", body))
    assert f"[AllergyIntolerance/{allergy_id}]" in cards[0]["detail"]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (_token("someone-else"), "fhirAuthorization is for patient 'someone-else'"),
        (_token(None), "has patient/ scopes but names no patient"),
    ],
)
def test_a_token_for_another_patient_is_refused(
    cds: Cds, allergic: Any, fhir_base_url: str, token: dict[str, Any], message: str
) -> None:
    patient, _, _ = allergic
    body = _request(
        "order-sign",
        _sign(patient, _order(LISINOPRIL, patient)),
        fhirServer=fhir_base_url,
        fhirAuthorization=token,
    )
    response = cds.call("clinicflow-order-sign", body)
    assert response.status_code == 400 and message in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"hook": "patient-view", "context": {}}, 400, "hookInstance: Field required"),
        (
            {
                "hook": "patient-view",
                "hookInstance": "not-a-uuid",
                "context": {"patientId": "x", "userId": "u"},
            },
            400,
            "hookInstance: Input should be a valid UUID",
        ),
        (_request("order-sign", {"userId": "u", "patientId": "PATIENT"}), 400, "answers hook 'patient-view'"),
        (_request("patient-view", {"userId": "u"}), 400, "context.patientId: Field required"),
        (
            _request(
                "patient-view", {"userId": "u", "patientId": "PATIENT"}, fhirServer="http://evil.example/fhir"
            ),
            400,
            "is not a server this service reads",
        ),
        (
            _request(
                "patient-view", {"userId": "u", "patientId": "PATIENT"}, prefetch={"conditions": {"id": 1}}
            ),
            400,
            "prefetch.conditions must be a FHIR Bundle",
        ),
    ],
)
def test_bad_requests_get_a_400_naming_the_problem(
    cds: Cds, allergic: Any, body: dict[str, Any], status: int, message: str
) -> None:
    context = body.get("context", {})
    if context.get("patientId") == "PATIENT":
        context["patientId"] = allergic[0]
    response = cds.call("clinicflow-patient-view", body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_a_draft_order_for_another_patient_is_refused(cds: Cds, allergic: Any) -> None:
    patient, _, _ = allergic
    body = _request("order-sign", _sign(patient, _order(LISINOPRIL, "other")))
    response = cds.call("clinicflow-order-sign", body)
    assert response.status_code == 400
    assert "is for Patient/other" in response.json()["detail"]


def test_scopes_are_the_api_scopes(cds: Cds, allergic: Any) -> None:
    body = _request("patient-view", {"userId": "u", "patientId": allergic[0]})
    assert cds.call("clinicflow-patient-view", body, who="other").status_code == 403
    assert cds.call("clinicflow-patient-view", body, who="no_read").status_code == 403
    assert cds.client.post("/cds-services/clinicflow-patient-view", json=body).status_code == 401
    assert cds.call("nope", body).status_code == 404


def test_past_the_time_budget_a_card_says_so(cds: Cds, allergic: Any) -> None:
    patient, _, _ = allergic
    body = _request(
        "order-sign",
        _sign(patient, _order(LISINOPRIL, patient)),
        fhirServer=_silent_url(cds),
        fhirAuthorization=_token(patient),
    )
    response = cds.call("clinicflow-order-sign", body)
    cards = _cards(response)
    assert len(cards) == 1
    assert cards[0]["summary"] == "clinicflow ran out of time (1 s): the draft orders were NOT checked"
    assert cards[0]["indicator"] == "warning"


@pytest.mark.slow
@pytest.mark.heavy
def test_with_the_real_default_model_loaded_the_hooks_answer_within_the_budget(
    tmp_path: Path, fhir_base_url: str, allergic: tuple[str, str, list[dict[str, Any]]]
) -> None:
    """The service with the tuned Gemma 3 270M loaded: cards come from the record, never a timeout card."""
    from clinicflow.model import load_chat_model

    patient, allergy_id, _ = allergic
    database_url = f"sqlite:///{tmp_path}/api.sqlite"
    token = create_api_key("reader", ["read", f"patient:{patient}"], database_url=database_url).token
    settings = ApiSettings(  # type: ignore[call-arg]
        cache_dir=tmp_path,
        database_url=database_url,
        checkpoint_db=tmp_path / "checkpoints.sqlite",
        fhir_url=fhir_base_url,
        api_workers=1,
    )
    model = load_chat_model(ApiSettings(), progress=False)  # type: ignore[call-arg]
    with TestClient(create_app(settings, model=model)) as client:
        cds = Cds(client, {"reader": token})
        context = {"userId": "Practitioner/1", "patientId": patient}
        view = _cards(cds.call("clinicflow-patient-view", _request("patient-view", context)))
        sign = _cards(
            cds.call(
                "clinicflow-order-sign", _request("order-sign", _sign(patient, _order(LISINOPRIL, patient)))
            )
        )
    assert view and not any("ran out of time" in c["summary"] for c in [*view, *sign])
    assert any(f"AllergyIntolerance/{allergy_id}" in (c.get("detail") or "") for c in sign)
