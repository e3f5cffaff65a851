"""The ``baton.audit_append`` activity: the workflow's audit events, into the chained log.

The workflow sends the events it has not logged yet, with its run id and the
trace/span ids of the case's trace; this appends them under a file lock. A retry
after a crash between write and report rewrites nothing (records are keyed by
workflow id, run id and event number). Each newly written event also feeds the
Baton metrics (so every event is counted once, outside the replaying workflow).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from temporalio import activity

from baton.auditlog import AuditLog
from baton.messages import AuditBatch
from baton.telemetry import record_metrics


class AuditActivities:
    """Binds the audit log file to the activity the workflow calls.

    Appends from concurrent cases are group-committed: whatever arrives while one
    locked, fsync'd write is in progress goes into the next one, so a burst of cases
    costs a handful of fsyncs rather than one each.
    """

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._queue: list[tuple[list[tuple[str, dict[str, Any]]], asyncio.Future[set[str]]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def _write_queued(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            records = [r for batch, _ in group for r in batch]
            try:
                written = set(await asyncio.to_thread(self.log.append, records))
            except Exception as exc:  # every waiter sees the failure; Temporal retries each
                for _, waiter in group:
                    waiter.set_exception(exc)
                continue
            for _, waiter in group:
                waiter.set_result(written)

    @activity.defn(name="baton.audit_append")
    async def audit_append(self, batch: AuditBatch) -> int:
        """Append the batch's events not yet in the log; returns how many were new."""
        context = trace.get_current_span().get_span_context()  # this activity's span in the case trace
        trace_id = f"{context.trace_id:032x}" if context.is_valid else None
        span_id = f"{context.span_id:016x}" if context.is_valid else None
        records = [
            (
                f"{batch.workflow_id}/{batch.run_id}/{event.seq}",
                {
                    "case_id": batch.case_id,
                    "process": batch.process,
                    "workflow_id": batch.workflow_id,
                    "run_id": batch.run_id,
                    "trace_id": trace_id,
                    "span_id": span_id,
                    "event": event.model_dump(mode="json"),
                },
            )
            for event in batch.events
        ]
        waiter: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        self._queue.append((records, waiter))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        written = await waiter
        new = [event for (key, _), event in zip(records, batch.events, strict=True) if key in written]
        if new:
            record_metrics(batch.process, new)
        return len(new)

    def all(self) -> list[Callable[..., Any]]:
        """The activities to register."""
        return [self.audit_append]
