"""EHRQA report: accuracy per category per mode (headline: the mean over categories), tokens, calls,
latency, evidence recall, the agentic / full-context token ratio; written as JSON, Markdown and plots.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clinicflow.evals.ehrqa.questions import CATEGORIES, CATEGORY_TITLES, Question
from clinicflow.evals.ehrqa.scoring import summarize

__all__ = ["PUBLISHED", "build_report", "render_markdown", "token_ratio", "write_report"]

PUBLISHED: dict[str, float] = {
    "MedGemma 27B": 86.3,
    "Gemma 3 27B": 84.2,
    "MedGemma 27B (RL fine-tuned)": 93.6,
    "Gemini 2.5 Flash": 95.0,
    "Gemini 2.5 Pro": 95.4,
    "o3": 92.5,
}
"""The report's EHRQA accuracies (%), full-context protocol, mean over the ten categories."""

_MODE_TITLES = {"full": "full-context", "agentic": "agentic"}


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _total(r: Mapping[str, Any]) -> int:
    return int(r.get("prompt_tokens") or 0) + int(r.get("completion_tokens") or 0)


def token_ratio(results: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Mean total tokens per question, agentic over full-context, on questions answered in both modes."""
    by_mode: dict[str, dict[str, int]] = {"full": {}, "agentic": {}}
    for r in results:
        if r.get("mode") in by_mode:
            by_mode[str(r["mode"])][str(r["question_id"])] = _total(r)
    paired = sorted(set(by_mode["full"]) & set(by_mode["agentic"]))
    if not paired:
        return None
    full = statistics.fmean(by_mode["full"][q] for q in paired)
    agentic = statistics.fmean(by_mode["agentic"][q] for q in paired)
    return {
        "paired_questions": len(paired),
        "full_tokens_mean": round(full, 1),
        "agentic_tokens_mean": round(agentic, 1),
        "agentic_over_full": round(agentic / full, 4) if full else None,
    }


def _mode_summary(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    summary = summarize(results)
    totals = [_total(r) for r in results]
    recalls = [float(r["evidence_recall"]) for r in results if r.get("evidence_recall") is not None]
    per_qtype: dict[str, dict[str, Any]] = {}
    for r in results:
        entry = per_qtype.setdefault(str(r["qtype"]), {"category": r["category"], "n": 0, "correct": 0})
        entry["n"] += 1
        entry["correct"] += int(bool(r["correct"]))
    for entry in per_qtype.values():
        entry["accuracy"] = entry["correct"] / entry["n"]
    return {
        **summary,
        "prompt_tokens_mean": _mean([float(r.get("prompt_tokens") or 0) for r in results]),
        "completion_tokens_mean": _mean([float(r.get("completion_tokens") or 0) for r in results]),
        "tokens_mean": _mean([float(t) for t in totals]),
        "tokens_median": statistics.median(totals) if totals else None,
        "tokens_estimated": any(r.get("tokens_estimated") for r in results),
        "model_calls_mean": _mean([float(r.get("model_calls") or 0) for r in results]),
        "tool_calls_mean": _mean([float(r.get("tool_calls") or 0) for r in results]),
        "latency_s_mean": _mean([float(r.get("latency_s") or 0) for r in results]),
        "evidence_recall_mean": _mean(recalls),
        "status": dict(Counter(str(r.get("status")) for r in results)),
        "per_qtype": dict(sorted(per_qtype.items())),
        "tokens_per_question": totals,
    }


def build_report(
    results: Sequence[Mapping[str, Any]],
    questions: Sequence[Question],
    *,
    manifest: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    failures: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """The report as a JSON-ready dict."""
    modes = sorted({str(r["mode"]) for r in results}, key=lambda m: (m != "full", m))
    return {
        "run": dict(manifest or {}),
        "questions": {
            "total": len(questions),
            "patients": len({q.patient_id for q in questions}),
            "by_category": {c: n for c in CATEGORIES if (n := sum(q.category == c for q in questions))},
            "by_split": dict(Counter(q.split for q in questions)),
            "by_form": dict(Counter(q.form for q in questions)),
            "question_types": len({q.qtype for q in questions}),
        },
        "modes": {m: _mode_summary([r for r in results if r["mode"] == m]) for m in modes},
        "token_ratio": token_ratio(results),
        "full_context": dict(context or {}),
        "failures": list(failures),
        "published": PUBLISHED,
    }


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _num(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def render_markdown(report: Mapping[str, Any], plots: Mapping[str, str] | None = None) -> str:
    """The report as Markdown."""
    lines = [*_overview(report), *_notes(report), *_per_category(report), *_per_qtype(report)]
    if report.get("failures"):
        lines += ["", f"## Failures ({len(report['failures'])}, retried on the next run)", ""]
        lines += [f"- {f['question_id']} [{f['mode']}]: {f['error']}" for f in report["failures"][:50]]
    lines += [
        "",
        "## Published (MedGemma technical report, full context)",
        "",
        "| model | accuracy (%) |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value} |" for name, value in report["published"].items()]
    for title, name in (plots or {}).items():
        lines += ["", f"![{title}]({name})"]
    lines.append("")
    return "\n".join(lines)


def _overview(report: Mapping[str, Any]) -> list[str]:
    """The question set, the run, and one table row per mode."""
    q = report["questions"]
    run = report["run"]
    lines = [
        "# EHRQA report",
        "",
        f"{q['total']} questions about {q['patients']} patients, {len(q['by_category'])} categories, "
        f"{q['question_types']} question types (forms: "
        + ", ".join(f"{k} {v}" for k, v in sorted(q["by_form"].items()))
        + "; splits: "
        + ", ".join(f"{k} {v}" for k, v in sorted(q["by_split"].items()))
        + ").",
        f"Model: {run.get('model') or '—'}; seed {run.get('seed', '—')}; "
        f"full-context limit {run.get('context_tokens', '—')} tokens.",
        "",
        "| mode | accuracy (mean over categories) | overall | answered | tokens / question | model calls "
        "| tool calls | latency (s) | evidence recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, m in report["modes"].items():
        lines.append(
            f"| {_MODE_TITLES.get(mode, mode)} | {_pct(m['mean_category_accuracy'])}% | "
            f"{_pct(m['overall_accuracy'])}% | {m['n']} | {_num(m['tokens_mean'])}"
            f"{' (estimated)' if m['tokens_estimated'] else ''} | {_num(m['model_calls_mean'], 1)} | "
            f"{_num(m['tool_calls_mean'], 1)} | {_num(m['latency_s_mean'], 2)} | "
            f"{_pct(m['evidence_recall_mean'])}{'%' if m['evidence_recall_mean'] is not None else ''} |"
        )
    return lines


def _notes(report: Mapping[str, Any]) -> list[str]:
    """The token ratio between modes, and how many records did not fit the full context."""
    lines: list[str] = []
    ratio = report.get("token_ratio")
    if ratio:
        lines += [
            "",
            f"**Token ratio, agentic / full-context: {ratio['agentic_over_full']:.3f}** "
            f"({_num(ratio['agentic_tokens_mean'])} vs {_num(ratio['full_tokens_mean'])} tokens per "
            "question, "
            f"{ratio['paired_questions']} questions answered in both modes).",
        ]
    ctx = report.get("full_context") or {}
    if ctx:
        lines += [
            "",
            f"Full context: {ctx.get('did_not_fit', 0)} of {ctx.get('records', 0)} records did not fit in "
            f"{ctx.get('context_tokens', '—')} tokens (their oldest lines were cut).",
        ]
    return lines


def _cells(modes: Mapping[str, Any], table: str, key: str) -> str:
    """One row's accuracy cells, a mode each: 'accuracy (n)', or '—' where the mode has none."""
    cells = []
    for m in modes.values():
        entry = m[table].get(key)
        cells.append(f"{_pct(entry['accuracy'])} ({entry['n']})" if entry else "—")
    return " | ".join(cells)


def _per_category(report: Mapping[str, Any]) -> list[str]:
    q = report["questions"]
    modes: dict[str, Any] = report["modes"]
    lines = ["", "## Accuracy per category (%)", ""]
    header = "| category | questions | " + " | ".join(_MODE_TITLES.get(m, m) for m in modes) + " |"
    lines += [header, "|---|---|" + "---|" * len(modes)]
    for c in CATEGORIES:
        if c in q["by_category"]:
            lines.append(
                f"| {CATEGORY_TITLES[c]} | {q['by_category'][c]} | " + _cells(modes, "categories", c) + " |"
            )
    return lines


def _per_qtype(report: Mapping[str, Any]) -> list[str]:
    modes: dict[str, Any] = report["modes"]
    lines = ["", "## Accuracy per question type (%)", ""]
    qtypes = sorted({t for m in modes.values() for t in m["per_qtype"]})
    lines += [
        "| type | " + " | ".join(_MODE_TITLES.get(m, m) for m in modes) + " |",
        "|---|" + "---|" * len(modes),
    ]
    lines += [f"| {t} | " + _cells(modes, "per_qtype", t) + " |" for t in qtypes]
    return lines


def _plots(report: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes: dict[str, Any] = report["modes"]
    if not modes:
        return {}
    categories = [c for c in CATEGORIES if c in report["questions"]["by_category"]]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(modes)
    for i, (mode, m) in enumerate(modes.items()):
        values = [100 * m["categories"][c]["accuracy"] if c in m["categories"] else 0.0 for c in categories]
        xs = [x + (i - (len(modes) - 1) / 2) * width for x in range(len(categories))]
        ax.bar(xs, values, width, label=_MODE_TITLES.get(mode, mode))
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels([CATEGORY_TITLES[c] for c in categories], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("EHRQA accuracy per category")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    data = [m["tokens_per_question"] or [0] for m in modes.values()]
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(modes) + 1))
    ax.set_xticklabels([_MODE_TITLES.get(m, m) for m in modes])
    if all(min(d) > 0 for d in data):
        ax.set_yscale("log")
    ax.set_ylabel("prompt + completion tokens per question")
    ratio = report.get("token_ratio")
    title = "Tokens per question"
    if ratio and ratio.get("agentic_over_full") is not None:
        title += f" (agentic / full = {ratio['agentic_over_full']:.2f})"
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out_dir / "tokens.png", dpi=100)
    plt.close(fig)
    return {"Accuracy per category": "accuracy.png", "Tokens per question": "tokens.png"}


def write_report(report: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.json, report.md, accuracy.png and tokens.png into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md"}
    paths["json"].write_text(
        json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    plots = _plots(report, out_dir)
    paths.update({name.split(".")[0]: out_dir / name for name in plots.values()})
    paths["markdown"].write_text(render_markdown(report, plots), encoding="utf-8")
    return paths
