"""The FHIR tools against the real embedded FHIR server loaded with the demo cohort.

Expected results are computed from the cohort's bundles, read directly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool

from clinicflow.fhir import FhirClient
from clinicflow.tools import SEARCHABLE_TYPES, make_fhir_tools
from clinicflow.tools.manifest import CODE_PATHS

from ..conftest import pristine_demo_server
from .bundles import PatientBundle, day, first_coding, load_cohort

pytestmark = pytest.mark.integration

_LINE_CITATION = re.compile(r"\[([A-Za-z]+/[A-Za-z0-9\-.]+)\]$", re.M)


@pytest.fixture(scope="module")
def fhir_base_url(clinicflow_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of this module's own: it is compared with the bundles, so no other test may write to it."""
    with pristine_demo_server(clinicflow_cache_dir, tmp_path_factory) as server:
        yield server.base_url


@pytest.fixture(scope="module")
def cohort(cohort_dir: Path) -> list[PatientBundle]:
    return load_cohort(cohort_dir)


@pytest.fixture
def tools(fhir_client: FhirClient) -> dict[str, BaseTool]:
    return {
        t.name: t for t in make_fhir_tools(fhir_client, token_budget=1_000_000, manifest_budget=1_000_000)
    }


async def run(tool: BaseTool, patient_id: str, **args: Any) -> str:
    return str(await tool.ainvoke({**args, "patient_id": patient_id}))


def cited(text: str) -> set[str]:
    """The citation each line ends with."""
    return set(_LINE_CITATION.findall(text))


def _date(resource: dict[str, Any], *paths: str) -> str:
    for path in paths:
        node: Any = resource
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, str):
            return day(node)
    return ""


async def test_each_type_returns_exactly_the_patients_resources(
    tools: dict[str, BaseTool], cohort: list[PatientBundle]
) -> None:
    search = tools["search_record"]
    for patient in cohort:
        for rtype in SEARCHABLE_TYPES:
            expected = {f"{rtype}/{r['id']}" for r in patient.of_type(rtype)}
            out = await run(search, patient.patient_id, resource_type=rtype, limit=100)
            if not expected:
                assert "(not found in the record)" in out, (rtype, out)
                continue
            assert out.startswith(f"{len(expected)} {rtype} found"), (patient.file.name, rtype, out[:200])
            lines = cited(out)
            assert lines <= expected
            assert len(lines) == min(len(expected), 100)


async def test_code_forms_and_date_windows_match_the_bundle(
    tools: dict[str, BaseTool], cohort: list[PatientBundle]
) -> None:
    search = tools["search_record"]
    patient = max(cohort, key=lambda p: len(p.of_type("Observation")))
    counts = Counter(first_coding(o["code"]).get("code") for o in patient.of_type("Observation"))
    code = next(c for c, n in counts.most_common() if n >= 6)
    matching = [o for o in patient.of_type("Observation") if first_coding(o["code"]).get("code") == code]
    coding = first_coding(matching[0]["code"])
    expected = {f"Observation/{o['id']}" for o in matching}
    by_token = cited(
        await run(
            search,
            patient.patient_id,
            resource_type="Observation",
            code=f"{coding['system']}|{code}",
            limit=100,
        )
    )
    assert by_token == expected
    assert (
        cited(await run(search, patient.patient_id, resource_type="Observation", code=code, limit=100))
        == expected
    )
    by_display = cited(
        await run(search, patient.patient_id, resource_type="Observation", code=coding["display"], limit=100)
    )
    assert expected <= by_display

    days = sorted({day(o["effectiveDateTime"]) for o in matching})
    windows = [
        (days[0], days[0]),
        (days[1], days[-2]),
        (days[len(days) // 2], days[len(days) // 2]),
        (days[-1], days[-1]),
    ]
    for start, stop in windows:
        want = {f"Observation/{o['id']}" for o in matching if start <= day(o["effectiveDateTime"]) <= stop}
        got = cited(
            await run(
                search,
                patient.patient_id,
                resource_type="Observation",
                code=code,
                date_from=start,
                date_to=stop,
                limit=100,
            )
        )
        assert got == want, (start, stop)

    conditions = patient.of_type("Condition")
    onsets = sorted({day(c["onsetDateTime"]) for c in conditions})
    start, stop = onsets[len(onsets) // 3], onsets[2 * len(onsets) // 3]
    want = {f"Condition/{c['id']}" for c in conditions if start <= day(c["onsetDateTime"]) <= stop}
    got = cited(
        await run(
            search, patient.patient_id, resource_type="Condition", date_from=start, date_to=stop, limit=100
        )
    )
    assert got == want


async def test_a_concept_under_the_wrong_type_is_searched_where_the_bundle_holds_it(
    tools: dict[str, BaseTool], cohort: list[PatientBundle]
) -> None:
    search = tools["search_record"]
    patient = max(cohort, key=lambda p: len(p.of_type("Observation")))
    displays = Counter(first_coding(o["code"]).get("display") for o in patient.of_type("Observation"))
    other_types = ("Condition", "Procedure", "DiagnosticReport", "Immunization", "MedicationRequest")
    elsewhere = {
        str(first_coding(r.get(CODE_PATHS[t][0])).get("display")).casefold()
        for t in other_types
        for r in patient.of_type(t)
    }
    display = next(d for d, n in displays.most_common() if n >= 2 and str(d).casefold() not in elsewhere)
    expected = {
        f"Observation/{o['id']}"
        for o in patient.of_type("Observation")
        if first_coding(o["code"]).get("display") == display
    }
    out = await run(search, patient.patient_id, resource_type="MedicationRequest", code=display, limit=100)
    assert out.splitlines()[0] == (
        f"No MedicationRequest found with code matching {display!r}; that concept is recorded as Observation:"
    )
    assert cited(out) == expected


async def test_manifest_counts_spans_and_codes_match_the_bundle(
    tools: dict[str, BaseTool], cohort: list[PatientBundle]
) -> None:
    for patient in cohort:
        text = await run(tools["record_manifest"], patient.patient_id)
        lines = text.splitlines()
        assert lines[0].endswith(f"[Patient/{patient.patient_id}]")
        assert patient.patient["birthDate"] in lines[0]
        for rtype in (
            "Condition",
            "Observation",
            "Immunization",
            "MedicationRequest",
            "Procedure",
            "Encounter",
        ):
            resources = patient.of_type(rtype)
            if not resources:
                continue
            summary = next(line for line in lines if line.startswith(f"{rtype}: "))
            assert summary.startswith(f"{rtype}: {len(resources)}, ")
            top = Counter(
                first_coding(r.get(CODE_PATHS[rtype][0])).get("code") for r in resources
            ).most_common(1)
            assert f" {top[0][0]} " in f" {lines[lines.index(summary) + 1]} "
        conditions = patient.of_type("Condition")
        first = min(_date(c, "onsetDateTime") for c in conditions)
        last = max(_date(c, "onsetDateTime") for c in conditions)
        assert f"Condition: {len(conditions)}, {first}..{last}" in lines


async def test_unknown_patient_is_named(tools: dict[str, BaseTool]) -> None:
    out = await tools["search_record"].ainvoke(
        {
            "name": "search_record",
            "args": {"resource_type": "Condition", "patient_id": "no-such-patient"},
            "id": "1",
            "type": "tool_call",
        }
    )
    assert out.status == "error"
    assert out.content == "Tool failed: patient 'no-such-patient' not found on the FHIR server"
