"""The embedded sekmet-fhir server: start, readiness, stop, port conflicts, start-up failures, ANALYZE."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import httpx
import pytest

from clinicflow.fhir import FhirClient
from clinicflow.fhir.demo import free_port
from clinicflow.fhir.server import EmbeddedFhirServer, EmbeddedServerError

pytestmark = pytest.mark.integration


def test_start_serves_metadata_then_stop_frees_the_port(tmp_path: Path) -> None:
    server = EmbeddedFhirServer(tmp_path / "srv", port=free_port())
    with server:
        assert server.running
        assert server.base_url == f"http://127.0.0.1:{server.port}/fhir"
        meta = httpx.get(f"{server.base_url}/metadata", timeout=10).json()
        assert meta["resourceType"] == "CapabilityStatement"
        assert (tmp_path / "srv" / "settings.yaml").exists()
        assert server.db_path.exists()
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/metadata", timeout=2)


def test_settings_turn_off_simulator_traffic_log_and_auth(tmp_path: Path) -> None:
    import yaml

    server = EmbeddedFhirServer(tmp_path, port=free_port())
    settings = yaml.safe_load(server.write_settings().read_text())
    assert settings["simulator"]["enabled"] is False
    assert settings["log_inbound"] is False
    assert settings["server_auth"]["types"] == ["none"]
    assert Path(settings["db_path"]) == server.db_path


async def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedFhirServer(tmp_path, port=port)
        with pytest.raises(EmbeddedServerError, match=f"port {port} .*already in use"):
            server.start()
    assert not server.running


def test_failed_start_reports_the_log_tail(tmp_path: Path) -> None:
    (tmp_path / "sekmet.db").write_text("this is not an SQLite database, the server cannot open it")
    server = EmbeddedFhirServer(tmp_path, port=free_port(), startup_timeout_s=30)
    with pytest.raises(EmbeddedServerError, match="exited during start-up") as info:
        server.start()
    assert "Last lines of" in str(info.value)
    assert "database" in str(info.value).lower()
    assert not server.running


async def test_created_resource_is_readable_and_ids_are_kept_on_put(tmp_path: Path) -> None:
    with EmbeddedFhirServer(tmp_path, port=free_port()) as server:
        async with FhirClient(server.base_url) as client:
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {"resourceType": "Patient", "id": "source-id-1", "gender": "female"},
                        "request": {"method": "PUT", "url": "Patient/source-id-1"},
                    }
                ],
            }
            await client.transaction(bundle)
            patient = await client.read("Patient", "source-id-1")
            assert patient["gender"] == "female"


def test_analyze_writes_planner_statistics(fhir_server: EmbeddedFhirServer) -> None:
    fhir_server.analyze()
    with sqlite3.connect(fhir_server.db_path) as conn:
        rows = conn.execute("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'idx'").fetchone()[0]
    assert rows > 0
    params = {"_sort": "-date", "_count": "5"}
    page = httpx.get(f"{fhir_server.base_url}/Observation", params=params, timeout=30)
    dates = [e["resource"].get("effectiveDateTime", "") for e in page.json()["entry"]]
    assert dates == sorted(dates, reverse=True)


async def test_session_fixtures_serve_the_demo_cohort_under_its_own_ids(
    fhir_client: FhirClient, fhir_base_url: str, patient_ids: list[str]
) -> None:
    assert fhir_client.base_url == fhir_base_url
    assert len(patient_ids) == 3
    for pid in patient_ids:
        assert (await fhir_client.read("Patient", pid))["id"] == pid
    page = await fhir_client.search("Observation").where(subject=f"Patient/{patient_ids[0]}").count(1).page()
    assert page["total"] > 0
