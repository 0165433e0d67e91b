"""The text protocol: action parsing under both variants, the round loop, echoes, GETs limited to the FHIR
base and sent as the benchmark sends them, POSTs only recorded."""

from __future__ import annotations

import json
from collections.abc import Sequence

import httpx
import pytest
from langchain_core.messages import AIMessage

from clinicflow.evals.medagentbench.protocol import (
    GET_RESPONSE,
    INVALID_POST,
    POST_ACCEPTED,
    FhirGetter,
    ModelTextAgent,
    build_prompt,
    get_request_url,
    parse_action,
    repeats_prompt,
    run_text_task,
)
from clinicflow.evals.medagentbench.tasks import DEFAULT_FUNCTIONS, MabTask
from clinicflow.evals.medagentbench.variants import CLINICFLOW, ORIGINAL
from tests.fakes import ScriptedChatModel

BASE = "http://fhir.test/fhir"
TASK = MabTask(
    id="task2_1",
    instruction="What's the age of the patient with MRN of S1?",
    context="It's 2023-11-13T10:15:00+00:00 now.",
    eval_MRN="S1",
)


class Replies:
    """A text agent that replays fixed replies and keeps what it was shown."""

    name = "scripted"

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.seen: list[list[dict[str, str]]] = []

    async def respond(self, task: MabTask, messages: Sequence[dict[str, str]]) -> str:
        self.seen.append([dict(m) for m in messages])
        return self.replies.pop(0)


def _getter(log: list[httpx.Request], **kw: object) -> tuple[FhirGetter, httpx.AsyncClient]:
    def handler(request: httpx.Request) -> httpx.Response:
        log.append(request)
        return httpx.Response(200, json={"resourceType": "Bundle", "entry": [{"resource": {"id": "p1"}}]})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return FhirGetter(BASE, http, **kw), http  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("GET http://x/fhir/Patient?identifier=S1", "get"),
        ("```tool_code\nGET http://x/fhir/Patient?identifier=S1\n```", "get"),
        ('POST http://x/fhir/Observation\n{"resourceType": "Observation"}', "post"),
        ("FINISH([42])", "finish"),
        ("The answer is 42.", "invalid"),
        ("finish([42])", "invalid"),
        ("", "invalid"),
    ],
)
def test_parse_action_kinds(reply: str, kind: str) -> None:
    assert parse_action(reply).kind == kind


def test_parse_action_details() -> None:
    post = parse_action('POST http://x/fhir/Observation\n{"a": 1}')
    assert (post.url, post.payload, post.payload_error) == ("http://x/fhir/Observation", {"a": 1}, None)
    broken = parse_action("POST http://x/fhir/Observation\n{not json")
    assert broken.kind == "post" and broken.payload is None and broken.payload_error
    assert parse_action('FINISH(["S1", 2])').result == '["S1", 2]'


def test_a_get_is_the_whole_reply_in_the_original_and_its_first_line_in_clinicflow() -> None:
    reply = "GET http://x/fhir/Patient?a=1\nextra"
    assert parse_action(reply, ORIGINAL).url == "http://x/fhir/Patient?a=1\nextra"
    assert parse_action(reply, CLINICFLOW).url == "http://x/fhir/Patient?a=1"
    assert get_request_url("http://x/fhir/Patient", ORIGINAL) == "http://x/fhir/Patient&_format=json"
    assert get_request_url("http://x/fhir/Patient", CLINICFLOW) == "http://x/fhir/Patient?_format=json"
    assert (
        get_request_url("http://x/fhir/Patient?a=1", CLINICFLOW) == "http://x/fhir/Patient?a=1&_format=json"
    )


@pytest.mark.parametrize(
    ("reply", "original", "clinicflow"),
    [
        ("FINISH([42])", "[42]", "[42]"),
        ("FINISH([42]", "[42", "[42]"),
        ("FINISH([42]) thanks", "[42]) thank", "[42]) thanks"),
        ("FINISH()", "", ""),
    ],
)
def test_the_finish_answer_drops_the_last_character_in_the_original(
    reply: str, original: str, clinicflow: str
) -> None:
    assert parse_action(reply, ORIGINAL).result == original
    assert parse_action(reply, CLINICFLOW).result == clinicflow


