"""`clinicflow guidelines`: index guideline files and search them from the shell."""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from clinicflow.cli.progress import ProgressBar
from clinicflow.tools.guidelines import (
    NO_GUIDELINES,
    SHIPPED_CORPUS,
    GuidelineError,
    GuidelineIndex,
    GuidelineSearcher,
    SearchFilters,
    default_index_path,
)

__all__ = ["default_index_path", "guidelines_app"]

guidelines_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Index clinical guidelines (Markdown, text, PDF) and search them (hybrid BM25 + dense retrieval).",
)


class SearchMode(StrEnum):
    """Which retriever answers a search."""

    hybrid = "hybrid"
    bm25 = "bm25"
    dense = "dense"


IndexOption = Annotated[
    Path | None,
    typer.Option("--index", help="Index file (SQLite); default: <cache_dir>/guidelines.sqlite."),
]


@guidelines_app.command("index")
def index_command(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="Folder or file of .md/.txt/.pdf guidelines; default: the shipped starter corpus."
        ),
    ] = None,
    index: IndexOption = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Empty the index before indexing.")] = False,
) -> None:
    """Add or update guideline documents in the index; unreadable files are skipped and listed."""
    path = index or default_index_path()
    source = directory or SHIPPED_CORPUS
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        with ProgressBar("Encoding guidelines", "passage") as bar:
            report = GuidelineIndex(path).index_directory(source, rebuild=rebuild, progress=bar)
    except GuidelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(report.summary())
    typer.echo(f"index: {path}")


def _index_starter_corpus_once(path: Path) -> None:
    """Index the shipped starter corpus into an index holding no documents (a fresh machine)."""
    guideline_index = GuidelineIndex(path)
    if guideline_index.document_count():
        return
    typer.echo(f"Indexing the starter guideline corpus into {path} (first search only)...", err=True)
    with ProgressBar("Encoding guidelines", "passage") as bar:
        report = guideline_index.index_directory(SHIPPED_CORPUS, progress=bar)
    typer.echo(report.summary(), err=True)


@guidelines_app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help="What to look up.")],
    k: Annotated[int, typer.Option("--k", "-k", help="Number of passages.")] = 5,
    index: IndexOption = None,
    mode: Annotated[SearchMode, typer.Option(help="Retriever.")] = SearchMode.hybrid,
    document: Annotated[str | None, typer.Option(help="Only this document (id or title).")] = None,
    section: Annotated[str | None, typer.Option(help="Only sections whose path starts with this.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only documents with this tag (repeatable).")] = None,
    budget: Annotated[int, typer.Option(help="Token budget for the printed passages.")] = 1200,
) -> None:
    """Print the top passages for QUERY, each under its [guideline: <doc> § <section>] citation.

    The default index, when empty, is first filled with the shipped starter corpus."""
    path = index or default_index_path()
    filters = SearchFilters(document=document, section_prefix=section, tags=tuple(tag or ()))
    try:
        if index is None:
            _index_starter_corpus_once(path)
        text = GuidelineSearcher(path).answer(query, k, token_budget=budget, mode=mode.value, filters=filters)
    except GuidelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(text)
    if text == NO_GUIDELINES:
        typer.echo(
            "run `clinicflow guidelines index [DIR]` first (no DIR indexes the starter corpus)", err=True
        )
