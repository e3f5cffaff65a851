"""Where the audit chain is kept: the sink interface, its failure, and the choice of sink.

Two sinks keep the same chain, signatures and anchors, and verify the same way:

- ``file`` (the embedded default, :class:`baton.auditlog.AuditLog`): one JSONL file
  under a file lock; right for one worker host, and what ``baton dev`` uses;
- ``postgres`` (:class:`baton.audit.postgres.PostgresAuditLog`): one table that
  workers on several hosts append to, serialised by a row lock on the chain's head.

``BATON_AUDIT_SINK`` (``file`` or ``postgres``) chooses; ``BATON_AUDIT_DSN`` is the
libpq connection string of the database. A sink that cannot write raises
:class:`AuditLogUnavailable`, which Temporal retries, so a full disk or a database
restart pauses cases instead of failing or wedging them.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from temporalio.exceptions import ApplicationError

from baton.audit.chain import Appended, Verdict
from baton.audit.keys import AuditKeys, load_audit_keys
from baton.errors import BatonUsageError

SINKS = ("file", "postgres")

log = logging.getLogger("baton.audit")

Records = Sequence[tuple[str, dict[str, Any]]]
"""``(key, record)`` pairs to append; the key makes a retried append write nothing twice."""


class AuditSink(Protocol):
    """What the audit activity and ``baton audit`` need of a place that keeps the chain."""

    @property
    def where(self) -> str:
        """The log's location for messages (a path, or a DSN without its password)."""
        ...

    def write(self, records: Records) -> Appended:
        """Append the records whose keys are new, atomically; say where each case now stands.

        Raises:
            AuditLogUnavailable: nothing was written (full disk, read-only, database down).
        """
        ...

    def append(self, records: Records) -> list[str]:
        """:meth:`write`, returning only the keys newly written."""
        ...

    def read(self, case_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Records in log order (those of ``case_id`` only, when given)."""
        ...

    def verify(
        self, *, keys: AuditKeys | None = None, anchors: Mapping[str, tuple[str, int]] | None = None
    ) -> Verdict:
        """Check the chain, the signatures (with ``keys``) and completeness (against ``anchors``)."""
        ...

    def close(self) -> None:
        """Release connections (nothing, for a file)."""
        ...


class AuditLogUnavailable(ApplicationError):  # noqa: N818 (named for what the operator sees)
    """The audit log refused a write; Temporal retries, and the case waits until it heals.

    Retryable by design: a full disk, a read-only remount or a restarting database
    are conditions that end, and the case must neither fail nor skip its audit.

    Attributes:
        where: the log (path, or DSN without password).
        reason: a short error type for metrics and logs (``ENOSPC``, ``EROFS``,
            ``OperationalError``...).
        detail: the system's own words.
    """

    def __init__(self, where: str, reason: str, detail: str) -> None:
        self.where, self.reason, self.detail = where, reason, detail
        one_line = " ".join(detail.split())
        super().__init__(f"audit log {where} unavailable: {reason} ({one_line})", type="AuditLogUnavailable")

    @classmethod
    def from_os_error(cls, where: str, exc: OSError) -> AuditLogUnavailable:
        """From the OSError a file write raised, named by its errno (``ENOSPC``)."""
        reason = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        return cls(where, reason, exc.strerror or str(exc))

    def again(self) -> AuditLogUnavailable:
        """A fresh copy, so each waiting append raises its own exception (own traceback)."""
        return AuditLogUnavailable(self.where, self.reason, self.detail)


def sink_kind(environ: Mapping[str, str] | None = None) -> str:
    """``$BATON_AUDIT_SINK`` (``file`` when unset).

    Raises:
        BatonUsageError: an unknown sink (the worker then refuses to start).
    """
    env = os.environ if environ is None else environ
    kind = env.get("BATON_AUDIT_SINK", "").strip().lower() or "file"
    if kind not in SINKS:
        raise BatonUsageError(f"BATON_AUDIT_SINK={kind!r}: expected one of {', '.join(SINKS)}")
    return kind


def configured_sink(default: AuditSink, environ: Mapping[str, str] | None = None) -> AuditSink:
    """``default`` (the worker's audit file), unless ``BATON_AUDIT_SINK`` picks PostgreSQL.

    Nothing connects here: the database sink connects on its first append, so a
    database that is still starting delays the first audit write, not the worker.

    Raises:
        BatonUsageError: an unknown sink, or ``postgres`` without ``BATON_AUDIT_DSN``.
    """
    env = os.environ if environ is None else environ
    if sink_kind(env) == "file":
        return default
    from baton.audit.postgres import PostgresAuditLog

    dsn = env.get("BATON_AUDIT_DSN", "").strip()
    if not dsn:
        raise BatonUsageError("BATON_AUDIT_SINK=postgres needs BATON_AUDIT_DSN (a libpq connection string)")
    sink = PostgresAuditLog(dsn, keys=load_audit_keys(env))
    log.info("audit log: PostgreSQL at %s (BATON_AUDIT_SINK=postgres)", sink.where)
    return sink


def open_sink(path: Path, environ: Mapping[str, str] | None = None) -> AuditSink:
    """The configured sink: the file at ``path`` by default, else what ``BATON_AUDIT_SINK`` says."""
    from baton.auditlog import AuditLog

    env = os.environ if environ is None else environ
    return configured_sink(AuditLog(path, keys=load_audit_keys(env)), env)