@pytest.mark.parametrize(
    "reply",
    [
        build_prompt(TASK, DEFAULT_FUNCTIONS, BASE),
        "FINISH([answer1, answer2, ...])",
        "FINISH([answer1",
        "GET url?param_name1=param_value1&param_name2=param_value2...",
        "POST url\n[your payload data in JSON format]",
        "POST request accepted and executed successfully. Please call FINISH if you have got answers for all "
        "the questions and finished all the requested tasks",
        "GET http://x/fhir/Patient?identifier=S1\nYou SHOULD NOT include any other text in the response.",
        "FINISH([42])\n\nyour response must be in the format of one of the three cases,   and you can call "
        "only one function each time.",
    ],
)
def test_echoes_of_the_protocol_text_are_recognised(reply: str) -> None:
    assert repeats_prompt(reply)


@pytest.mark.parametrize(
    "reply",
    [
        "GET http://x/fhir/Observation?patient=S1&code=MG&_count=5000",
        'POST http://x/fhir/ServiceRequest\n{"note": {"text": "Situation: acute left knee injury."}}',
        'FINISH(["Patient not found"])',
        "FINISH([])",
        "I need more information.",
    ],
)
def test_actions_are_not_echoes(reply: str) -> None:
    assert not repeats_prompt(reply)


async def test_an_echo_ends_the_task_and_is_recorded() -> None:
    getter, http = _getter([])
    async with http:
        trajectory = await run_text_task(
            TASK, Replies("FINISH([answer1, answer2, ...])"), getter, DEFAULT_FUNCTIONS, variant=ORIGINAL
        )
    assert trajectory.status == "echo" and trajectory.result is None and trajectory.rounds == 1
    assert trajectory.history[-1] == {"role": "agent", "content": "FINISH([answer1, answer2, ...])"}


async def test_a_multi_line_get_is_sent_whole_and_percent_encoded_in_the_original() -> None:
    log: list[httpx.Request] = []
    getter, http = _getter(log)
    async with http:
        await run_text_task(
            TASK,
            Replies(f"GET {BASE}/Patient?identifier=S1\nthen", "FINISH([42])"),
            getter,
            [],
            variant=ORIGINAL,
        )
        await run_text_task(
            TASK,
            Replies(f"GET {BASE}/Patient?identifier=S1\nthen", "FINISH([42])"),
            getter,
            [],
            variant=CLINICFLOW,
        )
    assert [str(r.url) for r in log] == [
        f"{BASE}/Patient?identifier=S1%0Athen&_format=json",
        f"{BASE}/Patient?identifier=S1&_format=json",
    ]


async def test_http_errors_read_as_the_benchmarks_client_words_them() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(404)))
    async with http:
        ok, text = await FhirGetter(BASE, http).get(f"{BASE}/Patient&_format=json")
    assert not ok and text == f"404 Client Error: Not Found for url: {BASE}/Patient&_format=json"


def test_prompt_names_the_base_functions_context_and_question() -> None:
    prompt = build_prompt(TASK, DEFAULT_FUNCTIONS, BASE)
    assert f"you should use {BASE}/ as the api_base" in prompt
    assert json.dumps(list(DEFAULT_FUNCTIONS)) in prompt
    assert prompt.endswith(f"Context: {TASK.context}\nQuestion: {TASK.instruction}")


async def test_get_then_finish() -> None:
    log: list[httpx.Request] = []
    getter, http = _getter(log)
    agent = Replies(f"GET {BASE}/Patient?identifier=S1", "FINISH([42])")
    async with http:
        trajectory = await run_text_task(TASK, agent, getter, DEFAULT_FUNCTIONS, variant=ORIGINAL)
    assert trajectory.status == "completed" and trajectory.result == "[42]" and trajectory.rounds == 2
    assert str(log[0].url) == f"{BASE}/Patient?identifier=S1&_format=json"
    feedback = agent.seen[1][-1]["content"]
    assert feedback.startswith("Here is the response from the GET request:\n{") and feedback.endswith(
        "requested tasks"
    )
    assert [m["role"] for m in trajectory.history] == ["user", "agent", "user", "agent"]


