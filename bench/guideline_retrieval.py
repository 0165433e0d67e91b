"""Guideline retrieval benchmark: recall@5 and MRR@10 for BM25 only, dense only and hybrid (RRF), in one run.

Indexes the shipped guideline corpus into a temporary SQLite file, answers every question of
bench/data/guideline_questions.jsonl with each retriever, and writes bench/results/guideline_retrieval.json.
A hit is a passage from the gold document whose section path is the gold section (or below it).
Questions carry a dev/test split: fusion settings may only be chosen on dev; test is the reported figure.

    python bench/guideline_retrieval.py [--questions PATH] [--out PATH] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine  # bench/machine.py, beside this script

from clinicflow.tools.guidelines import SHIPPED_CORPUS, GuidelineIndex, GuidelineSearcher, Passage
from clinicflow.tools.guidelines.search import Mode

ROOT = Path(__file__).resolve().parent
MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid")
RECALL_AT = 5
MRR_AT = 10


def is_hit(passage: Passage, doc: str, section: str) -> bool:
    s = passage.chunk.section
    return passage.chunk.doc_id == doc and (s == section or s.startswith(section + " > "))


def evaluate(searcher: GuidelineSearcher, questions: list[dict[str, Any]], mode: Mode) -> dict[str, Any]:
    """Per-question first-hit rank (None when not in the top MRR_AT) and latency."""
    ranks: list[int | None] = []
    latencies: list[float] = []
    for q in questions:
        t0 = time.perf_counter()
        passages = searcher.search(q["question"], MRR_AT, mode=mode)
        latencies.append(time.perf_counter() - t0)
        rank = next((i for i, p in enumerate(passages, start=1) if is_hit(p, q["doc"], q["section"])), None)
        ranks.append(rank)
    return {"ranks": ranks, "latencies": latencies}


def summarize(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    return {
        f"recall@{RECALL_AT}": round(sum(1 for r in ranks if r is not None and r <= RECALL_AT) / n, 4),
        f"mrr@{MRR_AT}": round(sum(1.0 / r for r in ranks if r is not None) / n, 4),
        "n": len(ranks),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=ROOT / "data" / "guideline_questions.jsonl")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "guideline_retrieval.json")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    questions = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        index = GuidelineIndex(Path(tmp) / "guidelines.sqlite")
        t0 = time.perf_counter()
        report = index.index_directory(SHIPPED_CORPUS)
        index_s = time.perf_counter() - t0
        if report.skipped:
            print(report.summary(), file=sys.stderr)
        searcher = GuidelineSearcher(index)
        searcher.search("warm-up", 1)
        results = {mode: evaluate(searcher, questions, mode) for mode in MODES}

    splits = {"test": [], "dev": [], "all": list(range(len(questions)))}
    for i, q in enumerate(questions):
        splits.setdefault(q.get("split", "test"), []).append(i)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for split, idx in splits.items():
        table[split] = {m: summarize([results[m]["ranks"][i] for i in idx]) for m in MODES}

    print(
        f"guideline retrieval: {len(questions)} questions, {report.total_documents} documents, "
        f"{report.total_chunks} chunks (indexed in {index_s:.1f} s)"
    )
    print(f"{'split':<6} {'n':>4}  " + "  ".join(f"{m + ' R@5':>11} {m + ' MRR':>11}" for m in MODES))
    for split, row in table.items():
        n = row["hybrid"]["n"]
        cells = "  ".join(
            f"{row[m][f'recall@{RECALL_AT}']:>11.3f} {row[m][f'mrr@{MRR_AT}']:>11.3f}" for m in MODES
        )
        print(f"{split:<6} {n:>4}  {cells}")
    latency = {m: round(statistics.median(results[m]["latencies"]) * 1000, 2) for m in MODES}
    print("median query latency (ms): " + ", ".join(f"{m} {v}" for m, v in latency.items()))
    test = table["test"]
    key = f"recall@{RECALL_AT}"
    ok = test["hybrid"][key] >= 0.9 and test["hybrid"][key] > max(test["bm25"][key], test["dense"][key])
    print(
        "acceptance (test hybrid recall@5 >= 0.9 and above both single retrievers): "
        + ("PASS" if ok else "FAIL")
    )

    misses = {
        m: [
            {"id": q["id"], "question": q["question"], "gold": f"{q['doc']} § {q['section']}", "rank": r}
            for q, r in zip(questions, results[m]["ranks"], strict=True)
            if r is None or r > RECALL_AT
        ]
        for m in MODES
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "guideline_retrieval",
                "machine": machine(packages=("torch",)),
                "corpus": {"documents": report.total_documents, "chunks": report.total_chunks},
                "index_seconds": round(index_s, 2),
                "settings": {
                    "rrf_k": searcher.rrf_k,
                    "weights_bm25_dense": list(searcher.weights),
                    "bm25_columns_title_section_text": list(searcher.bm25_columns),
                    "candidates": searcher.candidates,
                },
                "metrics": table,
                "median_latency_ms": latency,
                "acceptance_pass": ok,
                "misses_at_5": misses,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
