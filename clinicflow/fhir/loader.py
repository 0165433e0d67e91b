"""Load folders of FHIR bundles and Bulk Data NDJSON into a FHIR server, keeping the source ids.

Every resource is sent as `PUT Type/id` inside transaction bundles, so the server stores it under the id it
has in the files, and `urn:uuid:` / absolute / conditional references are rewritten to `Type/id` first.
A reference is resolved against every file in the folder, so NDJSON files that point at each other load.
Invalid input (bad JSON, a resource that is not valid R4, an unresolvable reference) is reported with its
file and entry index or line number, skipped, and the rest loads.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import parse_qsl

from .client import FHIR_ID
from .errors import FhirResponseError, FhirValidationError
from .references import reference_of, references_in
from .resources import parse_resource

__all__ = [
    "LOAD_ORDER",
    "LoadIssue",
    "LoadReport",
    "TransactionClient",
    "fhir_files",
    "fhir_records",
    "load_directory",
    "resolved_resources",
]

LOAD_ORDER: tuple[str, ...] = (
    "Organization",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "Medication",
    "Device",
    "Encounter",
)
"""Types loaded before all others, in this order, so that the resources they are referenced by follow them."""

DEFAULT_CHUNK_SIZE = 500
_ENTRY_BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "searchset"})


class TransactionClient(Protocol):
    """What the loader needs from a FHIR client (`clinicflow.fhir.FhirClient` provides it)."""

    async def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LoadIssue:
    """One thing that was not loaded: the file, where in it ("entry 3", "line 7"; None for the file), why."""

    file: Path
    location: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.location}" if self.location else str(self.file)
        return f"{where}: {self.message}"


@dataclass
class LoadReport:
    """What `load_directory` did: resources stored per type, what it skipped and why, and how long it took."""

    loaded: Counter[str] = field(default_factory=Counter)
    errors: list[LoadIssue] = field(default_factory=list)
    files: int = 0
    duplicates: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Resources stored."""
        return sum(self.loaded.values())

    @property
    def skipped(self) -> int:
        """Entries, lines or files not loaded (one per error)."""
        return len(self.errors)

    @property
    def ok(self) -> bool:
        """True when nothing was skipped."""
        return not self.errors

    def summary(self) -> str:
        """A few readable lines: totals, counts per type, then each error."""
        lines = [
            f"Loaded {self.total} resources from {self.files} files in {self.seconds:.1f} s"
            f" ({self.skipped} skipped, {self.duplicates} duplicates merged)."
        ]
        lines += [f"  {rtype:<28} {n:>7}" for rtype, n in sorted(self.loaded.items())]
        if self.errors:
            lines.append(f"{len(self.errors)} problems:")
            lines += [f"  {issue}" for issue in self.errors]
        return "\n".join(lines)


@dataclass
class _Item:
    """A resource found in the folder: where it is, and the key it will be stored under."""

    file: Path
    location: str | None
    rtype: str
    rid: str


@dataclass
class _Scan:
    """Pass one over the folder: valid resources, how references resolve, and the issues found."""

    files: list[Path] = field(default_factory=list)
    items: dict[tuple[Path, str | None], _Item] = field(default_factory=dict)
    keys: set[tuple[str, str]] = field(default_factory=set)
    global_urls: dict[str, str] = field(default_factory=dict)
    file_urls: dict[Path, dict[str, str]] = field(default_factory=dict)
    identifiers: dict[tuple[str, str, str], str] = field(default_factory=dict)
    issues: list[LoadIssue] = field(default_factory=list)
    duplicates: int = 0


_SUFFIXES = (".json", ".ndjson", ".json.gz", ".ndjson.gz")


def fhir_files(path: Path) -> list[Path]:
    """The files `load_directory` reads: `path` itself, or its *.json / *.ndjson files (or .gz), sorted."""
    if path.is_file():
        return [path]
    found = [p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(_SUFFIXES)]
    return sorted(found)


def _open_text(file: Path) -> IO[str]:
    """The file as text; `.gz` files (as Bulk Data exports often are) are decompressed on the fly."""
    if file.name.lower().endswith(".gz"):
        return gzip.open(file, "rt", encoding="utf-8")
    return file.open(encoding="utf-8")


_Record = tuple[str | None, Any, str | None, LoadIssue | None]


