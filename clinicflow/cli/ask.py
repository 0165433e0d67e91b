"""`clinicflow ask` and `clinicflow demo`: one EHR question answered end to end, with trace and evidence.

Besides the patient-scoped FHIR tools, the planner gets guideline search when the guideline index
(<cache_dir>/guidelines.sqlite) holds documents, and image search over `--image-index` when given.

Exit codes: 0 answered (or "not found in the record"); 1 the run failed; 2 bad input, an unknown
patient, or a FHIR server or model that cannot be reached or loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, ValidationError

from clinicflow.api.workflows import EXAMPLES, WORKFLOWS
from clinicflow.cli.guidelines import default_index_path
from clinicflow.cli.options import EncoderOpt, GuidelinesOpt, ImageIndexOpt, ModelOpt, ModelUrlOpt
from clinicflow.evals.ehrqa.generator import generate_questions
from clinicflow.evals.ehrqa.questions import Question
from clinicflow.evals.ehrqa.records import read_records
from clinicflow.evals.ehrqa.scoring import score
from clinicflow.fhir import FhirClient, FhirError, FhirNotFoundError
from clinicflow.fhir.demo import demo_patient_ids, ensure_demo_cohort, ensure_demo_server, free_port
from clinicflow.fhir.server import DB_FILENAME, EmbeddedFhirServer, EmbeddedServerError
from clinicflow.graphs.ehr_qa import EhrQaResult, build_ehr_qa_graph, open_checkpointer, run_ehr_qa
from clinicflow.graphs.runner import RunError, RunInputError, RunStoppedError, run_input
from clinicflow.graphs.telemetry import INSTRUMENTATION, SpanRecorder, span_json, tracer_provider
from clinicflow.graphs.workflow import Workflow, WorkflowDeps, WorkflowInputError, jsonable
from clinicflow.model import ModelError, load_chat_model
from clinicflow.model.tuned_model import TUNED_MODEL_NAME
from clinicflow.settings import Settings
from clinicflow.tools import make_fhir_tools, make_guideline_tool, make_image_tools
from clinicflow.tools.guidelines import GuidelineError, GuidelineIndex
from clinicflow.tools.images import ImageIndex, ImageToolError

__all__ = ["DEMO_QTYPE", "ask", "demo", "demo_question"]

_T = TypeVar("_T")

DEMO_QTYPE = "obs_latest"
"""The demo asks the EHRQA harness's question of this type about the last demo patient, so that its
answer key (generated from the record, never by a model) can be printed beside the model's answer."""
# On the CPU default the demo bounds its run to keep it short.
DEMO_LIMITS = {"max_steps": 2, "max_new_tokens": 192}


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@contextlib.asynccontextmanager
async def _fhir_base_url(settings: Settings) -> AsyncIterator[str]:
    """The configured FHIR server, or the embedded one over whatever `fhir load`/`demo` put in the cache."""
    if settings.fhir_url:
        yield settings.fhir_url
        return
    data_dir = settings.cache_dir / "fhir-server"
    if not (data_dir / DB_FILENAME).exists():
        raise _fail(
            f"No FHIR server configured (CLINICFLOW_FHIR_URL) and no embedded data in {data_dir}: "
            "run `clinicflow demo` or `clinicflow fhir load DIR` first."
        )
    server = EmbeddedFhirServer(data_dir, port=free_port())
    try:
        await asyncio.to_thread(server.start)
    except EmbeddedServerError as exc:
        raise _fail(str(exc)) from None
    try:
        yield server.base_url
    finally:
        await asyncio.to_thread(server.stop)


def guideline_tools(settings: Settings, enabled: bool | None) -> list[BaseTool]:
    """`[search_guidelines]` over the cached guideline index: when `enabled`, or by default (None) only
    when the index exists and holds documents; an index that cannot serve `--guidelines` is bad input."""
    if enabled is False:
        return []
    path = default_index_path(settings)
    try:
        documents = GuidelineIndex(path).document_count()
    except GuidelineError as exc:
        if enabled:
            raise _fail(f"The guideline index cannot be used: {exc}") from None
        return []
    if documents == 0:
        if enabled:
            raise _fail(
                f"No guidelines indexed at {path}: run `clinicflow guidelines index` first, "
                "or pass --no-guidelines."
            )
        return []
    return [make_guideline_tool(path)]


