"""The access app against the real engine (Temporal dev server, the app's worker, SQLite).

Fixtures come from Baton's pytest plugin (``baton.testing``): ``baton_harness``
serves this app on a fresh task queue with a freshly seeded home and the
scripted LLM stand-in. The app's package (``access_requests``) is importable
once the harness has activated the app, so tests import it inside the test.
"""

from __future__ import annotations

import asyncio

import pytest

from baton import ActionInput, AppContext, CaseInputError
from baton.messages import AuditKind, CaseStatus
from baton.testing import AppHarness, DecisionRefusedError

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROCESS = "access-request"


async def test_demo_scenario_takes_every_scripted_path(baton_harness: AppHarness) -> None:
    reports = await baton_harness.scenario()
    strays = [report.line() for report in reports if not report.ok]
    assert not strays, "cases off their script:\n" + "\n".join(strays)
    assert len(reports) == 8
    assert baton_harness.fake_llm is not None
    assert {seen.agent for seen in baton_harness.fake_llm.seen} == {"briefer"}


async def test_write_access_waits_for_a_team_lead_and_refuses_anyone_else(baton_harness: AppHarness) -> None:
    case_id = await baton_harness.start(PROCESS, "cases/write-access.json", submitted_by="tara")
    status = await baton_harness.wait_for_approval(case_id)
    assert status.awaiting is not None
    assert (status.awaiting.ladder, status.awaiting.role) == ("manager", "team-lead")

    with pytest.raises(DecisionRefusedError, match="lacks role team-lead"):
        await baton_harness.decide(case_id, "approve", approver="sam")  # security, not a team lead
    with pytest.raises(DecisionRefusedError, match="separation of duties"):
        await baton_harness.decide(case_id, "approve", approver="tara")  # a team lead, but the submitter
    await baton_harness.decide(case_id, "approve", approver="leo", comment="Ben runs the close")

    result = await baton_harness.result(case_id)
    assert result.outcome == "actioned"
    assert result.decided_by == "leo"
    assert result.action is not None
    assert (result.action.detail["system"], result.action.detail["level"]) == ("payroll-db", "write")


async def test_team_lead_feedback_narrows_the_grant(baton_harness: AppHarness) -> None:
    case = {
        "employee_id": "EMP-008",
        "system": "hr-portal",
        "level": "write",
        "duration_days": 60,
        "justification": "fix the leave balances imported from the old HR system",
    }
    case_id = await baton_harness.start(PROCESS, case, submitted_by="hana")
    await baton_harness.decide(case_id, "request_changes", approver="leo", comment="read only, for 3 days")
    await _awaiting_again(baton_harness, case_id, ladder_opened=2)
    await baton_harness.decide(case_id, "approve", approver="leo")

    result = await baton_harness.result(case_id)
    assert result.outcome == "actioned"
    after = result.path[result.path.index("changes requested by leo") :]
    assert after == [
        "changes requested by leo",
        "proposer",
        "risk",
        "briefer",
        "approval:manager",
        "approved by leo",
        "action",
    ]
    assert result.handoffs["proposer"]["level"] == "read"
    assert result.handoffs["proposer"]["duration_days"] == 3


async def test_the_grant_is_written_once(baton_harness: AppHarness) -> None:
    from access_requests.activities import AccessActivities, database_path
    from access_requests.db import AccessDB

    case_id = await baton_harness.start(PROCESS, "cases/read-access.json", submitted_by="ana")
    result = await baton_harness.result(case_id)
    assert result.outcome == "actioned"
    assert result.action is not None
    assert result.action.applied_now

    settings = baton_harness.settings
    db_path = database_path(
        AppContext(app=baton_harness.app, home=settings.home, roles_file=settings.roles_file)
    )
    key = next(str(e.data["idempotency_key"]) for e in result.audit if e.kind == AuditKind.ACTION)
    db = AccessDB(db_path)
    assert [g["case_id"] for g in db.grants() if g["idempotency_key"] == key] == [case_id]
    before = len(db.grants())

    # The action again with the same key, as a retry after a lost reply would run it.
    again = await AccessActivities(db_path).grant(
        ActionInput(
            idempotency_key=key,
            case_id=case_id,
            process=PROCESS,
            case={},
            handoffs=result.handoffs,
            decided_by="rules",
        )
    )
    assert not again.applied_now
    assert again.reference == result.action.reference
    assert len(db.grants()) == before

    # The same request as a new case: the employee holds that access now, so the rules reject it.
    repeat = await baton_harness.result(await baton_harness.start(PROCESS, "cases/read-access.json"))
    assert repeat.outcome == "rejected"
    assert "already holds this access" in repeat.reason
    assert len(db.grants()) == before


async def test_a_bad_request_is_refused_before_it_starts(baton_harness: AppHarness) -> None:
    with pytest.raises(CaseInputError) as refused:
        await baton_harness.start(PROCESS, "cases/bad-request.json")
    fields = {problem.partition(":")[0] for problem in refused.value.problems}
    assert {"employee_id", "level", "duration_days", "justification"} <= fields


async def _awaiting_again(harness: AppHarness, case_id: str, *, ladder_opened: int) -> CaseStatus:
    """Wait until the manager ladder has opened ``ladder_opened`` times and waits on a person."""
    for _ in range(300):
        status = await harness.client.status(case_id)
        if status.path.count("approval:manager") >= ladder_opened and status.awaiting is not None:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{case_id} never waited again: {status.path}")
