"""`clinicflow serve --create-key`: issues a key into the configured store, refuses unknown scopes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clinicflow.api.auth import verify_api_key
from clinicflow.api.store import Store
from clinicflow.cli.serve import serve


def test_create_key_prints_a_working_token_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/cli.sqlite"
    monkeypatch.setenv("CLINICFLOW_DATABASE_URL", url)
    app = typer.Typer()
    app.command()(serve)
    scopes = "workflow:ehr_qa,read,patient:p1"
    result = CliRunner().invoke(app, ["--create-key", "pipeline-a", "--scopes", scopes])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]

    async def check() -> list[str]:
        store = Store(url)
        try:
            return list((await verify_api_key(store, token)).scopes)
        finally:
            await store.close()

    assert asyncio.run(check()) == ["workflow:ehr_qa", "read", "patient:p1"]
    refused = CliRunner().invoke(app, ["--create-key", "bad", "--scopes", "everything"])
    assert refused.exit_code == 2 and "unknown scope 'everything'" in refused.output
