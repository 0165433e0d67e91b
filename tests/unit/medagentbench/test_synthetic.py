"""The synthetic task set without a server: lab profiles, task instantiation and reference answers."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta

from clinicflow.evals.medagentbench.rules import (
    latest,
    latest_within,
    magnesium_dose,
    measurements,
    potassium_dose,
)
from clinicflow.evals.medagentbench.synthetic import (
    LAB_CODE_SYSTEM,
    SYNTHETIC_NOW,
    SyntheticPatient,
    generate_tasks,
    lab_observations,
)

NOW = datetime.fromisoformat(SYNTHETIC_NOW)


def _patients() -> list[SyntheticPatient]:
    out = []
    for index, profile in enumerate(("low", "normal", "absent")):
        pid = f"p{index}"
        labs = lab_observations(pid, profile, NOW, random.Random(index), band=index)  # type: ignore[arg-type]
        out.append(
            SyntheticPatient(
                pid, f"S000000{index}", "Ann", f"Lee{index}", f"19{70 + index}-03-04", profile, labs
            )
        )  # type: ignore[arg-type]
    return out


def test_profiles_cover_every_branch() -> None:
    low, normal, absent = _patients()
    mg = {p.profile: latest_within(measurements(p.observations("MG")), NOW) for p in (low, normal, absent)}
    assert mg["low"] is not None and magnesium_dose(mg["low"][1]) is not None
    assert mg["normal"] is not None and magnesium_dose(mg["normal"][1]) is None
    assert mg["absent"] is None and absent.observations("MG"), "magnesium on record, none in the last 24 h"
    k_low = latest(measurements(low.observations("K")))
    assert k_low is not None and potassium_dose(k_low[1]) is not None
    assert potassium_dose(latest(measurements(normal.observations("K")))[1]) is None  # type: ignore[index]
    assert absent.observations("K") == [] and absent.observations("A1C") == []
    a1c_low, a1c_normal = (latest(measurements(p.observations("A1C"))) for p in (low, normal))
    assert a1c_low and a1c_low[0] > NOW - timedelta(days=365), "recent HbA1c: no order"
    assert a1c_normal and a1c_normal[0] < NOW - timedelta(days=365), "old HbA1c: order one"


def test_labs_carry_task_codes_loinc_units_and_past_times() -> None:
    low = _patients()[0]
    for obs in low.labs:
        systems = {c["system"] for c in obs["code"]["coding"]}
        assert systems == {LAB_CODE_SYSTEM, "http://loinc.org"}
        assert obs["subject"] == {"reference": "Patient/p0"}
        assert datetime.fromisoformat(obs["effectiveDateTime"]) < NOW
        assert obs["valueQuantity"]["unit"] in ("mg/dL", "mmol/L", "%")
    units = {
        c["code"]: o["valueQuantity"]["unit"]
        for o in low.labs
        for c in o["code"]["coding"]
        if c["system"] == LAB_CODE_SYSTEM
    }
    assert units == {"MG": "mg/dL", "GLU": "mg/dL", "K": "mmol/L", "A1C": "%"}


def test_generate_tasks_cycles_the_types_with_reference_answers() -> None:
    patients = _patients()
    tasks = generate_tasks(patients, 30, seed=1)
    assert Counter(t.task_type for t in tasks) == {t: 3 for t in range(1, 11)}
    assert all(t.now == SYNTHETIC_NOW for t in tasks if t.task_type != 1)
    by_id = {t.id: t for t in tasks}
    assert by_id["task1_syn1"].sol == [by_id["task1_syn1"].eval_MRN]
    assert by_id["task1_syn3"].sol == ["Patient not found"]
    assert by_id["task5_syn1"].eval_MRN == "S0000000", "the first magnesium task needs an order"
    assert by_id["task3_syn1"].quoted.endswith(" mmHg")
    assert by_id["task8_syn1"].quoted.startswith("Situation:")
    assert by_id["task10_syn2"].sol == [-1]
    assert by_id["task2_syn1"].sol and isinstance(by_id["task2_syn1"].sol[0], int)
    assert generate_tasks(patients, 30, seed=1) == tasks, "deterministic per seed"
    assert all(t.mentions_mrn() for t in tasks if t.task_type != 1)


def test_generate_tasks_rejects_nonsense() -> None:
    import pytest

    with pytest.raises(ValueError, match="at least 1"):
        generate_tasks(_patients(), 0)
    with pytest.raises(ValueError, match="no patients"):
        generate_tasks([], 3)
