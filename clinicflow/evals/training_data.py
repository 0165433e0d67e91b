"""Fine-tuning data made by the project: EHRQA gold examples from a generated cohort, split by patient.

`build_ehrqa_data` loads a cohort folder into a private embedded FHIR server, generates the EHRQA
questions from its records, replays each question's gold calls through the real tools, and writes the
planner, extractor and answerer examples (`export.gold_examples`) as `train.jsonl` / `val.jsonl`:
the patients are split, never the questions of one patient. The cohort must come from a seed that no
evaluation uses; `stats.json` counts examples per role and category and their token lengths.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from clinicflow.evals.ehrqa.export import gold_examples
from clinicflow.evals.ehrqa.facts import core_name
from clinicflow.evals.ehrqa.generator import generate_questions
from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.records import read_records
from clinicflow.evals.ehrqa.retrieval import GoldCallRunner
from clinicflow.fhir import FhirClient
from clinicflow.fhir.demo import free_port
from clinicflow.fhir.loader import load_directory
from clinicflow.fhir.server import EmbeddedFhirServer
from clinicflow.tools.fhir_tools import make_fhir_tools
from clinicflow.tools.manifest import resource_codings

__all__ = ["build_ehrqa_data"]


def code_names(resources: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Code -> the name questions use for it (its display without the semantic tag), per patient."""
    names: dict[str, str] = {}
    for resource in resources:
        for coding in resource_codings(resource):
            if coding.get("code") and coding.get("display"):
                names.setdefault(str(coding["code"]), core_name(str(coding["display"])))
    return names


def _sample(
    examples: list[dict[str, Any]], per_group: int, seed: int, *, spread: bool = False
) -> list[dict[str, Any]]:
    """At most `per_group` examples per role and category, drawn with a seeded shuffle; with `spread`,
    evenly over the category's question types (each type's first example, then each one's second, ...)."""
    shuffled = list(examples)
    random.Random(f"sample|{seed}").shuffle(shuffled)
    if spread:
        rank: Counter[tuple[str, str, str]] = Counter()
        ranked = []
        for example in shuffled:
            meta = example["metadata"]
            kind = (meta["role"], meta["category"], meta["qtype"])
            ranked.append((rank[kind], example))
            rank[kind] += 1
        shuffled = [example for _, example in sorted(ranked, key=lambda pair: pair[0])]
    taken: Counter[tuple[str, str]] = Counter()
    out = []
    for example in shuffled:
        key = (example["metadata"]["role"], example["metadata"]["category"])
        if taken[key] < per_group:
            taken[key] += 1
            out.append(example)
    return out


def _split_patients(patients: Sequence[str], val_fraction: float, seed: int) -> set[str]:
    """The validation patients: a seeded draw, at least one when there are two or more."""
    ordered = sorted(patients)
    random.Random(f"val|{seed}").shuffle(ordered)
    n = max(1, round(len(ordered) * val_fraction)) if len(ordered) > 1 else 0
    return set(ordered[:n])


async def build_ehrqa_data(
    cohort: Path,
    out_dir: Path,
    *,
    seed: int,
    per_patient: int = 40,
    val_fraction: float = 0.15,
    manifest_budget: int = 150,
    max_per_group: int | None = None,
    roles: Sequence[str] = ("planner", "extractor", "answerer"),
    spread: bool = False,
    token_count: Callable[[list[dict[str, str]]], int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write `train.jsonl`, `val.jsonl` and `stats.json` under `out_dir`; returns the stats. Only the
    examples of `roles` are kept; `max_per_group` and `spread` are `_sample`'s."""
    records = read_records(cohort)
    questions = generate_questions(records, seed=seed, per_patient=per_patient)
    val_patients = _split_patients([r.patient_id for r in records], val_fraction, seed)
    with tempfile.TemporaryDirectory(prefix="clinicflow-train-fhir-") as workdir:
        server = EmbeddedFhirServer(Path(workdir), port=free_port())
        with server:
            async with FhirClient(server.base_url, timeout=120.0) as client:
                await load_directory(client, cohort, progress=progress, after_load=server.analyze)
                tools = make_fhir_tools(client, manifest_budget=manifest_budget)
                manifest_tool = next(t for t in tools if t.name == "record_manifest")
                manifests = {
                    p: str(await manifest_tool.ainvoke({"patient_id": p}))
                    for p in sorted({q.patient_id for q in questions})
                }
                names = {r.patient_id: code_names(r.resources) for r in records}
                examples = await gold_examples(questions, GoldCallRunner(tools), tools, manifests, names)
    examples = [e for e in examples if e["metadata"]["role"] in roles]
    for example in examples:
        example["metadata"]["split"] = "val" if example["metadata"]["patient_id"] in val_patients else "train"
    if max_per_group is not None:
        train_examples = [e for e in examples if e["metadata"]["split"] == "train"]
        train = _sample(train_examples, max_per_group, seed, spread=spread)
        val = _sample(
            [e for e in examples if e["metadata"]["split"] == "val"],
            max(2, max_per_group // 4),
            seed,
            spread=spread,
        )
        examples = train + val
    return _write(examples, questions, val_patients, out_dir, token_count)


def _write(
    examples: list[dict[str, Any]],
    questions: Sequence[Question],
    val_patients: set[str],
    out_dir: Path,
    token_count: Callable[[list[dict[str, str]]], int] | None,
) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, Counter[str]] = {"train": Counter(), "val": Counter()}
    tokens: dict[str, list[int]] = {}
    with (out_dir / "train.jsonl").open("w") as train, (out_dir / "val.jsonl").open("w") as val:
        for example in examples:
            meta = example["metadata"]
            split = meta["split"]
            (val if split == "val" else train).write(json.dumps(example, ensure_ascii=False) + "\n")
            counts[split][f"{meta['role']}/{meta['category']}"] += 1
            if token_count is not None:
                tokens.setdefault(meta["role"], []).append(token_count(example["messages"]))
    stats: dict[str, Any] = {
        "questions": len(questions),
        "patients": {
            "train": len({q.patient_id for q in questions} - val_patients),
            "val": len(val_patients),
        },
        "examples": {split: dict(sorted(c.items())) for split, c in counts.items()},
        "totals": {split: sum(c.values()) for split, c in counts.items()},
    }
    if tokens:
        stats["tokens"] = {
            role: {
                "median": sorted(values)[len(values) // 2],
                "max": max(values),
                "share_le_1024": round(sum(v <= 1024 for v in values) / len(values), 3),
            }
            for role, values in sorted(tokens.items())
        }
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats
