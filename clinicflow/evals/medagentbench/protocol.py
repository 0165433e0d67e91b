"""The MedAgentBench text protocol: the benchmark's prompt and agent loop, one action per turn.

An agent replies `GET url?params`, `POST url` with a JSON body on the following lines, or
`FINISH([answers])`; anything else is an invalid action and ends the task, as does a reply that repeats
the protocol's own text (an echo). The task also ends after `max_rounds` turns. GETs are sent to the FHIR
server (only URLs under its base); POSTs are answered as accepted when their body is JSON, without being
sent, as in the benchmark, so an eval never writes to the server in this mode. The whole conversation is
the agent's context every turn. A `ProtocolVariant` decides the few parsing rules the variants differ on.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from clinicflow.evals.medagentbench.tasks import MabTask
from clinicflow.evals.medagentbench.trajectory import Post, Trajectory
from clinicflow.evals.medagentbench.variants import ORIGINAL, ProtocolVariant

__all__ = [
    "GET_ERROR",
    "GET_RESPONSE",
    "INVALID_POST",
    "POST_ACCEPTED",
    "PROMPT_TEMPLATE",
    "Action",
    "FhirGetter",
    "ModelTextAgent",
    "TextAgent",
    "build_prompt",
    "get_request_url",
    "parse_action",
    "repeats_prompt",
    "run_text_task",
]

PROMPT_TEMPLATE = """\
You are an expert in using FHIR functions to assist medical professionals. You are given a question and \
a set of possible functions. Based on the question, you will need to make one or more function/tool calls \
to achieve the purpose.

1. If you decide to invoke a GET function, you MUST put it in the format of
GET url?param_name1=param_value1&param_name2=param_value2...

2. If you decide to invoke a POST function, you MUST put it in the format of
POST url
[your payload data in JSON format]

3. If you have got answers for all the questions and finished all the requested tasks, you MUST call to \
finish the conversation in the format of (make sure the list is JSON loadable.)
FINISH([answer1, answer2, ...])

Your response must be in the format of one of the three cases, and you can call only one function each \
time. You SHOULD NOT include any other text in the response.

Here is a list of functions in JSON format that you can invoke. Note that you should use {api_base} as \
the api_base.
{functions}

