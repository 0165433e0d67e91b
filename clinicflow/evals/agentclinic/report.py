"""AgentClinic report: accuracy with a Wilson 95% interval, turns, tests, per-case verdicts, a plot, and
the published accuracies with every way this run's setup differs from the published one."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clinicflow.evals.stats import wilson_interval

__all__ = ["PUBLISHED", "build_report", "differences", "wilson_interval", "write_report"]

PUBLISHED: dict[str, dict[str, float]] = {
    "MedGemma 27B": {"MedQA": 56.2, "MIMIC-IV": 46.0},
    "Gemma 3 27B": {"MedQA": 50.7, "MIMIC-IV": 35.2},
    "DeepSeek R1": {"MedQA": 58.1, "MIMIC-IV": 43.8},
    "Gemini 2.5 Pro": {"MedQA": 58.3, "MIMIC-IV": 48.4},
    "o3": {"MedQA": 65.8, "MIMIC-IV": 50.6},
    "Human physicians": {"MedQA": 54.0},
}
"""Published AgentClinic accuracy (%), MedGemma Technical Report Table 11 and the AgentClinic paper."""

ROLES = ("doctor", "patient", "measurement", "moderator")
ORIGINAL_ROLE_MODEL = "GPT-4 (gpt-4-turbo-preview)"
"""What AgentClinic's code runs in the patient, measurement and moderator roles by default."""
ORIGINAL_TURNS = 20
ORIGINAL_MAX_NEW_TOKENS = 200


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def differences(run: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> list[str]:
    """How this run's setup differs from the published one, one sentence each (the protocol first)."""
    protocol = run.get("protocol")
    models = run.get("models") or {}
    out: list[str] = []
    if protocol == "original":
        echoes = sum(int(r.get("echo_turns") or 0) for r in results)
        out.append(
            "Protocol `original`: AgentClinic's prompts, dialogue histories, action detection and moderator "
            "rule, with one rule added: a doctor reply that repeats its own prompt takes no action "
            f"(echoes in this run: {echoes})."
        )
    else:
        out.append(
            f"Protocol `{protocol}`: the project's variant (reworded prompts, role-filtered histories, "
            "tolerant parsing, greedy decoding), not AgentClinic's rules: not comparable with the "
            "published figures."
        )
    out.append(f"Doctor model: `{models.get('doctor', '?')}`; each published row names its own doctor model.")
    others = ", ".join(f"{role} `{models.get(role, '?')}`" for role in ROLES[1:])
    out.append(
        f"Other roles: {others}; AgentClinic's code runs {ORIGINAL_ROLE_MODEL} in all three by default."
    )
    generation = run.get("generation") or {}
    tokens = generation.get("max_new_tokens")
    if protocol == "original" and tokens not in (None, ORIGINAL_MAX_NEW_TOKENS):
        out.append(f"At most {tokens} new tokens per reply (the original: {ORIGINAL_MAX_NEW_TOKENS}).")
    if generation.get("not_applied_to"):
        out.append(
            f"The temperature ({generation.get('temperature')}) could not be set for the "
            f"{', '.join(generation['not_applied_to'])} model(s); they kept their own."
        )
    if run.get("turns") != ORIGINAL_TURNS:
        out.append(f"{run.get('turns')} doctor turns allowed (AgentClinic's default: {ORIGINAL_TURNS}).")
    biases = [f"{role} {run[f'{role}_bias']}" for role in ("doctor", "patient") if run.get(f"{role}_bias")]
    if biases:
        out.append(f"Bias: {', '.join(biases)}; the published accuracies are without bias.")
    out.append(
        f"{_plural(len(results), 'case')} scored from `{Path(str(run.get('scenarios', '?'))).name}`; "
        "AgentClinic's MedQA set has 107 cases, its NEJM set 15."
    )
    image_cases = [r for r in results if r.get("image_case")]
    if image_cases:
        sent = [r for r in image_cases if r.get("image_turns")]
        reasons = Counter(str(r["image_not_sent"]) for r in image_cases if r.get("image_not_sent"))
        when = "after the doctor asked for it" if run.get("image_request") else "with every doctor prompt"
        text = (
            f"Images: sent {when} in {len(sent)} of {_plural(len(image_cases), 'image case')}, as a "
            "local copy (the original sends the image URL; the model layer fetches nothing)"
        )
        if reasons:
            text += "; not sent: " + "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common())
        out.append(text + ".")
    if run.get("doctor_tools"):
        out.append("The doctor may call tools: a variant beyond AgentClinic.")
    return out


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
        "protocol": manifest.get("protocol"),
        "roles": dict(manifest.get("models") or {}),
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
        "echo_turns": sum(int(r.get("echo_turns") or 0) for r in ordered),
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
                    "echo_turns",
                )
            }
            for r in ordered
        ],
        "published_accuracy": PUBLISHED,
        "differences_from_published": differences(manifest, ordered),
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
        f"- Protocol: `{run.get('protocol')}`",
        "- Models: " + ", ".join(f"{role} `{spec}`" for role, spec in run.get("models", {}).items()),
        f"- Turns allowed: {run.get('turns')}; doctor bias: {run.get('doctor_bias') or 'none'}; "
        f"patient bias: {run.get('patient_bias') or 'none'}",
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
    lines += _case_table(report["cases"]) + _published_section(report)
    return "\n".join(line for line in lines if line is not None)


def _case_table(cases: Sequence[Mapping[str, Any]]) -> list[str | None]:
    lines: list[str | None] = [
        "",
        "## Per case",
        "",
        "| case | correct diagnosis | doctor's diagnosis | verdict | turns | tests |",
        "|---|---|---|---|---|---|",
    ]
    for case in cases:
        verdict = "correct" if case["correct"] else "incorrect"
        if case["finished"] != "diagnosis":
            verdict += " (no diagnosis)"
        lines.append(
            f"| {_cell(case['case_id'])} | {_cell(case['correct_diagnosis'])} | {_cell(case['diagnosis'])} | "
            f"{verdict} | {case['turns']} | {_cell(', '.join(case['tests_requested'] or []))} |"
        )
    return lines


def _published_section(report: Mapping[str, Any]) -> list[str | None]:
    lines: list[str | None] = ["", "## Published accuracy (%)", ""]
    lines += ["This run's setup differs from the published one:", ""]
    lines += [f"- {_cell(text)}" for text in report["differences_from_published"]]
    lines += ["", "| model | MedQA | MIMIC-IV |", "|---|---|---|"]
    for model, scores in report["published_accuracy"].items():
        lines.append(f"| {model} | {scores.get('MedQA', '—')} | {scores.get('MIMIC-IV', '—')} |")
    lines.append("")
    return lines


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
