"""`clinicflow fhir`: run the embedded FHIR server, generate a synthetic cohort, load bundles and NDJSON.

Exit codes: 0 success; 1 something was skipped or failed (each problem is printed); 2 bad input, or the
server cannot be reached or started.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import date, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from clinicflow.fhir import FhirClient, FhirConnectionError, FhirError
from clinicflow.fhir.cohort import DEFAULT_REFERENCE_DATE, CohortError, generate_cohort
from clinicflow.fhir.demo import ensure_demo_data_dir
from clinicflow.fhir.loader import LoadReport, load_directory
from clinicflow.fhir.server import DB_FILENAME, EmbeddedFhirServer, EmbeddedServerError
from clinicflow.settings import Settings

__all__ = ["fhir_app"]

fhir_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The embedded FHIR server, synthetic cohorts and loading data into any FHIR R4 server.",
)

_LOAD_TIMEOUT_S = 120.0


def _settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # fields come from the environment (pydantic-settings)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _embedded_data_dir(settings: Settings) -> Path:
    return settings.cache_dir / "fhir-server"


def _embedded_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.fhir_port}/fhir"


@fhir_app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="Port (default: CLINICFLOW_FHIR_PORT).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder for the SQLite DB and log (default: <cache_dir>/fhir-server).")
    ] = None,
    demo: Annotated[bool, typer.Option(help="Serve the demo cohort (generated and loaded once).")] = False,
) -> None:
    """Run the embedded FHIR R4 server (sekmet-fhir, SQLite) in the foreground until Ctrl-C."""
    settings = _settings()
    port = port or settings.fhir_port
    folder = data_dir or _embedded_data_dir(settings)
    if demo:
        if data_dir is not None and data_dir != _embedded_data_dir(settings):
            raise _fail("--demo serves the cached demo database; leave out --data-dir.")
        folder = asyncio.run(ensure_demo_data_dir(settings.cache_dir))
    server = EmbeddedFhirServer(folder, port=port)
    try:
        server.start()
    except EmbeddedServerError as exc:
        raise _fail(str(exc)) from None

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a process started in the background by a script inherits SIGINT ignored.
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    typer.echo(f"FHIR R4 server at {server.base_url} (data in {folder}); Ctrl-C to stop.")
    try:
        code = server.wait()
        raise _fail(f"The FHIR server stopped unexpectedly (exit code {code}).\n{server.log_tail()}", 1)
    except KeyboardInterrupt:
        typer.echo("Stopping.")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _parse_date(value: str) -> date:
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(value, fmt).date()
    raise typer.BadParameter(f"{value!r} is not a date (use YYYY-MM-DD)")


@fhir_app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write one bundle per patient into.")],
    patients: Annotated[int, typer.Option("--patients", "-p", min=1, help="Number of patients.")] = 3,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed; same seed, same files.")] = 42,
    reference_date: Annotated[
        str, typer.Option(help="Simulate up to this date (YYYY-MM-DD).")
    ] = DEFAULT_REFERENCE_DATE.isoformat(),
) -> None:
    """Generate a synthetic cohort of Synthea-style FHIR transaction bundles with PySynthea."""
    when = _parse_date(reference_date)
    try:
        paths = generate_cohort(out, patients, seed, when, progress=True)
    except CohortError as exc:
        raise _fail(str(exc), 1) from None
    for path in paths:
        typer.echo(str(path))
    typer.echo(f"Wrote {len(paths)} bundles (seed {seed}, reference date {when.isoformat()}) to {out}.")


async def _load(
    url: str, folder: Path, settings: Settings, analyze_db: Path | None, chunk_size: int
) -> LoadReport:
    def analyze() -> None:
        if analyze_db is not None:
            EmbeddedFhirServer(analyze_db.parent).analyze()

    timeout = max(settings.fhir_timeout_s, _LOAD_TIMEOUT_S)
    try:
        client = FhirClient(url, token=settings.fhir_token, timeout=timeout, retries=settings.fhir_retries)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    async with client:
        await client.metadata()
        return await load_directory(client, folder, progress=True, chunk_size=chunk_size, after_load=analyze)


@fhir_app.command()
def load(
    path: Annotated[Path, typer.Argument(help="Folder (or file) of *.json bundles/resources and *.ndjson.")],
    fhir_url: Annotated[
        str | None,
        typer.Option(help="FHIR base URL (default: CLINICFLOW_FHIR_URL, else the embedded server)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Embedded server data folder, for ANALYZE after loading (default: cache)."),
    ] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Resources per transaction.")] = 500,
) -> None:
    """Load FHIR bundles and Bulk Data NDJSON into a FHIR server, keeping the resources' own ids.

    Prints counts per type and every problem (file and entry or line).
    Exit code 1 when anything was skipped, 2 when the folder is missing or the server is unreachable.
    """
    settings = _settings()
    url = fhir_url or settings.fhir_url or _embedded_url(settings)
    if not path.exists():
        raise _fail(f"No such file or folder: {path}")
    embedded = fhir_url is None and settings.fhir_url is None
    db = (data_dir or _embedded_data_dir(settings)) / DB_FILENAME
    analyze_db = db if (embedded or data_dir is not None) and db.exists() else None
    try:
        report = asyncio.run(_load(url, path, settings, analyze_db, chunk_size))
    except FhirError as exc:
        unreachable = embedded and isinstance(exc, FhirConnectionError)
        hint = " Start it with `clinicflow fhir serve`, or pass --fhir-url." if unreachable else ""
        raise _fail(f"{exc}{hint}") from None
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)
