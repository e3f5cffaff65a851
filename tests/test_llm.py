"""LLM agents over real HTTP against the scripted OpenAI-compatible server, on a real
Temporal dev server: every fault ends in the expected path and no invalid reply flows on."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment

from activities.llm import LlmActivities
from activities.llm.providers import ProviderConfig
from baton.fakellm import FakeLlmServer, FakeScript
from baton.messages import AgentInput, AuditKind, LlmCall, Outcome
from baton.scenario import wait_for_approval
from baton.spec import ProcessSpec, snapshot_of
from tests.conftest import Running, policy_recording_drafts, refund

SECRET = "sk-test-DO-NOT-LEAK-0123456789"
CASE = refund("ORD-1015", "CUS-011", 42.50)
DRAFT = {"order_id": "ORD-1015", "amount": 42.50, "reason_code": "defective",
         "message": "Hello Kai, we are refunding 42.50 for your order ORD-1015."}  # fmt: skip
NOTE = {"message": "Your refund of 42.50 for ORD-1015 is on its way, Kai.", "cites": ["window"]}
USAGE = {"prompt_tokens": 200, "completion_tokens": 50}


@pytest.fixture
async def fake(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FakeLlmServer]:
    """A scripted server (script from the test's ``script`` marker) the OpenAI provider points at."""
    marker = request.node.get_closest_marker("script")
    assert marker is not None, "mark the test with @pytest.mark.script({...})"
    server = FakeLlmServer(FakeScript.model_validate({"usage": USAGE, **marker.args[0]}))
    async with server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        yield server


def calls_of(fake: FakeLlmServer, agent: str) -> list[dict[str, Any]]:
    return [s.body for s in fake.seen if s.agent == agent]


@pytest.mark.script({"agents": {"drafter": [{"fenced": DRAFT}], "explainer": [{"prose": NOTE}]}})
async def test_fenced_and_prose_replies_are_parsed_and_usage_adds_up(
    on_dev: Running, fake: FakeLlmServer
) -> None:
    async with on_dev.worker():
        case_id = await on_dev.baton.start_case("refund-request-llm", CASE)
        result = await on_dev.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED, result.reason
    assert result.handoffs["drafter"]["amount"] == 42.5
    assert (result.usage.calls, result.usage.input_tokens, result.usage.output_tokens) == (2, 400, 100)
    per_event = [e.data for e in result.audit if e.kind == AuditKind.HANDOFF and "calls" in e.data]
    assert sum(d["input_tokens"] + d["output_tokens"] for d in per_event) == result.usage.total
    sent = calls_of(fake, "drafter")[0]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["strict"] is True
    assert sent["response_format"]["json_schema"]["schema"]["additionalProperties"] is False
    assert "ORD-1015" in sent["messages"][1]["content"]  # the case rendered into the prompt
    assert all(s.authorization == f"Bearer {SECRET}" for s in fake.seen)


@pytest.mark.script({"agents": {
    "drafter": [{"json": {**DRAFT, "amount": -5}}, {"raw": "{\"order_id\": oops"}, {"json": DRAFT}],
    "explainer": [{"json": NOTE}],
}})  # fmt: skip
async def test_invalid_replies_never_reach_the_next_agent(on_dev: Running, fake: FakeLlmServer) -> None:
    seen_by_policy: list[float] = []
    recording_policy = policy_recording_drafts(on_dev, seen_by_policy)

    async with on_dev.worker([recording_policy]):
        case_id = await on_dev.baton.start_case("refund-request-llm", CASE)
        result = await on_dev.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED, result.reason
    assert seen_by_policy == [42.5]
    drafts = calls_of(fake, "drafter")
    # attempt 1: bad reply + one repair (still bad) → failed handoff; attempt 2: valid at once.
    assert len(drafts) == 3
    repair = drafts[1]["messages"][-1]["content"]
    assert "amount: Input should be greater than or equal to 0" in repair
    failed = [e for e in result.audit if e.kind == AuditKind.CHECK_FAILED]
    assert len(failed) == 1
    assert "LlmOutputInvalid" in failed[0].detail
    assert "not valid JSON" in failed[0].detail
    # The invalid attempt's two calls count too: 3 drafter calls + 1 explainer call, USAGE each.
    per_call = (USAGE["prompt_tokens"], USAGE["completion_tokens"])
    assert (failed[0].data["calls"], failed[0].data["input_tokens"]) == (2, 2 * per_call[0])
    assert (result.usage.calls, result.usage.input_tokens, result.usage.output_tokens) == (
        4, 4 * per_call[0], 4 * per_call[1],
    )  # fmt: skip


@pytest.mark.script(
    {"agents": {"drafter": [{"json": {**DRAFT, "amount": -1}}], "explainer": [{"json": NOTE}]}}
)
async def test_a_reply_that_never_validates_escalates(on_dev: Running, fake: FakeLlmServer) -> None:
    async with on_dev.worker():
        case_id = await on_dev.baton.start_case("refund-request-llm", CASE)
        status = await wait_for_approval(on_dev.baton, case_id)
        assert status.awaiting is not None
        assert status.awaiting.ladder == "exceptions"
        assert "handoff from drafter failed its checks" in status.awaiting.purpose
        assert len(calls_of(fake, "drafter")) == 4  # 2 handoff attempts x (1 call + 1 repair)
        assert calls_of(fake, "explainer") == []
        await on_dev.client.get_workflow_handle(case_id).terminate("test done")


@pytest.mark.script({"agents": {
    "drafter": [{"status": 429, "retry_after": 2}, {"status": 500}, {"json": DRAFT}],
    "explainer": [{"json": NOTE}],
}})  # fmt: skip
async def test_429_retry_after_and_500_are_retried_by_temporal(on_dev: Running, fake: FakeLlmServer) -> None:
    async with on_dev.worker():
        case_id = await on_dev.baton.start_case("refund-request-llm", CASE)
        result = await on_dev.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED, result.reason
    times = [s.at for s in fake.seen if s.agent == "drafter"]
    assert len(times) == 3
    assert times[1] - times[0] >= 2.0  # Retry-After: 2 set the next retry delay
    assert [e.kind for e in result.audit].count(AuditKind.CHECK_FAILED) == 0  # retries are Temporal's


@pytest.mark.script({"reject_response_format": True,
                     "agents": {"drafter": [{"prose": DRAFT}], "explainer": [{"json": NOTE}]}})  # fmt: skip
async def test_falls_back_to_json_mode_when_the_server_lacks_json_schema(
    on_dev: Running, fake: FakeLlmServer
) -> None:
    async with on_dev.worker():
        case_id = await on_dev.baton.start_case("refund-request-llm", CASE)
        result = await on_dev.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED, result.reason
    modes = [(b.get("response_format") or {}).get("type") for b in calls_of(fake, "drafter")]
    assert modes == ["json_schema", "json_object"]
    assert "JSON Schema" in calls_of(fake, "drafter")[1]["messages"][0]["content"]


@pytest.mark.script({"agents": {"drafter": [{"status": 401, "raw": f"invalid api key {SECRET}"}],
                                "explainer": [{"json": NOTE}]}})  # fmt: skip
async def test_the_api_key_never_reaches_history_or_logs(
    on_dev: Running, fake: FakeLlmServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with on_dev.worker():
        case_id = await on_dev.baton.start_case("refund-request-llm", CASE)
        await wait_for_approval(on_dev.baton, case_id)  # 401 is not retried: failed handoff, escalated
        history = await on_dev.client.get_workflow_handle(case_id).fetch_history()
        audit = await on_dev.baton.audit(case_id)
        await on_dev.client.get_workflow_handle(case_id).terminate("test done")
    assert fake.seen[0].authorization == f"Bearer {SECRET}"  # the key was used...
    assert SECRET not in history.to_json()  # ...but is nowhere in the history
    assert SECRET not in caplog.text
    assert SECRET not in json.dumps([e.model_dump(mode="json") for e in audit])
    assert any("[redacted]" in e.detail for e in audit if e.kind == AuditKind.CHECK_FAILED)


@pytest.mark.script({"agents": {"drafter": [{"json": DRAFT}], "explainer": [{"json": NOTE}]}})
async def test_token_budget_escalates_the_case(on_dev: Running, fake: FakeLlmServer) -> None:
    snapshot = on_dev.baton.load("refund-request-llm")
    tight = ProcessSpec.model_validate({**snapshot.spec.model_dump(), "token_budget": 300})
    async with on_dev.worker():
        case_id = await on_dev.baton.start_case(snapshot_of(tight), CASE)
        status = await wait_for_approval(on_dev.baton, case_id)
        assert status.awaiting is not None
        assert status.awaiting.purpose.startswith("token budget exceeded: 500 > 300")
        await on_dev.baton.approve(case_id, approver="dana", comment="worth it")
        result = await on_dev.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    assert "budget✗" in result.path


@pytest.mark.script({"agents": {"drafter": [{"delay": 20, "json": DRAFT}], "explainer": [{"json": NOTE}]}})
async def test_cancelling_a_case_stops_its_llm_call(on_dev: Running, fake: FakeLlmServer) -> None:
    async with on_dev.worker():
        case_id = await on_dev.baton.start_case("refund-request-llm", CASE)
        handle = on_dev.client.get_workflow_handle(case_id)
        for _ in range(100):  # wait until the drafter's request is in flight
            if calls_of(fake, "drafter"):
                break
            await asyncio.sleep(0.1)
        started = time.monotonic()
        await handle.cancel()
        for _ in range(100):
            events = (await handle.fetch_history()).events
            if any(e.HasField("activity_task_canceled_event_attributes") for e in events):
                break
            await asyncio.sleep(0.1)
        stopped_after = time.monotonic() - started
        outcome = await handle.describe()
    assert outcome.status == WorkflowExecutionStatus.CANCELED
    assert len(calls_of(fake, "drafter")) == 1  # no further attempt after the cancel
    assert any(e.HasField("activity_task_canceled_event_attributes") for e in events)
    assert stopped_after < 5  # the heartbeat delivered the cancel long before the 20 s reply


async def test_a_cookie_one_reply_sets_never_reaches_another_case() -> None:
    """One client per provider serves every case on a worker: cookies must not carry over."""
    script = FakeScript.model_validate(
        {"agents": {"explainer": [{"json": NOTE, "set_cookie": "route=case-a; Path=/"}, {"json": NOTE}]}}
    )
    async with FakeLlmServer(script) as server:
        llm = LlmActivities({"openai": ProviderConfig(base_url=server.base_url, default_model="m")})
        try:
            for case_id in ("case-a", "case-b"):
                call = LlmCall(
                    agent=AgentInput(
                        case_id=case_id, process="p", step="explain", agent="explainer", case=CASE
                    ),
                    provider="openai",
                    prompt="Explain $case",
                    contract="refunds.contracts:Explanation",
                )
                result = await ActivityEnvironment().run(llm.llm_agent, call)
                assert result.output == NOTE
        finally:
            await llm.aclose()
    assert [s.cookie for s in server.seen] == ["", ""]  # the second case's request came without it


NOTE_CLEAN = {"message": "Your refund of 42.50 for ORD-1015 is on its way, Kai.", "cites": []}


@pytest.mark.script(
    {
        "agents": {
            "drafter": [{"json": DRAFT}, {"json": DRAFT}],
            "explainer": [{"json": NOTE}, {"json": NOTE_CLEAN}],
        }
    }
)
async def test_going_over_the_budget_at_a_review_does_not_skip_the_review(
    on_dev: Running, fake: FakeLlmServer
) -> None:
    snapshot = on_dev.baton.load("refund-request-llm")
    text = snapshot.spec.model_dump()
    for step in text["flow"]:
        if step["step"] == "explainer":  # the LLM explainer reviews the draft: no policy citations
            step.update(reviews="drafter", passes="size(explainer.cites) == 0",
                        findings="['the note cites a policy rule: leave it out']")  # fmt: skip
    tight = ProcessSpec.model_validate({**text, "token_budget": 400})  # the explainer's call goes over
    async with on_dev.worker():
        case_id = await on_dev.baton.start_case(snapshot_of(tight), CASE)
        await wait_for_approval(on_dev.baton, case_id)
        await on_dev.baton.approve(case_id, approver="dana", comment="worth it")  # waive the budget
        result = await on_dev.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED, result.reason
    rejected = [e for e in result.audit if e.kind == AuditKind.REVIEW_REJECTED]
    assert [e.step for e in rejected] == ["explainer"]  # its verdict applied although over budget
    assert result.path[result.path.index("explainer") + 1] == "drafter(r1)"
    assert result.handoffs["explainer"]["cites"] == []  # the note that passed the review is the one kept
