"""Decisions bound to what the approver saw (#14): the proposal digest, and the wire shapes
the official ``temporal`` CLI sends, as the README documents them."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from baton.client import DecisionRefusedError
from baton.devserver import temporal_binary
from baton.messages import AuditKind, Outcome
from baton.scenario import wait_for_approval
from tests.conftest import Running, refund
from tests.test_cli import baton as cli


async def test_a_decision_on_a_proposal_that_changed_since_is_refused(on_dev: Running) -> None:
    baton = on_dev.baton
    async with on_dev.worker():
        case_id = await baton.start_case("refund-request", refund("ORD-1014", "CUS-010", 120.0))
        first = await wait_for_approval(baton, case_id)
        assert first.awaiting is not None
        seen = first.awaiting.proposal
        assert seen is not None
        assert len(seen) == 64
        await baton.request_changes(case_id, approver="alice", feedback="refund at most 100", proposal=seen)
        second = await wait_for_approval(baton, case_id)  # redrafted: a new proposal, asked afresh
        assert second.awaiting is not None
        assert second.awaiting.proposal not in (None, seen)
        with pytest.raises(DecisionRefusedError, match="the draft changed since you looked: review it again"):
            await baton.approve(case_id, approver="alice", proposal=seen[:12])
        await baton.approve(case_id, approver="alice", signal=True, proposal=seen)  # recorded, refused
        assert second.awaiting.proposal is not None
        await baton.approve(case_id, approver="alice", proposal=second.awaiting.proposal[:16])
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    refused = [e.detail for e in result.audit if e.kind == AuditKind.REFUSED]
    assert refused == ["approve by alice refused: the draft changed since you looked: review it again"]
    approved = next(e for e in result.audit if e.kind == AuditKind.APPROVED)
    assert approved.data["proposal"] == second.awaiting.proposal  # the audit names what was approved


async def test_a_decision_without_a_digest_is_refused_and_says_where_to_find_it(on_dev: Running) -> None:
    baton = on_dev.baton
    async with on_dev.worker():
        case_id = await baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        waiting = await wait_for_approval(baton, case_id)
        assert waiting.awaiting is not None
        assert waiting.awaiting.proposal is not None
        handle = on_dev.client.get_workflow_handle(case_id)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("decide", {"verdict": "approve", "approver": "alice"})
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.message.startswith("no proposal digest: decide on what you reviewed")
        await baton.approve(case_id, approver="alice", proposal=waiting.awaiting.proposal)
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED


async def temporal_cli(on_dev: Running, *args: str) -> tuple[int, str]:
    """Run the official ``temporal`` CLI against the test's dev server."""
    target = on_dev.client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        temporal_binary(),
        *args,
        "--address",
        target,
        "--namespace",
        on_dev.client.namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_the_documented_json_works_from_the_official_temporal_cli(on_dev: Running) -> None:
    baton = on_dev.baton
    async with on_dev.worker():
        case_id = await baton.start_case("refund-request", refund("ORD-1013", "CUS-009", 7200.0))
        waiting = await wait_for_approval(baton, case_id)  # finance-dual: two approvals
        assert waiting.awaiting is not None
        digest = waiting.awaiting.proposal
        assert digest is not None
        # README, "Deciding with the temporal CLI": the decide update …
        update = {"verdict": "approve", "approver": "carol", "comment": "invoice checked", "proposal": digest}
        code, out = await temporal_cli(
            on_dev, "workflow", "update", "execute", "--workflow-id", case_id,
            "--name", "decide", "--input", json.dumps(update),
        )  # fmt: skip
        assert code == 0, out
        assert "approval 1 of 2 recorded" in out
        # … and the approve signal
        signal = {"approver": "erin", "comment": "second pair of eyes", "proposal": digest[:12]}
        code, out = await temporal_cli(
            on_dev, "workflow", "signal", "--workflow-id", case_id,
            "--name", "approve", "--input", json.dumps(signal),
        )  # fmt: skip
        assert code == 0, out
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    assert result.decided_by == "carol+erin"


async def test_a_stale_update_from_the_temporal_cli_is_refused_with_the_reason(on_dev: Running) -> None:
    baton = on_dev.baton
    async with on_dev.worker():
        case_id = await baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        waiting = await wait_for_approval(baton, case_id)
        update = {"verdict": "approve", "approver": "alice", "proposal": "0" * 64}
        code, out = await temporal_cli(
            on_dev, "workflow", "update", "execute", "--workflow-id", case_id,
            "--name", "decide", "--input", json.dumps(update),
        )  # fmt: skip
        assert code != 0
        assert "the draft changed since you looked" in out
        assert waiting.awaiting is not None
        await baton.approve(case_id, approver="alice", proposal=waiting.awaiting.proposal)
        assert (await baton.result(case_id)).outcome == Outcome.ACTIONED


async def test_show_prints_the_draft_its_revisions_the_checks_and_the_digest(on_dev: Running) -> None:
    baton = on_dev.baton
    async with on_dev.worker():
        case_id = await baton.start_case("refund-request", refund("ORD-1014", "CUS-010", 120.0))
        first = await wait_for_approval(baton, case_id)
        await baton.request_changes(case_id, approver="alice", feedback="refund at most 90")
        second = await wait_for_approval(baton, case_id)
        assert second.awaiting is not None
        assert second.awaiting.proposal is not None
        shown = await cli(on_dev, "show", case_id)
        as_json = await cli(on_dev, "show", case_id, "--json")
        await baton.approve(case_id, approver="alice", proposal=second.awaiting.proposal)
        await baton.result(case_id)
    assert shown.code == 0, shown.err
    text = shown.out
    assert first.awaiting is not None
    assert "waiting for support-lead (ladder standard, rung 1/2)" in text
    assert "approvals: 0 of 1 (nobody yet)" in text
    assert f"proposal: {second.awaiting.proposal}" in text
    assert "case (RefundRequest)" in text
    assert "drafter (RefundProposal, version 2)" in text  # the draft, field by field
    assert re.search(r"^  amount +90\.0$", text, re.M)
    assert "changes since the previous version of drafter:" in text
    assert re.search(r"^  -  amount +120\.0$", text, re.M)  # the diff between the drafts
    assert re.search(r"^  \+  amount +90\.0$", text, re.M)
    assert "intake (OrderFacts)" in text
    assert "changes_requested" in text  # the checks and decisions that led here
    assert "decide[2] → approval:standard" in text
    data = json.loads(as_json.out)
    assert data["handoffs"]["drafter"]["amount"] == 90.0
    assert data["drafts"]["drafter"][0]["amount"] == 120.0
    assert data["awaiting"]["proposal"] == second.awaiting.proposal


async def test_a_case_stopped_at_its_first_handoff_says_why_in_the_inbox(on_dev: Running) -> None:
    baton = on_dev.baton
    async with on_dev.worker():
        # CUS-001 does not own ORD-1002: intake's handoff never passes, the case escalates
        case_id = await baton.start_case("refund-request", refund("ORD-1002", "CUS-001", 249.0))
        await wait_for_approval(baton, case_id)
        for _ in range(50):  # the inbox reads visibility, which follows the case shortly
            waiting = [c for c in await baton.pending() if c.case_id == case_id]
            if waiting and waiting[0].summary:
                break
            await asyncio.sleep(0.2)
        await baton.reject(case_id, approver="dana", reason="not their order")
    assert waiting[0].role == "support-manager"
    assert waiting[0].summary.startswith("handoff from intake failed its checks")
    assert len(waiting[0].proposal) == 64  # the inbox names the digest a decision must carry
