"""Root of the `clinicflow` command; each group lives in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Agentic clinical workflows over FHIR.")
