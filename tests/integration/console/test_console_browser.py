"""The console in a real headless Chromium against a real `clinicflow serve`: log in, edit and approve a
pending write (exactly one resource on the FHIR server, and the audit row), reject another, ask and open
a citation, a user scoped to one patient sees nothing of another, a form without its CSRF token is
refused, the eval reports, and both page widths. Every wait is for a condition (Playwright's `expect`,
the API client following a run's events), never a fixed sleep."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from clinicflow.tools.write_tools import WRITE_IDENTIFIER_SYSTEM
from tests.integration.console.conftest import QUESTION, ConsoleEnv

sync_api = pytest.importorskip("playwright.sync_api", reason="the Playwright package is not installed")
expect = sync_api.expect
pytestmark = pytest.mark.integration
RUN_S = 60_000  # ms: the longest a run may take to finish in these tests
expect.set_options(timeout=15_000)


@pytest.fixture
def pages(browser: Any, console_env: ConsoleEnv) -> Iterator[Any]:
    """Opens a logged-in page per call (`pages("admin")`); closes them all after the test."""
    contexts = []

    def open_as(who: str, width: int = 1280) -> Any:
        context = browser.new_context(base_url=console_env.url, viewport={"width": width, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.goto("/console/queue")
        expect(page).to_have_url(re.compile(r"/console/login\?next="))
        page.get_by_label("API key or access token").fill(console_env.tokens[who])
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Approval queue")).to_be_visible()
        return page

    yield open_as
    for context in contexts:
        context.close()


def _stored(env: ConsoleEnv, identifier: str) -> list[dict[str, Any]]:
    bundle = httpx.get(
        f"{env.fhir_url}/ServiceRequest", params={"identifier": f"{WRITE_IDENTIFIER_SYSTEM}|{identifier}"}
    ).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _audit(env: ConsoleEnv, run_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{env.url}/v1/audit",
        params={"run_id": run_id, "limit": 1000},
        headers={"Authorization": f"Bearer {env.tokens['admin']}"},
    )
    return list(response.json()["entries"])


def _order(page: Any, run_id: str) -> Any:
    page.goto("/console/queue")
    order = page.locator(f'section[data-run="{run_id}"]')
    expect(order).to_be_visible()
    return order


def test_edit_and_approve_a_pending_write_creates_one_resource_and_an_audit_row(
    pages: Any, console_env: ConsoleEnv
) -> None:
    waiting = console_env.pending_task("writer_a", console_env.patient_a)
    page = pages("admin")
    order = _order(page, waiting["id"])
    expect(order.get_by_role("heading")).to_contain_text("Hemoglobin A1c")
    expect(order).to_contain_text(f"Patient/{console_env.patient_a}")
    expect(order.locator("pre")).to_contain_text('"resourceType": "ServiceRequest"')
    order.get_by_text("Edit fields, then approve").click()
    order.get_by_label("note › text").fill("yearly check, fasting")
    order.get_by_role("button", name="Approve with edits").click()

    expect(page).to_have_url(re.compile(f"/console/runs/{waiting['id']}$"))
    expect(page.locator("#run-status")).to_have_text("completed", timeout=RUN_S)  # live, from the SSE stream
    decision = page.locator('tr[data-action="approval.decide"]')
    expect(decision).to_have_count(1)
    expect(decision).to_contain_text("edit")
    expect(page.locator('tr[data-action="fhir.create"]')).to_have_count(1)

    [write] = console_env.get_run(waiting["id"])["result"]["writes"]  # an edit gets its own identifier
    stored = _stored(console_env, write["identifier"].split("|", 1)[1])
    assert [f"ServiceRequest/{r['id']}" for r in stored] == [write["reference"]]
    assert stored[0]["note"][0]["text"] == "yearly check, fasting"
    rows = [r for r in _audit(console_env, waiting["id"]) if r["action"] == "approval.decide"]
    assert (
        len(rows) == 1 and rows[0]["actor"].startswith("key:admin:") and rows[0]["detail"]["action"] == "edit"
    )


def test_reject_with_a_reason_writes_nothing(pages: Any, console_env: ConsoleEnv) -> None:
    waiting = console_env.pending_task("writer_a", console_env.patient_a)
    identifier = waiting["pending_approval"]["request"]["identifier"]["value"]
    page = pages("writer_a")
    order = _order(page, waiting["id"])
    order.get_by_text("Reject", exact=True).first.click()
    order.get_by_label("Reason (required)").fill("already ordered this month")
    order.get_by_role("button", name="Reject").click()
    expect(page.locator("#run-status")).to_have_text("completed", timeout=RUN_S)
    assert _stored(console_env, identifier) == []
    decided = [r for r in _audit(console_env, waiting["id"]) if r["action"] == "approval.decide"]
    assert [r["detail"]["reason"] for r in decided] == ["already ordered this month"]


def test_ask_watch_the_run_and_open_a_citation(pages: Any, console_env: ConsoleEnv) -> None:
    page = pages("admin")
    page.get_by_role("link", name="Ask").click()
    page.get_by_label("Patient").select_option(console_env.patient_a)
    page.get_by_label("Question or instruction").fill(QUESTION)
    page.get_by_role("button", name="Ask").click()
    expect(page).to_have_url(re.compile(r"/console/runs/[0-9a-f]{32}$"))
    expect(page.locator("#run-status")).to_have_text("completed", timeout=RUN_S)
    expect(page.locator(".timeline .t-model").first).to_contain_text("tokens in")
    expect(page.locator(".timeline .t-result").first).to_be_visible()
    citation = page.locator(".answer a.cite").first
    reference = citation.inner_text().strip("[]")
    citation.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(reference)
    expect(page.locator("pre")).to_contain_text(f'"id": "{reference.split("/")[1]}"')


def test_a_user_scoped_to_one_patient_sees_nothing_of_another(pages: Any, console_env: ConsoleEnv) -> None:
    mine = console_env.pending_task("writer_a", console_env.patient_a)
    theirs = console_env.pending_task("admin", console_env.patient_b)
    answered = console_env.answered("admin", console_env.patient_b)
    page = pages("writer_a")
    _order(page, mine["id"])  # the queue has loaded, with this user's own pending write
    expect(page.locator(f'section[data-run="{theirs["id"]}"]')).to_have_count(0)
    page.goto("/console/runs")
    expect(page.get_by_role("link", name=mine["id"][:8])).to_be_visible()
    expect(page.get_by_role("link", name=theirs["id"][:8])).to_have_count(0)
    expect(page.get_by_role("link", name=answered["id"][:8])).to_have_count(0)
    page.goto("/console/ask")
    expect(page.locator(f'option[value="{console_env.patient_b}"]')).to_have_count(0)
    cited = answered["result"]["citations"][0]
    for path in (
        f"/console/runs/{theirs['id']}",
        f"/console/runs/{answered['id']}",
        f"/console/runs/{answered['id']}/live",
        f"/console/fhir/{cited}",
        f"/console/fhir/Patient/{console_env.patient_b}",
    ):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    assert page.request.get(f"/console/runs/{answered['id']}/events").status == 403
    assert console_env.get_run(theirs["id"])["status"] == "waiting_approval"


def test_a_form_posted_without_its_csrf_token_is_refused(pages: Any, console_env: ConsoleEnv) -> None:
    waiting = console_env.pending_task("writer_a", console_env.patient_a)
    page = pages("writer_a")
    order = _order(page, waiting["id"])
    order.locator('form.inline input[name="csrf_token"]').evaluate("input => input.remove()")
    order.get_by_role("button", name="Approve", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("CSRF token is missing or wrong")
    forged = page.request.post(f"/console/queue/{waiting['id']}/decide", form={"action": "approve"})
    assert forged.status == 403
    assert console_env.get_run(waiting["id"])["status"] == "waiting_approval"
    assert not [r for r in _audit(console_env, waiting["id"]) if r["action"] == "approval.decide"]


def test_eval_reports_show_their_tables_and_plots(pages: Any) -> None:
    page = pages("reader_all")
    page.get_by_role("link", name="Eval reports").click()
    page.get_by_role("link", name="EHRQA: ehrqa").click()
    expect(page.locator("table.ehrqa")).to_contain_text("Condition existence")
    plot = page.get_by_role("img", name=re.compile("accuracy.png"))
    expect(plot).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=plot.element_handle())
    page.goto("/console/reports")
    page.get_by_role("link", name="AgentClinic: agentclinic").click()
    expect(page.locator("dl.facts")).to_contain_text("95% interval (Wilson)")
    page.goto("/console/reports")
    page.get_by_role("link", name="MedAgentBench: medagentbench").click()
    expect(page.locator("table.mab")).to_contain_text("Action tasks")


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_fit_the_width_and_start_with_a_skip_link(
    pages: Any, console_env: ConsoleEnv, width: int
) -> None:
    console_env.pending_task("writer_a", console_env.patient_a)
    page = pages("admin", width)
    for path in ("/console/queue", "/console/runs", "/console/ask", "/console/reports"):
        page.goto(path)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (path, overflow)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
