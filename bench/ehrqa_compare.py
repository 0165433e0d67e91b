"""Side by side: two EHRQA harness runs over the same questions (e.g. base 270M against the tuned default).

Each folder is the `--out` of `clinicflow eval ehrqa`; both must hold the same question set (checked by the
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


def _run(folder: Path, mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
    manifest = json.loads((folder / "run.json").read_text())
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    return manifest, summarize(r for r in lines if r.get("mode") == mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs=2, type=Path)
    parser.add_argument("--names", default="base,tuned")
    parser.add_argument("--mode", default="agentic")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = args.names.split(",")
    runs = {name: _run(folder, args.mode) for name, folder in zip(names, args.folders, strict=True)}
    digests = {m.get("questions_sha256") for m, _ in runs.values()}
    if len(digests) != 1:
        sys.exit("the two runs hold different question sets; rerun with the same data, seed and options")
    print(f"{'category':34} " + " ".join(f"{n:>14}" for n in names))
    for c in CATEGORIES:
        cells = []
        for _, s in runs.values():
            e = s["categories"].get(c)
            cells.append(f"{100 * e['accuracy']:6.1f}% ({e['correct']}/{e['n']})" if e else "-")
        print(f"{c:34} " + " ".join(f"{cell:>14}" for cell in cells))
    means = [s["mean_category_accuracy"] for _, s in runs.values()]
    print(f"{'mean over categories':34} " + " ".join(f"{100 * (m or 0):13.1f}%" for m in means))
    if args.json:
        out = {
            "machine": machine(),
            "mode": args.mode,
            "questions_sha256": digests.pop(),
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
