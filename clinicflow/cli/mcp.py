"""`clinicflow mcp`: an MCP server over one patient's record (see `clinicflow.api.mcp_server`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from clinicflow.api.app import model_loader
from clinicflow.api.config import ApiSettings
from clinicflow.api.mcp_server import McpPatientError, Transport, open_mcp_server, serve
from clinicflow.cli.ask import _fhir_base_url
from clinicflow.fhir import FhirError
from clinicflow.tools.guidelines import default_index_path, indexed_guidelines

__all__ = ["mcp"]


def _guideline_index(settings: ApiSettings, enabled: bool) -> Path | None:
    """The default guideline index when asked for and it holds documents; None otherwise."""
    return indexed_guidelines(default_index_path(settings)) if enabled else None


async def _serve(
    settings: ApiSettings, patient: str, transport: Transport, host: str, port: int, guidelines: bool
) -> None:
    index = _guideline_index(settings, guidelines)
    async with (
        _fhir_base_url(settings) as base_url,
        open_mcp_server(
            settings,
            base_url,
            patient,
            model_loader(settings),
            guideline_index=index,
        ) as server,
    ):
        await serve(server, transport, host, port)


def mcp(
    patient: Annotated[
        str, typer.Option("--patient", "-p", help="FHIR Patient id this session is bound to.")
    ],
    transport: Annotated[
        str, typer.Option("--transport", help="stdio (default) or streamable-http.")
    ] = "stdio",
    host: Annotated[str, typer.Option("--host", help="streamable-http: address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="streamable-http: port (path /mcp).")] = 8766,
    guidelines: Annotated[
        bool, typer.Option("--guidelines/--no-guidelines", help="Serve guideline search when indexed.")
    ] = True,
) -> None:
    """Serve one patient's record tools and workflows to MCP clients; writes only as pending approvals."""
    if transport not in ("stdio", "streamable-http"):
        typer.secho(f"unknown transport {transport!r}; use stdio or streamable-http", fg="red", err=True)
        raise typer.Exit(2)
    settings = ApiSettings()  # type: ignore[call-arg]
    try:
        asyncio.run(_serve(settings, patient, transport, host, port, guidelines))  # type: ignore[arg-type]
    except (McpPatientError, FhirError) as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
