"""Shared integration fixtures: one embedded FHIR server per session, loaded with the demo cohort.

The cohort (3 patients, seed 42) and a loaded database are built once under the cache dir
(`CLINICFLOW_CACHE_DIR`, default ~/.cache/clinicflow); each session serves a private copy of that database
on a free port, so tests may write to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from clinicflow.fhir import FhirClient
from clinicflow.fhir.demo import (
    DEMO_PATIENTS,
    DEMO_SEED,
    copy_demo_database,
    demo_patient_ids,
    ensure_demo_cohort,
    ensure_demo_database,
    free_port,
)
from clinicflow.fhir.server import EmbeddedFhirServer
from clinicflow.settings import Settings


@pytest.fixture(scope="session")
def clinicflow_cache_dir() -> Path:
    """Where cached cohorts and databases live (shared between sessions)."""
    return Settings().cache_dir  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def cohort_dir(clinicflow_cache_dir: Path) -> Path:
    """The folder of demo bundles (one transaction Bundle per patient) loaded into `fhir_server`."""
    return ensure_demo_cohort(clinicflow_cache_dir, DEMO_PATIENTS, DEMO_SEED, progress=False)


@pytest.fixture(scope="session")
def patient_ids(cohort_dir: Path) -> list[str]:
    """Ids of the demo patients, as the server stores them (source ids are kept)."""
    return demo_patient_ids(cohort_dir)


def pristine_demo_server(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EmbeddedFhirServer:
    """A new embedded server over a fresh copy of the demo database (not started)."""
    loaded = asyncio.run(ensure_demo_database(cache_dir, DEMO_PATIENTS, DEMO_SEED, progress=False))
    data_dir = copy_demo_database(loaded, tmp_path_factory.mktemp("fhir-server"))
    return EmbeddedFhirServer(data_dir, port=free_port())


@pytest.fixture(scope="session")
def fhir_server(
    clinicflow_cache_dir: Path, cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedFhirServer]:
    """A running embedded FHIR server holding the demo cohort, private to this session.

    Tests may write to it; a module that compares the server with the bundles uses
    `pristine_demo_server` for a copy of its own.
    """
    with pristine_demo_server(clinicflow_cache_dir, tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="session")
def fhir_base_url(fhir_server: EmbeddedFhirServer) -> str:
    """Base URL of the session's FHIR server, e.g. http://127.0.0.1:40123/fhir."""
    return fhir_server.base_url


@pytest.fixture
async def fhir_client(fhir_base_url: str) -> AsyncIterator[FhirClient]:
    """A FhirClient on the session's server, closed after the test."""
    async with FhirClient(fhir_base_url) as client:
        yield client