@contextlib.contextmanager
def image_tools(index_path: Path | None, encoder: Path | None) -> Iterator[list[BaseTool]]:
    """`[search_images]` over the image index at `index_path` (none without one), closed on exit."""
    if index_path is None:
        if encoder is not None:
            raise _fail("--encoder needs --image-index PATH.")
        yield []
        return
    try:
        index = ImageIndex.open(index_path, encoder=encoder)
    except (ImageToolError, ValueError, OSError) as exc:
        raise _fail(f"The image index cannot be used: {exc}") from None
    with index:
        yield make_image_tools(index)


@contextlib.asynccontextmanager
async def _patient_client(settings: Settings, base_url: str, patient_id: str) -> AsyncIterator[FhirClient]:
    """A FHIR client, once the patient is known to exist there."""
    async with FhirClient(
        base_url, token=settings.fhir_token, timeout=settings.fhir_timeout_s, retries=settings.fhir_retries
    ) as client:
        try:
            await client.read("Patient", patient_id)
        except FhirNotFoundError:
            raise _fail(f"Patient {patient_id!r} not found on the FHIR server at {base_url}.") from None
        except ValueError as exc:
            raise _fail(f"Bad patient id {patient_id!r}: {exc}") from None
        yield client


async def run_registered(
    settings: Settings,
    base_url: str,
    load_model: Callable[[], BaseChatModel],
    workflow: Workflow,
    data: BaseModel,
    thread_id: str | None,
    *,
    callbacks: Sequence[BaseCallbackHandler] = (),
) -> Any:
    """Run any registered workflow on one validated input, with the same FHIR server, model and
    checkpoints as `ask`; the patient is checked first."""
    patient_id = workflow.patient_id(data) or ""
    async with (
        _patient_client(settings, base_url, patient_id) as client,
        open_checkpointer(settings.checkpoint_path()) as saver,
    ):
        graph = await workflow.build(WorkflowDeps(settings, client, saver, load_model))
        config: RunnableConfig = {"callbacks": list(callbacks)}
        return await run_input(workflow, graph, data, thread_id=thread_id, config=config)


async def answer_question(
    settings: Settings,
    base_url: str,
    model: BaseChatModel | Callable[[], BaseChatModel],
    patient_id: str,
    question: str,
    thread_id: str | None,
    *,
    extra_tools: Sequence[BaseTool] = (),
    callbacks: Sequence[BaseCallbackHandler] = (),
) -> EhrQaResult:
    """Check the patient exists, then run the EHR QA graph with patient-scoped FHIR tools and any
    `extra_tools` (guideline search, image search). `model` may be a loader, called once the patient
    is known to exist, so a bad id fails before a model loads."""
    async with _patient_client(settings, base_url, patient_id) as client:
        if not isinstance(model, BaseChatModel):
            model = await asyncio.to_thread(model)
        async with open_checkpointer(settings.checkpoint_path()) as saver:
            graph = build_ehr_qa_graph(
                model,
                [*make_fhir_tools(client, manifest_budget=settings.manifest_token_budget), *extra_tools],
                checkpointer=saver,
                max_steps=settings.max_steps,
            )
            config: RunnableConfig = {"callbacks": list(callbacks)}
            return await run_ehr_qa(graph, question, patient_id, thread_id=thread_id, config=config)


def _write_spans(path: Path, memory: InMemorySpanExporter) -> None:
    text = json.dumps(span_json(memory.get_finished_spans()), indent=1)
    if str(path) == "-":
        typer.echo(text)
    else:
        path.write_text(text + "\n", encoding="utf-8")


def _print(result: Any) -> None:
    if not hasattr(result, "render"):
        typer.echo(json.dumps(jsonable(result), indent=1, ensure_ascii=False))
        return
    typer.echo(result.render())
    if isinstance(result, EhrQaResult):
        typer.echo(f"(thread {result.thread_id}, status {result.status}, {result.steps} steps)")


