"""`clinicflow eval ehrqa`: generate EHRQA questions from FHIR data and run them full-context and/or agentic.

Exit codes: 0 success; 1 an oracle retrieval miss, or questions that failed (retried on the next run);
2 bad input, or the FHIR server or model cannot be reached or started.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from clinicflow.evals.ehrqa.generator import DEFAULT_PER_PATIENT, generate_questions, interleave
from clinicflow.evals.ehrqa.questions import Question, write_questions
from clinicflow.evals.ehrqa.records import RecordsError, RecordSet, read_records, records_from_server
from clinicflow.evals.ehrqa.runner import questions_digest
from clinicflow.fhir import FhirClient, FhirError
from clinicflow.fhir.loader import fhir_files
from clinicflow.model.tuned_model import TUNED_MODEL_NAME
from clinicflow.settings import Settings

__all__ = ["EvalMode", "SplitChoice", "ehrqa"]


class EvalMode(StrEnum):
    """Which modes to run."""

    full = "full"
    agentic = "agentic"
    both = "both"


class SplitChoice(StrEnum):
    """Which patients' questions to run."""

    all = "all"
    train = "train"
    val = "val"
    test = "test"


class _Fail(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


_LOADED_MARKER = "ehrqa-loaded.json"


def _data_digest(path: Path) -> str:
    h = hashlib.sha256()
    for file in fhir_files(path):
        stat = file.stat()
        name = file.relative_to(path) if file != path else file.name
        h.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()


@contextlib.asynccontextmanager
async def _embedded(data: Path, workdir: Path, settings: Settings, echo: bool) -> AsyncIterator[str]:
    """The embedded FHIR server holding `data`, loaded once per data digest and reused by later runs."""
    from clinicflow.fhir.demo import free_port
    from clinicflow.fhir.loader import load_directory
    from clinicflow.fhir.server import EmbeddedFhirServer, EmbeddedServerError

    server = EmbeddedFhirServer(workdir, port=free_port())
    marker = workdir / _LOADED_MARKER
    digest = _data_digest(data)
    try:
        loaded = json.loads(marker.read_text()) if marker.exists() and server.db_path.exists() else {}
    except (OSError, ValueError):
        loaded = {}
    fresh = loaded.get("digest") != digest
    if fresh:
        for name in (
            marker.name,
            server.db_path.name,
            f"{server.db_path.name}-wal",
            f"{server.db_path.name}-shm",
        ):
            (workdir / name).unlink(missing_ok=True)
    try:
        await asyncio.to_thread(server.start)
    except EmbeddedServerError as exc:
        raise _Fail(str(exc)) from None
    try:
        if fresh:
            async with FhirClient(server.base_url, timeout=max(settings.fhir_timeout_s, 120.0)) as client:
                report = await load_directory(client, data, progress=echo, after_load=server.analyze)
            if echo:
                typer.echo(report.summary(), err=True)
            marker.write_text(json.dumps({"data": str(data.resolve()), "digest": digest}))
        yield server.base_url
    finally:
        await asyncio.to_thread(server.stop)


@contextlib.asynccontextmanager
async def _fhir_url(
    data: Path | None, fhir_url: str | None, settings: Settings, out: Path, echo: bool
) -> AsyncIterator[str]:
    if fhir_url:
        yield fhir_url
    elif data is not None:
        async with _embedded(data, out / "fhir-server", settings, echo) as url:
            yield url
    elif settings.fhir_url:
        yield settings.fhir_url
    else:
        raise _Fail("Give --data DIR (bundles to load into the embedded server) or --fhir-url URL.")


def _select(questions: Sequence[Question], split: SplitChoice, limit: int | None) -> list[Question]:
    chosen = [q for q in questions if split is SplitChoice.all or q.split == split.value]
    if limit is not None:
        by_patient: dict[str, list[Question]] = {}
        for q in chosen:
            by_patient.setdefault(q.patient_id, []).append(q)
        chosen = interleave(by_patient)[:limit]
    return chosen


def _load_model(settings: Settings, model: str | None, model_url: str | None) -> Any:
    try:
        from clinicflow.model import load_chat_model  # type: ignore[attr-defined]
    except ImportError as exc:
        raise _Fail(
            f"The model module is not available ({exc}); install clinicflow with its model extras."
        ) from None
    try:
        return load_chat_model(settings, model=model, model_url=model_url)
    except (OSError, ValueError, RuntimeError) as exc:
        raise _Fail(f"Could not load the model: {exc}") from None


async def _records(data: Path | None, client: FhirClient, patients: int | None) -> RecordSet:
    if data is not None:
        return (await asyncio.to_thread(read_records, data)).head(patients)
    return await records_from_server(client, max_patients=patients)


@dataclass(frozen=True)
class _Run:
    """The command's options, as the run steps read them."""

    data: Path | None
    fhir_url: str | None
    mode: EvalMode
    model: str | None
    model_url: str | None
    patients: int | None
    out: Path
    check_retrieval: bool
    seed: int
    limit: int | None
    per_patient: int
    split: SplitChoice
    reference_date: date | None
    context_tokens: int
    concurrency: int
    export: bool
    max_steps: int | None


async def _main(run: _Run) -> int:
    from clinicflow.evals.ehrqa.retrieval import check_retrieval as run_check
    from clinicflow.tools.fhir_tools import make_fhir_tools

    settings = Settings()  # type: ignore[call-arg]
    if run.data is not None and not run.data.exists():
        raise _Fail(f"No such file or folder: {run.data}")
    run.out.mkdir(parents=True, exist_ok=True)
    async with (
        _fhir_url(run.data, run.fhir_url, settings, run.out, echo=True) as url,
        FhirClient(
            url, token=settings.fhir_token, timeout=settings.fhir_timeout_s, retries=settings.fhir_retries
        ) as client,
    ):
        try:
            records = await _records(run.data, client, run.patients)
        except RecordsError as exc:
            raise _Fail(str(exc)) from None
        questions, selected = _questions(run, records, settings)
        tools = make_fhir_tools(
            client,
            token_budget=settings.evidence_token_budget,
            manifest_budget=settings.manifest_token_budget,
        )
        if run.check_retrieval:
            path = write_questions(selected, run.out / "questions.jsonl")
            typer.echo(f"Questions and answer keys: {path}", err=True)
            report = await run_check(selected, tools, on_miss=lambda m: typer.echo(str(m)))
            typer.echo(report.summary())
            return 1 if report.misses else 0
        return await _evaluate(run, selected, questions_digest(questions), records, tools, settings)


def _questions(run: _Run, records: RecordSet, settings: Settings) -> tuple[list[Question], list[Question]]:
    """Every generated question and those selected to run, with the generator's notes printed."""
    notes: list[str] = []
    questions = generate_questions(
        records,
        seed=run.seed,
        per_patient=run.per_patient,
        reference_date=run.reference_date,
        token_budget=settings.evidence_token_budget,
        notes=notes,
    )
    selected = _select(questions, run.split, run.limit)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(
        f"{len(questions)} questions generated for {len(records)} patients; {len(selected)} selected.",
        err=True,
    )
    return questions, selected


def _answerers(
    run: _Run,
    chat_model: Any,
    questions: list[Question],
    records: RecordSet,
    tools: list[Any],
    max_steps: int,
) -> tuple[dict[Any, Any], dict[str, Any]]:
    """The answer function of each mode run, and the full-context mode's record-fit figures."""
    from clinicflow.evals.ehrqa.agentic import AgenticRunner
    from clinicflow.evals.ehrqa.fullcontext import FullContextRunner

    answerers: dict[Any, Any] = {}
    context: dict[str, Any] = {}
    if run.mode in (EvalMode.full, EvalMode.both):
        full = FullContextRunner(
            chat_model, {r.patient_id: r for r in records}, context_tokens=run.context_tokens
        )
        answerers["full"] = full.answer
        patients = sorted({q.patient_id for q in questions})
        texts = [full.record_text(p) for p in patients]
        context = {
            "records": len(texts),
            "did_not_fit": sum(not t.fits for t in texts),
            "context_tokens": run.context_tokens,
            "lines_dropped": sum(t.lines_total - t.lines_kept for t in texts),
        }
    if run.mode in (EvalMode.agentic, EvalMode.both):
        answerers["agentic"] = AgenticRunner(chat_model, tools, max_steps=max_steps).answer
    return answerers, context


def _progress(line: dict[str, Any]) -> None:
    mark = "ok " if line["correct"] else "err"
    typer.echo(
        f"{mark} [{line['mode']}] {line['question_id']} {line['category']}: {str(line['answer'])[:80]!r}",
        err=True,
    )


async def _evaluate(
    run: _Run,
    questions: list[Question],
    digest: str,
    records: RecordSet,
    tools: list[Any],
    settings: Settings,
) -> int:
    from clinicflow.evals.ehrqa.runner import RunConfigMismatchError, run_ehrqa

    max_steps = run.max_steps or settings.max_steps
    chat_model = _load_model(settings, run.model, run.model_url)
    answerers, context = _answerers(run, chat_model, questions, records, tools, max_steps)
    run_info = {
        "questions_sha256": digest,
        "model": run.model_url
        or run.model
        or settings.model_url
        or settings.model
        or f"default ({TUNED_MODEL_NAME})",
        "seed": run.seed,
        "per_patient": run.per_patient,
        "context_tokens": run.context_tokens,
        "max_steps": max_steps,
    }
    try:
        summary = await run_ehrqa(
            questions,
            run.out,
            answerers,
            run_info=run_info,
            concurrency=run.concurrency,
            context=context,
            on_result=_progress,
        )
    except RunConfigMismatchError as exc:
        raise _Fail(str(exc)) from None
    if run.export:
        await _export(questions, summary.out_dir, tools)
    _print_summary(summary)
    return 1 if summary.failures else 0


def _print_summary(summary: Any) -> None:
    """Failures, each mode's accuracy, the token ratio and where the report is."""
    for f in summary.failures:
        typer.echo(f"FAILED {f['question_id']} [{f['mode']}]: {f['error']}", err=True)
    report = summary.report
    for name, m in report["modes"].items():
        acc = m["mean_category_accuracy"]
        typer.echo(
            f"{name}: accuracy {100 * acc:.1f}% (mean over {m['categories_covered']} categories), "
            f"{m['n']} answered, {m['tokens_mean']:.0f} tokens/question"
            if acc is not None
            else f"{name}: nothing answered"
        )
    ratio = report.get("token_ratio")
    if ratio and ratio.get("agentic_over_full") is not None:
        typer.echo(f"token ratio agentic/full-context: {ratio['agentic_over_full']:.3f}")
    typer.echo(f"Report: {summary.paths['markdown']}")


async def _export(questions: list[Question], out: Path, tools: list[Any]) -> None:
    from clinicflow.evals.ehrqa.export import gold_examples, trajectory_examples, write_examples
    from clinicflow.evals.ehrqa.retrieval import GoldCallRunner
    from clinicflow.evals.ehrqa.runner import RunStore

    manifest_tool = next(t for t in tools if t.name == "record_manifest")
    manifests = {
        p: str(await manifest_tool.ainvoke({"patient_id": p}))
        for p in sorted({q.patient_id for q in questions})
    }
    gold = await gold_examples(questions, GoldCallRunner(tools), tools, manifests)
    results = RunStore(out).finished().values()
    trajectories = trajectory_examples(results, {q.id: q for q in questions}, tools)
    folder = out / "finetune"
    write_examples(gold, folder, "gold")
    write_examples(trajectories, folder, "trajectories")
    typer.echo(
        f"Fine-tuning data: {len(gold)} gold, {len(trajectories)} trajectory examples in {folder}", err=True
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _on_sigterm_interrupt() -> Any:
    """Make SIGTERM unwind like Ctrl-C, so the embedded server is stopped; returns the old handler."""
    try:
        return signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:
        return None


def _parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (use YYYY-MM-DD)") from None


def ehrqa(
    data: Annotated[
        Path | None, typer.Option(help="Folder of FHIR bundles / NDJSON; loaded into the embedded server.")
    ] = None,
    fhir_url: Annotated[
        str | None, typer.Option(help="FHIR server to query (and, without --data, to read records from).")
    ] = None,
    mode: Annotated[
        EvalMode, typer.Option(help="full (whole record in the prompt), agentic, or both.")
    ] = EvalMode.both,
    model: Annotated[
        str | None,
        typer.Option(help="Model folder or built-in name (default: settings, else the tuned 270M)."),
    ] = None,
    model_url: Annotated[str | None, typer.Option(help="OpenAI-compatible model server URL.")] = None,
    patients: Annotated[int | None, typer.Option(min=1, help="Use only the first N patients.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder (results, report, fine-tuning data).")] = Path(
        "ehrqa-results"
    ),
    check_retrieval: Annotated[
        bool,
        typer.Option(
            "--check-retrieval", help="Only check that gold tool calls retrieve the gold resources."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for question generation and the patient split.")] = 0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Run at most N questions (spread over patients).")
    ] = None,
    per_patient: Annotated[
        int, typer.Option(min=1, help="Questions per patient (at most).")
    ] = DEFAULT_PER_PATIENT,
    split: Annotated[SplitChoice, typer.Option(help="Run only one split's patients.")] = SplitChoice.all,
    reference_date: Annotated[
        str | None,
        typer.Option(help="Day 'current' refers to (YYYY-MM-DD; default: each record's last day)."),
    ] = None,
    context_tokens: Annotated[
        int, typer.Option(min=1024, help="Full-context mode's context limit.")
    ] = 32_768,
    concurrency: Annotated[int, typer.Option(min=1, help="Questions answered at once.")] = 1,
    export: Annotated[
        bool, typer.Option("--export", help="Write fine-tuning JSONL under OUT/finetune.")
    ] = False,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Planner steps per agentic run.")] = None,
) -> None:
    """Run the EHRQA benchmark: questions generated from the records, answered full-context and/or agentic.

    With --check-retrieval no model is used: every question's gold tool call must return its gold
    resources; misses are listed, the hit rate is printed last, and any miss exits with code 1.
    """
    options = {**locals(), "reference_date": _parse_date(reference_date)}  # every option, by name
    previous = _on_sigterm_interrupt()
    try:
        code = asyncio.run(_main(_Run(**options)))
    except _Fail as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        typer.secho(
            "Interrupted; finished questions are kept, rerun to resume.", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(130) from None
    except FhirError as exc:
        typer.secho(f"FHIR server error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(code)
