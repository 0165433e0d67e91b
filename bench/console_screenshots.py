"""Screenshots of every console page at 1280 and 390 px wide, for docs/console/ (PNG, palette-reduced).

Starts what the browser tests start: the embedded FHIR server over a copy of the demo cohort, a real
`clinicflow serve` (uvicorn) with the scripted model and a runs folder of sample eval reports; makes an
answered question and two writes waiting for approval; logs in with an API key in headless Chromium
(Debian's, driven by Playwright) and saves each page.

    python bench/console_screenshots.py [--out docs/console] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from PIL import Image  # noqa: E402

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
from tests.integration.api.conftest import create_group, issue_keys, server_env  # noqa: E402
from tests.integration.api.server import ApiServer, ehr_qa_script  # noqa: E402
from tests.integration.console.conftest import ConsoleEnv, chromium_path  # noqa: E402
from tests.integration.console.sample_reports import write_sample_reports  # noqa: E402

WIDTHS = {1280: 900, 390: 844}
MAX_HEIGHT = 2400
COLOURS = 96


def save_small(png: bytes, path: Path) -> None:
    """The screenshot cut to MAX_HEIGHT and reduced to a palette of COLOURS (text stays sharp)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.height > MAX_HEIGHT:
        image = image.crop((0, 0, image.width, MAX_HEIGHT))
    image.quantize(COLOURS, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def prepare(env: ConsoleEnv) -> dict[str, str]:
    """The runs the pages show; returns the paths to capture, by name."""
    answered = env.answered("admin", env.patient_a)
    env.pending_task("writer_a", env.patient_a)
    env.pending_task("admin", env.patient_b)
    cited = answered["result"]["citations"][0]
    return {
        "login": "/console/login",
        "queue": "/console/queue",
        "runs": "/console/runs",
        "run": f"/console/runs/{answered['id']}",
        "citation": f"/console/fhir/{cited}",
        "ask": "/console/ask",
        "reports": "/console/reports",
        "report-ehrqa": "/console/reports/view?run=ehrqa",
        "report-agentclinic": "/console/reports/view?run=agentclinic",
        "report-medagentbench": "/console/reports/view?run=medagentbench",
    }


def capture(env: ConsoleEnv, pages: dict[str, str], out: Path, binary: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        for width, height in WIDTHS.items():
            context = browser.new_context(base_url=env.url, viewport={"width": width, "height": height})
            page = context.new_page()
            page.goto(pages["login"])
            save_small(page.screenshot(full_page=True), out / f"login-{width}.png")
            written.append(out / f"login-{width}.png")
            page.get_by_label("API key or access token").fill(env.tokens["admin"])
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("heading", name="Approval queue").wait_for()
            for name, path in pages.items():
                if name == "login":
                    continue
                page.goto(path)
                page.wait_for_load_state("networkidle")
                target = out / f"{name}-{width}.png"
                save_small(page.screenshot(full_page=True), target)
                written.append(target)
            context.close()
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT.parent / "docs" / "console")
    parser.add_argument("--chromium", default=None, help="Chromium binary (default: chromium on PATH)")
    args = parser.parse_args(argv)
    binary = args.chromium or chromium_path()
    if binary is None:
        raise SystemExit("no Chromium found: apt-get install -y chromium, or pass --chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    cache = Settings().cache_dir  # type: ignore[call-arg]
    cohort = ensure_demo_cohort(cache, DEMO_PATIENTS, DEMO_SEED, progress=False)
    patients = demo_patient_ids(cohort)
    loaded = asyncio.run(ensure_demo_database(cache, DEMO_PATIENTS, DEMO_SEED, progress=False))
    with tempfile.TemporaryDirectory(prefix="console-shots-") as tmp:
        work = Path(tmp)
        with EmbeddedFhirServer(copy_demo_database(loaded, work / "fhir"), port=free_port()) as fhir:
            env = _serve(work, fhir.base_url, patients)
            try:
                written = capture(env, prepare(env), args.out, binary)
            finally:
                env.server.stop()
    for path in written:
        print(f"{path} ({path.stat().st_size // 1024} KiB)")
    return 0


def _serve(work: Path, fhir_url: str, patients: list[str]) -> Any:
    database_url = f"sqlite:///{work}/api.sqlite"
    tokens = issue_keys(database_url, patients[0], create_group(fhir_url, patients[0]))
    reports = write_sample_reports(work / "runs")
    env = server_env(
        work,
        fhir_url,
        database_url,
        ehr_qa_script(work / "script.json"),
        CLINICFLOW_CONSOLE_REPORTS_DIR=str(reports),
    )
    server = ApiServer(work, env).start()
    return ConsoleEnv(server.url, fhir_url, tokens, patients[0], patients[1], server)


if __name__ == "__main__":
    raise SystemExit(main())
