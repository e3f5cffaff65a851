"""The reference agents on a real, freshly seeded SQLite database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from refunds import agents
from refunds.activities import RefundActivities
from refunds.contracts import RefundRequest

from baton.client import prepare_case
from baton.errors import BatonUsageError, CaseInputError
from baton.messages import AgentInput, AuditKind, Feedback
from baton.spec import load_spec
from tests.conftest import Running, refund, refund_spec


def facts_for(refunds: RefundActivities, case: dict[str, Any]) -> dict[str, Any]:
    with refunds.db.connect() as conn:
        facts = agents.intake(conn, RefundRequest.model_validate(case), now=datetime.now(UTC))
    return facts.model_dump(mode="json")


def agent_input(case: dict[str, Any], **handoffs: dict[str, Any]) -> AgentInput:
    return AgentInput(case_id="c", process="p", step="s", agent="a", case=case, handoffs=handoffs)


def test_seed_has_at_least_fifty_orders_and_edge_cases(refunds: RefundActivities) -> None:
    with refunds.db.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] >= 50
    assert len(refunds.db.ledger("ORD-1008")) == 1  # fully refunded before


@pytest.mark.parametrize(
    ("case", "problem", "refundable"),
    [
        (refund("ORD-1001", "CUS-001", 10), None, 34.90),
        (refund("ORD-1005", "CUS-009", 10), "belongs to another customer", 120.0),
        (refund("ORD-1008", "CUS-008", 10), "already fully refunded", 0.0),
        (refund("ORD-1009", "CUS-001", 10), None, 50.0),
        (refund("ORD-9999", "CUS-001", 10), "order not found", 0.0),
    ],
)
def test_intake_finds_and_validates(
    refunds: RefundActivities, case: dict[str, Any], problem: str | None, refundable: float
) -> None:
    facts = facts_for(refunds, case)
    assert facts["refundable_amount"] == refundable
    assert (problem is None) == (not facts["problems"])
    if problem:
        assert any(problem in p for p in facts["problems"])


def test_drafter_takes_the_request_then_caps_on_feedback(refunds: RefundActivities) -> None:
    case = refund("ORD-1004", "CUS-004", 90.0)
    facts = facts_for(refunds, case)
    first = agents.draft(agent_input(case, intake=facts))
    assert first.amount == 90.0
    assert "90.00" in first.message
    again = agents.draft(
        agent_input(case, intake=facts).model_copy(
            update={"feedback": [Feedback(source="guard", message="too much")]}
        )
    )
    assert again.amount == 45.0


@pytest.mark.parametrize(
    ("case", "codes"),
    [
        (refund("ORD-1003", "CUS-003", 79.98, "changed_mind"), ["digital_partial"]),
        (refund("ORD-1003", "CUS-003", 79.98, "defective"), []),
        (refund("ORD-1010", "CUS-002", 40.0, "late_delivery"), ["outside_window"]),
        (refund("ORD-1011", "CUS-003", 50.0), ["not_refundable"]),
        (refund("ORD-1012", "CUS-004", 25.0, "changed_mind"), ["not_refundable"]),
        (refund("ORD-1012", "CUS-004", 25.0, "defective"), []),
    ],
)
def test_policy_rules(refunds: RefundActivities, case: dict[str, Any], codes: list[str]) -> None:
    facts = facts_for(refunds, case)
    proposal = agents.draft(agent_input(case, intake=facts)).model_dump(mode="json")
    verdict = agents.check_policy(agent_input(case, intake=facts, drafter=proposal))
    assert [f.code for f in verdict.findings] == codes
    assert verdict.compliant == (not codes)


def test_case_input_errors_name_each_field() -> None:
    spec = load_spec(refund_spec())
    with pytest.raises(CaseInputError) as caught:
        prepare_case(
            spec,
            {"order_id": "1001", "customer_id": "CUS-001", "requested_amount": 5, "reason": "meh", "x": 1},
        )
    assert caught.value.problems == [
        "order_id: String should match pattern '^ORD-\\d{4,}$'",
        "reason: Input should be 'defective', 'not_as_described', 'late_delivery', 'changed_mind' or 'other'",
        "x: Extra inputs are not permitted",
    ]


async def test_duplicate_case_id_is_refused(on_dev: Running) -> None:
    case_id = f"dup-{on_dev.settings.task_queue}"
    await on_dev.baton.start_case("refund-request", refund("ORD-1001", "CUS-001", 5), case_id=case_id)
    with pytest.raises(BatonUsageError, match="already used"):
        await on_dev.baton.start_case("refund-request", refund("ORD-1001", "CUS-001", 5), case_id=case_id)
    await on_dev.client.get_workflow_handle(case_id).terminate("test done")


async def test_a_closed_case_id_is_never_reused_and_its_action_key_is_its_own(on_dev: Running) -> None:
    case_id = f"closed-{on_dev.settings.task_queue}"
    async with on_dev.worker():
        await on_dev.baton.start_case("refund-request", refund("ORD-1001", "CUS-001", 5), case_id=case_id)
        result = await on_dev.baton.result(case_id)
        # Temporal's default policy would start a new case here, whose action would find the
        # old case's ledger row under the same key and report a payment it never made.
        with pytest.raises(BatonUsageError, match="never reused"):
            await on_dev.baton.start_case("refund-request", refund("ORD-1001", "CUS-001", 5), case_id=case_id)
    first_run = (await on_dev.baton.handle(case_id).describe()).run_id
    [action] = [e for e in result.audit if e.kind == AuditKind.ACTION]
    assert action.data["idempotency_key"] == f"{case_id}/{first_run}/refunds.issue_refund"
    assert [r["idempotency_key"] for r in on_dev.refunds.db.ledger("ORD-1001")] == [
        f"{case_id}/{first_run}/refunds.issue_refund"
    ]
