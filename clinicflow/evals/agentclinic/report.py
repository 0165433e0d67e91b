"""AgentClinic report: accuracy with a Wilson 95% interval, turns, tests, per-case verdicts, a plot."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["PUBLISHED", "build_report", "wilson_interval", "write_report"]

PUBLISHED: dict[str, dict[str, float]] = {
    "MedGemma 27B": {"MedQA": 56.2, "MIMIC-IV": 46.0},
    "Gemma 3 27B": {"MedQA": 50.7, "MIMIC-IV": 35.2},
    "DeepSeek R1": {"MedQA": 58.1, "MIMIC-IV": 43.8},
    "Gemini 2.5 Pro": {"MedQA": 58.3, "MIMIC-IV": 48.4},
    "o3": {"MedQA": 65.8, "MIMIC-IV": 50.6},
    "Human physicians": {"MedQA": 54.0},
}
"""Published AgentClinic accuracy (%), MedGemma Technical Report Table 11 and the AgentClinic paper."""


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def build_report(
    results: Sequence[Mapping[str, Any]],
    *,
    manifest: Mapping[str, Any],
    selected: int | None = None,
    failures: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Summarise finished cases (results lines, in report order) into the JSON and Markdown report."""
    ordered = list(results)
    n = len(ordered)
    correct = sum(1 for r in ordered if r["correct"])
    low, high = wilson_interval(correct, n)
    tests = Counter(t for r in ordered for t in r.get("tests_requested", []))
    return {
        "run": dict(manifest),
        "cases_finished": n,
        "cases_selected": selected if selected is not None else n,
        "cases_failed": [dict(f) for f in failures],
        "correct": correct,
        "accuracy": correct / n if n else None,
        "accuracy_ci95": [low, high] if n else None,
        "mean_turns": sum(r["turns"] for r in ordered) / n if n else None,
        "diagnosed": sum(1 for r in ordered if r["finished"] == "diagnosis"),
        "tests_requested_total": sum(tests.values()),
        "tests_requested_mean": sum(tests.values()) / n if n else None,
        "tests_most_requested": tests.most_common(10),
        "images_missing": [r["case_id"] for r in ordered if r.get("image_missing")],
        "cases": [
            {
                key: r.get(key)
                for key in (
                    "case_id",
                    "correct_diagnosis",
                    "diagnosis",
                    "correct",
                    "turns",
                    "tests_requested",
                    "finished",
                    "moderator_reply",
                    "image_missing",
                )
            }
            for r in ordered
        ],
        "published_accuracy": PUBLISHED,
    }


