"""Overdue monitoring for patient-view: which tests are due, from which condition and guideline, and that
each rule's citation is the one the real guideline index gives for its sentence."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from clinicflow.api.cds_hooks import patient_view_cards
from clinicflow.api.cds_monitoring import MONITORING, overdue_monitoring
from clinicflow.tools import make_guideline_tool
from clinicflow.tools.guidelines import SHIPPED_CORPUS, GuidelineIndex, default_embedder

TODAY = date(2026, 6, 1)
SNOMED, ICD10, LOINC = "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm", "http://loinc.org"


def condition(cid: str, system: str, code: str, display: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "clinicalStatus": {"coding": [{"code": status}]},
    }


def result(oid: str, code: str, days_ago: int) -> dict[str, Any]:
    when = (TODAY - timedelta(days=days_ago)).isoformat()
    return {
        "resourceType": "Observation",
        "id": oid,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": f"{when}T09:00:00Z",
    }


DIABETES = condition("dm", SNOMED, "44054006", "Diabetes mellitus type 2")


def test_a_diabetic_is_due_for_what_is_older_than_its_interval() -> None:
    observations = [
        result("a1c-old", "4548-4", 400),
        result("a1c", "4548-4", 200),
        result("gfr", "33914-3", 100),
    ]
    due = {d.rule.name: d for d in overdue_monitoring([DIABETES], observations, TODAY)}
    assert set(due) == {"HbA1c", "Urine albumin-to-creatinine ratio"}, "eGFR 100 days ago is not due"
    assert due["HbA1c"].last is not None and due["HbA1c"].last["id"] == "a1c", "the newest result counts"
    line = due["HbA1c"].line()
    assert "[Condition/dm]" in line and "[Observation/a1c]" in line
    assert (
        "[guideline: Diabetes diagnosis, glycemic targets and monitoring § HbA1c monitoring frequency]"
        in line
    )
    assert "no result in the record" in due["Urine albumin-to-creatinine ratio"].line()


def test_recent_results_leave_nothing_due_and_other_patients_get_no_card() -> None:
    recent = [result("a", "4548-4", 30), result("u", "9318-7", 30), result("g", "33914-3", 30)]
    assert overdue_monitoring([DIABETES], recent, TODAY) == []
    asthma = condition("as", SNOMED, "195967001", "Asthma")
    assert overdue_monitoring([asthma], [], TODAY) == []


def test_icd10_coding_and_ckd_give_one_egfr_card() -> None:
    icd_diabetes = condition("e11", ICD10, "E11.9", "Type 2 diabetes mellitus without complications")
    ckd = condition("ckd", SNOMED, "433144002", "Chronic kidney disease stage 3")
    names = [d.rule.name for d in overdue_monitoring([icd_diabetes, ckd], [], TODAY)]
    assert sorted(names) == ["HbA1c", "Urine albumin-to-creatinine ratio", "eGFR"]
    only_ckd = overdue_monitoring([ckd], [], TODAY)
    assert [d.rule.guideline_file for d in only_ckd] == ["ckd-staging.md"]


def test_patient_view_cards_warn_only_for_active_conditions() -> None:
    resolved = condition("old", SNOMED, "44054006", "Diabetes mellitus type 2", status="resolved")
    assert not any("overdue" in c.summary for c in patient_view_cards({"conditions": [resolved]}, TODAY))
    cards = [c for c in patient_view_cards({"conditions": [DIABETES]}, TODAY) if "overdue" in c.summary]
    assert len(cards) == 3 and all(c.indicator == "warning" for c in cards)
    assert (
        cards[0].source.label
        == "Diabetes diagnosis, glycemic targets and monitoring § HbA1c monitoring frequency"
    )


@pytest.mark.slow
def test_each_rule_cites_what_the_guideline_index_returns_for_its_sentence(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in {rule.guideline_file for rule in MONITORING}:
        (docs / name).write_text((SHIPPED_CORPUS / name).read_text(encoding="utf-8"), encoding="utf-8")
    GuidelineIndex(tmp_path / "g.sqlite", default_embedder()).index_directory(docs)
    search = make_guideline_tool(tmp_path / "g.sqlite")
    for rule in MONITORING:
        text = str(search.invoke({"query": rule.sentence, "k": 3}))
        passages = ["[guideline:" + p for p in text.split("[guideline:")[1:]]  # each opens with its citation
        holding = [p for p in passages if rule.sentence in p]
        assert holding and holding[0].startswith(f"[{rule.citation()}]"), (rule.name, text[:500])
