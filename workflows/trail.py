"""The audit trail kept in workflow state.

Events are stamped with ``workflow.now()`` (deterministic) and numbered, so the
query, the result and a replay all see the same sequence.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from baton.messages import AuditEvent, AuditKind


def digest(payload: Any) -> str:
    """SHA-256 of a payload's canonical JSON: audit events carry this, not the payload."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class AuditTrail:
    """Append-only list of :class:`AuditEvent` for one case."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def add(
        self,
        kind: AuditKind,
        detail: str,
        *,
        step: str | None = None,
        agent: str | None = None,
        actor: str | None = None,
        **data: Any,
    ) -> AuditEvent:
        """Record one event and log it through the replay-safe workflow logger."""
        event = AuditEvent(
            seq=len(self.events) + 1,
            at=workflow.now(),
            kind=kind,
            detail=detail,
            step=step,
            agent=agent,
            actor=actor,
            data=data,
        )
        self.events.append(event)
        workflow.logger.info("audit %s: %s", kind.value, detail)
        return event