def fhir_records(file: Path) -> Iterator[_Record]:
    """Yield (location, resource, fullUrl, issue) for each resource in a file; issue set when unreadable."""
    if file.name.lower().removesuffix(".gz").endswith(".ndjson"):
        yield from _ndjson_records(file)
        return
    try:
        with _open_text(file) as fh:
            data = json.loads(fh.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        yield None, None, None, LoadIssue(file, None, f"not valid JSON: {exc}")
        return
    except (OSError, EOFError) as exc:
        yield None, None, None, LoadIssue(file, None, f"unreadable: {exc}")
        return
    if not isinstance(data, dict):
        yield (
            None,
            None,
            None,
            LoadIssue(file, None, "not a FHIR resource or Bundle (expected a JSON object)"),
        )
        return
    if data.get("resourceType") != "Bundle":
        yield None, data, None, None
        return
    yield from _bundle_records(file, data)


def _ndjson_records(file: Path) -> Iterator[_Record]:
    """One record a non-empty line of an NDJSON file."""
    n = 0
    try:
        with _open_text(file) as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                loc = f"line {n}"
                try:
                    yield loc, json.loads(line), None, None
                except json.JSONDecodeError as exc:
                    yield (
                        loc,
                        None,
                        None,
                        LoadIssue(file, loc, f"not valid JSON: {exc.msg} (column {exc.colno})"),
                    )
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        yield f"line {n + 1}", None, None, LoadIssue(file, f"line {n + 1}", f"unreadable: {exc}")


def _bundle_records(file: Path, data: dict[str, Any]) -> Iterator[_Record]:
    """One record an entry of a Bundle of a loaded type (transaction, batch, collection, searchset)."""
    btype = data.get("type")
    if btype not in _ENTRY_BUNDLE_TYPES:
        yield None, None, None, LoadIssue(file, None, f"Bundle of type {btype!r} is not loaded")
        return
    entries = data.get("entry") or []
    if not isinstance(entries, list):
        yield None, None, None, LoadIssue(file, None, "Bundle.entry is not a list")
        return
    for i, entry in enumerate(entries):
        loc = f"entry {i}"
        if not isinstance(entry, dict):
            yield loc, None, None, LoadIssue(file, loc, "entry is not a JSON object")
            continue
        method = ((entry.get("request") or {}).get("method") or "PUT").upper()
        if method not in ("POST", "PUT"):
            yield loc, None, None, LoadIssue(file, loc, f"request method {method} is not loaded")
            continue
        resource = entry.get("resource")
        if resource is None:
            yield loc, None, None, LoadIssue(file, loc, "entry has no resource")
            continue
        full_url = entry.get("fullUrl")
        yield loc, resource, full_url if isinstance(full_url, str) else None, None


def _source_id(resource: dict[str, Any], full_url: str | None, file: Path, location: str | None) -> str:
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        return rid
    if full_url:
        tail = full_url.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
        if FHIR_ID.match(tail):
            return tail
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{file.name}#{location}"))


def _scan(files: list[Path]) -> _Scan:
    scan = _Scan(files=files)
    for file in files:
        urls: dict[str, str] = {}
        for loc, resource, full_url, issue in fhir_records(file):
            if issue is not None:
                scan.issues.append(issue)
                continue
            try:
                parse_resource(resource)
            except FhirValidationError as exc:
                scan.issues.append(LoadIssue(file, loc, exc.message))
                continue
            rtype = resource["resourceType"]
            rid = _source_id(resource, full_url, file, loc)
            if not FHIR_ID.match(rid):
                scan.issues.append(LoadIssue(file, loc, f"{rtype} id {rid!r} is not a valid FHIR id"))
                continue
            key = (rtype, rid)
            if full_url:
                urls[full_url] = f"{rtype}/{rid}"
                scan.global_urls.setdefault(full_url, f"{rtype}/{rid}")
            if key in scan.keys:
                scan.duplicates += 1
                continue
            scan.keys.add(key)
            scan.items[(file, loc)] = _Item(file, loc, rtype, rid)
            for ident in resource.get("identifier") or []:
                if isinstance(ident, dict) and ident.get("value"):
                    scan.identifiers.setdefault((rtype, ident.get("system") or "", ident["value"]), rid)
        scan.file_urls[file] = urls
    return scan


def _resolve_conditional(scan: _Scan, rtype: str, query: str) -> str | None:
    params = parse_qsl(query)
    if len(params) != 1 or params[0][0] != "identifier":
        return None
    system, sep, value = params[0][1].rpartition("|")
    rid = scan.identifiers.get((rtype, system if sep else "", value))
    if rid is None and not sep:
        rid = next((i for (t, _, v), i in scan.identifiers.items() if t == rtype and v == value), None)
    return f"{rtype}/{rid}" if rid else None


def _rewrite_references(scan: _Scan, file: Path, resource: dict[str, Any]) -> str | None:
    """Rewrite references in place to `Type/id`; return an error message for one that cannot resolve."""
    urls = scan.file_urls.get(file, {})
    for ref in references_in(resource):
        value: str = ref["reference"]
        parsed = reference_of(value)
        if parsed is None or parsed.kind == "contained":
            continue
        target = urls.get(value) or scan.global_urls.get(value)
        if target is None and parsed.kind == "conditional":
            target = _resolve_conditional(scan, str(parsed.resource_type), str(parsed.query))
            if target is None:
                return f"conditional reference {value!r} resolves to nothing in the folder"
        if target is None and parsed.kind == "urn":
            return f"reference {value!r} resolves to nothing in the folder (no entry has that fullUrl)"
        # An absolute reference to a resource the folder holds is taken as the source server's own.
        if target is None and parsed.kind == "absolute" and (parsed.resource_type, parsed.id) in scan.keys:
            target = parsed.key
        if target is not None:
            ref["reference"] = target
    return None


def _tier(rtype: str) -> int:
    return LOAD_ORDER.index(rtype) if rtype in LOAD_ORDER else len(LOAD_ORDER)


def _prepared(scan: _Scan, first: bool) -> Iterator[tuple[_Item, dict[str, Any] | None, str | None]]:
    """Yield (item, resource to PUT, None) or (item, None, error): `LOAD_ORDER` types, or the rest."""
    for file in scan.files:
        for loc, resource, _, issue in fhir_records(file):
            item = scan.items.get((file, loc))
            if issue is not None or item is None or (item.rtype in LOAD_ORDER) != first:
                continue
            resource = dict(resource)
            resource["id"] = item.rid
            error = _rewrite_references(scan, file, resource)
            yield item, (None if error else resource), error


def _ordered(scan: _Scan) -> Iterator[tuple[_Item, dict[str, Any] | None, str | None]]:
    """Every resource to load: the `LOAD_ORDER` types first, in that order, then the rest file by file."""
    yield from sorted(_prepared(scan, True), key=lambda prepared: _tier(prepared[0].rtype))
    yield from _prepared(scan, False)


def resolved_resources(path: Path | str) -> tuple[list[dict[str, Any]], list[LoadIssue]]:
    """What `load_directory` would store from `path`, without a server: each resource with its id set
    and its references rewritten to `Type/id`, and what it would skip and why."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"No such file or folder: {root}")
    scan = _scan(fhir_files(root))
    resources: list[dict[str, Any]] = []
    issues = list(scan.issues)
    for item, resource, error in _ordered(scan):
        if resource is None:
            issues.append(LoadIssue(item.file, item.location, error or "not loaded"))
        else:
            resources.append(resource)
    return resources, issues


def _put_entry(resource: dict[str, Any]) -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"resource": resource, "request": {"method": "PUT", "url": url}}


def _entry_error(entry: Mapping[str, Any]) -> str | None:
    response = entry.get("response") or {}
    status = str(response.get("status", ""))
    if status[:1] in ("2", ""):
        return None
    outcome = response.get("outcome") or {}
    texts = [
        i.get("diagnostics") or i.get("code", "") for i in outcome.get("issue", []) if isinstance(i, dict)
    ]
    return f"server answered {status}" + (f": {'; '.join(texts)}" if texts else "")


async def _send(
    client: TransactionClient, chunk: list[tuple[_Item, dict[str, Any]]], report: LoadReport
) -> None:
    """Store a chunk in one transaction; if the server rejects it, retry as a batch to find the culprits."""
    entries = [_put_entry(resource) for _, resource in chunk]
    try:
        await client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    except FhirResponseError:
        try:
            response = await client.transaction({"resourceType": "Bundle", "type": "batch", "entry": entries})
        except FhirResponseError as exc:
            report.errors.extend(LoadIssue(item.file, item.location, exc.message) for item, _ in chunk)
            return
        answers = response.get("entry") or []
        for (item, _), answer in zip(chunk, answers, strict=False):
            error = _entry_error(answer)
            if error:
                report.errors.append(LoadIssue(item.file, item.location, error))
            else:
                report.loaded[item.rtype] += 1
        return
    for item, _ in chunk:
        report.loaded[item.rtype] += 1


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="res", desc="Loading FHIR", disable=not enabled, leave=False)


async def load_directory(
    client: TransactionClient,
    path: Path | str,
    progress: bool = True,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    after_load: Callable[[], object] | None = None,
) -> LoadReport:
    """Load every *.json (Bundle or resource) and *.ndjson file under `path`, gzipped or not; report it.

    `after_load` runs once when something was stored: pass `EmbeddedFhirServer.analyze` after bulk loads.
    """
    started = time.perf_counter()
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"No such file or folder: {root}")
    scan = await asyncio.to_thread(_scan, fhir_files(root))
    report = LoadReport(files=len(scan.files), duplicates=scan.duplicates)
    report.errors.extend(scan.issues)
    bar = _progress_bar(len(scan.items), progress)
    try:
        chunk: list[tuple[_Item, dict[str, Any]]] = []
        for item, resource, error in _ordered(scan):
            if resource is None:
                report.errors.append(LoadIssue(item.file, item.location, error or "not loaded"))
                bar.update(1)
                continue
            chunk.append((item, resource))
            if len(chunk) >= chunk_size:
                await _send(client, chunk, report)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            await _send(client, chunk, report)
            bar.update(len(chunk))
    finally:
        bar.close()
    if after_load is not None and report.total:
        await asyncio.to_thread(after_load)
    report.seconds = time.perf_counter() - started
    return report
