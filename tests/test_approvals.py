"""Approvals on a real dev server: updates and signals, authorisation, two approvers,
request-changes, notifications over real HTTP, the pending inbox, worker restarts."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from baton import auditlog
from baton.client import BatonClient, DecisionRefusedError, PendingCase
from baton.errors import BatonUsageError
from baton.messages import AuditKind, Outcome
from baton.scenario import shortened, wait_for_approval
from baton.spec import ProcessSpec, snapshot_of
from tests.conftest import REFUNDS_APP, Running, refund
from tests.webhook import WebhookServer


async def eventually(check: Callable[[], Awaitable[Any]], *, within: float = 15.0) -> Any:
    """Poll ``check`` until it returns something truthy (visibility is eventually consistent)."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


async def history_length(on_dev: Running, case_id: str) -> int:
    return len((await on_dev.client.get_workflow_handle(case_id).fetch_history()).events)


async def settled_history_length(on_dev: Running, case_id: str) -> int:
    """History length once background work (the notification activity) has finished."""
    length = -1
    while True:
        await asyncio.sleep(0.3)
        now = await history_length(on_dev, case_id)
        if now == length:
            return now
        length = now


async def test_refused_updates_leave_no_history_and_ids_apply_once(on_dev: Running) -> None:
    async with on_dev.worker():
        baton = on_dev.baton
        case_id = await baton.start_case(
            "refund-request", refund("ORD-1002", "CUS-002", 249.0), submitted_by="bob"
        )
        await wait_for_approval(baton, case_id)
        before = await settled_history_length(on_dev, case_id)
        for approver, reason in (
            ("carol", "not authorised: carol lacks role support-lead"),
            ("bob", "separation of duties: bob submitted this case"),
            ("mallory", "not authorised: mallory lacks role support-lead"),
        ):
            with pytest.raises(DecisionRefusedError) as refused:
                await baton.approve(case_id, approver=approver)
            assert refused.value.reason == reason
        with pytest.raises(DecisionRefusedError, match="request_changes needs feedback"):
            await baton.decide(case_id, "request_changes", approver="alice")
        assert await history_length(on_dev, case_id) == before
        first = await baton.decide(case_id, "approve", approver="alice", decision_id="d-1")
        again = await baton.decide(case_id, "approve", approver="alice", decision_id="d-1")
        assert first == again
        assert first is not None
        assert first.state == "approved by alice (support-lead)"
        result = await baton.result(case_id)
        with pytest.raises(BatonUsageError, match="has ended; it is no longer awaiting approval"):
            await baton.approve(case_id, approver="alice")
    assert result.outcome == Outcome.ACTIONED
    assert [a.approver for a in result.approvals] == ["alice"]


async def test_two_different_approvers_are_needed_above_5000(on_dev: Running) -> None:
    async with on_dev.worker():
        baton = on_dev.baton
        case_id = await baton.start_case("refund-request", refund("ORD-1013", "CUS-009", 7200.0))
        waiting = await wait_for_approval(baton, case_id)
        assert waiting.awaiting is not None
        assert (waiting.awaiting.ladder, waiting.awaiting.approvers_needed) == ("finance-dual", 2)
        one = await baton.approve(case_id, approver="carol")
        assert one is not None
        assert one.state == "approval 1 of 2 recorded; waiting for another finance"
        with pytest.raises(DecisionRefusedError, match="carol already approved; this rung needs 2"):
            await baton.approve(case_id, approver="carol")
        status = await baton.status(case_id)
        assert status.awaiting is not None
        assert status.awaiting.approved_by == ["carol"]
        await baton.approve(case_id, approver="erin", comment="checked the invoice")
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    assert result.decided_by == "carol+erin"
    assert [(a.approver, a.role) for a in result.approvals] == [("carol", "finance"), ("erin", "finance")]


async def test_request_changes_runs_every_check_again(on_dev: Running) -> None:
    async with on_dev.worker():
        baton = on_dev.baton
        case_id = await baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        await wait_for_approval(baton, case_id)
        receipt = await baton.request_changes(
            case_id, approver="alice", feedback="screen only: refund at most 45.00"
        )
        assert receipt is not None
        assert receipt.state == "changes requested by alice (support-lead)"
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    assert result.handoffs["drafter"]["amount"] == 45.0
    assert result.path == [
        "intake", "drafter", "policy", "approval:standard", "changes requested by alice",
        "drafter", "policy", "auto", "action",
    ]  # fmt: skip
    passed = [e.step for e in result.audit if e.kind == AuditKind.CHECK_PASSED]
    assert passed == ["intake", "drafter", "policy", "drafter", "policy"]
    human = [e for e in result.audit if e.kind == AuditKind.REVISION]
    assert human[0].detail == "drafter revises on alice's request"


