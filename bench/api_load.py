"""API load benchmark: N concurrent `ehr_qa` runs through the real HTTP server, on SQLite and on PostgreSQL.

Each backend gets a fresh store: the server (uvicorn subprocess) runs the EHR QA graph with a fast scripted
model against the embedded FHIR server holding the demo cohort. N clients each create a run (some retry
the POST with the same Idempotency-Key, as a pipeline would after a timeout) and follow its event stream
to `run.finished`. Checks: no run lost (every run completed, the store holds exactly N), none duplicated
(retries return the same run; one `run.finished` and gap-free event numbers per run; N `run.create` audit
rows). Latency is POST to `run.finished`. The baseline, measured in the same process run, is the same N
graph runs in-process (same model, same FHIR server, no HTTP, no store): the ratio is the service's cost.

    python bench/api_load.py [--runs 100] [--workers 16] [--backends sqlite,postgres] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from machine import machine  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from clinicflow.api.auth import create_api_key  # noqa: E402
from clinicflow.api.scripted import load_scripted_model  # noqa: E402
from clinicflow.client import AsyncClient  # noqa: E402
from clinicflow.fhir import FhirClient  # noqa: E402
from clinicflow.fhir.demo import (  # noqa: E402
    DEMO_PATIENTS,
    DEMO_SEED,
    copy_demo_database,
    demo_patient_ids,
    ensure_demo_cohort,
    ensure_demo_database,
    free_port,
)
from clinicflow.fhir.server import EmbeddedFhirServer  # noqa: E402
from clinicflow.settings import Settings  # noqa: E402
from tests.integration.api.server import ApiServer, ehr_qa_script  # noqa: E402
from tests.integration.postgres import PrivatePostgres, find_postgres_bin  # noqa: E402

QUESTION = "What are the patient's most recent observations?"
RETRY_EVERY = 10


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 / p95 / p99 / max of latencies in seconds, rounded to ms."""
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 3)

    return {
        "p50_s": at(0.50),
        "p95_s": at(0.95),
        "p99_s": at(0.99),
        "max_s": round(ordered[-1], 3),
        "mean_s": round(statistics.fmean(ordered), 3),
    }


async def baseline(fhir_url: str, script: Path, patients: list[str], runs: int) -> dict[str, Any]:
    """The same graph runs in-process: no HTTP, no store, an in-memory checkpointer."""
    from langgraph.checkpoint.memory import InMemorySaver

    from clinicflow.graphs.ehr_qa import build_ehr_qa_graph, run_ehr_qa
    from clinicflow.tools import make_fhir_tools

    model = load_scripted_model(f"scripted:{script}")
    async with FhirClient(fhir_url) as client:
        graph = build_ehr_qa_graph(model, make_fhir_tools(client), checkpointer=InMemorySaver())
        latencies: list[float] = []

        async def one(i: int) -> None:
            t0 = time.perf_counter()
            await client.read("Patient", patients[i % len(patients)])
            result = await run_ehr_qa(graph, QUESTION, patients[i % len(patients)])
            assert result.status == "answered", result.errors
            latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(runs)))
        wall = time.perf_counter() - t0
    return {
        "runs": runs,
        "wall_s": round(wall, 3),
        "throughput_runs_per_s": round(runs / wall, 2),
    } | percentiles(latencies)


async def _events(cf: AsyncClient, run_id: str) -> list[Any]:
    return [e async for e in cf.events(run_id, follow=False)]


async def load(url: str, token: str, patients: list[str], runs: int) -> dict[str, Any]:
    """N concurrent clients: create (some twice, same key), follow events to the end, then verify."""
    latencies: list[float] = []
    run_ids: list[str] = []
    retried_same = 0
    async with AsyncClient(url, token, timeout=120, max_connections=runs * 2) as cf:

        async def one(i: int) -> None:
            nonlocal retried_same
            key = uuid.uuid4().hex
            data = {"question": QUESTION, "patient_id": patients[i % len(patients)]}
            t0 = time.perf_counter()
            run = await cf.create_run("ehr_qa", data, idempotency_key=key)
            if i % RETRY_EVERY == 0:
                again = await cf.create_run("ehr_qa", data, idempotency_key=key)
                retried_same += again["id"] == run["id"]
            async for event in cf.events(run["id"]):
                if event.terminal:
                    assert event.data["status"] == "completed", event.data
            latencies.append(time.perf_counter() - t0)
            run_ids.append(run["id"])

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(runs)))
        wall = time.perf_counter() - t0

        stored = await cf.list_runs(limit=200)
        finals = await asyncio.gather(*(cf.get_run(r) for r in run_ids))
        streams = await asyncio.gather(*(_events(cf, r) for r in run_ids))
        audit = await cf.audit(action="run.create", limit=1000)
    checks = {
        "distinct_runs": len(set(run_ids)),
        "stored_runs": len(stored),
        "completed": sum(f["status"] == "completed" and f["result"]["status"] == "answered" for f in finals),
        "retries_returned_same_run": retried_same,
        "retries": len(range(0, runs, RETRY_EVERY)),
        "one_finish_and_gap_free_events": sum(
            [e.type for e in s].count("run.finished") == 1
            and [e.seq for e in s] == list(range(1, len(s) + 1))
            for s in streams
        ),
        "run_create_audit_rows": len(audit),
    }
    checks["lost"] = runs - checks["completed"]
    checks["duplicated"] = (
        checks["stored_runs"] - checks["distinct_runs"] + (checks["run_create_audit_rows"] - runs)
    )
    ok = (
        checks["distinct_runs"] == checks["stored_runs"] == checks["completed"] == runs
        and checks["retries_returned_same_run"] == checks["retries"]
        and checks["one_finish_and_gap_free_events"] == runs
        and checks["run_create_audit_rows"] == runs
    )
    return (
        {"runs": runs, "wall_s": round(wall, 3), "throughput_runs_per_s": round(runs / wall, 2)}
        | percentiles(latencies)
        | {"checks": checks, "ok": ok}
    )


