"""Sealing and checking the audit chain, whatever sink keeps it.

A record is sealed by adding ``prev`` (the hash of the record before it in the log),
``key_id`` (when the writers hold a signing key), ``sha256`` (of the record's
canonical JSON without ``sha256`` and ``sig``) and ``sig`` (HMAC-SHA256 of that same
canonical JSON with the writers' key). Each check answers one way of tampering:

- an edited record no longer matches its ``sha256``;
- a removed, inserted or reordered record breaks the next record's ``prev``;
- a forged record, or a chain recomputed after an edit, lacks a valid ``sig``:
  hashes can be recomputed by anyone, signatures only by a key holder;
- records removed from the end, or an emptied log, leave a valid but shorter chain:
  only the *anchors* catch that. Each append returns the case's newest hash and
  record count, the workflow keeps them in its memo (Temporal's history records
  them), and :class:`ChainChecker` compares the log with those anchors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from baton.audit.keys import KEYS_HINT, AuditKeys

GENESIS = "0" * 64
"""The ``prev`` of a log's first record."""

UNSIGNED_NOTE = "unsigned: forgery not detectable; set BATON_AUDIT_KEYS"


def canonical(record: Mapping[str, Any]) -> str:
    """The text a record's hash and signature cover: sorted keys, no spaces, without ``sha256``/``sig``."""
    body = {k: v for k, v in record.items() if k not in ("sha256", "sig")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(text: str) -> str:
    """SHA-256 of ``text`` in hex."""
    return hashlib.sha256(text.encode()).hexdigest()


def seal(record: Mapping[str, Any], prev: str, keys: AuditKeys | None = None) -> dict[str, Any]:
    """``record`` chained after ``prev``, with its own hash, signed when ``keys`` are given.

    The key id is part of what is hashed and signed, so nobody can relabel a record
    as signed by another key.
    """
    sealed = {**record, "prev": prev}
    if keys is not None:
        sealed["key_id"] = keys.current
    body = canonical(sealed)
    sealed["sha256"] = digest(body)
    if keys is not None:
        sealed["sig"] = keys.sign(body)[1]
    return sealed


def line_of(record: Mapping[str, Any]) -> str:
    """A sealed record as the one line the logs store (sorted keys, newline-terminated)."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"


class Anchor(NamedTuple):
    """What the engine saw of one case: its newest record's hash and its record count."""

    head: str
    records: int


@dataclass(frozen=True)
class CaseHead:
    """A case's place in the log after an append: the anchor an append returns."""

    head: str
    records: int


@dataclass(frozen=True)
class Appended:
    """What one append did.

    Attributes:
        written: the keys newly written (a retry's keys already in the log are not).
        cases: for each workflow id among the appended records, its newest record's
            hash and how many records of it the log holds after the append.
    """

    written: list[str]
    cases: dict[str, CaseHead] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseGap:
    """A case whose anchored records the log lacks (removed from the end, emptied, rewritten)."""

    case: str
    anchor: Anchor
    found: int
    head_found: bool

    def __str__(self) -> str:
        if not self.head_found:
            return (
                f"{self.case}: its newest record the engine saw ({self.anchor.head[:12]}) is not in the log "
                f"(engine saw {self.anchor.records} records, the log has {self.found})"
            )
        return f"{self.case}: the engine saw {self.anchor.records} records, the log has {self.found}"


@dataclass(frozen=True)
class Verdict:
    """The result of checking a log.

    Attributes:
        ok: no record is bad and no anchored case lacks records.
        records: how many records verified before the first problem (all, when ok).
        line: where the first bad record is (a line number, or a sequence number).
        problem: what is wrong with it (or with the log as a whole, when ``line`` is None).
        missing: anchored cases whose records the log lacks.
        notes: what the reader should know even when ok (unsigned records, repairs).
        where: what ``line`` counts ("line" for a file, "seq" for a database).
    """

    ok: bool
    records: int
    line: int | None = None
    problem: str | None = None
    missing: tuple[CaseGap, ...] = ()
    notes: tuple[str, ...] = ()
    where: str = "line"

    def __str__(self) -> str:
        parts: list[str] = []
        if self.problem is not None:
            parts.append(
                f"{self.where} {self.line}: {self.problem}" if self.line is not None else self.problem
            )
        if self.missing:
            cases = ", ".join(gap.case for gap in self.missing)
            parts.append(f"records missing for {len(self.missing)} case(s): {cases}")
        if not parts:
            return f"ok: {self.records} records, chain intact"
        return "; ".join(parts)


@dataclass
class _Seen:
    records: int = 0
    head_found: bool = False


class ChainChecker:
    """Checks records one at a time in log order; :meth:`verdict` says what it found.

    The first bad record stops the chain check (everything after it is suspect), but
    records are still read to the end so that the anchors can name every case whose
    records are missing, not just the first.

    Args:
        keys: the writers' keys; None checks hashes only (and says so).
        anchors: workflow id → what the engine saw; None skips the completeness check.
        where: what positions count, for messages ("line" or "seq").
    """

    def __init__(
        self,
        *,
        keys: AuditKeys | None = None,
        anchors: Mapping[str, tuple[str, int]] | None = None,
        where: str = "line",
    ) -> None:
        self.keys, self.where = keys, where
        # An anchor of no records (a case whose appends all failed so far) asks nothing of the log.
        self.anchors = {
            case: Anchor(*anchor) for case, anchor in (anchors or {}).items() if Anchor(*anchor).records > 0
        }
        self._seen = {case: _Seen() for case in self.anchors}
        self._prev = GENESIS
        self._count = self._signed = self._unsigned = 0
        self._line: int | None = None
        self._problem: str | None = None
        self._notes: list[str] = []

    @property
    def prev(self) -> str:
        """The hash of the last record verified so far (GENESIS before any)."""
        return self._prev

    @property
    def problem(self) -> str | None:
        """The first problem found so far, if any."""
        return self._problem

    def fail(self, position: int | None, problem: str) -> None:
        """Record ``problem`` at ``position`` unless an earlier one was found."""
        if self._problem is None:
            self._line, self._problem = position, problem

    def add_line(self, position: int, text: str | bytes) -> dict[str, Any] | None:
        """Check one stored line; returns its record, or None if it is not a JSON record."""
        try:
            record = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if not isinstance(record, dict):
            self.fail(position, "not a JSON record (edited or truncated)")
            return None
        self.add(position, record)
        return record

    def add(self, position: int, record: Mapping[str, Any]) -> None:
        """Check one record: its link, its hash, its signature; count it for the anchors."""
        seen = self._seen.get(str(record.get("workflow_id")))
        if seen is not None:
            seen.records += 1
            seen.head_found |= record.get("sha256") == self.anchors[str(record["workflow_id"])].head
        if self._problem is not None:
            return
        if record.get("prev") != self._prev:
            return self.fail(
                position, "chain broken: the record before it was removed, inserted or reordered"
            )
        body = canonical(record)
        if digest(body) != record.get("sha256"):
            return self.fail(position, "record changed: its hash does not match its content")
        if not self._signature_holds(position, record, body):
            return None
        if isinstance(record.get("repair"), dict):
            repair = record["repair"]
            self._notes.append(
                f"{self.where} {position}: the writer cut {repair.get('cut_bytes')} bytes of a torn record "
                f"at {repair.get('at')} ({repair.get('reason')})"
            )
        self._prev = str(record["sha256"])
        self._count += 1
        return None

    def _signature_holds(self, position: int, record: Mapping[str, Any], body: str) -> bool:
        signature = record.get("sig")
        if signature is None:
            self._unsigned += 1
            if self.keys is not None and self._signed:
                self.fail(position, "unsigned record after signed ones: written without the writers' key")
                return False
            return True
        self._signed += 1
        if self.keys is None:
            return True
        key_id = str(record.get("key_id"))
        valid = self.keys.check(key_id, body, str(signature))
        if valid is None:
            self.fail(
                position,
                f"signed with key {key_id!r}, which the verifier lacks "
                f"({KEYS_HINT}; keep a rotated-out key while its records are kept)",
            )
            return False
        if not valid:
            self.fail(position, "signature does not match: written or changed without the writers' key")
            return False
        return True

    def verdict(self) -> Verdict:
        """What was found: the first problem, the cases missing records, and notes."""
        notes = list(self._notes)
        if self.keys is None and self._unsigned and not self._signed:
            notes.insert(0, UNSIGNED_NOTE)
        elif self.keys is None and self._signed:
            notes.insert(0, f"signatures not checked: {KEYS_HINT}")
        elif self.keys is not None and self._unsigned and self._signed:
            notes.insert(0, f"the first {self._unsigned} records are unsigned (written before keys were set)")
        elif self.keys is not None and self._unsigned and not self._signed:
            self.fail(
                None,
                "no record is signed, though keys were given: the log was rewritten without the "
                "writers' key, or written before BATON_AUDIT_KEYS was set",
            )
        gaps = tuple(
            CaseGap(case, anchor, self._seen[case].records, self._seen[case].head_found)
            for case, anchor in sorted(self.anchors.items())
            if not self._seen[case].head_found or self._seen[case].records < anchor.records
        )
        return Verdict(
            ok=self._problem is None and not gaps,
            records=self._count,
            line=self._line,
            problem=self._problem,
            missing=gaps,
            notes=tuple(notes),
            where=self.where,
        )