def roles_with_webhooks(tmp_path: Path, hooks: dict[str, list[str]]) -> Path:
    directory = yaml.safe_load(REFUNDS_APP.roles_file.read_text())
    directory["webhooks"] = hooks
    path = tmp_path / "roles.yaml"
    path.write_text(yaml.safe_dump(directory))
    return path


async def test_notifications_over_real_http_never_block_the_case(on_dev: Running, tmp_path: Path) -> None:
    async with WebhookServer({"/lead": [429], "/finance": [400]}) as hooks:
        roles = roles_with_webhooks(
            tmp_path, {"support-lead": [f"{hooks.base}/lead"], "finance": [f"{hooks.base}/finance"]}
        )
        on_dev.settings = dataclasses.replace(on_dev.settings, roles_file=roles)
        async with on_dev.worker():
            baton = on_dev.baton
            lead_case = await baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
            finance_case = await baton.start_case("refund-request", refund("ORD-1007", "CUS-007", 1899.0))
            await wait_for_approval(baton, lead_case)
            await wait_for_approval(baton, finance_case)
            await eventually(lambda: _async(hooks.events("/lead") == ["approval_requested"] * 2))
            await baton.approve(lead_case, approver="alice")
            await baton.approve(finance_case, approver="carol")
            lead = await baton.result(lead_case)
            finance = await baton.result(finance_case)
    # 429 + Retry-After: Temporal retried the same notification (same idempotency key).
    first, second = [r for r in hooks.received if r.path == "/lead"][:2]
    assert first.idempotency_key == second.idempotency_key
    assert hooks.events("/lead") == ["approval_requested", "approval_requested", "decided"]
    assert lead.outcome == Outcome.ACTIONED
    # 400 is not retried; the case goes on and the audit says what failed.
    assert finance.outcome == Outcome.ACTIONED
    failed = [e.detail for e in finance.audit if e.kind == AuditKind.NOTIFY_FAILED]
    assert any("approval_requested notification to finance failed" in f and "(400)" in f for f in failed)


async def _async(value: Any) -> Any:
    return value


async def test_pending_lists_exactly_the_waiting_cases_per_role(on_dev: Running) -> None:
    async with on_dev.worker():
        baton = on_dev.baton
        lead = await baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        finance = await baton.start_case("refund-request", refund("ORD-1007", "CUS-007", 1899.0))
        auto = await baton.start_case("refund-request", refund("ORD-1001", "CUS-001", 20.0))
        await baton.result(auto)
        mine = {lead, finance, auto}

        async def listed(role: str | None) -> list[PendingCase]:
            return [p for p in await baton.pending(role=role) if p.case_id in mine]

        leads = await eventually(lambda: listed("support-lead"))
        finances = await eventually(lambda: listed("finance"))
        assert [p.case_id for p in leads] == [lead]
        assert [p.case_id for p in finances] == [finance]
        assert leads[0].amount == 249.0
        assert leads[0].summary == "refund 249 on ORD-1002 (defective)"
        assert leads[0].deadline is not None
        assert {p.case_id for p in await listed(None)} == {lead, finance}
        await baton.approve(lead, approver="alice")
        await baton.result(lead)
        gone = await eventually(lambda: _empty(listed("support-lead")))
        assert gone
        await on_dev.client.get_workflow_handle(finance).terminate("test done")


async def _empty(listing: Awaitable[list[PendingCase]]) -> bool:
    return not await listing


def short_ladders(baton: BatonClient, seconds: float, *, hold: bool = False) -> Any:
    snapshot = shortened(baton.load("refund-request"), timedelta(seconds=seconds))
    if hold:
        spec = snapshot.spec.model_copy(update={"on_timeout": "hold"})
        snapshot = snapshot.model_copy(update={"spec": spec})
    return snapshot


