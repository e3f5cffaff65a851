"""The tamper-evident audit log: append-only JSONL where each record chains to the last.

Every record carries ``prev`` (the SHA-256 of the record before it) and ``sha256``
(of its own canonical JSON without that field), plus the workflow id, run id,
trace id and span id that join it to the Temporal history and the case's trace.
Records hold the audit event (whose payloads are already digests), never case data.

``verify`` recomputes the chain and names the first line that was changed,
removed, inserted or reordered: editing a line breaks its own hash; removing or
reordering lines breaks the next line's ``prev``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> str:
    """The bytes a record's hash covers: sorted keys, no spaces, without ``sha256``."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def seal(record: dict[str, Any], prev: str) -> dict[str, Any]:
    """``record`` chained after ``prev``, with its own hash."""
    sealed = {**record, "prev": prev}
    sealed["sha256"] = hashlib.sha256(canonical(sealed).encode()).hexdigest()
    return sealed


@dataclass(frozen=True)
class Verdict:
    """The result of checking a log: ``ok``, or the first bad line and why."""

    ok: bool
    records: int
    line: int | None = None
    problem: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.records} records, chain intact"
        return f"line {self.line}: {self.problem}"


def verify(path: str | Path) -> Verdict:
    """Check every record's hash and its link to the one before."""
    prev = GENESIS
    count = 0
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return Verdict(False, count, number, "not a JSON record (edited or truncated)")
            if record.get("prev") != prev:
                return Verdict(
                    False, count, number,
                    "chain broken: the record before it was removed, inserted or reordered",
                )  # fmt: skip
            if hashlib.sha256(canonical(record).encode()).hexdigest() != record.get("sha256"):
                return Verdict(False, count, number, "record changed: its hash does not match its content")
            prev = record["sha256"]
            count += 1
    return Verdict(True, count)


def read(path: str | Path, *, case_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Records in order (those of ``case_id`` only, when given)."""
    if not Path(path).exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if case_id is None or record.get("case_id") == case_id:
                yield record


class AuditLog:
    """Appends records under an exclusive file lock; each key is written at most once.

    The key (workflow id, run id, event number) makes a retried append a no-op for
    records an earlier attempt already wrote, so retries never duplicate records.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._seen: tuple[int, set[str], str] | None = None  # (file size, keys, last hash)

    def append(self, records: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """Append ``(key, record)`` pairs not yet in the log; returns the keys written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                size = handle.seek(0, os.SEEK_END)
                if self._seen is not None and self._seen[0] == size:
                    keys, prev = self._seen[1], self._seen[2]  # nobody else wrote since
                else:
                    handle.seek(0)
                    keys, prev = set(), GENESIS
                    for line in handle:
                        existing = json.loads(line)
                        keys.add(existing.get("key"))
                        prev = existing["sha256"]
                written: list[str] = []
                for key, record in records:
                    if key in keys:
                        continue
                    sealed = seal({"key": key, **record}, prev)
                    handle.write(json.dumps(sealed, sort_keys=True, ensure_ascii=False) + "\n")
                    prev = sealed["sha256"]
                    written.append(key)
                    keys.add(key)
                handle.flush()
                os.fsync(handle.fileno())
                self._seen = (handle.tell(), keys, prev)
                return written
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
