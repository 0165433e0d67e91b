"""The demo cohort and the embedded server loaded with it, each built once and cached under `cache_dir`.

Layout: `{cache_dir}/cohorts/<name>/*.json` (bundles); `{cache_dir}/fhir-demo/`, the loaded demo database
(SQLite DB, settings, log, and `loaded.json`, the marker naming the cohort it holds), written only while
loading and never served, so copies of it are always the cohort as generated; `{cache_dir}/fhir-server/`,
the embedded server's own data, which users write to. A file lock serialises concurrent builders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import sqlite3
import tempfile
from datetime import date
from pathlib import Path

from filelock import FileLock

from .client import FhirClient
from .cohort import DEFAULT_REFERENCE_DATE, generate_cohort
from .loader import LoadReport, load_directory
from .server import DB_FILENAME, EmbeddedFhirServer

__all__ = [
    "DEMO_PATIENTS",
    "DEMO_SEED",
    "LOADED_MARKER",
    "copy_demo_database",
    "demo_patient_ids",
    "ensure_demo_cohort",
    "ensure_demo_data_dir",
    "ensure_demo_database",
    "ensure_demo_server",
    "free_port",
]

DEMO_PATIENTS = 3
DEMO_SEED = 42
LOADED_MARKER = "loaded.json"
_MARKER_FORMAT = 1
_COMPLETE = ".complete"
_LOAD_TIMEOUT_S = 300.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _cohort_name(patients: int, seed: int, reference_date: date) -> str:
    return f"synthea-p{patients}-s{seed}-r{reference_date:%Y%m%d}"


def ensure_demo_cohort(
    cache_dir: Path | str,
    patients: int = DEMO_PATIENTS,
    seed: int = DEMO_SEED,
    reference_date: date = DEFAULT_REFERENCE_DATE,
    progress: bool = True,
) -> Path:
    """The folder of demo bundles for these arguments, generated on first use and cached afterwards."""
    cohorts = Path(cache_dir).expanduser() / "cohorts"
    target = cohorts / _cohort_name(patients, seed, reference_date)
    if (target / _COMPLETE).exists():
        return target
    with FileLock(cohorts / ".lock"):
        if (target / _COMPLETE).exists():
            return target
        with tempfile.TemporaryDirectory(prefix=".building-", dir=cohorts) as staging:
            generate_cohort(staging, patients, seed, reference_date, progress=progress)
            (Path(staging) / _COMPLETE).write_text("")
            if target.exists():
                shutil.rmtree(target)
            Path(staging).rename(target)
    return target


def demo_patient_ids(cohort_dir: Path | str) -> list[str]:
    """Ids of the Patient resources in a cohort folder's bundles, in file-name order."""
    ids: list[str] = []
    for path in sorted(Path(cohort_dir).glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        for entry in bundle.get("entry", []):
            resource = entry.get("resource") or {}
            if resource.get("resourceType") == "Patient" and resource.get("id"):
                ids.append(resource["id"])
    return ids


def _marker(data_dir: Path) -> dict[str, object] | None:
    try:
        loaded = json.loads((data_dir / LOADED_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) and (data_dir / DB_FILENAME).exists() else None


def _reset_db(data_dir: Path) -> None:
    for name in (LOADED_MARKER, DB_FILENAME, f"{DB_FILENAME}-wal", f"{DB_FILENAME}-shm"):
        (data_dir / name).unlink(missing_ok=True)


async def _load(server: EmbeddedFhirServer, cohort: Path, progress: bool) -> LoadReport:
    async with FhirClient(server.base_url, timeout=_LOAD_TIMEOUT_S) as client:
        return await load_directory(client, cohort, progress=progress, after_load=server.analyze)


async def _ensure_loaded(data_dir: Path, cohort: Path, port: int, progress: bool) -> None:
    """Load `cohort` into the DB under `data_dir` unless its marker says it is there; server left stopped."""
    with FileLock(data_dir.parent / f".{data_dir.name}.lock"):
        marker = _marker(data_dir)
        if marker and marker.get("cohort") == cohort.name and marker.get("format") == _MARKER_FORMAT:
            return
        _reset_db(data_dir)
        server = EmbeddedFhirServer(data_dir, port=port)
        await asyncio.to_thread(server.start)
        try:
            report = await _load(server, cohort, progress)
        finally:
            await asyncio.to_thread(server.stop)
        marker = {
            "format": _MARKER_FORMAT,
            "cohort": cohort.name,
            "patients": demo_patient_ids(cohort),
            "loaded": dict(report.loaded),
            "errors": [str(e) for e in report.errors],
            "seconds": round(report.seconds, 2),
        }
        (data_dir / LOADED_MARKER).write_text(json.dumps(marker, indent=2))


async def ensure_demo_database(
    cache_dir: Path | str,
    patients: int = DEMO_PATIENTS,
    seed: int = DEMO_SEED,
    progress: bool = True,
) -> Path:
    """The embedded server's data folder holding the demo cohort, loaded on first use (server stopped)."""
    cache = Path(cache_dir).expanduser()
    cohort = await asyncio.to_thread(
        ensure_demo_cohort, cache, patients, seed, DEFAULT_REFERENCE_DATE, progress
    )
    data_dir = cache / "fhir-demo"
    await _ensure_loaded(data_dir, cohort, free_port(), progress)
    return data_dir


async def ensure_demo_data_dir(
    cache_dir: Path | str,
    patients: int = DEMO_PATIENTS,
    seed: int = DEMO_SEED,
    progress: bool = True,
) -> Path:
    """A data folder to serve holding the demo cohort: `{cache_dir}/fhir-server` when it is empty or
    already the demo (first filled from the pristine copy), else a fresh copy beside it, so data a user
    loaded there is never replaced."""
    master = await ensure_demo_database(cache_dir, patients, seed, progress)
    cache = Path(cache_dir).expanduser()
    served = cache / "fhir-server"
    with FileLock(cache / ".fhir-server.lock"):
        if not (served / DB_FILENAME).exists():
            copy_demo_database(master, served)
        if _marker(served) == _marker(master):
            return served
        return copy_demo_database(master, Path(tempfile.mkdtemp(prefix="fhir-demo-", dir=cache)))


async def ensure_demo_server(
    cache_dir: Path | str,
    port: int = 8765,
    patients: int = DEMO_PATIENTS,
    seed: int = DEMO_SEED,
    progress: bool = True,
) -> EmbeddedFhirServer:
    """Start the embedded server on `port` with the demo cohort (generated and loaded only the first time).

    The caller owns the running server: `server.stop()` (or `with server:`) when done.
    """
    data_dir = await ensure_demo_data_dir(cache_dir, patients, seed, progress)
    server = EmbeddedFhirServer(data_dir, port=port)
    await asyncio.to_thread(server.start)
    return server


def copy_demo_database(source_dir: Path | str, dest_dir: Path | str) -> Path:
    """Snapshot a loaded server data folder into `dest_dir` (SQLite backup; safe while the source runs)."""
    src, dest = Path(source_dir), Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.closing(sqlite3.connect(src / DB_FILENAME)) as source,
        contextlib.closing(sqlite3.connect(dest / DB_FILENAME)) as target,
    ):
        source.backup(target)
    shutil.copy2(src / LOADED_MARKER, dest / LOADED_MARKER)
    return dest
