"""The deployment file: API replicas, Postgres, a HAPI FHIR server and vLLM, wired together with health
checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
FILES = [REPO / "docker-compose.yml"]


def _load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict) and isinstance(document.get("services"), dict), f"{path}: no services"
    return document


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_compose_wires_api_replicas_postgres_fhir_and_model(path: Path) -> None:
    services = _load(path)["services"]
    assert {"api", "postgres", "fhir", "model"} <= set(services), f"{path.name}: services {sorted(services)}"
    for name in ("api", "postgres", "fhir", "model"):
        check = services[name].get("healthcheck") or {}
        assert check.get("test"), f"{path.name}: service {name} has no health check"

    api = services["api"]
    assert int((api.get("deploy") or {}).get("replicas", 1)) >= 2, "the API runs as several replicas"
    assert "clinicflow" in " ".join(map(str, api.get("command") or [])) or api.get("build")
    env = api.get("environment") or {}
    database = urlparse(env["CLINICFLOW_DATABASE_URL"])
    assert database.scheme.startswith("postgresql") and database.hostname == "postgres"
    assert urlparse(env["CLINICFLOW_FHIR_URL"]).hostname == "fhir"
    assert urlparse(env["CLINICFLOW_MODEL_URL"]).hostname == "model"
    depends = api.get("depends_on") or {}
    assert {n: depends.get(n, {}).get("condition") for n in ("postgres", "fhir", "model")} == {
        n: "service_healthy" for n in ("postgres", "fhir", "model")
    }

    assert str(services["postgres"]["image"]).startswith("postgres:")
    assert str(services["fhir"]["image"]).startswith("hapiproject/hapi")
    model = services["model"]
    command = " ".join(map(str, model.get("command") or []))
    assert "vllm" in str(model.get("image", "")) or "clinicflow model serve" in command
    assert env.get("CLINICFLOW_MODEL_NAME", "medgemma-27b-text-it") in command
    gpus = model["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d.get("capabilities", []) for d in gpus)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_the_api_replicas_export_traces_to_the_collector(path: Path) -> None:
    services = _load(path)["services"]
    endpoint = urlparse((services["api"].get("environment") or {})["CLINICFLOW_OTEL_ENDPOINT"])
    assert endpoint.hostname in services, f"{endpoint.hostname} is a service of the file"
    collector = services[str(endpoint.hostname)]
    assert "jaeger" in str(collector["image"]) or "otel" in str(collector["image"])
    assert endpoint.port == 4318, "OTLP over HTTP"
    assert (collector.get("environment") or {}).get("COLLECTOR_OTLP_ENABLED") == "true"
