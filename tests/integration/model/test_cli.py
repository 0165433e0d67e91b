"""`clinicflow model chat` on the real default model."""

from __future__ import annotations

from typer.testing import CliRunner

from clinicflow.cli.model import model_app
from clinicflow.model import TransformersChatModel


def test_chat_prints_the_reply_and_its_token_counts(gemma: TransformersChatModel) -> None:
    result = CliRunner().invoke(model_app, ["chat", "The capital of France is", "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output
    assert "tokens in, 3 out" in result.output
