"""A person who overrules a reviewer does not skip the decision rules (or their two-person rule)."""

from __future__ import annotations

from baton.messages import AuditKind, Outcome
from baton.scenario import wait_for_approval
from tests.conftest import Running, refund


async def test_an_overrule_still_goes_through_the_two_person_rule(on_dev: Running) -> None:
    # A large refund the policy never accepts (delivered 45 days ago): the review escalates.
    on_dev.refunds.db.add_orders({"ORD-9001": 8000.0}, customer="CUS-001", days_ago=45)
    baton = on_dev.baton
    async with on_dev.worker():
        case_id = await baton.start_case("refund-request", refund("ORD-9001", "CUS-001", 8000.0))
        exception = await wait_for_approval(baton, case_id)
        assert exception.awaiting is not None
        assert exception.awaiting.role == "support-manager"
        await baton.approve(case_id, approver="dana", comment="goodwill")  # overrules the policy review
        dual = await wait_for_approval(baton, case_id)
        # Before: the action ran here, on one person's word, for 8,000.
        assert dual.awaiting is not None
        assert (dual.awaiting.role, dual.awaiting.approvers_needed) == ("finance", 2)
        assert not on_dev.refunds.db.ledger("ORD-9001")
        await baton.approve(case_id, approver="carol")
        await baton.approve(case_id, approver="erin")
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    assert result.decided_by == "carol+erin"
    assert "approved by dana" in result.path
    assert result.path[result.path.index("approved by dana") + 1 :] == [
        "approval:finance-dual", "approved by carol+erin", "action",
    ]  # fmt: skip
    decisions = [e.detail for e in result.audit if e.kind == AuditKind.DECISION]
    assert decisions[0] == "dana overruled policy; the rest of the flow and the decision rules apply"
    assert decisions[1].startswith("decide[4] → approval:finance-dual")


async def test_a_small_overrule_is_acted_on_by_the_rules(on_dev: Running) -> None:
    baton = on_dev.baton
    async with on_dev.worker():
        case_id = await baton.start_case(
            "refund-request", refund("ORD-1010", "CUS-002", 40.0, "late_delivery")
        )
        await wait_for_approval(baton, case_id)
        await baton.approve(case_id, approver="dana", comment="courier lost it")
        result = await baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    assert result.decided_by == "dana, then rules"
    assert result.path[-3:] == ["approved by dana", "auto", "action"]


def test_overruled_is_a_reserved_name() -> None:
    import pytest

    from baton.errors import SpecError
    from baton.spec import load_spec_text
    from tests.conftest import refund_spec

    text = (
        refund_spec().read_text().replace("  - step: intake\n", "  - step: overruled\n    agent: intake\n", 1)
    )
    with pytest.raises(SpecError) as failed:
        load_spec_text(text, source="r.yaml", base_dir=refund_spec().parent)
    assert any("'overruled' is reserved (true in decision rules once" in p for p in failed.value.problems)
