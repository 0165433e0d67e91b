"""A runs folder holding one report of each harness, written by the harnesses' own `write_report` from
made-up results (fixed seed): what the console's eval reports page reads in the browser tests and the
screenshots. The numbers mean nothing."""

from __future__ import annotations

import random
from pathlib import Path

from clinicflow.evals.agentclinic.report import build_report as agentclinic_report
from clinicflow.evals.agentclinic.report import write_report as write_agentclinic
from clinicflow.evals.ehrqa.questions import CATEGORIES, Question
from clinicflow.evals.ehrqa.report import build_report as ehrqa_report
from clinicflow.evals.ehrqa.report import write_report as write_ehrqa
from clinicflow.evals.medagentbench.report import build_report as medagentbench_report
from clinicflow.evals.medagentbench.report import write_report as write_medagentbench
from clinicflow.evals.medagentbench.tasks import TASK_TYPE_NAMES

__all__ = ["write_sample_reports"]


def _ehrqa(out: Path, rng: random.Random) -> None:
    questions, results = [], []
    for i in range(60):
        category = CATEGORIES[i % len(CATEGORIES)]
        question = Question(
            id=f"q{i}",
            patient_id=f"p{i % 6}",
            category=category,
            qtype=f"{category}_v1",
            form="yes_no",
            kind="yes_no",
            text="?",
            answer="yes",
            answer_text="yes",
            reference_date="2025-01-01",
        )
        questions.append(question)
        for mode in ("full", "agentic"):
            results.append(
                {
                    "question_id": question.id,
                    "mode": mode,
                    "category": category,
                    "qtype": question.qtype,
                    "correct": rng.random() < (0.55 if mode == "full" else 0.7),
                    "prompt_tokens": rng.randint(800, 9000) if mode == "full" else rng.randint(300, 2500),
                    "completion_tokens": rng.randint(10, 80),
                    "model_calls": 1 if mode == "full" else rng.randint(2, 5),
                    "tool_calls": 0 if mode == "full" else rng.randint(1, 4),
                    "latency_s": rng.uniform(0.5, 4.0),
                    "status": "answered",
                }
            )
    manifest = {"model": "gemma-3-270m (sample)", "seed": 7, "context_tokens": 8192}
    write_ehrqa(ehrqa_report(results, questions, manifest=manifest), out)


def _agentclinic(out: Path, rng: random.Random) -> None:
    results = [
        {
            "case_id": f"case-{i}",
            "correct_diagnosis": "Migraine",
            "diagnosis": "Migraine" if (ok := rng.random() < 0.45) else "Tension headache",
            "correct": ok,
            "turns": rng.randint(4, 20),
            "tests_requested": rng.sample(["CBC", "MRI head", "CT head", "BMP"], 2),
            "finished": "diagnosis",
        }
        for i in range(40)
    ]
    manifest = {"protocol": "original", "scenarios": "medqa", "turns": 20, "models": {"doctor": "sample"}}
    write_agentclinic(agentclinic_report(results, manifest=manifest), out)


def _medagentbench(out: Path, rng: random.Random) -> None:
    records = [
        {
            "task_id": f"task{t}_{i}",
            "task_type": t,
            "correct": (ok := rng.random() < 0.5),
            "status": "completed" if ok else "wrong_answer",
        }
        for t in sorted(TASK_TYPE_NAMES)
        for i in range(6)
    ]
    run = {"protocol": "clinicflow", "agent": "tools", "model": "sample", "task_set": "synthetic"}
    write_medagentbench(medagentbench_report(records, run=run), out)


def write_sample_reports(root: Path) -> Path:
    """Write `ehrqa/`, `agentclinic/` and `medagentbench/` run folders under `root`; returns `root`."""
    rng = random.Random(2718)
    _ehrqa(root / "ehrqa", rng)
    _agentclinic(root / "agentclinic", rng)
    _medagentbench(root / "medagentbench", rng)
    return root
