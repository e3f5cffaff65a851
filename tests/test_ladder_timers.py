"""Approval ladders on real timers, measured in hours, on the time-skipping server."""

from __future__ import annotations

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from baton.messages import AuditKind, Outcome
from baton.scenario import wait_for_approval
from tests.conftest import Running, refund


async def test_ladder_reminds_then_climbs_at_each_deadline_then_applies_safe_default(
    on_time: Running, time_env: WorkflowEnvironment
) -> None:
    async with on_time.worker():
        case_id = await on_time.baton.start_case("refund-request", refund("ORD-1006", "CUS-006", 310.0))
        await time_env.sleep(timedelta(hours=29))  # the server skips the 28 hours of waiting
        result = await on_time.baton.result(case_id)
    assert result.outcome == Outcome.REJECTED
    assert result.reason.startswith("safe default (reject)")
    assert result.path[-3:] == ["support-lead timed out", "support-manager timed out", "timeout"]
    at = {e.kind: e.at for e in result.audit}
    requested = [e.at for e in result.audit if e.kind == AuditKind.APPROVAL_REQUESTED]
    assert len(requested) == 2
    assert at[AuditKind.ESCALATED] - requested[0] >= timedelta(hours=4)
    assert at[AuditKind.ESCALATED] - requested[0] < timedelta(hours=4, minutes=1)
    reminded = [e.at for e in result.audit if e.kind == AuditKind.REMINDED]
    gaps = [r - q for r, q in zip(reminded, requested, strict=True)]
    for gap, due in zip(gaps, (timedelta(hours=3), timedelta(hours=20)), strict=True):
        assert due <= gap < due + timedelta(minutes=1)
    assert at[AuditKind.TIMED_OUT] - requested[1] >= timedelta(hours=24)
    assert at[AuditKind.TIMED_OUT] - requested[1] < timedelta(hours=24, minutes=1)
    assert not on_time.refunds.db.ledger("ORD-1006")[1:]  # only the seeded history, no refund


async def test_second_rung_can_approve_after_escalation(
    on_time: Running, time_env: WorkflowEnvironment
) -> None:
    async with on_time.worker():
        baton = on_time.baton
        case_id = await baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        first = await wait_for_approval(baton, case_id)
        assert first.awaiting is not None
        assert first.awaiting.role == "support-lead"
        await time_env.sleep(timedelta(hours=4, minutes=5))
        second = await baton.status(case_id)
        assert second.awaiting is not None
        assert (second.awaiting.role, second.awaiting.rung) == ("support-manager", 2)
        await baton.approve(case_id, approver="alice", signal=True)  # too late: her rung has passed
        await baton.approve(case_id, approver="dana", comment="lead was out")
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    assert [(a.approver, a.role) for a in result.approvals] == [("dana", "support-manager")]
    refused = [e.detail for e in result.audit if e.kind == AuditKind.REFUSED]
    assert refused == ["approve by alice refused: not authorised: alice lacks role support-manager"]
