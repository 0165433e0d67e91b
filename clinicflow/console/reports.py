"""Eval reports: the harness reports found in a runs folder (`console_reports_dir`, or `clinicflow serve
--reports DIR`): EHRQA accuracy per category and mode, AgentClinic accuracy with its Wilson interval,
MedAgentBench success by task type, each with the plots its harness wrote beside report.json.

A run folder is any folder, down to two levels below the runs folder, holding a `report.json` that one
of the three harnesses wrote (`clinicflow.evals.*.report.write_report`); which one is read from its keys.
The console reads that JSON; from the harness it takes only the category titles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse

from clinicflow.api.services import services
from clinicflow.console.session import visitor
from clinicflow.console.web import ConsoleRoute, page
from clinicflow.evals.ehrqa.questions import CATEGORY_TITLES

__all__ = ["PLOTS", "RunReport", "find_reports", "router"]

router = APIRouter(route_class=ConsoleRoute)
PLOTS = {
    "ehrqa": ("accuracy.png", "tokens.png"),
    "agentclinic": ("report.png",),
    "medagentbench": ("success_by_type.png",),
}
KIND_TITLES = {"ehrqa": "EHRQA", "agentclinic": "AgentClinic", "medagentbench": "MedAgentBench"}
_MAX_DEPTH = 2
_MAX_REPORT_BYTES = 20_000_000


@dataclass
class RunReport:
    """One run folder's report: its name (path below the runs folder), harness, and the plots present."""

    name: str
    folder: Path
    kind: str
    report: dict[str, Any]

    @property
    def title(self) -> str:
        return f"{KIND_TITLES[self.kind]}: {self.name}"

    @property
    def plots(self) -> list[str]:
        return [p for p in PLOTS[self.kind] if (self.folder / p).is_file()]


def report_kind(report: dict[str, Any]) -> str | None:
    """Which harness wrote a report.json, from its keys."""
    if isinstance(report.get("modes"), dict) and isinstance(report.get("questions"), dict):
        return "ehrqa"
    if "accuracy_ci95" in report and "cases_finished" in report:
        return "agentclinic"
    if isinstance(report.get("by_type"), dict) and isinstance(report.get("overall"), dict):
        return "medagentbench"
    return None


def _load(root: Path, path: Path) -> RunReport | None:
    try:
        if path.stat().st_size > _MAX_REPORT_BYTES:
            return None
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = report_kind(report) if isinstance(report, dict) else None
    if kind is None:
        return None
    name = path.parent.relative_to(root).as_posix()
    return RunReport(name=name, folder=path.parent, kind=kind, report=report)


def find_reports(root: Path | None) -> list[RunReport]:
    """The harness reports in the runs folder, by name."""
    if root is None or not root.is_dir():
        return []
    found = []
    for depth in range(_MAX_DEPTH + 1):
        for path in sorted(root.glob("/".join(["*"] * depth + ["report.json"]))):
            if path.is_file() and (loaded := _load(root, path)) is not None:
                found.append(loaded)
    return sorted(found, key=lambda r: r.name)


def _root(request: Request) -> Path | None:
    folder = services(request).settings.console_reports_dir
    return folder.resolve() if folder is not None else None


def _named(request: Request, name: str) -> RunReport:
    for report in find_reports(_root(request)):
        if report.name == name:
            return report
    raise HTTPException(404, f"no report {name!r} in the runs folder")


def ehrqa_table(report: dict[str, Any]) -> dict[str, Any]:
    """EHRQA accuracy per category (rows) and mode (columns), with the headline per mode."""
    modes: dict[str, Any] = report.get("modes") or {}
    by_category: dict[str, int] = (report.get("questions") or {}).get("by_category") or {}
    rows = []
    for category, questions in by_category.items():  # the harness's category order
        cells = [(modes[m].get("categories") or {}).get(category) for m in modes]
        title = CATEGORY_TITLES.get(category, category.replace("_", " ").capitalize())
        rows.append({"title": title, "questions": questions, "cells": cells})
    return {"modes": list(modes), "summaries": list(modes.values()), "rows": rows}


Name = Annotated[
    str, Query(min_length=1, max_length=400, description="The run folder below the runs folder.")
]


@router.get("/reports")
async def report_list(request: Request) -> Response:
    who = await visitor(request)
    root = _root(request)
    return page(request, "reports.jinja", who, nav="reports", root=root, reports=find_reports(root))


@router.get("/reports/view")
async def report_page(request: Request, run: Name) -> Response:
    who = await visitor(request)
    found = _named(request, run)
    table = ehrqa_table(found.report) if found.kind == "ehrqa" else None
    return page(request, "report.jinja", who, nav="reports", found=found, r=found.report, table=table)


@router.get("/reports/plot")
async def report_plot(
    request: Request, run: Name, file: Annotated[str, Query(pattern=r"^[a-z_]+\.png$")]
) -> Response:
    """One of the plots the harness wrote (only the names it writes, only inside a found run folder)."""
    await visitor(request)
    found = _named(request, run)
    if file not in found.plots:
        raise HTTPException(404, f"no plot {file} in {run}")
    return FileResponse(found.folder / file, media_type="image/png", headers={"Cache-Control": "no-cache"})
