"""Side by side: EHRQA harness runs over the same questions (e.g. base 270M against the tuned default).

Each folder is the `--out` of `clinicflow eval ehrqa`; all must hold the same question set (checked by the
digest in run.json). Prints per-category and mean accuracy and writes them, with the machine, to JSON::

    clinicflow eval ehrqa --data COHORT --mode agentic --model gemma-3-270m --out runs/base ...
    clinicflow eval ehrqa --data COHORT --mode agentic --out runs/tuned ...   # same options
    python bench/ehrqa_compare.py runs/base runs/tuned --names base,tuned --json bench/results/x.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine

from clinicflow.evals.ehrqa.scoring import CATEGORIES, summarize


def _results(folder: Path, mode: str) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    return {r["question_id"]: r for r in lines if r.get("mode") == mode}


def _grounding(results: list[dict[str, Any]]) -> dict[str, Any]:
    """How much accuracy rests on evidence: gold recall, and right answers citing a clinical resource."""
    clinical = [
        r for r in results if r["correct"] and any(not c.startswith("Patient/") for c in r["citations"])
    ]
    recall = [r["evidence_recall"] for r in results if r.get("evidence_recall") is not None]
    return {
        "correct_citing_a_clinical_resource": len(clinical),
        "evidence_recall_mean": sum(recall) / len(recall) if recall else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--names", default="base,tuned")
    parser.add_argument("--mode", default="agentic")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = args.names.split(",")
    if len(names) != len(args.folders) or len(names) < 2:
        sys.exit("give two or more run folders and as many --names")
    manifests = [json.loads((folder / "run.json").read_text()) for folder in args.folders]
    digests = {m.get("questions_sha256") for m in manifests}
    if len(digests) != 1:
        sys.exit("the runs hold different question sets; rerun with the same data, seed and options")
    results = [_results(folder, args.mode) for folder in args.folders]
    # Only the questions every run finished, so a run cut short is compared on the same questions.
    common = sorted(set.intersection(*(set(r) for r in results)))
    counts = ", ".join(str(len(r)) for r in results)
    print(f"{len(common)} questions finished by every run ({counts} in all)")
    runs = {
        name: (manifest, {**summarize(done[q] for q in common), **_grounding([done[q] for q in common])})
        for name, manifest, done in zip(names, manifests, results, strict=True)
    }
    print(f"{'category':34} " + " ".join(f"{n:>14}" for n in names))
    for c in CATEGORIES:
        cells = []
        for _, s in runs.values():
            e = s["categories"].get(c)
            cells.append(f"{100 * e['accuracy']:6.1f}% ({e['correct']}/{e['n']})" if e else "-")
        print(f"{c:34} " + " ".join(f"{cell:>14}" for cell in cells))
    means = [s["mean_category_accuracy"] for _, s in runs.values()]
    print(f"{'mean over categories':34} " + " ".join(f"{100 * (m or 0):13.1f}%" for m in means))
    for key in ("correct_citing_a_clinical_resource", "evidence_recall_mean"):
        print(f"{key:34} " + " ".join(f"{s[key] or 0:14.3g}" for _, s in runs.values()))
    if args.json:
        out = {
            "machine": machine(),
            "mode": args.mode,
            "questions_sha256": digests.pop(),
            "questions_compared": len(common),
            "runs": {
                name: {"model": m.get("model"), "max_steps": m.get("max_steps"), **s}
                for name, (m, s) in runs.items()
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
