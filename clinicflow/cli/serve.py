"""`clinicflow serve`: the HTTP API for hospital pipelines (and `--create-key` to issue an API key).

Exit codes: 0 stopped normally (or key created); 2 bad settings or options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["serve"]


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Runs executing at once (default: CLINICFLOW_API_WORKERS).")
    ] = None,
    create_key: Annotated[
        str | None, typer.Option("--create-key", help="Create an API key with this name, print it, and exit.")
    ] = None,
    scopes: Annotated[
        str,
        typer.Option(
            help="Scopes of the new key, space- or comma-separated: workflow:<name>|*, read, write, "
            "patient:<id>|*, group:<id>, audit."
        ),
    ] = "workflow:* read patient:*",
    reports: Annotated[
        Path | None,
        typer.Option(
            "--reports",
            help="Runs folder whose eval reports /console/reports shows (CLINICFLOW_CONSOLE_REPORTS_DIR).",
        ),
    ] = None,
) -> None:
    """Serve the clinicflow HTTP API (runs, events, approvals, audit, metrics) and /console with uvicorn."""
    from pydantic import ValidationError

    from clinicflow.api.config import ApiSettings

    try:
        overrides: dict[str, object] = {"api_workers": workers} if workers is not None else {}
        if reports is not None:
            overrides["console_reports_dir"] = reports
        settings = ApiSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise _fail(f"Bad settings: {exc}") from None

    if create_key is not None:
        from clinicflow.api.auth import create_api_key

        try:
            issued = create_api_key(
                create_key, scopes.replace(",", " ").split(), database_url=settings.store_url()
            )
        except ValueError as exc:
            raise _fail(str(exc)) from None
        typer.echo(f"API key {issued.name!r} (id {issued.key_id}), scopes: {' '.join(issued.scopes)}")
        typer.echo("Shown once; store it now:")
        typer.echo(issued.token)
        return

    import uvicorn

    from clinicflow.api.app import create_app

    try:
        app = create_app(settings)
    except (ValueError, RuntimeError) as exc:
        raise _fail(f"Cannot start the API: {exc}") from None
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)