def _load_model(settings: Settings, model: str | None, model_url: str | None) -> BaseChatModel:
    try:
        return load_chat_model(settings, model=model, model_url=model_url)
    except ModelError as exc:
        raise _fail(str(exc)) from None


async def _ask(
    settings: Settings,
    patient: str,
    question: str,
    model: str | None,
    model_url: str | None,
    thread: str | None,
    guidelines: bool | None = None,
    image_index: Path | None = None,
    encoder: Path | None = None,
    spans: SpanRecorder | None = None,
) -> EhrQaResult:
    with image_tools(image_index, encoder) as images:
        extra = [*guideline_tools(settings, guidelines), *images]
        return await _served(
            settings,
            (model, model_url, thread, spans),
            lambda url, load, thread_id, callbacks: answer_question(
                settings, url, load, patient, question, thread_id, extra_tools=extra, callbacks=callbacks
            ),
        )


_Run = Callable[[str, Callable[[], BaseChatModel], str | None, list[BaseCallbackHandler]], Awaitable[_T]]


async def _served(
    settings: Settings, how: tuple[str | None, str | None, str | None, SpanRecorder | None], run: _Run[_T]
) -> _T:
    """`run(base_url, load_model, thread_id, callbacks)` against the FHIR server, with the model
    (`--model`, `--model-url`) loaded on demand; `how` is (model, model_url, thread, spans)."""
    model, model_url, thread, spans = how
    async with _fhir_base_url(settings) as base_url:
        load = lambda: _load_model(settings, model, model_url)  # noqa: E731
        return await run(base_url, load, spans.thread_id if spans else thread, [spans] if spans else [])


async def _ask_workflow(
    settings: Settings,
    workflow: Workflow,
    data: BaseModel | None,
    model: str | None,
    model_url: str | None,
    thread: str | None,
    spans: SpanRecorder | None,
) -> Any:
    assert data is not None
    return await _served(
        settings,
        (model, model_url, thread, spans),
        lambda url, load, thread_id, callbacks: run_registered(
            settings, url, load, workflow, data, thread_id, callbacks=callbacks
        ),
    )


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    try:
        return asyncio.run(coro)
    except (FhirError, RunInputError, WorkflowInputError) as exc:
        raise _fail(str(exc)) from None
    except RunStoppedError as exc:
        raise _fail(f"{exc}\nResume with: clinicflow ask --thread {exc.thread_id} ...", 1) from None
    except RunError as exc:
        raise _fail(str(exc), 1) from None


def _registered(name: str) -> Workflow:
    workflows = {w.name: w for w in (*WORKFLOWS, *EXAMPLES)}
    if name not in workflows:
        raise _fail(f"Unknown workflow {name!r}; known: {', '.join(sorted(workflows))}.")
    return workflows[name]


def _workflow_input(workflow: Workflow, question: str, patient: str) -> BaseModel:
    """The workflow's Input: the patient, and the question as its question or instruction."""
    fields = workflow.input_model.model_fields
    data = {"patient_id": patient} | {k: question for k in ("question", "instruction") if k in fields}
    try:
        return workflow.input_model.model_validate(data)
    except ValidationError as exc:
        raise _fail(f"Bad input for workflow {workflow.name}: {exc}") from None