Context: {context}
Question: {question}"""

_PLEASE_FINISH = (
    "Please call FINISH if you have got answers for all the questions and finished all the requested tasks"
)
GET_RESPONSE = "Here is the response from the GET request:\n{data}. " + _PLEASE_FINISH
GET_ERROR = "Error in sending the GET request: {error}"
POST_ACCEPTED = "POST request accepted and executed successfully. " + _PLEASE_FINISH
INVALID_POST = "Invalid POST request"


_ECHO_MARKERS = ("param_name1", "[answer1", "[your payload data")
"""Placeholders of the prompt that no real action holds, caught even in a cut-short echo."""


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _protocol_sentences() -> tuple[str, ...]:
    """The fixed sentences of the prompt and the feedback (20 characters or more), normalised."""
    found: list[str] = []
    for template in (PROMPT_TEMPLATE, GET_RESPONSE, GET_ERROR, POST_ACCEPTED, INVALID_POST):
        for part in re.split(r"\{[a-z_]+\}|\n", template):
            for sentence in re.split(r"(?<=[.:)])\s+", part):
                normalised = _normalise(sentence)
                if len(normalised) >= 20:
                    found.append(normalised)
    return tuple(dict.fromkeys(found))


_PROTOCOL_SENTENCES = _protocol_sentences()


def repeats_prompt(reply: str) -> bool:
    """True when a reply repeats the protocol's own text (a sentence of the prompt or of the feedback, or
    one of its placeholders): an echo, never an action, wherever in it an action keyword stands."""
    text = _normalise(reply)
    return any(s in text for s in _PROTOCOL_SENTENCES) or any(m in text for m in _ECHO_MARKERS)


@dataclass(frozen=True)
class Action:
    """One parsed agent turn."""

    kind: Literal["get", "post", "finish", "invalid"]
    text: str
    url: str = ""
    payload: Any = None
    payload_error: str | None = None
    result: str = ""


def parse_action(reply: str, variant: ProtocolVariant = ORIGINAL) -> Action:
    """Parse a reply as the benchmark's loop does: code fences stripped, then `GET`, `POST` or `FINISH(`
    at the start; anything else is `invalid`. The variant decides how much of a GET and a FINISH counts."""
    text = reply.strip().replace("```tool_code", "").replace("```", "").strip()
    if text.startswith("GET"):
        rest = text[3:].strip()
        url = rest if variant.get_whole_reply else (rest.splitlines()[0].strip() if rest else "")
        return Action("get", text, url=url)
    if text.startswith("POST"):
        lines = text.split("\n")
        url = lines[0][4:].strip()
        try:
            payload = json.loads("\n".join(lines[1:]))
        except (ValueError, RecursionError) as exc:
            return Action("post", text, url=url, payload_error=str(exc))
        return Action("post", text, url=url, payload=payload)
    if text.startswith("FINISH("):
        inner = text[len("FINISH(") :]
        drop = variant.finish_drops_last_char or inner.endswith(")")
        return Action("finish", text, result=inner[:-1] if drop else inner)
    return Action("invalid", text)


def get_request_url(url: str, variant: ProtocolVariant = ORIGINAL) -> str:
    """The URL a GET action is sent to: `_format=json` added as the variant adds it."""
    if variant.get_whole_reply:
        return url + "&_format=json"
    return url + ("&" if "?" in url else "?") + "_format=json"


def build_prompt(task: MabTask, functions: Sequence[dict[str, Any]], api_base: str) -> str:
    """The opening message of a task: protocol, endpoint declarations, context and question."""
    base = api_base.rstrip("/") + "/"
    return PROMPT_TEMPLATE.format(
        api_base=base, functions=json.dumps(list(functions)), context=task.context, question=task.instruction
    )


class TextAgent(Protocol):
    """An agent of the text protocol: given the task and the conversation so far, the next reply."""

    name: str

    async def respond(self, task: MabTask, messages: Sequence[dict[str, str]]) -> str: ...


class ModelTextAgent:
    """A chat model speaking the text protocol: user turns are prompts and server feedback."""

    name = "text"

    def __init__(self, model: BaseChatModel) -> None:
        self.model = model

    async def respond(self, task: MabTask, messages: Sequence[dict[str, str]]) -> str:
        """One model reply to the conversation."""
        chat: list[BaseMessage] = [
            HumanMessage(m["content"]) if m["role"] == "user" else AIMessage(m["content"]) for m in messages
        ]
        reply = await self.model.ainvoke(chat)
        return reply.text if isinstance(reply, AIMessage) else str(reply.content)


class FhirGetter:
    """Sends the agent's GETs to the FHIR server, refusing URLs outside its base."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, *, max_chars: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.max_chars = max_chars

    def _allowed(self, url: str) -> bool:
        try:
            target, base = httpx.URL(url), httpx.URL(self.base_url + "/")
        except httpx.InvalidURL:
            return False
        return (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port) and (
            target.path + "/"
        ).startswith(base.path)

    async def get(self, url: str) -> tuple[bool, str]:
        """(True, body text) or (False, error text) for one GET of `url` as given.

        Whitespace and control characters are percent-encoded, as the benchmark's HTTP client sends them;
        HTTP errors read as that client words them.
        """
        url = "".join(c if c.isprintable() and not c.isspace() else quote(c) for c in url)
        if not self._allowed(url):
            return False, f"only URLs under the FHIR base {self.base_url}/ can be read, not {url!r}"
        try:
            response = await self.http.get(url)
        except httpx.HTTPError as exc:
            return False, str(exc)
        if response.is_error:
            kind = "Client" if response.status_code < 500 else "Server"
            return False, f"{response.status_code} {kind} Error: {response.reason_phrase} for url: {url}"
        text = response.text
        if self.max_chars is not None and len(text) > self.max_chars:
            text = text[: self.max_chars] + f"... [truncated, {len(response.text)} characters in all]"
        return True, text


async def run_text_task(
    task: MabTask,
    agent: TextAgent,
    getter: FhirGetter,
    functions: Sequence[dict[str, Any]],
    *,
    variant: ProtocolVariant,
    max_rounds: int = 8,
) -> Trajectory:
    """Run one task through the text protocol and return its trajectory (never raises for agent output)."""
    started = time.perf_counter()
    history: list[dict[str, str]] = [
        {"role": "user", "content": build_prompt(task, functions, getter.base_url)}
    ]
    posts: list[Post] = []

    def done(status: Any, rounds: int, result: str | None = None, error: str | None = None) -> Trajectory:
        return Trajectory(
            task_id=task.id,
            agent=agent.name,
            status=status,
            result=result,
            posts=posts,
            history=history,
            rounds=rounds,
            error=error,
            seconds=round(time.perf_counter() - started, 3),
        )

    for round_index in range(max_rounds):
        try:
            reply = await agent.respond(task, history)
        except Exception as exc:
            return done("error", round_index, error=f"agent failed: {type(exc).__name__}: {exc}")
        history.append({"role": "agent", "content": reply})
        if repeats_prompt(reply):
            return done("echo", round_index + 1, error="the reply repeats the protocol's own text")
        action = parse_action(reply, variant)
        if action.kind == "get":
            ok, body = await getter.get(get_request_url(action.url, variant))
            history.append(
                {
                    "role": "user",
                    "content": GET_RESPONSE.format(data=body) if ok else GET_ERROR.format(error=body),
                }
            )
        elif action.kind == "post":
            accepted = action.payload_error is None
            posts.append(Post(url=action.url, payload=action.payload, accepted=accepted))
            history.append({"role": "user", "content": POST_ACCEPTED if accepted else INVALID_POST})
        elif action.kind == "finish":
            return done("completed", round_index + 1, result=action.result)
        else:
            return done("invalid_action", round_index + 1)
    return done("limit_reached", max_rounds)