def _line(name: str, r: dict[str, Any]) -> str:
    speed = f"{r['wall_s']:6.2f} s ({r['throughput_runs_per_s']:5.2f} runs/s)"
    return f"{name:9} {r['runs']} runs in {speed}  p50 {r['p50_s']:.3f} s  p99 {r['p99_s']:.3f} s"


def run_backend(
    name: str,
    database_url: str,
    work: Path,
    fhir_url: str,
    script: Path,
    patients: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    token = create_api_key(
        "bench", ["workflow:*", "write", "patient:*", "audit"], database_url=database_url
    ).token
    env = {
        "CLINICFLOW_DATABASE_URL": database_url,
        "CLINICFLOW_CHECKPOINT_DB": str(work / "checkpoints.sqlite"),
        "CLINICFLOW_FHIR_URL": fhir_url,
        "CLINICFLOW_MODEL": f"scripted:{script}",
        "CLINICFLOW_API_WORKERS": str(args.workers),
    }
    with ApiServer(work, env) as server:
        result = asyncio.run(load(server.url, token, patients, args.runs))
    checks = result["checks"]
    verdict = "OK" if result["ok"] else "CHECKS FAILED"
    print(f"{_line(name, result)}  lost {checks['lost']}  duplicated {checks['duplicated']}  {verdict}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=16, help="CLINICFLOW_API_WORKERS of the server")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "api_load.json")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    cache = Settings().cache_dir  # type: ignore[call-arg]
    cohort = ensure_demo_cohort(cache, DEMO_PATIENTS, DEMO_SEED, progress=False)
    patients = demo_patient_ids(cohort)
    loaded = asyncio.run(ensure_demo_database(cache, DEMO_PATIENTS, DEMO_SEED, progress=False))
    report: dict[str, Any] = {"benchmark": "api_load", "runs": args.runs, "api_workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="clinicflow-bench-") as tmp:
        work = Path(tmp)
        data = copy_demo_database(loaded, work / "fhir")
        script = ehr_qa_script(work / "script.json")
        with EmbeddedFhirServer(data, port=free_port()) as fhir:
            report["baseline_in_process"] = asyncio.run(baseline(fhir.base_url, script, patients, args.runs))
            b = report["baseline_in_process"]
            print(f"{_line('baseline', b)}  (in-process graph, no HTTP, no store)")
            for name in backends:
                folder = work / name
                folder.mkdir()
                if name == "sqlite":
                    report[name] = run_backend(
                        name, f"sqlite:///{folder}/api.sqlite", folder, fhir.base_url, script, patients, args
                    )
                elif name == "postgres":
                    bin_dir = find_postgres_bin()
                    if bin_dir is None:
                        print("postgres  skipped: no PostgreSQL binaries (initdb, pg_ctl)")
                        continue
                    cluster = PrivatePostgres(bin_dir).start()
                    try:
                        report[name] = run_backend(
                            name,
                            cluster.create_database("bench"),
                            folder,
                            fhir.base_url,
                            script,
                            patients,
                            args,
                        )
                    finally:
                        cluster.stop()
                else:
                    raise SystemExit(f"unknown backend {name!r}: use sqlite and/or postgres")
                r = report[name]
                r["ratio_to_baseline"] = {
                    "p50": round(r["p50_s"] / b["p50_s"], 2),
                    "p99": round(r["p99_s"] / b["p99_s"], 2),
                    "throughput": round(r["throughput_runs_per_s"] / b["throughput_runs_per_s"], 2),
                }
                ratio = r["ratio_to_baseline"]
                print(f"{'':9} vs baseline: " + "  ".join(f"{k} x{v}" for k, v in ratio.items()))
    report["machine"] = machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(report[n].get("ok") for n in backends if n in report) else 1


if __name__ == "__main__":
    sys.exit(main())