def ask(
    question: Annotated[
        str, typer.Argument(help="The question about this patient's record (or a workflow's instruction).")
    ] = "",
    patient: Annotated[str, typer.Option("--patient", "-p", help="FHIR Patient id.")] = ...,  # type: ignore[assignment]
    model: ModelOpt = None,
    model_url: ModelUrlOpt = None,
    thread: Annotated[
        str | None, typer.Option("--thread", help="Thread id: resume an interrupted run, or name a new one.")
    ] = None,
    guidelines: GuidelinesOpt = None,
    image_index: ImageIndexOpt = None,
    encoder: EncoderOpt = None,
    trace_json: Annotated[
        Path | None,
        typer.Option(
            "--trace-json",
            help="Write the run's OpenTelemetry spans as JSON to this file ('-': stdout); "
            "the same spans CLINICFLOW_OTEL_ENDPOINT receives.",
        ),
    ] = None,
    workflow: Annotated[
        str,
        typer.Option(
            "--workflow",
            "-w",
            help="The registered workflow to run (see docs/workflows.md); others than ehr_qa take "
            "the patient, and the question as their question or instruction.",
        ),
    ] = "ehr_qa",
) -> None:
    """Answer a question about one patient's record, citing the FHIR resources it rests on."""
    chosen = _registered(workflow)
    if workflow == "ehr_qa" and not question.strip():
        raise _fail("the question is empty")
    data = None if workflow == "ehr_qa" else _workflow_input(chosen, question, patient)
    settings = Settings()
    memory = InMemorySpanExporter()
    traced = bool(trace_json or settings.otel_endpoint)
    provider = tracer_provider(
        settings.otel_service_name,
        otlp_endpoint=settings.otel_endpoint,
        exporters=[memory] if trace_json else [],
    )
    spans = (
        SpanRecorder(
            provider.get_tracer(INSTRUMENTATION),
            workflow=workflow,
            thread_id=thread or uuid.uuid4().hex,
            capture_content=settings.otel_capture_content,
        )
        if traced
        else None
    )
    run = (
        _ask(settings, patient, question, model, model_url, thread, guidelines, image_index, encoder, spans)
        if workflow == "ehr_qa"
        else _ask_workflow(settings, chosen, data, model, model_url, thread, spans)
    )
    try:
        result = _run(run)
    finally:
        provider.shutdown()
    _print(result)
    if trace_json is not None:
        _write_spans(trace_json, memory)
    if getattr(result, "status", None) == "failed":
        raise typer.Exit(1)


def demo_question(cohort: Path, patient: str) -> Question:
    """The harness question the demo asks: the first of `DEMO_QTYPE` for the patient (question seed 0)."""
    records = read_records(cohort)
    for question in generate_questions(records, seed=0):
        if question.patient_id == patient and question.qtype == DEMO_QTYPE:
            return question
    raise _fail(f"the demo cohort has no {DEMO_QTYPE} question for Patient/{patient}")


def _print_key(question: Question, result: EhrQaResult) -> None:
    correct = score(question, result.answer)
    typer.echo(f"Answer key (EHRQA harness, from the record): {question.answer_text}")
    typer.echo(f"Key rests on: {', '.join(question.gold_ids)}")
    cited = [c for c in question.gold_ids if c in result.citations]
    typer.echo(
        f"Scored by the harness: {'correct' if correct else 'wrong'}; key resources cited: {cited or 'none'}"
    )


async def _demo(settings: Settings, model: str | None, model_url: str | None) -> tuple[Question, EhrQaResult]:
    if not (model or model_url or settings.model or settings.model_url):
        settings = settings.model_copy(update=DEMO_LIMITS)
        typer.echo(
            f"CPU default model ({TUNED_MODEL_NAME}, Gemma 3 270M + LoRA): run bounded to {DEMO_LIMITS}."
        )
    cohort = await asyncio.to_thread(ensure_demo_cohort, settings.cache_dir)
    patient = demo_patient_ids(cohort)[-1]
    question = await asyncio.to_thread(demo_question, cohort, patient)
    typer.echo("Starting the embedded FHIR server with the demo cohort ...")
    server = await ensure_demo_server(settings.cache_dir, port=free_port())
    try:
        typer.echo(f"FHIR server: {server.base_url}")
        typer.echo("Loading the model ...")
        chat = await asyncio.to_thread(_load_model, settings, model, model_url)
        typer.echo(f"Patient/{patient}: {question.text}")
        result = await answer_question(settings, server.base_url, chat, patient, question.text, None)
        return question, result
    finally:
        await asyncio.to_thread(server.stop)


def demo(model: ModelOpt = None, model_url: ModelUrlOpt = None) -> None:
    """Start the embedded FHIR server with the cached demo cohort and answer one question end to end."""
    settings = Settings()
    question, result = _run(_demo(settings, model, model_url))
    _print(result)
    _print_key(question, result)
    if result.status == "failed":
        raise typer.Exit(1)
