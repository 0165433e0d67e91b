"""MedAgentBench report: success rate overall, for query and action tasks and per task type, each with a
Wilson 95% interval, the invalid-action rate, a plot, as Markdown and JSON.

The overall rate is correct tasks over all tasks run, as the benchmark counts it. Every report states
its protocol, agent and model and how its setup differs from the published evaluation; the published
figures are printed beside a run's only under the `original` protocol.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clinicflow.evals.medagentbench.tasks import ACTION_TYPES, QUERY_TYPES, TASK_TYPE_NAMES
from clinicflow.evals.stats import wilson_interval

__all__ = [
    "PUBLISHED",
    "build_report",
    "differences_from_published",
    "render_markdown",
    "wilson_interval",
    "write_report",
]

PUBLISHED: dict[str, float] = {
    "Claude 3.5 Sonnet v2": 69.7,
    "GPT-4o": 64.0,
    "DeepSeek-V3": 62.7,
    "Gemini 1.5 Pro": 62.0,
    "GPT-4o-mini": 56.3,
    "Llama 3.3 70B": 46.3,
    "Gemma 2 27B": 19.3,
}
"""Published MedAgentBench v2 overall success rates (%), on the benchmark's own 300 tasks and server."""
PUBLISHED_MAX_ROUNDS = 8
INVALID_STATUSES = frozenset({"invalid_action", "echo"})


def differences_from_published(run: Mapping[str, Any]) -> list[str]:
    """How this run's setup differs from the published evaluation, one sentence each."""
    out: list[str] = []
    protocol = run.get("protocol", "original")
    if protocol != "original":
        out.append(
            f"protocol `{protocol}`: clinicflow's parsing and scoring rules (docs/CONTRACTS.md), not the "
            "published evaluation's; its rates are not comparable with the published ones"
        )
    agent = run.get("agent")
    if agent == "tools":
        out.append(
            "agent: clinicflow's tool-calling graph, writing to the server under auto-approval, "
            "not a model speaking the text protocol"
        )
    elif agent == "oracle":
        out.append("agent: the scripted reference solutions (a check of the harness), not a model")
    if run.get("model"):
        out.append(f"model: {run['model']}; the published rates are of the models they name")
    if run.get("task_set") == "synthetic":
        where = "the embedded FHIR server" if run.get("server") == "embedded" else run.get("fhir_url")
        out.append(
            f"tasks: synthetic tasks of the 10 types on clinicflow's synthetic patients ({where}), "
            "not the benchmark's 300 tasks on its Docker FHIR data"
        )
    else:
        out.append(
            f"tasks: {run.get('tasks', 'given')} on the FHIR server {run.get('fhir_url')}; the published "
            "rates are of the 300 tasks of test_data_v2.json on the benchmark's Docker FHIR data"
        )
    if run.get("tasks_total") and run.get("tasks_total") != run.get("tasks_selected"):
        out.append(f"only {run.get('tasks_selected')} of the file's {run['tasks_total']} tasks")
    if run.get("functions", "built-in") == "built-in":
        out.append("endpoint declarations: clinicflow's built-in ones, not the benchmark's funcs_v1.json")
    if run.get("max_rounds", PUBLISHED_MAX_ROUNDS) != PUBLISHED_MAX_ROUNDS:
        out.append(f"round limit {run['max_rounds']}, not {PUBLISHED_MAX_ROUNDS}")
    if run.get("max_response_chars"):
        out.append(
            f"GET answers cut to {run['max_response_chars']} characters (the benchmark never cuts them)"
        )
    out.append(
        "a reply that repeats the protocol's own text ends the task as an echo; the benchmark would parse "
        "an action at its start"
    )
    out.append("GETs are sent only to URLs under the FHIR base; the benchmark fetches any URL")
    return out


def _rate(records: Sequence[Mapping[str, Any]], key: str = "correct") -> dict[str, Any]:
    n = len(records)
    k = sum(1 for r in records if r[key])
    low, high = wilson_interval(k, n)
    return {"n": n, "k": k, "rate": k / n if n else None, "ci95": [low, high] if n else None}


