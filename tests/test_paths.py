"""Every path of the demo, end to end on a real Temporal dev server and real SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio import activity
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from baton.messages import ActionInput, ActionResult, AuditKind, Outcome
from baton.scenario import run_scenario, wait_for_approval
from baton.settings import SandboxMode
from baton.spec import load_spec_text, snapshot_of
from baton.spec.diagram import mermaid
from tests.conftest import (
    REFUND_CONTRACTS,
    Running,
    policy_recording_drafts,
    refund,
    refund_scenario,
    refund_spec,
)
from worker import workflow_runner
from workflows import GovernedProcess


async def test_every_demo_path_ends_as_scripted(on_dev: Running) -> None:
    async with on_dev.worker():
        reports = await run_scenario(
            on_dev.baton, refund_scenario(), prefix=f"paths-{on_dev.settings.task_queue}"
        )
    for report in reports:
        assert report.ok, report.line()
    by_slug = {r.scripted.slug: r.result for r in reports}

    approval = by_slug["approval"]
    refused = [e for e in approval.audit if e.kind == AuditKind.REFUSED]
    assert [e.actor for e in refused] == ["bob"]
    assert "not authorised: bob lacks role support-lead" in refused[0].detail
    assert [a.approver for a in approval.approvals] == ["alice"]

    timeout = by_slug["timeout"]
    assert [e.kind for e in timeout.audit if e.kind in (AuditKind.ESCALATED, AuditKind.TIMED_OUT)] == [
        AuditKind.ESCALATED,
        AuditKind.TIMED_OUT,
    ]
    assert timeout.action is None

    # Exactly the actioned cases wrote to the ledger, once each.
    ledger = [r for r in on_dev.refunds.db.ledger() if r["case_id"] != "seed"]
    actioned = sorted(r.case_id for r in reports if r.result.outcome == Outcome.ACTIONED)
    assert sorted(str(row["case_id"]) for row in ledger) == actioned
    assert by_slug["revision"].handoffs["drafter"]["amount"] == 39.99  # 50% digital rule


async def test_a_failed_handoff_never_reaches_the_next_agent(on_dev: Running) -> None:
    seen_by_policy: list[float] = []
    recording_policy = policy_recording_drafts(on_dev, seen_by_policy)

    async with on_dev.worker([recording_policy]):
        case_id = await on_dev.baton.start_case("refund-request", refund("ORD-1004", "CUS-004", 90.0))
        result = await on_dev.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    failed = [e for e in result.audit if e.kind == AuditKind.CHECK_FAILED]
    assert len(failed) == 1
    assert "refunds more than is left" in failed[0].detail
    assert seen_by_policy == [45.0]  # the 90.00 draft was stopped at the handoff


async def test_action_failing_after_write_is_applied_once(on_dev: Running) -> None:
    calls: list[int] = []

    @activity.defn(name="refunds.issue_refund")
    async def flaky_issue_refund(inp: ActionInput) -> ActionResult:
        result = await on_dev.refunds.issue_refund(inp)  # the ledger row is written...
        calls.append(activity.info().attempt)
        if activity.info().attempt == 1:
            raise RuntimeError("connection reset after commit")  # ...but the report is lost
        return result

    async with on_dev.worker([flaky_issue_refund]):
        case_id = await on_dev.baton.start_case("refund-request", refund("ORD-1001", "CUS-001", 34.90))
        result = await on_dev.baton.result(case_id)
    assert calls == [1, 2]
    assert result.outcome == Outcome.ACTIONED
    assert result.action is not None
    assert result.action.applied_now is False
    rows = [r for r in on_dev.refunds.db.ledger("ORD-1001") if r["case_id"] == case_id]
    assert len(rows) == 1
    assert rows[0]["amount_cents"] == 3490


async def test_submitter_cannot_approve_their_own_case(on_dev: Running) -> None:
    async with on_dev.worker():
        baton = on_dev.baton
        case_id = await baton.start_case(
            "refund-request", refund("ORD-1002", "CUS-002", 249.0), submitted_by="alice"
        )
        await wait_for_approval(baton, case_id)
        await baton.approve(case_id, approver="alice", signal=True)
        await baton.reject(case_id, approver="dana", reason="wrong rung", signal=True)  # not a lead
        status = await baton.status(case_id)
        assert status.awaiting is not None
        assert status.awaiting.role == "support-lead"
        await baton.reject(case_id, approver="erin", reason="no", signal=True)  # finance, manager
        audit = await baton.audit(case_id)
        refusals = [e.detail for e in audit if e.kind == AuditKind.REFUSED]
        assert refusals == [
            "approve by alice refused: separation of duties: alice submitted this case",
            "reject by dana refused: not authorised: dana lacks role support-lead",
            "reject by erin refused: not authorised: erin lacks role support-lead",
        ]
        await on_dev.client.get_workflow_handle(case_id).terminate("test done")


async def test_histories_replay_without_nondeterminism(on_dev: Running) -> None:
    async with on_dev.worker():
        reports = await run_scenario(
            on_dev.baton,
            refund_scenario().only("auto", "approval", "revision", "contained", "escalated"),
            prefix=f"replay-{on_dev.settings.task_queue}",
        )
    histories: list[WorkflowHistory] = [
        await on_dev.client.get_workflow_handle(r.case_id).fetch_history() for r in reports
    ]
    replayer = Replayer(
        workflows=[GovernedProcess],
        data_converter=on_dev.client.data_converter,
        workflow_runner=workflow_runner("strict", contracts=REFUND_CONTRACTS),
    )
    results = await replayer.replay_workflows(_iter(histories), raise_on_replay_failure=False)
    assert len(results.replay_failures) == 0, results.replay_failures


async def _iter(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


async def test_two_cases_on_one_order_never_refund_more_than_was_paid(on_dev: Running) -> None:
    async with on_dev.worker():
        baton = on_dev.baton
        first = await baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        second = await baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        for case_id in (first, second):  # both passed intake while nothing was refunded yet
            await wait_for_approval(baton, case_id)
        await baton.approve(first, approver="alice")
        await baton.approve(second, approver="alice")
        results = [await baton.result(first), await baton.result(second)]
    assert [r.outcome for r in results] == [Outcome.ACTIONED, Outcome.ACTION_FAILED]
    assert "RefundExceedsBalance: refund of 249.00 would exceed what is left on ORD-1002 (0.00)" in (
        results[1].reason
    )
    assert sum(int(str(r["amount_cents"])) for r in on_dev.refunds.db.ledger("ORD-1002")) == 24900


async def test_a_process_without_an_action_ends_approved_and_writes_nothing(on_dev: Running) -> None:
    text = refund_spec().read_text()
    advisory = load_spec_text(text[: text.index("\naction:")] + "\n", source="advisory.yaml")
    assert advisory.action is None
    assert "approved: no action" in mermaid(advisory)

    async with on_dev.worker():
        case_id = await on_dev.baton.start_case(snapshot_of(advisory), refund("ORD-1001", "CUS-001", 34.90))
        result = await on_dev.baton.result(case_id)
        history = await on_dev.baton.handle(case_id).fetch_history()
    assert result.outcome == Outcome.APPROVED, result.reason
    assert result.decided_by == "rules"
    assert result.action is None
    assert result.handoffs["drafter"]["amount"] == 34.90  # the checked handoffs are the result
    assert result.path == ["intake", "drafter", "policy", "auto"]
    scheduled = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    assert "refunds.issue_refund" not in {
        e.activity_task_scheduled_event_attributes.activity_type.name for e in scheduled
    }
    assert [r for r in on_dev.refunds.db.ledger() if r["case_id"] == case_id] == []


@pytest.mark.parametrize("sandbox", ["shared", "off"])
async def test_every_sandbox_mode_runs_a_case_the_same_way(on_dev: Running, sandbox: SandboxMode) -> None:
    async with on_dev.worker(sandbox=sandbox):
        case_id = await on_dev.baton.start_case("refund-request", refund("ORD-1001", "CUS-001", 34.90))
        result = await on_dev.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED, result.reason
    assert result.path == ["intake", "drafter", "policy", "auto", "action"]
