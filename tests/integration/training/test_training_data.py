"""EHRQA fine-tuning data from a cohort, through the real embedded server and tools."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from clinicflow.evals.training_data import build_ehrqa_data


def test_examples_are_split_by_patient_and_search_by_name(cohort_dir: Path, tmp_path: Path) -> None:
    stats = asyncio.run(build_ehrqa_data(cohort_dir, tmp_path, seed=5, per_patient=6, progress=False))
    train = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    val = [json.loads(line) for line in (tmp_path / "val.jsonl").read_text().splitlines()]
    assert stats["totals"] == {"train": len(train), "val": len(val)} and train and val
    train_patients = {e["metadata"]["patient_id"] for e in train}
    val_patients = {e["metadata"]["patient_id"] for e in val}
    assert train_patients and val_patients and not train_patients & val_patients
    assert {e["metadata"]["role"] for e in train} == {"planner", "extractor", "answerer"}
    planner_calls = [
        json.loads(line)
        for e in train + val
        if e["metadata"]["role"] == "planner"
        for turn in e["messages"]
        if turn["role"] == "assistant"
        for line in turn["content"].splitlines()
    ]
    codes = [c["arguments"]["code"] for c in planner_calls if c["arguments"].get("code")]
    # Coded searches become searches by the concept's name wherever the name finds the same resources.
    by_name = [code for code in codes if " " in code]
    assert codes and len(by_name) > len(codes) / 2
