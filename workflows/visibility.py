"""What people outside the case see: current details, search attributes, notifications.

Kept apart from the interpreter so the process logic reads as the process. Search
attributes are only written when the client saw them registered (``CaseStart.index``);
notifications are fire-and-forget activities, so a failing webhook is recorded in
the audit trail but never blocks or fails the case.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.handoffs import failure_message
from workflows.trail import AuditTrail

with workflow.unsafe.imports_passed_through():
    from baton import search
    from baton.messages import AuditKind, Awaiting, JsonDict, Notification, NotifyEvent
    from baton.rules import RuleError, evaluate
    from baton.spec.models import ProcessSpec

NOTIFY_ACTIVITY = "baton.notify"
DECIDERS_PATCH = "deciders-index-v1"
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=6,
)


class Visibility:
    """Keeps a case's outward view current as its stage changes."""

    def __init__(
        self,
        spec: ProcessSpec,
        case_id: str,
        trail: AuditTrail,
        *,
        index: bool,
        index_deciders: bool = False,
        since: Callable[[str], bool] = workflow.patched,
    ) -> None:
        self._since = since
        self._spec = spec
        self._case_id = case_id
        self._trail = trail
        self._index = index
        self._index_deciders = index and index_deciders
        self._indexed: dict[str, Any] = {}
        self._pending: set[asyncio.Task[Any]] = set()
        self.amount: float | None = None
        self.summary = ""

    def describe(self, context: JsonDict) -> None:
        """Work out the inbox amount and summary from the spec's CEL, once inputs exist."""
        for field in ("amount", "summary"):
            expr = getattr(self._spec.inbox, field)
            if expr is None:
                continue
            try:
                value = evaluate(expr, context)
            except RuleError:
                continue  # not computable yet (an earlier step has not run)
            if field == "amount" and isinstance(value, int | float) and not isinstance(value, bool):
                self.amount = float(value)
            elif field == "summary":
                self.summary = str(value)[:200]

    def show(self, stage: str, awaiting: Awaiting | None, outcome: str | None) -> None:
        """Update the UI's current details and, when indexed, the search attributes."""
        details = f"**{self._spec.process}** · {stage}"
        if self.summary or self.amount is not None:
            amount = "" if self.amount is None else f"amount **{self.amount:g}**"
            details += "\n\n" + " · ".join(part for part in (self.summary, amount) if part)
        if awaiting is not None:
            until = f"until {awaiting.deadline.isoformat()}" if awaiting.deadline else "(held)"
            details += f"\n\nwaiting for **{awaiting.role}** {until}: {awaiting.purpose}"
            approved = ", ".join(awaiting.approved_by) or "nobody yet"
            details += f"\n\napproved {len(awaiting.approved_by)} of {awaiting.approvers_needed} ({approved})"
            if awaiting.proposal:
                details += f" · proposal `{awaiting.proposal[:12]}` (`baton show {self._case_id}`)"
        workflow.set_current_details(details)
        if not self._index:
            return
        code = search.CLOSED if outcome else search.RUNNING
        if awaiting is not None:
            code = search.AWAITING if awaiting.deadline else search.HELD
        wanted: dict[str, Any] = {
            search.STAGE.name: code,
            search.AWAITING_ROLE.name: awaiting.role if awaiting else None,
            search.DEADLINE.name: awaiting.deadline if awaiting else None,
            search.AMOUNT.name: self.amount,
            search.OUTCOME.name: outcome,
        }
        if wanted == self._indexed:
            return
        updates = []
        for key in (search.STAGE, search.AWAITING_ROLE, search.DEADLINE, search.AMOUNT, search.OUTCOME):
            value = wanted[key.name]
            if value != self._indexed.get(key.name, None) or key.name not in self._indexed:
                updates.append(key.value_unset() if value is None else key.value_set(value))
        self._indexed = wanted
        workflow.upsert_search_attributes(updates)
        # A case stopped before the inbox summary can be computed (its first handoff failed)
        # shows why it waits instead of a blank line; only cases bound to a proposal digest
        # do, so cases asked before that change replay with the memo they had.
        fallback = awaiting.purpose[:200] if awaiting is not None and awaiting.proposal else ""
        if (self.summary or fallback) and awaiting is not None:
            memo: dict[str, Any] = {"summary": self.summary or fallback}
            if awaiting.proposal:
                memo["proposal"] = awaiting.proposal  # the inbox prints what a decision must name
            workflow.upsert_memo(memo)

    def closed_by(self, deciders: list[str]) -> None:
        """Index who decided a closing case, when its namespace has ``BatonDeciders``.

        Only cases started knowing the attribute exists set it, and only on workers with this
        code (the patch): a case closed by an older worker replays without the command.
        """
        if self._index_deciders and deciders and self._since(DECIDERS_PATCH):
            workflow.upsert_search_attributes([search.DECIDERS.value_set(sorted(set(deciders)))])

    def notify(self, event: NotifyEvent, awaiting: Awaiting, decided: str | None) -> None:
        """Post to the role's webhooks in the background; failures are audited, not raised."""
        note = Notification(
            event=event,
            case_id=self._case_id,
            process=self._spec.process,
            role=awaiting.role,
            ladder=awaiting.ladder,
            rung=awaiting.rung,
            deadline=awaiting.deadline,
            purpose=awaiting.purpose,
            summary=self.summary,
            amount=self.amount,
            decided=decided,
            proposal=awaiting.proposal,
            idempotency_key=f"{workflow.info().workflow_id}/{event}/{awaiting.ladder}/{awaiting.rung}/"
            f"{len(self._trail.events)}",
        )
        task = workflow.start_activity(
            NOTIFY_ACTIVITY,
            note,
            start_to_close_timeout=timedelta(seconds=15),
            retry_policy=NOTIFY_RETRY,
            summary=f"notify · {event} · {awaiting.role}",
        )
        self._pending.add(task)
        task.add_done_callback(lambda done: self._settled(done, note))

    async def flush(self, timeout: timedelta = timedelta(seconds=10)) -> None:
        """Give in-flight notifications a bounded chance to land before the case closes.

        A closed workflow drops its pending activities, so without this the
        "decided" notification could be lost. Ones still retrying after ``timeout``
        are abandoned and audited; the case's outcome never waits longer than that.
        """
        if not self._pending:
            return
        _, unfinished = await workflow.wait(list(self._pending), timeout=timeout.total_seconds())
        for task in unfinished:
            task.cancel()
        if unfinished:
            self._trail.add(
                AuditKind.NOTIFY_FAILED,
                f"{len(unfinished)} notification(s) still retrying at close were abandoned",
            )

    def _settled(self, task: asyncio.Task[Any], note: Notification) -> None:
        self._pending.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            why = failure_message(error) if isinstance(error, ActivityError) else str(error)
            self._trail.add(
                AuditKind.NOTIFY_FAILED,
                f"{note.event} notification to {note.role} failed: {why}",
                role=note.role,
            )
