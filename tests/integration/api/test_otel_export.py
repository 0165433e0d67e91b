"""The real API server exports each run's spans over OTLP/HTTP to a collector (here a small receiver that
decodes the protobuf requests exactly as a collector does). Spans arrive in batches, so the test waits
for them by condition, never by a fixed sleep."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from clinicflow.client import Client
from tests.integration.api.conftest import issue_keys, server_env
from tests.integration.api.server import ApiServer, ehr_qa_script

pytestmark = pytest.mark.integration


def _value(value: Any) -> str:
    field = value.WhichOneof("value")
    return str(getattr(value, field)) if field else ""


class Collector:
    """Spans received at POST /v1/traces, flattened to dicts with string attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.service_names: set[str] = set()
        self.lock = threading.Lock()

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
                self.service_names.add(attrs.get("service.name", ""))
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        self.spans.append(
                            {
                                "name": span.name,
                                "span_id": span.span_id.hex(),
                                "parent_id": span.parent_span_id.hex() or None,
                                "attributes": {a.key: _value(a.value) for a in span.attributes},
                            }
                        )

    def run_spans(self, run_id: str, roots: int = 1, deadline_s: float = 90.0) -> list[dict[str, Any]]:
        """The spans of one run, once its `roots` root spans (one per attempt) have arrived."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            with self.lock:
                mine = [s for s in self.spans if run_id in s["attributes"].get("clinicflow.run.id", "")]
            if sum(s["parent_id"] is None for s in mine) >= roots:
                return mine
            time.sleep(0.2)
        raise AssertionError(
            f"no root span for run {run_id} within {deadline_s} s; got {len(self.spans)} spans"
        )


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[str, Collector]]:
    sink = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            ok = self.path == "/v1/traces"
            if ok:
                sink.receive(body)
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", sink
    httpd.shutdown()
    httpd.server_close()


def test_the_api_exports_one_span_tree_per_run_to_the_collector(
    collector: tuple[str, Collector],
    fhir_base_url: str,
    patient_ids: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    endpoint, sink = collector
    work: Path = tmp_path_factory.mktemp("otel-api")
    database_url = f"sqlite:///{work}/api.sqlite"
    patient = patient_ids[0]
    token = issue_keys(database_url, patient, "unused")["admin"]
    env = server_env(
        work,
        fhir_base_url,
        database_url,
        ehr_qa_script(work / "ehr_qa.json"),
        CLINICFLOW_OTEL_ENDPOINT=endpoint,
        CLINICFLOW_OTEL_SERVICE_NAME="clinicflow-api-test",
    )
    with ApiServer(work, env) as server, Client(server.url, token) as cf:
        done = cf.run(
            "ehr_qa", {"question": "What is the latest observation?", "patient_id": patient}, timeout=60
        )
        assert done["status"] == "completed", done
        spans = sink.run_spans(done["id"])
        task = {"instruction": "Order an HbA1c for the patient.", "patient_id": patient}
        ordered = cf.run("ehr_task", task, on_approval=lambda request: {"action": "approve"}, timeout=60)
        assert ordered["status"] == "completed", ordered
        task_spans = sink.run_spans(ordered["id"], roots=2)

    assert "clinicflow-api-test" in sink.service_names
    by_id = {s["span_id"]: s for s in spans}
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["name"] for r in roots] == ["invoke_agent ehr_qa"]
    nodes = [s for s in spans if s["parent_id"] == roots[0]["span_id"]]
    assert {n["name"] for n in nodes} == {"plan", "retrieve", "extract", "answer"}
    chats = [s for s in spans if s["name"].startswith("chat")]
    tools = [s for s in spans if s["name"].startswith("execute_tool")]
    assert len(chats) >= 3 and tools
    assert all(by_id[s["parent_id"]] in nodes for s in [*chats, *tools])
    assert all("gen_ai.usage.input_tokens" in s["attributes"] for s in chats)
    assert {"record_manifest", "search_record"} <= {s["attributes"]["gen_ai.tool.name"] for s in tools}
    exported = repr(spans)
    assert patient not in exported and "latest observation" not in exported, "no patient data by default"

    # The write run pauses for approval (its first tree ends interrupted) and resumes in a second tree.
    task_roots = [s for s in task_spans if s["parent_id"] is None]
    assert [r["name"] for r in task_roots] == ["invoke_agent ehr_task"] * 2
    assert [r["attributes"].get("clinicflow.interrupted") for r in task_roots].count("True") == 1
    assert {"agent", "tools", "approve", "write"} <= {s["name"] for s in task_spans}