def build_report(records: Sequence[Mapping[str, Any]], *, run: Mapping[str, Any]) -> dict[str, Any]:
    """Summarise per-task records (`task_type`, `correct`, `status`, ...) into the report dict."""
    rows = [dict(r) for r in records]
    for row in rows:
        row["invalid"] = row.get("status") in INVALID_STATUSES
    by_type = {
        str(t): {"name": TASK_TYPE_NAMES[t], **_rate([r for r in rows if r["task_type"] == t])}
        for t in sorted(TASK_TYPE_NAMES)
        if any(r["task_type"] == t for r in rows)
    }
    original = run.get("protocol", "original") == "original"
    return {
        "run": dict(run),
        "protocol": run.get("protocol", "original"),
        "differences_from_published": differences_from_published(run),
        "overall": _rate(rows),
        "query": _rate([r for r in rows if r["task_type"] in QUERY_TYPES]),
        "action": _rate([r for r in rows if r["task_type"] in ACTION_TYPES]),
        "by_type": by_type,
        "invalid_action": _rate(rows, "invalid"),
        "statuses": dict(Counter(r.get("status", "?") for r in rows)),
        "published_v2_overall": PUBLISHED if original else None,
        "tasks": [
            {
                k: r.get(k)
                for k in ("task_id", "task_type", "correct", "status", "reason", "posts", "rounds", "seconds")
            }
            for r in rows
        ],
    }


def _pct(block: Mapping[str, Any]) -> str:
    if not block.get("n"):
        return "n/a"
    low, high = block["ci95"]
    return f"{100 * block['rate']:.1f}% ({block['k']}/{block['n']}; 95% CI {100 * low:.1f}-{100 * high:.1f})"


def render_markdown(report: Mapping[str, Any], plot_name: str | None = None) -> str:
    """The report as Markdown: summary table, per-type table, failures, published numbers."""
    run = report["run"]
    lines = [
        "# MedAgentBench report",
        "",
        f"- protocol: `{report.get('protocol', 'original')}`",
        f"- agent: `{run.get('agent')}`" + (f", model `{run['model']}`" if run.get("model") else ""),
        f"- tasks: `{run.get('tasks')}`; FHIR server: `{run.get('fhir_url')}`",
        f"- max rounds: {run.get('max_rounds')}; write approval: {run.get('approval_policy')}",
        f"- finished: {run.get('finished')}",
        "",
        "| | success |",
        "|---|---|",
        f"| overall | {_pct(report['overall'])} |",
        f"| query tasks (1, 2, 4, 6, 7) | {_pct(report['query'])} |",
        f"| action tasks (3, 5, 8, 9, 10) | {_pct(report['action'])} |",
        f"| invalid-action rate (echoes included) | {_pct(report['invalid_action'])} |",
        "",
        "| type | task | success |",
        "|---|---|---|",
    ]
    lines += [f"| {t} | {b['name']} | {_pct(b)} |" for t, b in report["by_type"].items()]
    if plot_name:
        lines += ["", f"![success by task type]({plot_name})"]
    failed = [t for t in report["tasks"] if not t["correct"]]
    if failed:
        lines += ["", "## Failed tasks", "", "| task | status | reason |", "|---|---|---|"]
        lines += [
            f"| {t['task_id']} | {t['status']} | {str(t['reason']).replace('|', '/')} |" for t in failed
        ]
    lines += ["", "## Differences from the published evaluation", ""]
    lines += [f"- {d}" for d in report.get("differences_from_published", [])]
    lines += ["", "## Published v2 overall success (benchmark server, 300 tasks)", ""]
    if report.get("published_v2_overall"):
        lines += [f"- {name}: {value}%" for name, value in report["published_v2_overall"].items()]
    else:
        lines.append(
            "Not shown: the published rates were scored under the `original` protocol, not this one."
        )
    return "\n".join(lines) + "\n"


def _plot(report: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["all", "query", "action", *[f"T{t}" for t in report["by_type"]]]
    blocks = [report["overall"], report["query"], report["action"], *report["by_type"].values()]
    rates = [100 * (b["rate"] or 0.0) for b in blocks]
    low = [max(0.0, 100 * ((b["rate"] or 0.0) - (b["ci95"] or [0, 0])[0])) for b in blocks]
    high = [max(0.0, 100 * ((b["ci95"] or [0, 0])[1] - (b["rate"] or 0.0))) for b in blocks]
    colors = ["#4c72b0"] * 3 + ["#8fb0d9"] * (len(blocks) - 3)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(labels, rates, yerr=[low, high], capsize=3, color=colors)
    ax.set_ylim(0, 105)
    ax.set_ylabel("success rate (%), 95% Wilson CI")
    agent, protocol, n = report["run"].get("agent"), report.get("protocol"), report["overall"]["n"]
    ax.set_title(f"MedAgentBench: {agent}, protocol {protocol} ({n} tasks)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: Mapping[str, Any], out_dir: Path | str) -> dict[str, Path]:
    """Write report.json, report.md and success_by_type.png into `out_dir`; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "plot": out / "success_by_type.png"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str))
    _plot(report, paths["plot"])
    paths["markdown"].write_text(render_markdown(report, paths["plot"].name))
    return paths