async def test_posts_are_recorded_not_sent_and_bad_json_is_not_accepted() -> None:
    log: list[httpx.Request] = []
    getter, http = _getter(log)
    agent = Replies(
        f'POST {BASE}/Observation\n{{"resourceType": "Observation"}}',
        f"POST {BASE}/Observation\n{{oops",
        "FINISH([])",
    )
    async with http:
        trajectory = await run_text_task(TASK, agent, getter, DEFAULT_FUNCTIONS, variant=ORIGINAL)
    assert log == [], "the text protocol never sends a POST"
    assert [p.accepted for p in trajectory.posts] == [True, False]
    assert agent.seen[1][-1]["content"] == POST_ACCEPTED
    assert agent.seen[2][-1]["content"] == INVALID_POST


async def test_an_invalid_action_ends_the_task() -> None:
    getter, http = _getter([])
    async with http:
        trajectory = await run_text_task(
            TASK, Replies("I need more information."), getter, DEFAULT_FUNCTIONS, variant=ORIGINAL
        )
    assert trajectory.status == "invalid_action" and trajectory.rounds == 1 and trajectory.result is None


async def test_the_round_limit() -> None:
    getter, http = _getter([])
    agent = Replies(*[f"GET {BASE}/Patient?identifier=S1"] * 8)
    async with http:
        trajectory = await run_text_task(
            TASK, agent, getter, DEFAULT_FUNCTIONS, variant=ORIGINAL, max_rounds=8
        )
    assert trajectory.status == "limit_reached" and trajectory.rounds == 8


async def test_gets_outside_the_fhir_base_are_refused() -> None:
    log: list[httpx.Request] = []
    getter, http = _getter(log)
    agent = Replies("GET http://169.254.169.254/latest/meta-data", f"GET {BASE}/../admin", "FINISH([])")
    async with http:
        trajectory = await run_text_task(TASK, agent, getter, DEFAULT_FUNCTIONS, variant=ORIGINAL)
    assert log == []
    assert trajectory.history[2]["content"].startswith("Error in sending the GET request: only URLs under")


async def test_long_answers_can_be_cut() -> None:
    getter, http = _getter([], max_chars=30)
    async with http:
        ok, text = await getter.get(f"{BASE}/Patient")
    assert ok and text.startswith('{"resourceType":"Bundle"') and "[truncated, 60 characters in all]" in text


async def test_a_chat_model_speaks_the_protocol() -> None:
    model = ScriptedChatModel(script=[AIMessage(content="FINISH([42])")])
    getter, http = _getter([])
    async with http:
        trajectory = await run_text_task(
            TASK, ModelTextAgent(model), getter, DEFAULT_FUNCTIONS, variant=ORIGINAL
        )
    assert trajectory.result == "[42]"
    assert model.calls[0].messages[0].type == "human", "the prompt is a user turn, as in the benchmark"


async def test_an_agent_failure_is_a_task_error_not_a_crash() -> None:
    model = ScriptedChatModel(script=[RuntimeError("model server down")])
    getter, http = _getter([])
    async with http:
        trajectory = await run_text_task(
            TASK, ModelTextAgent(model), getter, DEFAULT_FUNCTIONS, variant=ORIGINAL
        )
    assert trajectory.status == "error" and "model server down" in (trajectory.error or "")


def test_feedback_templates_match_the_benchmark() -> None:
    assert GET_RESPONSE.format(data="{}").startswith(
        "Here is the response from the GET request:\n{}. Please call FINISH"
    )
    assert POST_ACCEPTED.startswith("POST request accepted and executed successfully.")
