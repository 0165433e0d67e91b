"""`clinicflow eval agentclinic` in a child process with a slow scripted model standing in for every role.

Run as ``python -m tests.integration.encounter.fake_eval [agentclinic options]``; the case objective of
each doctor prompt (original protocol) is appended to the file named by ``FAKE_EVAL_LOG``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from clinicflow.evals.agentclinic import models as model_specs
from tests.unit.encounter.roles import SlowScriptedChatModel, system_text

LOG = Path(os.environ.get("FAKE_EVAL_LOG", os.devnull))


def _reply(messages: list[BaseMessage]) -> AIMessage:
    system = system_text(messages)
    if system.startswith("You are a doctor"):
        objective = system.split("Below is all of the information you have. ", 1)[1].split(". \n\n", 1)[0]
        with LOG.open("a", encoding="utf-8") as log:
            log.write(objective + "\n")
        user = messages[-1].text
        return AIMessage(
            "DIAGNOSIS READY: Appendicitis" if "Lower right side." in user else "Where does it hurt?"
        )
    if system.startswith("You are a patient"):
        return AIMessage("Lower right side.")
    return AIMessage("No")


def _loader(settings: Any, *, model: str | None = None, model_url: str | None = None) -> BaseChatModel:
    return SlowScriptedChatModel(
        script=[_reply] * 10_000, delay=float(os.environ.get("FAKE_EVAL_DELAY", "0.05"))
    )


if __name__ == "__main__":
    model_specs._loader = lambda: _loader  # type: ignore[assignment]
    from clinicflow.cli.eval_agentclinic import agentclinic

    sys.argv[0] = "clinicflow eval agentclinic"
    typer.run(agentclinic)
