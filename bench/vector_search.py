"""Query latency of the embedded vector store: 10,000 MedSigLIP-sized (1152-d) vectors, exact top-10.

Builds the store on disk (memory-mapped float32 matrix + SQLite metadata), then times `search`
unfiltered and patient-filtered (100 patients), against brute force in the same run: a pure
Python loop (dot products and a full sort) and a per-row numpy loop. Prints p50/p99 and the ratios,
checks the top-10 ids agree with brute force, and writes bench/results/vector_search.json.

    python bench/vector_search.py [--n 10000] [--dim 1152] [--queries 200] [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine  # bench/machine.py, beside this script

from clinicflow.tools.images import EmbeddedVectorStore

ROOT = Path(__file__).resolve().parent
TARGET_MS = 50.0
K = 10


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(fn: Callable[[np.ndarray], list[str]], queries: np.ndarray) -> tuple[list[float], list[list[str]]]:
    times, results = [], []
    for q in queries:
        started = time.perf_counter()
        results.append(fn(q))
        times.append((time.perf_counter() - started) * 1000)
    return times, results


def summary(name: str, times: list[float]) -> dict[str, Any]:
    return {
        "name": name,
        "queries": len(times),
        "p50_ms": round(statistics.median(times), 3),
        "p99_ms": round(percentile(times, 99), 3),
        "mean_ms": round(statistics.fmean(times), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=1152)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--python-queries", type=int, default=5, help="queries for the pure-Python baseline (0: skip it)"
    )
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "vector_search.json")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids = [f"img{i}" for i in range(args.n)]
    meta = [{"patient_id": f"p{i % 100}", "path": f"/images/{i}.png"} for i in range(args.n)]

    with tempfile.TemporaryDirectory(prefix="clinicflow-vs-") as tmp:
        started = time.perf_counter()
        store = EmbeddedVectorStore(Path(tmp) / "store", dtype=args.dtype)
        for i in range(0, args.n, 1000):
            store.add(ids[i : i + 1000], vectors[i : i + 1000], meta[i : i + 1000])
        store.persist()
        build_s = time.perf_counter() - started
        store.close()
        store = EmbeddedVectorStore(Path(tmp) / "store")
        store.search(queries[0], K)

        def embedded(q: np.ndarray) -> list[str]:
            return [h.id for h in store.search(q, K)]

        def embedded_filtered(q: np.ndarray) -> list[str]:
            return [h.id for h in store.search(q, K, filter={"patient_id": "p7"})]

        rows_py = vectors.tolist() if args.python_queries > 0 else []

        def python_brute(q: np.ndarray) -> list[str]:
            ql = q.tolist()
            scores = [(sum(a * b for a, b in zip(row, ql, strict=True)), i) for i, row in enumerate(rows_py)]
            scores.sort(key=lambda s: (-s[0], s[1]))
            return [ids[i] for _, i in scores[:K]]

        def numpy_loop(q: np.ndarray) -> list[str]:
            scores = [(float(np.dot(row, q)), i) for i, row in enumerate(vectors)]
            scores.sort(key=lambda s: (-s[0], s[1]))
            return [ids[i] for _, i in scores[:K]]

        t_emb, r_emb = timed(embedded, queries)
        t_filt, r_filt = timed(embedded_filtered, queries)
        t_np, r_np = timed(numpy_loop, queries[: max(1, args.queries // 10)])
        t_py, r_py = timed(python_brute, queries[: args.python_queries]) if rows_py else ([], [])
        store.close()

    exact = all(a == b for a, b in zip(r_emb, r_np, strict=False)) and all(
        a == b for a, b in zip(r_emb, r_py, strict=False)
    )
    p7 = np.arange(7, args.n, 100)
    filtered_exact = all(
        res == [ids[p7[j]] for j in np.argsort(-(vectors[p7] @ q), kind="stable")[:K]]
        for q, res in zip(queries, r_filt, strict=True)
    )
    rows = [
        summary("embedded store, exact top-10", t_emb),
        summary("embedded store, patient filter (1 of 100)", t_filt),
        summary("baseline: per-row numpy loop + sort", t_np),
    ]
    if t_py:
        rows.append(summary("baseline: pure Python brute force", t_py))
    emb_p50 = rows[0]["p50_ms"]
    print(f"{args.n} vectors x {args.dim} ({args.dtype}), k={K}, built in {build_s:.2f} s")
    for r in rows:
        slower = (
            f"  {r['p50_ms'] / emb_p50:,.1f}x the store's p50" if r["name"].startswith("baseline") else ""
        )
        print(f"  {r['name']:<44} p50 {r['p50_ms']:9.2f} ms  p99 {r['p99_ms']:9.2f} ms{slower}")
    ok = rows[0]["p99_ms"] < TARGET_MS if args.n <= 10_000 else None
    print(f"  top-10 identical to brute force: {exact}; filtered exact: {filtered_exact}")
    if ok is not None:
        print(f"  target p99 < {TARGET_MS:.0f} ms at 10,000 vectors: {'met' if ok else 'NOT met'}")
    result = {
        "benchmark": "vector_search",
        "machine": machine(packages=("numpy",)),
        "n": args.n,
        "dim": args.dim,
        "dtype": args.dtype,
        "k": K,
        "build_seconds": round(build_s, 3),
        "rows": rows,
        "speedup_p50_vs_python": round(rows[3]["p50_ms"] / emb_p50, 1) if t_py else None,
        "speedup_p50_vs_numpy_loop": round(rows[2]["p50_ms"] / emb_p50, 1),
        "identical_to_brute_force": exact and filtered_exact,
        "target_p99_ms": TARGET_MS,
        "target_met": ok,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if ok is not False and exact and filtered_exact else 1


if __name__ == "__main__":
    sys.exit(main())