async def test_approval_in_flight_across_a_worker_restart(on_dev: Running) -> None:
    baton = on_dev.baton
    async with on_dev.worker():
        case_id = await baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        waiting = await wait_for_approval(baton, case_id)
    assert waiting.awaiting is not None
    # no worker is running now: the decision carries the digest of what alice saw
    await baton.approve(case_id, approver="alice", signal=True, proposal=waiting.awaiting.proposal)
    async with on_dev.worker():
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    assert result.decided_by == "alice"


async def test_escalation_fires_once_a_worker_is_back_after_the_deadline(on_dev: Running) -> None:
    baton = on_dev.baton
    async with on_dev.worker():
        case_id = await baton.start_case(short_ladders(baton, 2.0), refund("ORD-1002", "CUS-002", 249.0))
        first = await wait_for_approval(baton, case_id)
    assert first.awaiting is not None
    assert first.awaiting.role == "support-lead"
    await asyncio.sleep(3.0)  # rung 1's deadline passes while no worker runs
    async with on_dev.worker():
        second = await eventually(lambda: _on_rung(baton, case_id, 2))
        assert second.awaiting.role == "support-manager"
        await baton.approve(case_id, approver="dana")
        result = await baton.result(case_id)
    escalated = [e.detail for e in result.audit if e.kind == AuditKind.ESCALATED]
    assert escalated == ["nobody with role support-lead decided within 2s; escalating to support-manager"]
    assert result.decided_by == "dana"


async def _on_rung(baton: BatonClient, case_id: str, rung: int) -> Any:
    status = await baton.status(case_id)
    return status if status.awaiting is not None and status.awaiting.rung == rung else None


async def test_hold_parks_the_case_without_a_deadline(on_dev: Running) -> None:
    async with on_dev.worker():
        baton = on_dev.baton
        case_id = await baton.start_case(
            short_ladders(baton, 1.0, hold=True), refund("ORD-1002", "CUS-002", 249.0)
        )
        held = await eventually(lambda: _held(baton, case_id))
        assert held.awaiting.role == "support-manager"
        listed = await eventually(lambda: _listed(baton, case_id))
        assert listed.stage == "held"
        assert listed.deadline is None
        await baton.approve(case_id, approver="dana", comment="picked it up on Monday")
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    assert [e.kind for e in result.audit if e.kind in (AuditKind.HELD, AuditKind.TIMED_OUT)] == [
        AuditKind.TIMED_OUT,
        AuditKind.HELD,
    ]


async def _held(baton: BatonClient, case_id: str) -> Any:
    status = await baton.status(case_id)
    return status if status.awaiting is not None and status.awaiting.deadline is None else None


async def _listed(baton: BatonClient, case_id: str) -> PendingCase | None:
    return next((p for p in await baton.pending() if p.case_id == case_id), None)


async def test_a_long_case_continues_as_new_and_keeps_its_history(on_dev: Running) -> None:
    baton = on_dev.baton
    snapshot = baton.load("refund-request")
    short = ProcessSpec.model_validate({**snapshot.spec.model_dump(), "continue_as_new_after": 40})
    async with on_dev.worker():
        case_id = await baton.start_case(snapshot_of(short), refund("ORD-1014", "CUS-010", 120.0))
        first_run = (await on_dev.client.get_workflow_handle(case_id).describe()).run_id
        for cap in (110, 100, 90):
            await wait_for_approval(baton, case_id)
            await baton.request_changes(case_id, approver="alice", feedback=f"refund at most {cap}")
            await asyncio.sleep(0.3)
        await wait_for_approval(baton, case_id)
        await baton.approve(case_id, approver="alice")
        result = await baton.result(case_id)
        last_run = (await on_dev.client.get_workflow_handle(case_id).describe()).run_id
    assert result.outcome == Outcome.ACTIONED
    assert result.handoffs["drafter"]["amount"] == 90.0
    assert last_run != first_run
    carried = [e.detail for e in result.audit if e.kind == AuditKind.CONTINUED]
    assert carried
    assert [e.seq for e in result.audit] == list(range(1, len(result.audit) + 1))  # one unbroken trail
    assert [a.decision for a in result.approvals] == ["request_changes"] * 3 + ["approve"]
    logged = [r["event"]["seq"] for r in auditlog.read(on_dev.settings.audit_log, case_id=case_id)]
    assert logged == [e.seq for e in result.audit]
