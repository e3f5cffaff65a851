"""The PostgreSQL audit sink: one chain that workers on several hosts append to.

A file serves one worker host; with several workers a case's records would be split
across hosts and no file could be checked against the engine's anchors. This sink
keeps the same records (same sealing, signatures, keys and verify) in one table:

    baton_audit       seq bigserial, key text UNIQUE, workflow_id, record jsonb,
                      line text (the exact sealed JSON that was hashed),
                      prev, sha256, key_id, sig, written_at
    baton_audit_head  one row: the chain's newest seq and hash

Every append locks the head row (``SELECT ... FOR UPDATE``) before reading the
previous hash, so appends from any number of hosts are serialised into one chain;
the lock is released at commit, and ``seq`` therefore follows chain order. The key
is unique, so a retried append writes nothing twice. ``line`` keeps the hashed text
byte for byte (``jsonb`` normalises numbers and key order); ``record`` is its
queryable copy, and verify checks that the two agree. The head row lets verify
notice rows removed from the end even without anchors, unless it was edited too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from baton.audit.chain import GENESIS, Appended, CaseHead, ChainChecker, Verdict, line_of, seal
from baton.audit.keys import AuditKeys, load_audit_keys
from baton.audit.sink import AuditLogUnavailable, Records

T = TypeVar("T")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS baton_audit (
    seq         bigserial PRIMARY KEY,
    key         text NOT NULL UNIQUE,
    workflow_id text,
    record      jsonb NOT NULL,
    line        text NOT NULL,
    prev        text NOT NULL,
    sha256      text NOT NULL,
    key_id      text,
    sig         text,
    written_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS baton_audit_case ON baton_audit (workflow_id, seq);
CREATE TABLE IF NOT EXISTS baton_audit_head (
    one    boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq    bigint NOT NULL,
    sha256 text NOT NULL
);
INSERT INTO baton_audit_head (one, seq, sha256) VALUES (true, 0, '{GENESIS}') ON CONFLICT DO NOTHING;
"""
SCHEMA_LOCK = 0x6261746F6E  # "baton": concurrent first starts must not race CREATE TABLE


def _jsonb_text(line: str) -> str:
    """``line`` as jsonb accepts it: jsonb refuses the NUL escape, which a detail may contain."""
    return line.replace("\\u0000", "\\ufffd")


