"""Root of the `clinicflow` command; each group lives in its own module."""

from __future__ import annotations

import typer

from clinicflow.cli.ask import ask, demo
from clinicflow.cli.eval_agentclinic import agentclinic
from clinicflow.cli.eval_ehrqa import ehrqa
from clinicflow.cli.eval_medagentbench import medagentbench
from clinicflow.cli.fhir import fhir_app
from clinicflow.cli.guidelines import guidelines_app
from clinicflow.cli.images import images_app
from clinicflow.cli.mcp import mcp
from clinicflow.cli.model import model_app
from clinicflow.cli.serve import serve

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Agentic clinical workflows over FHIR.")
app.command()(ask)
app.command()(demo)
app.command()(serve)
app.command()(mcp)
app.add_typer(fhir_app, name="fhir")
app.add_typer(guidelines_app, name="guidelines")
app.add_typer(model_app, name="model")
app.add_typer(images_app, name="images")

eval_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Benchmark harnesses.")
eval_app.command("agentclinic")(agentclinic)
eval_app.command("ehrqa")(ehrqa)
eval_app.command("medagentbench")(medagentbench)
app.add_typer(eval_app, name="eval")
