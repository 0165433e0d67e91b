"""`ToolView.absent` replays the search tool's redirect: a concept searched under the wrong type is found."""

from __future__ import annotations

import pytest

from clinicflow.evals.ehrqa.categories.base import ToolView
from clinicflow.evals.ehrqa.questions import GoldCall

from ..tools import records as rec


@pytest.fixture
def view() -> ToolView:
    other = f"Patient/{rec.OTHER}"
    return ToolView([r for r in rec.record() if r.get("subject", {}).get("reference") != other])


@pytest.mark.parametrize(
    ("call", "absent"),
    [
        (GoldCall(resource_type="Condition", code="59621000"), True),  # only another patient's record has it
        (GoldCall(resource_type="Condition", code="4548-4"), False),  # an Observation code: redirected
        (GoldCall(resource_type="MedicationRequest", code="Diabetes mellitus type 2"), False),  # tagless
        (GoldCall(resource_type="MedicationRequest", code="Hemoglobin A1c"), True),  # part of a display
        (GoldCall(resource_type="Condition", code="http://loinc.org|4548-4"), True),  # system|code: kept
        (GoldCall(resource_type="Condition", code="4548-4", date_to="2020-12-31"), True),  # none in the dates
        (GoldCall(resource_type="Condition", code="4548-4", date_from="2023-01-01"), False),
    ],
)
def test_absent_follows_the_tools_redirect(view: ToolView, call: GoldCall, absent: bool) -> None:
    assert view.absent(call) is absent
