"""The refund app's activities: three agents and the refund action, on one SQLite file.

Each method is registered under the activity name the spec uses
(``refunds.intake`` ...). SQLite work runs in a thread so the worker's event
loop stays free for other cases. ``baton.toml`` names :func:`activities` as the
registry the worker calls, and :func:`seed` as what ``baton seed`` and
``baton demo`` run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from baton import ActionInput, ActionResult, AgentInput, AppContext
from refunds import agents
from refunds.contracts import FraudVerdict, OrderFacts, PolicyVerdict, RefundProposal, RefundRequest
from refunds.db import RefundsDB, cents


class RefundActivities:
    """The reference agents and action, bound to one refunds database."""

    def __init__(self, db_path: str | Path, *, pause_after_write: float = 0.0) -> None:
        self.db = RefundsDB(db_path)
        self.db.ensure()
        # Crash-test knob: hold the action open after the ledger commit, so a kill can
        # land between "written" and "reported". Zero (off) unless a test sets it.
        self.pause_after_write = pause_after_write

    @activity.defn(name="refunds.intake")
    async def intake(self, inp: AgentInput) -> OrderFacts:
        """Retrieve and validate the order and customer."""
        request = RefundRequest.model_validate(inp.case)

        def work() -> OrderFacts:
            with self.db.connect() as conn:
                return agents.intake(conn, request, now=agents.utc_now())

        return await asyncio.to_thread(work)

    @activity.defn(name="refunds.drafter")
    async def drafter(self, inp: AgentInput) -> RefundProposal:
        """Propose the refund."""
        return agents.draft(inp)

    @activity.defn(name="refunds.policy")
    async def policy(self, inp: AgentInput) -> PolicyVerdict:
        """Review the proposal against the refund policy."""
        return agents.check_policy(inp)

    @activity.defn(name="refunds.fraud")
    async def fraud(self, inp: AgentInput) -> FraudVerdict:
        """Review the proposal for fraud signals (the panel's second reviewer)."""
        return agents.check_fraud(inp)

    @activity.defn(name="refunds.issue_refund")
    async def issue_refund(self, inp: ActionInput) -> ActionResult:
        """Write one ledger row per idempotency key; a repeat returns the existing row.

        The order's refundable balance is checked again here, inside the write
        transaction: intake checked it when the case started, but another case on
        the same order may have refunded since. Over-refunding is refused, not retried.
        """
        proposal = RefundProposal.model_validate(inp.handoffs["drafter"])
        result = await asyncio.to_thread(self._write_refund, inp, proposal)
        if self.pause_after_write:
            await asyncio.sleep(self.pause_after_write)
        return result

    def _write_refund(self, inp: ActionInput, proposal: RefundProposal) -> ActionResult:
        with self.db.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")  # one writer at a time: check and insert atomically
            try:
                row = conn.execute(
                    "SELECT id, amount_cents FROM refunds WHERE idempotency_key = ?", (inp.idempotency_key,)
                ).fetchone()
                applied_now = row is None
                if row is None:
                    paid, refunded = conn.execute(
                        "SELECT o.amount_paid_cents, COALESCE(SUM(r.amount_cents), 0) FROM orders o"
                        " LEFT JOIN refunds r ON r.order_id = o.id WHERE o.id = ? GROUP BY o.id",
                        (proposal.order_id,),
                    ).fetchone() or (0, 0)
                    if refunded + cents(proposal.amount) > paid:
                        raise ApplicationError(
                            f"refund of {proposal.amount:.2f} would exceed what is left on "
                            f"{proposal.order_id} ({(paid - refunded) / 100:.2f})",
                            type="RefundExceedsBalance",
                            non_retryable=True,
                        )
                    cursor = conn.execute(
                        "INSERT INTO refunds (idempotency_key, order_id, case_id, amount_cents,"
                        " reason_code, decided_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            inp.idempotency_key,
                            proposal.order_id,
                            inp.case_id,
                            cents(proposal.amount),
                            proposal.reason_code,
                            inp.decided_by,
                            datetime.now(UTC).isoformat(),
                        ),
                    )
                    row = (cursor.lastrowid, cents(proposal.amount))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return ActionResult(
            reference=f"RF-{row[0]:06d}",
            applied_now=applied_now,
            detail={"order_id": proposal.order_id, "amount": row[1] / 100},
        )

    def all(self) -> list[Callable[..., Any]]:
        """The activities to register."""
        return [self.intake, self.drafter, self.policy, self.fraud, self.issue_refund]


def database_path(context: AppContext) -> Path:
    """``$REFUNDS_DB``, else ``refunds.db`` in the app's home."""
    return Path(os.environ.get("REFUNDS_DB") or context.home / "refunds.db")


def activities(context: AppContext) -> list[Callable[..., Any]]:
    """The registry ``baton.toml`` names: the refund activities bound to the app's database.

    ``REFUNDS_CHAOS_PAUSE_AFTER_WRITE`` (seconds) is for the crash tests only.
    """
    pause = float(os.environ.get("REFUNDS_CHAOS_PAUSE_AFTER_WRITE", "0"))
    return RefundActivities(database_path(context), pause_after_write=pause).all()


def seed(context: AppContext, *, reset: bool) -> str:
    """Create (or, with ``reset``, recreate) the orders and the refund ledger."""
    db = RefundsDB(database_path(context))
    db.reset() if reset else db.ensure()
    return f"refunds database ready at {db.path}"
