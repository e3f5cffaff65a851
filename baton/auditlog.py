"""The tamper-evident audit log, embedded default: append-only JSONL where each record chains to the last.

Every record carries ``prev`` (the SHA-256 of the record before it) and ``sha256``
(of its own canonical JSON), plus the workflow id, run id, trace id and span id that
join it to the Temporal history and the case's trace; with ``BATON_AUDIT_KEYS`` set it
is also signed (``key_id``, ``sig``). Records hold the audit event (whose payloads are
already digests), never case data. :mod:`baton.audit.chain` says what each check catches.

Writes are made to survive a full or read-only disk without wedging the worker:

- a batch is written with one ``write`` and one ``fsync`` under an exclusive lock;
  if either fails the file is cut back to where it was, so no half record remains;
- if a crash still left a torn final record (no newline, or not JSON), the next
  append cuts it and chains a ``repair`` record saying how many bytes went and why;
- an OSError (ENOSPC, EROFS, EPERM...) becomes :class:`AuditLogUnavailable`, which
  Temporal retries; the cached tail is dropped, so the first attempt after space
  returns re-reads the file and succeeds.

One file serves one worker host. Several hosts share :mod:`baton.audit.postgres`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from baton.audit.chain import (
    GENESIS,
    Anchor,
    Appended,
    CaseHead,
    ChainChecker,
    Verdict,
    canonical,
    line_of,
    seal,
)
from baton.audit.keys import AuditKeys, load_audit_keys
from baton.audit.sink import AuditLogUnavailable, Records

__all__ = [
    "GENESIS",
    "Anchor",
    "Appended",
    "AuditLog",
    "AuditLogUnavailable",
    "CaseHead",
    "Verdict",
    "canonical",
    "read",
    "seal",
    "verify",
]

log = logging.getLogger("baton.audit")


def verify(
    path: str | Path, *, keys: AuditKeys | None = None, anchors: Mapping[str, tuple[str, int]] | None = None
) -> Verdict:
    """Check every record's hash, link and signature, and the log against the engine's anchors.

    Args:
        path: the log file; a missing file reads as an empty log (so anchors name
            every case whose records went with it).
        keys: the writers' keys; without them forgery is not detectable (the
            verdict's notes say so).
        anchors: workflow id → (head hash, record count) as the engine recorded them.
    """
    checker = ChainChecker(keys=keys, anchors=anchors)
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below; a missing file is an empty log)
    except FileNotFoundError:
        return checker.verdict()
    with handle:
        for number, line in enumerate(handle, start=1):
            checker.add_line(number, line)
    return checker.verdict()


def read(path: str | Path, *, case_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Records in order (those of ``case_id`` only, when given).

    A line that is not a JSON record (a torn tail the next append will repair, or an
    edit) is skipped: reading shows what is there, :func:`verify` judges it.
    """
    if not Path(path).exists():
        return
    with open(path, "rb") as handle:
        for line in handle:
            record = _parse(line)
            if record is not None and (case_id is None or record.get("case_id") == case_id):
                yield record


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


@dataclass
class _Tail:
    """What an append needs from the file: its size, keys, last hash, and each case's place."""

    size: int = 0
    keys: set[str] = field(default_factory=set)
    prev: str = GENESIS
    cases: dict[str, tuple[str, int]] = field(default_factory=dict)  # workflow id → (head, records)

    def add(self, record: Mapping[str, Any]) -> None:
        self.keys.add(str(record.get("key")))
        self.prev = str(record.get("sha256", ""))
        workflow_id = record.get("workflow_id")
        if workflow_id is not None:
            _, count = self.cases.get(str(workflow_id), ("", 0))
            self.cases[str(workflow_id)] = (self.prev, count + 1)


