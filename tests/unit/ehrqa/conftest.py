"""Fixtures of the EHRQA unit tests: the Synthea-layout fixture folder, its records and questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicflow.evals.ehrqa.generator import generate_questions
from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.records import RecordSet, read_records
from tests.unit.ehrqa.fixtures import synthea_style_bundles, write_bundles


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one patient bundle and one practitioner bundle in real Synthea layout."""
    return write_bundles(synthea_style_bundles(), tmp_path_factory.mktemp("synthea-style"))


@pytest.fixture(scope="session")
def fixture_records(fixture_dir: Path) -> RecordSet:
    return read_records(fixture_dir)


@pytest.fixture(scope="session")
def all_questions(fixture_records: RecordSet) -> list[Question]:
    """Every candidate question about the fixture patient (no per-patient cap)."""
    return generate_questions(fixture_records, seed=0, per_patient=10_000)
