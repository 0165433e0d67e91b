"""Schemathesis with every check against the running service (in process, over a stub FHIR server and a
scripted model): the OpenAPI document and the service agree, and nothing gets a 5xx.

The budget is bounded (a few examples per operation, a fixed seed). Generated strings hold no NUL: the
document says none is accepted, and the service refuses one with a 422 naming it.
`positive_data_acceptance` is left out: for `RunCreate`'s per-workflow `oneOf`, schemathesis 4.32 also
generates bodies mixing one workflow's input properties into another's (invalid under the document), and
the service rightly refuses those with a 422."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import uvicorn

from clinicflow.api.app import create_app
from clinicflow.api.auth import create_api_key
from clinicflow.api.config import ApiSettings
from clinicflow.fhir.demo import free_port
from tests.fakes import ScriptedChatModel
from tests.unit.api.test_inputs import _Fhir

pytestmark = pytest.mark.slow

ST = Path(sys.executable).with_name("st")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(base URL, admin token) of the API served by uvicorn in a thread."""
    fhir = ThreadingHTTPServer(("127.0.0.1", 0), _Fhir)
    threading.Thread(target=fhir.serve_forever, daemon=True).start()
    database_url = f"sqlite:///{tmp_path}/api.sqlite"
    token = create_api_key(
        "admin", ["workflow:*", "write", "patient:*", "audit"], database_url=database_url
    ).token
    settings = ApiSettings(  # type: ignore[call-arg]
        cache_dir=tmp_path,
        database_url=database_url,
        checkpoint_db=tmp_path / "checkpoints.sqlite",
        fhir_url=f"http://127.0.0.1:{fhir.server_address[1]}",
        fhir_retries=0,
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, model=ScriptedChatModel()), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API server did not start"
        time.sleep(0.05)
    yield url, token
    server.should_exit = True
    thread.join(timeout=30)
    fhir.shutdown()
    fhir.server_close()


def test_schemathesis_with_every_check_finds_no_failure(service: tuple[str, str], tmp_path: Path) -> None:
    url, token = service
    assert httpx.get(f"{url}/health").status_code == 200
    command = [
        str(ST),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "5",
        "--seed",
        "1",
        "--generation-allow-x00",
        "false",
        "--no-color",
        "-H",
        f"Authorization: Bearer {token}",
    ]
    workdir = tmp_path / "schemathesis"  # where it keeps its cache, out of the working tree
    workdir.mkdir()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=workdir)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Tested: 12" in done.stdout
