"""Fixtures of the EHRQA integration tests: the demo cohort's questions and the Synthea-layout folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicflow.evals.ehrqa.generator import generate_questions
from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.records import RecordSet, read_records
from tests.unit.ehrqa.fixtures import synthea_style_bundles, write_bundles


@pytest.fixture(scope="session")
def demo_records(cohort_dir: Path) -> RecordSet:
    return read_records(cohort_dir)


@pytest.fixture(scope="session")
def demo_questions(demo_records: RecordSet) -> list[Question]:
    """The default question set of the demo cohort (about 200 per patient)."""
    return generate_questions(demo_records, seed=0)


@pytest.fixture(scope="session")
def synthea_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One patient in real Synthea R4 layout (urn:uuid transaction bundle + practitioner bundle)."""
    return write_bundles(synthea_style_bundles(), tmp_path_factory.mktemp("synthea-style"))