class AuditLog:
    """Appends records under an exclusive file lock; each key is written at most once.

    The key (workflow id, run id, event number) makes a retried append a no-op for
    records an earlier attempt already wrote, so retries never duplicate records.

    Args:
        path: the JSONL file (created with its directory on the first append).
        keys: signing keys; ``"env"`` (the default) reads ``BATON_AUDIT_KEYS``, None
            writes unsigned records.
    """

    def __init__(self, path: str | Path, *, keys: AuditKeys | Literal["env"] | None = "env") -> None:
        self.path = Path(path)
        self.keys = load_audit_keys() if keys == "env" else keys
        self._tail: _Tail | None = None  # valid while the file's size is what we left it at
        self._repair: dict[str, Any] | None = None  # a cut made, not yet noted in the log
        self._warned: set[int] = set()

    @property
    def where(self) -> str:
        """The file's path, for messages."""
        return str(self.path)

    def append(self, records: Records) -> list[str]:
        """Append ``(key, record)`` pairs not yet in the log; returns the keys written."""
        return self.write(records).written

    def write(self, records: Records) -> Appended:
        """Append the new records with one write and one fsync; where each case now stands.

        Raises:
            AuditLogUnavailable: the file could not be opened, written or synced;
                nothing of this batch remains in it.
        """
        try:
            return self._write(records)
        except OSError as exc:
            self._tail = None  # re-read on the next attempt: the file may have changed meanwhile
            raise AuditLogUnavailable.from_os_error(self.where, exc) from None

    def read(self, case_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Records in order (those of ``case_id`` only, when given)."""
        return read(self.path, case_id=case_id)

    def verify(
        self, *, keys: AuditKeys | None = None, anchors: Mapping[str, tuple[str, int]] | None = None
    ) -> Verdict:
        """:func:`verify` on this file."""
        return verify(self.path, keys=keys, anchors=anchors)

    def close(self) -> None:
        """Nothing to release: the file is opened per append."""

    def _write(self, records: Records) -> Appended:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as handle:
            fd = handle.fileno()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                tail = self._load(handle)
                lines: list[str] = []
                prev, written, new = tail.prev, list[str](), set[str]()
                staged: dict[str, tuple[str, int]] = {}
                if self._repair is not None:
                    note = seal({"key": f"repair/{uuid.uuid4()}", "repair": self._repair}, prev, self.keys)
                    lines.append(line_of(note))
                    prev = note["sha256"]
                for key, record in records:
                    if key in tail.keys or key in new:
                        continue
                    sealed = seal({"key": key, **record}, prev, self.keys)
                    lines.append(line_of(sealed))
                    prev = sealed["sha256"]
                    written.append(key)
                    new.add(key)
                    if record.get("workflow_id") is not None:
                        case = str(record["workflow_id"])
                        _, count = staged.get(case, tail.cases.get(case, ("", 0)))
                        staged[case] = (prev, count + 1)
                if lines:
                    data = "".join(lines).encode()
                    self._write_atomically(fd, tail.size, data)
                    tail.size += len(data)
                    tail.keys.update(written)
                    tail.prev = prev
                    tail.cases.update(staged)
                    self._repair = None
                cases = {
                    str(r["workflow_id"]): CaseHead(*tail.cases.get(str(r["workflow_id"]), ("", 0)))
                    for _, r in records
                    if r.get("workflow_id") is not None
                }
                return Appended(written, cases)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _write_atomically(self, fd: int, start: int, data: bytes) -> None:
        """All of ``data`` durably at the end of the file, or the file cut back to ``start``."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]  # O_APPEND: a short write continues at the end
            os.fsync(fd)
        except OSError:
            # Cutting frees space, so it works on a full disk; if it fails too (the file
            # went read-only), the next append that can write repairs the torn tail.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
        if start == 0:  # a new file: make its directory entry durable too
            with contextlib.suppress(OSError):
                directory = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)

    def _load(self, handle: IO[bytes]) -> _Tail:
        """The file's tail state, re-read when someone else wrote; a torn final record cut."""
        size = os.fstat(handle.fileno()).st_size
        if self._tail is not None and self._tail.size == size:
            return self._tail  # nobody else wrote since our last append
        tail = _Tail()
        handle.seek(0)
        offset, bad_from = 0, None
        for line in handle:
            record = _parse(line) if line.endswith(b"\n") else None
            if record is None:
                bad_from = offset if bad_from is None else bad_from
            else:
                if bad_from is not None:
                    self._warn_bad_line(bad_from)
                    bad_from = None
                tail.add(record)
            offset += len(line)
        tail.size = offset
        if bad_from is not None:
            self._cut(handle, bad_from, offset)
            tail.size = bad_from
        self._tail = tail
        return tail

    def _cut(self, handle: IO[bytes], at: int, size: int) -> None:
        """Truncate a torn tail at ``at`` and remember to chain a note saying so."""
        handle.seek(at)
        torn = handle.read(size - at)
        reason = (
            "no trailing newline; a write was interrupted by a full disk or a crash"
            if not torn.endswith(b"\n")
            else "final line is not a JSON record"
        )
        os.ftruncate(handle.fileno(), at)
        os.fsync(handle.fileno())
        cut = size - at + (self._repair or {}).get("cut_bytes", 0)
        self._repair = {
            "cut_bytes": cut,
            "reason": reason,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        log.warning(
            "audit log %s: cut %d bytes of a torn final record (%s); a repair record notes it",
            self.path,
            cut,
            reason,
        )

    def _warn_bad_line(self, offset: int) -> None:
        """A bad line with good records after it is not a torn write: leave it for verify to report."""
        if offset not in self._warned:
            self._warned.add(offset)
            log.warning(
                "audit log %s: the line at byte %d is not a JSON record; appends continue, "
                "`baton audit verify` reports it",
                self.path,
                offset,
            )
