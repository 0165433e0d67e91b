"""The citation checker: each claim of an answer against the evidence lines it cites."""

from __future__ import annotations

from typing import Any

from clinicflow.agents.ehr_qa import NOT_FOUND, citations_in
from clinicflow.graphs.ehr_qa.claims import check_answer, split_claims
from tests.fakes import ScriptedChatModel
from tests.unit.graphs.test_ehr_qa_graph import A1C, ask, facts, final, finish, search_a1c

A1C_OLD = "Observation/obs-a1c-1"
LINES = [
    "2023-04-02 Hemoglobin A1c 7.2 % [Observation/x]",
    "2021-01-05 Hemoglobin A1c 8.4 % [Observation/y]",
    "2020-03-01 Metformin 500 MG Oral Tablet; active; requester Dr. Ann Lee [MedicationRequest/m]",
]
EVIDENCE: list[dict[str, Any]] = [{"text": line, "citations": citations_in(line)} for line in LINES]


def supported(answer: str, citations: list[str], question: str = "") -> list[bool]:
    return [c.supported for c in check_answer(answer, citations, EVIDENCE, question)]


def test_claims_are_sentences_and_clauses_with_their_own_citations() -> None:
    claims = split_claims("HbA1c 7.2 % [Observation/x]. Dr. Ann Lee prescribed it; it is active.", ["M/1"])
    assert claims == [
        ("HbA1c 7.2 %", ["Observation/x"]),
        ("Dr. Ann Lee prescribed it", ["M/1"]),
        ("it is active", ["M/1"]),
    ]
    assert split_claims("B. Viral sinusitis", ["Condition/c"]) == [("B. Viral sinusitis", ["Condition/c"])]


def test_values_dates_units_and_names_must_be_what_the_cited_lines_say() -> None:
    assert supported("HbA1c 7.2 % on 2023-04-02", ["Observation/x"]) == [True]
    assert supported("HbA1c 4.1 %", ["Observation/x"]) == [False], "a value the resource does not hold"
    assert supported("HbA1c 8.4 %", ["Observation/x"]) == [False], "a value of another resource"
    assert supported("HbA1c 7.2 mg/dL", ["Observation/x"]) == [False], "a wrong unit"
    assert supported("HbA1c 7.2 % on 2023-04-09", ["Observation/x"]) == [False], "a wrong date"
    assert supported("Metformin, prescribed by Dr. Ann Lee", ["MedicationRequest/m"]) == [True]
    assert supported("Lisinopril, prescribed by Dr. Ann Lee", ["MedicationRequest/m"]) == [False]
    assert supported("It is stopped", ["MedicationRequest/m"]) == [False], "Metformin's line says active"


def test_derived_numbers_changes_counts_and_days() -> None:
    both = ["Observation/x", "Observation/y"]
    assert supported("It fell by -1.2 %", both) == [True]
    assert supported("2", both, "How many HbA1c results are there?") == [True]
    assert supported("3", both, "How many HbA1c results are there?") == [False]
    assert supported("817 days", both) == [True], "2021-01-05 to 2023-04-02"
    assert supported("818 days", both) == [False]


def test_negations_are_checked_against_every_retrieved_line() -> None:
    assert supported("There is no record of lisinopril.", []) == [True]
    assert supported("There is no record of metformin.", []) == [False]


async def test_the_graph_removes_unsupported_claims_and_ends_unsupported_when_none_is_left() -> None:
    wrong = ScriptedChatModel(
        script=[search_a1c(), finish(), facts(("A1c 7.9 %", [A1C])), final("HbA1c 4.1 % [{A1C}]", [A1C])]
    )
    result = await ask(wrong)
    assert (result.status, result.answer, result.citations) == ("unsupported", NOT_FOUND, [])
    assert any("unsupported claim: 4.1 %" in (e.error or "") for e in result.trace if e.name == "claims")
    mixed = ScriptedChatModel(
        script=[
            search_a1c(),
            finish(),
            facts(("A1c 7.9 %", [A1C]), ("A1c 8.4 %", [A1C_OLD])),
            final(f"The latest HbA1c is 7.9 % [{A1C}]. It was 5.0 % before [{A1C_OLD}].", [A1C, A1C_OLD]),
        ]
    )
    result = await ask(mixed)
    assert result.status == "answered"
    assert result.answer == f"The latest HbA1c is 7.9 % [{A1C}]"
    assert result.citations == [A1C]


def test_a_yes_or_a_count_resting_on_the_patient_resource_alone_is_unsupported() -> None:
    from clinicflow.graphs.ehr_qa.claims import check_answer

    patient = {"text": "Patient Ann Lee; female; born 1975-08-31", "citations": ["Patient/p1"]}
    condition = {"text": "2020-01-02 Asthma (disorder); active", "citations": ["Condition/c1"]}
    (yes_alone,) = check_answer("yes", ["Patient/p1"], [patient], "Has the patient ever had asthma?")
    assert not yes_alone.supported
    (yes_cited,) = check_answer("yes", ["Condition/c1"], [patient, condition], "Has the patient had asthma?")
    assert yes_cited.supported
    (count,) = check_answer("1", ["Patient/p1"], [patient], "How many Tdap doses had the patient received?")
    assert not count.supported
