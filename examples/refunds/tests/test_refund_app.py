"""The refund app's own tests, as any app writes them: through Baton's pytest plugin.

(Baton's engine tests in the checkout's ``tests/`` exercise this app in far more depth;
these are the ones a team owning the app would keep.)
"""

from __future__ import annotations

import pytest
from refunds.db import RefundsDB

from baton import CaseInputError
from baton.testing import AppHarness, DecisionRefusedError


async def test_every_demo_case_takes_its_scripted_path(baton_harness: AppHarness) -> None:
    reports = await baton_harness.scenario()
    assert all(r.ok for r in reports), "\n".join(r.line() for r in reports if not r.ok)
    llm = baton_harness.fake_llm
    assert llm is not None
    assert {s.agent for s in llm.seen} == {"drafter", "explainer"}


async def test_the_tour_cases_behave_as_the_readme_says(baton_harness: AppHarness) -> None:
    small = await baton_harness.start("refund-request", "cases/small.json")
    assert (await baton_harness.result(small)).path == ["intake", "drafter", "policy", "auto", "action"]
    case_id = await baton_harness.start("refund-request", "cases/approval.json", submitted_by="bob")
    status = await baton_harness.wait_for_approval(case_id)
    assert status.awaiting is not None
    assert status.awaiting.role == "support-lead"
    with pytest.raises(DecisionRefusedError, match="separation of duties: bob submitted this case"):
        await baton_harness.decide(case_id, "approve", approver="bob")
    await baton_harness.decide(case_id, "request_changes", approver="alice", comment="refund at most 45")
    result = await baton_harness.result(case_id)  # redrafted, checked again: 45 is decided by the rules
    assert (result.outcome, result.decided_by, result.handoffs["drafter"]["amount"]) == (
        "actioned",
        "rules",
        45.0,
    )
    ledger = RefundsDB(baton_harness.settings.home / "refunds.db").ledger("ORD-1017")
    assert [r["amount_cents"] for r in ledger] == [4500]


async def test_a_bad_case_is_refused_before_anything_starts(baton_harness: AppHarness) -> None:
    with pytest.raises(CaseInputError) as refused:
        await baton_harness.start("refund-request", "cases/bad.json")
    assert refused.value.problems == [
        "customer_id: Field required",
        "requested_amount: Input should be greater than or equal to 0",
    ]
