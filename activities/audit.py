"""The ``baton.audit_append`` activity: the workflow's audit events, into the chained log.

The workflow sends the events it has not logged yet, with its run id and the
trace/span ids of the case's trace; this appends them to the audit sink (the file,
or PostgreSQL when ``BATON_AUDIT_SINK=postgres``). A retry after a crash between
write and report rewrites nothing (records are keyed by workflow id, run id and
event number). Each newly written event also feeds the Baton metrics (so every
event is counted once, outside the replaying workflow).

It returns an :class:`~baton.messages.AuditReceipt`: the hash of the case's newest
record and the case's record count, which the workflow keeps in its memo so that
``baton audit verify`` can compare the log with what the engine saw.

When the log cannot be written (full disk, read-only file system, database down)
the append raises the retryable ``AuditLogUnavailable``: Temporal retries it with
backoff, the case waits, and the first attempt after the cause is gone succeeds.
The worker logs one WARNING line when that starts (again at most once a minute
while it lasts) and one when it heals, and counts each failed attempt in
``baton.audit.append_failures`` by ``error.type``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import Counter, MeterProvider
from opentelemetry.trace import get_current_span
from temporalio import activity

from baton.audit.chain import Appended, CaseHead
from baton.audit.sink import AuditLogUnavailable, AuditSink, configured_sink
from baton.messages import AuditBatch, AuditReceipt
from baton.telemetry import record_metrics

log = logging.getLogger("baton.audit")

WARN_EVERY = 60.0
"""Seconds between repeated WARNING lines while the log stays unavailable."""


@functools.lru_cache(maxsize=4)
def _failure_counter(provider: MeterProvider) -> Counter:
    """The ``baton.audit.append_failures`` counter, made once per meter provider."""
    return provider.get_meter("baton").create_counter(
        "baton.audit.append_failures",
        unit="{attempt}",
        description="Audit appends that failed and will be retried, by error.type (ENOSPC, EROFS, ...)",
    )


class AuditActivities:
    """Binds the audit sink to the activity the workflow calls.

    Appends from concurrent cases are group-committed: whatever arrives while one
    locked, fsync'd write is in progress goes into the next one, so a burst of cases
    costs a handful of fsyncs rather than one each.

    Args:
        log: the worker's audit sink, normally its audit file; ``BATON_AUDIT_SINK=postgres``
            replaces it by the database sink, so the worker's wiring need not change.
        environ: the environment to read ``BATON_AUDIT_*`` from (default: the process's).
    """

    def __init__(self, log: AuditSink, *, environ: Mapping[str, str] | None = None) -> None:
        self.log = configured_sink(log, environ)
        self._queue: list[tuple[list[tuple[str, dict[str, Any]]], asyncio.Future[Appended]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._failing_since: float | None = None
        self._warned_at = 0.0
        self._failed_attempts = 0

    async def _write_queued(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            records = [r for batch, _ in group for r in batch]
            try:
                appended = await asyncio.to_thread(self.log.write, records)
            except Exception as exc:  # every waiter sees the failure; Temporal retries each
                if isinstance(exc, AuditLogUnavailable):
                    self._unavailable(exc, len(group))
                for _, waiter in group:
                    waiter.set_exception(exc.again() if isinstance(exc, AuditLogUnavailable) else exc)
                continue
            self._available()
            for _, waiter in group:
                waiter.set_result(appended)

    def _unavailable(self, exc: AuditLogUnavailable, waiting: int) -> None:
        """Count the failure; log it when it starts, then at most once a minute."""
        now = time.monotonic()
        self._failed_attempts += waiting
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._warned_at < WARN_EVERY:
            return
        self._warned_at = now
        log.warning(
            "%s; %d case(s) wait, Temporal retries their appends (failing for %.0f s)",
            exc.message,
            waiting,
            now - self._failing_since,
        )

    def _available(self) -> None:
        """After failures, say once that the log heals (WARNING: it closes what the warning opened)."""
        if self._failing_since is None:
            return
        log.warning(
            "audit log %s writable again after %.1f s (%d failed attempts retried)",
            self.log.where,
            time.monotonic() - self._failing_since,
            self._failed_attempts,
        )
        self._failing_since, self._failed_attempts = None, 0

    @activity.defn(name="baton.audit_append")
    async def audit_append(self, batch: AuditBatch) -> AuditReceipt:
        """Append the batch's events not yet in the log; the case's head hash and record count.

        Raises:
            AuditLogUnavailable: the log could not be written (retryable; nothing was written).
        """
        context = get_current_span().get_span_context()  # this activity's span in the case trace
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
        waiter: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._queue.append((records, waiter))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        try:
            appended = await waiter
        except AuditLogUnavailable as exc:
            _failure_counter(metrics.get_meter_provider()).add(1, {"error.type": exc.reason})
            raise
        written = set(appended.written)
        new = [event for (key, _), event in zip(records, batch.events, strict=True) if key in written]
        if new:
            record_metrics(batch.process, new)
        case = appended.cases.get(batch.workflow_id, CaseHead("", 0))
        return AuditReceipt(written=len(new), head=case.head, records=case.records)

    def all(self) -> list[Callable[..., Any]]:
        """The activities to register."""
        return [self.audit_append]
