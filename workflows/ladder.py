"""The approval ladder: ask a role, wait with a deadline, climb on timeout.

Who may decide is looked up once per rung through the ``baton.role_members``
activity, so the answer is recorded in history (a replay sees the same
members) and is part of the audit. A decision from anyone else, from the
submitter, or at a moment the case is not waiting is refused: recorded in the
trail and applied never.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from temporalio import workflow

from workflows.trail import AuditTrail

with workflow.unsafe.imports_passed_through():
    from baton.durations import format_duration
    from baton.messages import (
        ApprovalRecord,
        AuditKind,
        Awaiting,
        HumanDecision,
        RoleMembers,
        RoleQuery,
    )
    from baton.spec.models import ProcessSpec

ROLE_MEMBERS_ACTIVITY = "baton.role_members"

Verdict = Literal["approve", "reject"]
PAST: dict[str, str] = {"approve": "approved", "reject": "rejected"}


@dataclass
class LadderResult:
    """``approve``/``reject`` with the accepted record, or ``timed_out`` with none."""

    result: Literal["approve", "reject", "timed_out"]
    record: ApprovalRecord | None = None
    timed_out_roles: list[str] = field(default_factory=list)


class ApprovalDesk:
    """Holds the case's approval state; signal handlers hand decisions to it."""

    def __init__(
        self,
        spec: ProcessSpec,
        trail: AuditTrail,
        *,
        submitted_by: str,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._spec = spec
        self._on_change = on_change
        self._trail = trail
        self._submitted_by = submitted_by
        self._members: frozenset[str] = frozenset()
        self._verdict: tuple[Verdict, ApprovalRecord] | None = None
        self.awaiting: Awaiting | None = None
        self.records: list[ApprovalRecord] = []

    async def climb(self, ladder: str, purpose: str) -> LadderResult:
        """Ask each rung in turn until someone authorised decides or the ladder runs out."""
        rungs = self._spec.ladders[ladder]
        timed_out: list[str] = []
        for index, rung in enumerate(rungs):
            found = await workflow.execute_local_activity(
                ROLE_MEMBERS_ACTIVITY,
                RoleQuery(role=rung.role),
                result_type=RoleMembers,
                start_to_close_timeout=timedelta(seconds=10),
                summary=f"directory · {rung.role}",
            )
            self._members = frozenset(found.members)
            self._verdict = None
            self.awaiting = Awaiting(
                ladder=ladder,
                rung=index + 1,
                rungs=len(rungs),
                role=rung.role,
                deadline=workflow.now() + rung.timeout,
                purpose=purpose,
            )
            self._on_change()
            self._trail.add(
                AuditKind.APPROVAL_REQUESTED,
                f"{purpose}: waiting for {rung.role} (rung {index + 1}/{len(rungs)}, "
                f"{format_duration(rung.timeout)})",
                role=rung.role,
                eligible=sorted(self._members - {self._submitted_by}),
                deadline=self.awaiting.deadline.isoformat(),
            )
            try:
                await workflow.wait_condition(lambda: self._verdict is not None, timeout=rung.timeout)
            except TimeoutError:
                self._leave_rung()
                last = index == len(rungs) - 1
                self._trail.add(
                    AuditKind.TIMED_OUT if last else AuditKind.ESCALATED,
                    f"nobody with role {rung.role} decided within {format_duration(rung.timeout)}"
                    + ("" if last else f"; escalating to {rungs[index + 1].role}"),
                    role=rung.role,
                )
                timed_out.append(rung.role)
                continue
            self._leave_rung()
            assert self._verdict is not None
            verdict, record = self._verdict
            return LadderResult(verdict, record, timed_out)
        return LadderResult("timed_out", None, timed_out)

    def _leave_rung(self) -> None:
        # Not in a ``finally``: on eviction the coroutine is closed outside the
        # workflow event loop, where workflow APIs must not be called.
        self.awaiting = None
        self._on_change()

    def receive(self, verdict: Verdict, decision: HumanDecision) -> None:
        """Accept or refuse a human decision (signal handler; must not block)."""
        refusal = self.refusal(decision)
        if refusal is not None:
            self._trail.add(
                AuditKind.REFUSED,
                f"{verdict} by {decision.approver} refused: {refusal}",
                actor=decision.approver,
                decision=verdict,
                comment=decision.comment,
            )
            return
        assert self.awaiting is not None
        record = ApprovalRecord(
            decision=verdict,
            approver=decision.approver,
            role=self.awaiting.role,
            comment=decision.comment,
            at=workflow.now(),
        )
        self._verdict = (verdict, record)
        self.records.append(record)
        self._trail.add(
            AuditKind.APPROVED if verdict == "approve" else AuditKind.REJECTED,
            f"{PAST[verdict]} by {decision.approver} ({record.role})"
            + (f": {decision.comment}" if decision.comment else ""),
            actor=decision.approver,
            role=record.role,
        )

    def refusal(self, decision: HumanDecision) -> str | None:
        """Why ``decision`` may not be applied now, or None if it may."""
        if self._verdict is not None and self.awaiting is not None:
            return "already decided"
        if self.awaiting is None:
            return "case is not awaiting approval"
        if decision.approver == self._submitted_by:
            return f"separation of duties: {decision.approver} submitted this case"
        if decision.approver not in self._members:
            return f"not authorised: {decision.approver} lacks role {self.awaiting.role}"
        return None
