"""A model that only echoes its prompt scores 0, through the real runner against the real embedded server:
whether it repeats the whole prompt or the part of it that starts with an action keyword."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from clinicflow.evals.medagentbench.runner import run_medagentbench
from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.evals.medagentbench.variants import CLINICFLOW, ORIGINAL, ProtocolVariant
from tests.fakes import FakeChatModel


class EchoChatModel(FakeChatModel):
    """Replies with its prompt, from `start` on when given, up to `length` characters when given."""

    start: str = ""
    length: int | None = None

    @property
    def _llm_type(self) -> str:
        return "echo-fake"

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        text = messages[0].text
        if self.start:
            text = text[text.index(self.start) :]
        if self.length is not None:
            text = text[: self.length]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


ECHOES = {
    "whole prompt": EchoChatModel(),
    "from the GET line": EchoChatModel(start="GET url"),
    "from the POST line": EchoChatModel(start="POST url"),
    "from the FINISH line": EchoChatModel(start="FINISH("),
    "the FINISH line": EchoChatModel(start="FINISH(", length=len("FINISH([answer1, answer2, ...])")),
}


@pytest.mark.parametrize("variant", [ORIGINAL, CLINICFLOW], ids=lambda v: v.name)
@pytest.mark.parametrize("echo", ECHOES)
async def test_an_echo_only_model_scores_0(
    mab_server: str, mab_tasks: list[MabTask], tmp_path: Path, echo: str, variant: ProtocolVariant
) -> None:
    run = await run_medagentbench(
        mab_tasks, base_url=mab_server, agent="text", model=ECHOES[echo], out_dir=tmp_path, protocol=variant
    )
    report = run.report
    assert (report["overall"]["k"], report["overall"]["n"]) == (0, 30)
    assert report["statuses"] == {"echo": 30}, "every echo is caught at its first turn"
    assert report["invalid_action"]["k"] == 30