def redact(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql (unparseable DSN)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host') or 'localhost'}{port}/{parts.get('dbname') or ''}"


class PostgresAuditLog:
    """The audit chain in PostgreSQL, safe for concurrent writers on several hosts.

    One connection per instance, opened on first use and reopened after a failure,
    so a database restart costs retries, not a worker restart.

    Args:
        dsn: a libpq connection string (``postgresql://user:pw@host/db`` or ``host=... dbname=...``).
        keys: signing keys; ``"env"`` (the default) reads ``BATON_AUDIT_KEYS``.
        connect_timeout: seconds to wait for the server before the append fails (and is retried).
    """

    def __init__(
        self, dsn: str, *, keys: AuditKeys | Literal["env"] | None = "env", connect_timeout: int = 5
    ) -> None:
        self.dsn = dsn
        self.keys = load_audit_keys() if keys == "env" else keys
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        """The database, without the password."""
        return redact(self.dsn)

    def append(self, records: Records) -> list[str]:
        """Append ``(key, record)`` pairs not yet in the log; returns the keys written."""
        return self.write(records).written

    def write(self, records: Records) -> Appended:
        """Append the new records in one transaction under the head-row lock.

        Raises:
            AuditLogUnavailable: the database refused or could not be reached; the
                transaction rolled back, so nothing of this batch was written.
        """
        with self._lock:
            return self._run(lambda conn: self._write(conn, records))

    def read(self, case_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Records in chain order (those whose ``case_id`` is ``case_id``, when given)."""
        with self._lock:
            lines: list[str] = self._run(lambda conn: self._lines(conn, case_id))
        for line in lines:
            yield json.loads(line)

    def verify(
        self, *, keys: AuditKeys | None = None, anchors: Mapping[str, tuple[str, int]] | None = None
    ) -> Verdict:
        """Check the chain in ``seq`` order, each row's columns against its line, and the head row."""
        with self._lock:
            return self._run(lambda conn: self._verify(conn, keys, anchors))

    def close(self) -> None:
        """Close the connection (the next call reopens it)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        try:
            return work(self._connection())
        except psycopg.Error as exc:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AuditLogUnavailable(self.where, type(exc).__name__, detail) from None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(
                self.dsn, connect_timeout=self.connect_timeout, application_name="baton-audit"
            )
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                conn.execute(SCHEMA)
            self._conn = conn
        return self._conn

    def _write(self, conn: psycopg.Connection[Any], records: Records) -> Appended:
        keys = [key for key, _ in records]
        cases = sorted({str(r["workflow_id"]) for _, r in records if r.get("workflow_id") is not None})
        with conn.transaction():
            row = conn.execute("SELECT seq, sha256 FROM baton_audit_head FOR UPDATE").fetchone()
            assert row is not None, "the schema inserts the head row"
            prev: str = row[1]
            present = {k for (k,) in conn.execute("SELECT key FROM baton_audit WHERE key = ANY(%s)", (keys,))}
            rows: list[tuple[Any, ...]] = []
            written: list[str] = []
            for key, record in records:
                if key in present:
                    continue
                sealed = seal({"key": key, **record}, prev, self.keys)
                line = line_of(sealed).rstrip("\n")
                rows.append((key, record.get("workflow_id"), _jsonb_text(line), line, prev, sealed["sha256"],
                             sealed.get("key_id"), sealed.get("sig")))  # fmt: skip
                prev = sealed["sha256"]
                written.append(key)
                present.add(key)
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO baton_audit (key, workflow_id, record, line, prev, sha256, key_id, sig) "
                        "VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s, %s) RETURNING seq",
                        rows,
                        returning=True,
                    )
                    last = 0
                    while True:
                        fetched = cur.fetchone()
                        last = fetched[0] if fetched is not None else last
                        if not cur.nextset():
                            break
                conn.execute("UPDATE baton_audit_head SET seq = %s, sha256 = %s", (last, prev))
            heads: dict[str, CaseHead] = {}
            for case in cases:
                found = conn.execute(
                    "SELECT count(*), (SELECT sha256 FROM baton_audit WHERE workflow_id = %s "
                    "ORDER BY seq DESC LIMIT 1) FROM baton_audit WHERE workflow_id = %s",
                    (case, case),
                ).fetchone()
                assert found is not None
                heads[case] = CaseHead(found[1] or "", int(found[0]))
        return Appended(written, heads)

    @staticmethod
    def _lines(conn: psycopg.Connection[Any], case_id: str | None) -> list[str]:
        with conn.transaction():
            if case_id is None:
                rows = conn.execute("SELECT line FROM baton_audit ORDER BY seq").fetchall()
            else:
                rows = conn.execute(
                    "SELECT line FROM baton_audit WHERE record->>'case_id' = %s ORDER BY seq", (case_id,)
                ).fetchall()
        return [line for (line,) in rows]

    @staticmethod
    def _verify(
        conn: psycopg.Connection[Any], keys: AuditKeys | None, anchors: Mapping[str, tuple[str, int]] | None
    ) -> Verdict:
        checker = ChainChecker(keys=keys, anchors=anchors, where="seq")
        fresh = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with conn.transaction():
            if fresh:  # rows and head row from one snapshot, while writers go on appending
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            head = conn.execute("SELECT seq, sha256 FROM baton_audit_head").fetchone()
            last_seq = 0
            with conn.cursor(name="baton_audit_verify") as cur:
                cur.execute(
                    "SELECT seq, key, workflow_id, record, line, prev, sha256, key_id, sig "
                    "FROM baton_audit ORDER BY seq"
                )
                for seq, key, workflow_id, stored, line, prev, sha256, key_id, sig in cur:
                    last_seq = seq
                    record = checker.add_line(seq, line)
                    if record is None:
                        continue
                    columns = {"key": key, "workflow_id": workflow_id, "prev": prev, "sha256": sha256,
                               "key_id": key_id, "sig": sig}  # fmt: skip
                    if any(record.get(name) != value for name, value in columns.items()):
                        changed = sorted(n for n, v in columns.items() if record.get(n) != v)
                        checker.fail(seq, f"columns {', '.join(changed)} differ from the hashed line: edited")
                    elif json.loads(_jsonb_text(line)) != stored:
                        checker.fail(seq, "the jsonb record differs from the hashed line: edited")
        if head is None:
            checker.fail(None, "the head row is missing: the table was tampered with")
        elif (head[0], head[1]) != (last_seq, checker.prev) and checker.problem is None:
            checker.fail(
                None,
                f"the head row names seq {head[0]} ({head[1][:12]}) but the chain ends at seq {last_seq} "
                f"({checker.prev[:12]}): records were removed from the end",
            )
        return checker.verdict()
