"""The record manifest: types, counts, date spans, codes with counts, bounded and patient-scoped."""

from __future__ import annotations

from clinicflow.tools.manifest import build_manifest, render_manifest
from clinicflow.tools.render import estimate_tokens

from . import records as rec


def test_counts_spans_and_codes_of_the_patient_only() -> None:
    manifest = build_manifest(rec.record(), rec.PID)
    assert manifest.patient is not None and manifest.patient["id"] == rec.PID
    observations = manifest.summary("Observation")
    assert observations is not None
    assert (observations.count, observations.first, observations.last) == (5, "2021-03-01", "2023-04-02")
    a1c = observations.codes[0]
    assert (a1c.system, a1c.code, a1c.count, a1c.last) == (rec.LOINC, "4548-4", 3, "2023-04-02")
    conditions = manifest.summary("Condition")
    assert conditions is not None and conditions.count == 2
    assert "59621000" not in {c.code for c in conditions.codes}
    assert manifest.dropped == 3
    assert [t.resource_type for t in manifest.types][:2] == ["Condition", "MedicationRequest"]


def test_rendered_manifest_is_compact_and_names_codes() -> None:
    text = render_manifest(build_manifest(rec.record(), rec.PID))
    lines = text.splitlines()
    assert lines[0] == "Patient Jane Q Doe; female; born 1970-05-01; MRN MRN-42 [Patient/p1]"
    assert "Observation: 5, 2021-03-01..2023-04-02" in lines
    assert "  4548-4 Hemoglobin A1c/Hemoglobin.total in Blood ×3; " in text
    assert "140 Influenza, seasonal, injectable, preservative free ×2" in text
    assert "Essential hypertension" not in text


def test_codes_per_type_are_bounded_and_the_budget_trims_them() -> None:
    many = [
        rec.observation(f"o{i}", f"{1000 + i}-1", f"Lab test number {i}", "2020-01-01", 1.0)
        for i in range(80)
    ]
    manifest = build_manifest([rec.patient(), *many], rec.PID)
    full = render_manifest(manifest, token_budget=100_000)
    assert "+50 more codes (search by text)" in full
    small = render_manifest(manifest, token_budget=150)
    assert estimate_tokens(small) <= 150
    assert "Observation: 80, 2020-01-01..2020-01-01" in small


def test_empty_record() -> None:
    text = render_manifest(build_manifest([rec.patient()], rec.PID))
    assert text.splitlines()[1] == "The record holds no other resources."
