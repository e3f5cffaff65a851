"""The access app's activities: three agents and the grant action, on one SQLite file.

Each method is registered under the activity name the spec uses
(``access.lookup`` ...). SQLite work runs in a thread so the worker's event
loop stays free for other cases. ``baton.toml`` names :func:`activities` as the
registry the worker calls, and :func:`seed` as what ``baton seed`` and
``baton demo`` run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from access_requests import agents
from access_requests.contracts import AccessRequest, Entitlement, GrantProposal, OwnerReview, RiskReview
from access_requests.db import AccessDB
from baton import ActionInput, ActionResult, AgentInput, AppContext


class AccessActivities:
    """The access agents and the grant action, bound to one access database."""

    def __init__(self, db_path: str | Path) -> None:
        self.db = AccessDB(db_path)
        self.db.ensure()

    @activity.defn(name="access.lookup")
    async def lookup(self, inp: AgentInput) -> Entitlement:
        """Look up the employee, the system and the employee's current grants."""
        request = AccessRequest.model_validate(inp.case)

        def work() -> Entitlement:
            with self.db.connect() as conn:
                return agents.lookup(conn, request, now=agents.utc_now())

        return await asyncio.to_thread(work)

    @activity.defn(name="access.proposer")
    async def proposer(self, inp: AgentInput) -> GrantProposal:
        """Propose the grant."""
        return agents.propose(inp)

    @activity.defn(name="access.risk_review")
    async def risk_review(self, inp: AgentInput) -> RiskReview:
        """Review the proposal for risk."""
        return agents.review_risk(inp)

    @activity.defn(name="access.owner_review")
    async def owner_review(self, inp: AgentInput) -> OwnerReview:
        """Review the proposal as the system's owning team."""
        return agents.review_as_owner(inp)

    @activity.defn(name="access.grant")
    async def grant(self, inp: ActionInput) -> ActionResult:
        """Write one grant row per idempotency key; a repeat returns the existing row.

        The employee is checked again inside the write transaction: the lookup ran
        when the case started, and someone may have left the company since.
        Granting to an inactive employee is refused, not retried.
        """
        proposal = GrantProposal.model_validate(inp.handoffs["proposer"])
        return await asyncio.to_thread(self._write_grant, inp, proposal)

    def _write_grant(self, inp: ActionInput, proposal: GrantProposal) -> ActionResult:
        now = datetime.now(UTC)
        with self.db.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")  # one writer at a time: check and insert atomically
            try:
                row = conn.execute(
                    "SELECT id, level, expires_at FROM grants WHERE idempotency_key = ?",
                    (inp.idempotency_key,),
                ).fetchone()
                applied_now = row is None
                if row is None:
                    active = conn.execute(
                        "SELECT active FROM employees WHERE id = ?", (proposal.employee_id,)
                    ).fetchone()
                    if not active or not active[0]:
                        raise ApplicationError(
                            f"{proposal.employee_id} is not an active employee",
                            type="EmployeeInactive",
                            non_retryable=True,
                        )
                    expires = (now + timedelta(days=proposal.duration_days)).isoformat()
                    cursor = conn.execute(
                        "INSERT INTO grants (idempotency_key, employee_id, system_id, level, granted_at,"
                        " expires_at, case_id, decided_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            inp.idempotency_key,
                            proposal.employee_id,
                            proposal.system,
                            proposal.level,
                            now.isoformat(),
                            expires,
                            inp.case_id,
                            inp.decided_by,
                        ),
                    )
                    row = (cursor.lastrowid, proposal.level, expires)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return ActionResult(
            reference=f"AG-{row[0]:06d}",
            applied_now=applied_now,
            detail={
                "employee_id": proposal.employee_id,
                "system": proposal.system,
                "level": row[1],
                "expires_at": row[2],
            },
        )

    def all(self) -> list[Callable[..., Any]]:
        """The activities to register."""
        return [self.lookup, self.proposer, self.risk_review, self.owner_review, self.grant]


def database_path(context: AppContext) -> Path:
    """``$ACCESS_DB``, else ``access.db`` in the app's home."""
    return Path(os.environ.get("ACCESS_DB") or context.home / "access.db")


def activities(context: AppContext) -> list[Callable[..., Any]]:
    """The registry ``baton.toml`` names: the access activities bound to the app's database."""
    return AccessActivities(database_path(context)).all()


def seed(context: AppContext, *, reset: bool) -> str:
    """Create (or, with ``reset``, recreate) the directory, the systems and the grants ledger."""
    db = AccessDB(database_path(context))
    db.reset() if reset else db.ensure()
    return f"access database ready at {db.path}"