def _cell(value: Any) -> str:
    text = "—" if value is None or value == "" else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def render_markdown(report: Mapping[str, Any], plot_name: str | None) -> str:
    """The report as Markdown."""
    run = report["run"]
    ci = report["accuracy_ci95"]
    lines: list[str | None] = [
        "# AgentClinic evaluation",
        "",
        f"- Scenarios: `{run.get('scenarios')}` ({report['cases_finished']} of {report['cases_selected']} "
        "selected cases finished)",
        "- Models: " + ", ".join(f"{role} `{spec}`" for role, spec in run.get("models", {}).items()),
        f"- Turns allowed: {run.get('turns')}; bias: {run.get('bias') or 'none'}"
        + (f" ({run.get('bias_target')})" if run.get("bias") else ""),
    ]
    if run.get("doctor_tools"):
        lines.append("- Variant beyond the original protocol: the doctor may call tools.")
    lines += [
        "",
        "## Results",
        "",
        f"- Accuracy: **{_pct(report['accuracy'])}** ({report['correct']}/{report['cases_finished']})"
        + (f", 95% CI (Wilson) {_pct(ci[0])} – {_pct(ci[1])}" if ci else ""),
        f"- Mean doctor turns: {report['mean_turns']:.2f}" if report["mean_turns"] is not None else None,
        f"- Diagnosis given in {report['diagnosed']} of {report['cases_finished']} cases",
        f"- Tests requested: {report['tests_requested_total']} in total"
        + (
            f", {report['tests_requested_mean']:.2f} per case"
            if report["tests_requested_mean"] is not None
            else ""
        ),
    ]
    if report["tests_most_requested"]:
        lines.append(
            "- Most requested: " + ", ".join(f"{_cell(t)} ({c})" for t, c in report["tests_most_requested"])
        )
    if report["images_missing"]:
        lines.append(f"- Image not available offline for: {', '.join(report['images_missing'])}")
    if report["cases_failed"]:
        lines.append(
            f"- {len(report['cases_failed'])} case(s) failed and are not counted; rerun the same command "
            "to retry them: "
            + "; ".join(f"{f['case_id']}: {_cell(f['error'])}" for f in report["cases_failed"])
        )
    if plot_name:
        lines += ["", f"![accuracy and turns]({plot_name})"]
    elif report.get("plot_error"):
        lines += ["", f"(plot not written: {_cell(report['plot_error'])})"]
    lines += [
        "",
        "## Per case",
        "",
        "| case | correct diagnosis | doctor's diagnosis | verdict | turns | tests |",
        "|---|---|---|---|---|---|",
    ]
    for case in report["cases"]:
        verdict = "correct" if case["correct"] else "incorrect"
        if case["finished"] != "diagnosis":
            verdict += " (no diagnosis)"
        lines.append(
            f"| {_cell(case['case_id'])} | {_cell(case['correct_diagnosis'])} | {_cell(case['diagnosis'])} | "
            f"{verdict} | {case['turns']} | {_cell(', '.join(case['tests_requested'] or []))} |"
        )
    lines += ["", "## Published accuracy (%)", "", "| model | MedQA | MIMIC-IV |", "|---|---|---|"]
    for model, scores in report["published_accuracy"].items():
        lines.append(f"| {model} | {scores.get('MedQA', '—')} | {scores.get('MIMIC-IV', '—')} |")
    lines.append("")
    return "\n".join(line for line in lines if line is not None)


def _plot(report: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = ["this run", *report["published_accuracy"]]
    values = [100 * (report["accuracy"] or 0.0)] + [
        s.get("MedQA", 0.0) for s in report["published_accuracy"].values()
    ]
    colors = ["tab:blue"] + ["tab:gray"] * (len(names) - 1)
    left.bar(names, values, color=colors)
    if report["accuracy_ci95"]:
        low, high = (100 * v for v in report["accuracy_ci95"])
        left.errorbar(
            [0],
            [values[0]],
            yerr=[[max(0.0, values[0] - low)], [max(0.0, high - values[0])]],
            fmt="none",
            color="black",
            capsize=6,
        )
    left.set_ylabel("accuracy (%)")
    left.set_ylim(0, 100)
    left.set_title("Accuracy (95% Wilson CI) vs published MedQA")
    left.set_xticks(range(len(names)), names, rotation=30, ha="right")
    turns_ok = [c["turns"] for c in report["cases"] if c["correct"]]
    turns_bad = [c["turns"] for c in report["cases"] if not c["correct"]]
    top = max([c["turns"] for c in report["cases"]] + [int(report["run"].get("turns") or 1)])
    bins = [x - 0.5 for x in range(1, top + 2)]
    right.hist(
        [turns_ok, turns_bad],
        bins=bins,
        stacked=True,
        label=["correct", "incorrect"],
        color=["tab:green", "tab:red"],
    )
    right.set_xlabel("doctor turns")
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_ylabel("cases")
    right.set_title("Turns per case")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.json, report.md and report.png into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        "plot": out_dir / "report.png",
    }
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_name: str | None = paths["plot"].name
    try:
        _plot(report, paths["plot"])
    except (ValueError, RuntimeError, OSError) as exc:
        plot_name = None
        paths.pop("plot")
        report = {**report, "plot_error": f"{type(exc).__name__}: {exc}"}
    paths["markdown"].write_text(render_markdown(report, plot_name), encoding="utf-8")
    return paths
