"""A private embedded FHIR server for the MedAgentBench tests: the demo cohort plus the synthetic task data.

It is separate from the session's shared server because preparing the task set adds MRNs and labs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from clinicflow.evals.medagentbench.synthetic import (
    SyntheticPatient,
    generate_tasks,
    prepare_synthetic_cohort,
)
from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.fhir import FhirClient
from clinicflow.fhir.demo import copy_demo_database, ensure_demo_database, free_port
from clinicflow.fhir.server import EmbeddedFhirServer


@pytest.fixture(scope="module")
def mab_server(clinicflow_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a private server holding the demo cohort (task data added by `mab_patients`)."""
    loaded = asyncio.run(ensure_demo_database(clinicflow_cache_dir, progress=False))
    data_dir = copy_demo_database(loaded, tmp_path_factory.mktemp("mab-fhir"))
    with EmbeddedFhirServer(data_dir, port=free_port()) as server:
        yield server.base_url


@pytest.fixture(scope="module")
def mab_patients(mab_server: str) -> list[SyntheticPatient]:
    """The cohort's patients with MRNs and task labs on the private server."""

    async def prepare() -> list[SyntheticPatient]:
        async with FhirClient(mab_server) as client:
            return await prepare_synthetic_cohort(client)

    return asyncio.run(prepare())


@pytest.fixture(scope="module")
def mab_tasks(mab_patients: list[SyntheticPatient]) -> list[MabTask]:
    """30 synthetic tasks: three of each type, covering every branch of the conditional ones."""
    return generate_tasks(mab_patients, 30)
