"""The approval ladder: ask a role, remind, wait with a deadline, climb on timeout.

Who may decide is looked up once per rung through the ``baton.role_members``
activity, so the answer is recorded in history (a replay sees the same
members) and is part of the audit. A decision is refused, and never applied,
when it comes from someone without the rung's role, from the submitter, from
someone who already approved this rung, or when the case is not waiting.

Decisions arrive two ways. A signal is recorded even when refused (the audit
shows the attempt). An update is checked by a validator first, so the caller
hears the refusal at once and a refused update leaves no trace in history.

Everything in a decision comes from outside, so it is bounded before it is kept:
identities are compared in canonical form (``baton.identity``), a refusal keeps at
most ``EXCERPT`` characters of a comment (and the digest of the whole), and only the
first ``ITEMISED_REFUSALS`` refusals become audit events; the rest are counted. However
many refusals arrive, the audit trail and the result stay small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from temporalio import workflow

from workflows.trail import AuditTrail

with workflow.unsafe.imports_passed_through():
    from baton.digests import digest
    from baton.durations import format_duration
    from baton.identity import canonical_or_none
    from baton.messages import (
        ApprovalRecord,
        AuditKind,
        Awaiting,
        HumanDecision,
        NotifyEvent,
        RoleMembers,
        RoleQuery,
        Verdict,
    )
    from baton.spec.models import ProcessSpec, Rung
    from baton.textbounds import excerpt

ROLE_MEMBERS_ACTIVITY = "baton.role_members"
PAST: dict[str, str] = {
    "approve": "approved",
    "reject": "rejected",
    "request_changes": "changes requested",
    "timed_out": "timed out",
}

Notify = Callable[[NotifyEvent, Awaiting, str | None], None]

DIGEST_PATCH = "decision-digest-v1"
"""From here on a rung is bound to the digest of what it decides on: a decision must carry
it, and one on a proposal that changed since is refused. Cases asked before replay unbound."""
STALE = "the draft changed since you looked: review it again"

KEPT_IDS = 500
"""Decision ids remembered across continue-as-new, so a decision cannot be applied twice."""

ITEMISED_REFUSALS = 25
"""Refusals itemised in the audit trail per case; later ones are counted only."""


@dataclass
class LadderResult:
    """How the ladder ended: a verdict with its records, or ``timed_out``."""

    result: Literal["approve", "reject", "request_changes", "timed_out"]
    records: list[ApprovalRecord] = field(default_factory=list)
    timed_out_roles: list[str] = field(default_factory=list)

    @property
    def deciders(self) -> str:
        """Who decided, ``alice`` or ``carol+erin``."""
        return "+".join(r.approver for r in self.records)

    @property
    def comment(self) -> str:
        """The deciding comment (a rejection's reason, a change request's feedback)."""
        return self.records[-1].comment if self.records else ""


class ApprovalDesk:
    """Holds the case's approval state; signal and update handlers hand decisions to it."""

    def __init__(
        self,
        spec: ProcessSpec,
        trail: AuditTrail,
        *,
        submitted_by: str,
        on_change: Callable[[], None] = lambda: None,
        notify: Notify = lambda event, awaiting, decided: None,
        since: Callable[[str], bool] = workflow.patched,
    ) -> None:
        self._since = since
        self._spec = spec
        self._trail = trail
        self._submitted_by = submitted_by
        self._on_change = on_change
        self._notify = notify
        self._members: frozenset[str] = frozenset()
        self._rung: Rung | None = None
        self._verdict: Verdict | None = None
        self._rung_records: list[ApprovalRecord] = []
        self._seen_ids: dict[str, None] = {}  # ordered: the newest KEPT_IDS carry over
        self._asked_before = False
        self._proposal: str | None = None
        self.awaiting: Awaiting | None = None
        self.records: list[ApprovalRecord] = []
        self.refused = 0
        """Decisions refused so far in this case (carried across continue-as-new)."""

    @property
    def seen_ids(self) -> list[str]:
        """The newest decision ids applied, for the next run (continue-as-new)."""
        return list(self._seen_ids)[-KEPT_IDS:]

    @seen_ids.setter
    def seen_ids(self, ids: list[str]) -> None:
        self._seen_ids = dict.fromkeys(ids)

    async def climb(self, ladder: str, purpose: str, proposal: str | None = None) -> LadderResult:
        """Ask each rung in turn until it decides; then hold or time out per the spec.

        ``proposal`` is the digest of what the people decide on; every decision must name it.
        """
        self._proposal = proposal if proposal is not None and self._since(DIGEST_PATCH) else None
        rungs = self._spec.ladders[ladder]
        timed_out: list[str] = []
        for index, rung in enumerate(rungs):
            verdict = await self._ask(ladder, index, rung, purpose, hold=False)
            if verdict is not None:
                return LadderResult(verdict, list(self._rung_records), timed_out)
            last = index == len(rungs) - 1
            timed_out.append(rung.role)
            self._trail.add(
                AuditKind.TIMED_OUT if last else AuditKind.ESCALATED,
                f"nobody with role {rung.role} decided within {format_duration(rung.timeout)}"
                + ("" if last else f"; escalating to {rungs[index + 1].role}"),
                role=rung.role,
            )
        if self._spec.on_timeout == "hold":
            self._trail.add(
                AuditKind.HELD,
                f"ladder {ladder} ran out; held for {rungs[-1].role} with no deadline",
                role=rungs[-1].role,
            )
            verdict = await self._ask(ladder, len(rungs) - 1, rungs[-1], purpose, hold=True)
            assert verdict is not None, "a held rung waits until someone decides"
            return LadderResult(verdict, list(self._rung_records), timed_out)
        return LadderResult("timed_out", [], timed_out)

    async def _ask(self, ladder: str, index: int, rung: Rung, purpose: str, *, hold: bool) -> Verdict | None:
        found = await workflow.execute_local_activity(
            ROLE_MEMBERS_ACTIVITY,
            RoleQuery(role=rung.role),
            result_type=RoleMembers,
            start_to_close_timeout=timedelta(seconds=10),
            summary=f"directory · {rung.role}",
        )
        self._members = frozenset(c for m in found.members if (c := canonical_or_none(m)) is not None)
        self._rung, self._verdict, self._rung_records = rung, None, []
        self._asked_before = True
        self.awaiting = Awaiting(
            ladder=ladder,
            rung=index + 1,
            rungs=len(self._spec.ladders[ladder]),
            role=rung.role,
            deadline=None if hold else workflow.now() + rung.timeout,
            purpose=purpose,
            approvers_needed=rung.approvers,
            proposal=self._proposal,
        )
        self._on_change()
        self._trail.add(
            AuditKind.APPROVAL_REQUESTED,
            f"{purpose}: waiting for {rung.role} (rung {index + 1}/{self.awaiting.rungs}, "
            + ("held, no deadline" if hold else format_duration(rung.timeout))
            + (f", {rung.approvers} approvers" if rung.approvers > 1 else "")
            + ")",
            role=rung.role,
            eligible=sorted(self._members - {self._submitted_by}),
            deadline=self.awaiting.deadline.isoformat() if self.awaiting.deadline else None,
            **({"proposal": self._proposal} if self._proposal else {}),
        )
        self._notify("approval_requested", self.awaiting, None)
        decided = await self._wait(rung, hold=hold)
        waited = self.awaiting
        self._leave_rung()
        if decided:
            self._notify("decided", waited, self._verdict)
            return self._verdict
        self._notify("escalated", waited, None)
        return None

    async def _wait(self, rung: Rung, *, hold: bool) -> bool:
        """Wait for a verdict; True if one came before the deadline (reminding on the way)."""
        if hold:
            await workflow.wait_condition(lambda: self._verdict is not None)
            return True
        remaining = rung.timeout
        if rung.remind is not None:
            if await _within(lambda: self._verdict is not None, rung.remind):
                return True
            assert self.awaiting is not None
            self._trail.add(
                AuditKind.REMINDED,
                f"reminder: {rung.role} has {format_duration(rung.timeout - rung.remind)} left",
                role=rung.role,
            )
            self._notify("reminder", self.awaiting, None)
            remaining = rung.timeout - rung.remind
        return await _within(lambda: self._verdict is not None, remaining)

    def _leave_rung(self) -> None:
        # Not in a ``finally``: on eviction the coroutine is closed outside the
        # workflow event loop, where workflow APIs must not be called.
        self.awaiting = None
        self._on_change()

    # -- decisions ------------------------------------------------------------

    def receive(self, verdict: Verdict, decision: HumanDecision) -> None:
        """A decision sent as a signal: refused ones are recorded, never applied."""
        if decision.decision_id is not None and decision.decision_id in self._seen_ids:
            return  # the same decision sent again: it already counted once
        refusal = self.refusal(verdict, decision)
        if refusal is not None:
            self.refuse(f"{verdict} by {excerpt(decision.approver, 64)}", refusal, decision.comment,
                        actor=excerpt(decision.approver, 64), decision=verdict)  # fmt: skip
            return
        self.apply(verdict, decision)

    def refuse(
        self, what: str, why: str, text: str = "", *, actor: str | None = None, decision: str | None = None
    ) -> None:
        """Record a refusal: itemised while there are few, counted once there are many."""
        self.refused += 1
        if self.refused > ITEMISED_REFUSALS:
            return
        data = {"decision": decision} if decision else {}
        if text:
            data.update(comment=excerpt(text), comment_sha256=digest(text))
        if self.refused == ITEMISED_REFUSALS:
            why += f" (refusal {ITEMISED_REFUSALS}: later refusals are counted in status, not itemised)"
        self._trail.add(AuditKind.REFUSED, f"{what} refused: {why}", actor=actor, **data)

    def refusal(self, verdict: Verdict, decision: HumanDecision) -> str | None:
        """Why ``decision`` may not be applied now, or None if it may (no side effects)."""
        approver = canonical_or_none(decision.approver)
        if approver is None:
            return "the approver's name holds control, invisible or space characters, or is too long"
        if self.awaiting is None or self._rung is None:
            if self._asked_before:
                return "case is no longer awaiting approval"
            return "case is not awaiting approval yet"
        if self._verdict is not None:
            return "already decided"
        if decision.decision_id is not None and decision.decision_id in self._seen_ids:
            return "this decision (its decision_id) was already applied to this case"
        if approver == canonical_or_none(self._submitted_by):
            return f"separation of duties: {approver} submitted this case"
        if approver not in self._members:
            return f"not authorised: {approver} lacks role {self.awaiting.role}"
        if verdict == "request_changes" and not decision.comment.strip():
            return "request_changes needs feedback in the comment"
        if verdict == "approve" and approver in self.awaiting.approved_by:
            return f"{approver} already approved; this rung needs {self._rung.approvers} different approvers"
        if self._proposal is not None:
            if decision.proposal is None:
                return (
                    f"no proposal digest: decide on what you reviewed (baton show prints it: "
                    f"{self._proposal[:12]})"
                )
            if not self._proposal.startswith(decision.proposal):
                return STALE
        return None

    def apply(self, verdict: Verdict, decision: HumanDecision, *, signed_by: str | None = None) -> str:
        """Apply an authorised decision; returns the state it leaves the rung in.

        ``signed_by`` names the key that signed it, when the deployment requires signing.
        """
        assert self.awaiting is not None
        assert self._rung is not None
        if decision.decision_id is not None:
            self._seen_ids[decision.decision_id] = None
        approver = canonical_or_none(decision.approver)
        assert approver is not None, "refusal() refuses a name with no canonical form"
        decision = decision.model_copy(update={"approver": approver})
        record = ApprovalRecord(
            decision=verdict,
            approver=approver,
            role=self.awaiting.role,
            comment=decision.comment,
            at=workflow.now(),
        )
        bound: dict[str, str] = {"proposal": self._proposal} if self._proposal else {}
        if signed_by is not None:
            bound["signed_by"] = signed_by
        self._rung_records.append(record)
        self.records.append(record)
        kind = {
            "approve": AuditKind.APPROVED,
            "reject": AuditKind.REJECTED,
            "request_changes": AuditKind.CHANGES_REQUESTED,
        }[verdict]
        if verdict == "approve":
            self.awaiting.approved_by.append(decision.approver)
            have, need = len(self.awaiting.approved_by), self._rung.approvers
            if have < need:
                state = f"approval {have} of {need} recorded; waiting for another {self.awaiting.role}"
                self._trail.add(kind, f"{state} ({decision.approver})", actor=decision.approver, **bound)
                self._on_change()
                return state
        self._verdict = verdict
        state = f"{PAST[verdict]} by {decision.approver} ({record.role})"
        self._trail.add(
            kind,
            state + (f": {decision.comment}" if decision.comment else ""),
            actor=decision.approver,
            role=record.role,
            **bound,
        )
        return state


async def _within(condition: Callable[[], bool], timeout: timedelta) -> bool:
    """True if ``condition`` became true within ``timeout`` (a durable timer)."""
    try:
        await workflow.wait_condition(condition, timeout=timeout)
    except TimeoutError:
        return False
    return True
