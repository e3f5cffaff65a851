"""The PostgreSQL audit sink on a real server: one chain for writers on several hosts.

The server is Debian's ``postgresql`` package (``.ci/run`` installs it), started by a
fixture with ``initdb`` and ``pg_ctl`` in a temporary directory on a Unix socket. The
server refuses to run as root, so as root it runs as the ``postgres`` user. Without
the binaries every test here skips and says how to get them.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from activities.audit import AuditActivities
from baton.audit.chain import GENESIS, Anchor, line_of, seal
from baton.audit.keys import AuditKeys
from baton.audit.postgres import PostgresAuditLog
from baton.audit.sink import AuditLogUnavailable, open_sink
from baton.auditlog import AuditLog
from baton.messages import AuditBatch, AuditEvent, AuditKind

KEYS = AuditKeys({"k1": b"p" * 32}, "k1")
ROOT = Path(__file__).resolve().parents[1]
BATON = str(Path(sys.executable).parent / "baton")


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    return Path(versions[-1]).parent if versions else None


class Server:
    """A throwaway PostgreSQL server on a Unix socket in its own directory."""

    def __init__(self, bin_dir: Path, user: str | None) -> None:
        self.bin, self.user = bin_dir, user
        self.dir = Path(tempfile.mkdtemp(prefix="baton-pg-"))
        self.data, self.port = self.dir / "data", 5432
        if user is not None:
            shutil.chown(self.dir, user)

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user is not None else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True, check=False)

    def ctl(self, action: str) -> None:
        options = f"-k {self.dir} -c listen_addresses='' -c fsync=off -p {self.port}"
        done = self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
                        "-o", options, "-w", "-m", "fast", action)  # fmt: skip
        assert done.returncode == 0, f"pg_ctl {action}: {done.stderr or done.stdout}"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.dir} port={self.port} user=postgres dbname={dbname}"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL server binaries not found (apt-get install postgresql): postgres sink not tested"
        )
    user = None
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    pg = Server(bin_dir, user)
    done = pg.run(str(bin_dir / "initdb"), "-D", str(pg.data), "-A", "trust", "-U", "postgres", "--no-sync")
    assert done.returncode == 0, done.stderr
    pg.ctl("start")
    try:
        yield pg
    finally:
        pg.ctl("stop")
        shutil.rmtree(pg.dir, ignore_errors=True)


@pytest.fixture
def dsn(server: Server) -> Iterator[str]:
    """A fresh database of this test's own."""
    name = f"audit_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield server.dsn(name)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def records(case: str, first: int, last: int, approver: str = "alice") -> list[tuple[str, dict[str, Any]]]:
    out = []
    for seq in range(first, last + 1):
        event = {
            "seq": seq,
            "actor": approver if seq == 2 else None,
            "amount": 1e20,
            "detail": f"{case} {seq}",
        }
        out.append((f"{case}/run/{seq}", {"case_id": case, "workflow_id": case, "event": event}))
    return out


def sql(dsn: str, statement: str, *params: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, params or None)


def test_the_same_chain_receipts_and_verify_as_the_file(dsn: str, tmp_path: Path) -> None:
    log = PostgresAuditLog(dsn, keys=KEYS)
    file = AuditLog(tmp_path / "audit.jsonl", keys=KEYS)
    for case, first, last in (("a", 1, 2), ("b", 1, 3), ("a", 3, 4)):
        in_db, in_file = log.write(records(case, first, last)), file.write(records(case, first, last))
        assert in_db == in_file  # same keys written, same heads: the same records byte for byte
    assert log.write(records("a", 1, 4)).written == []  # a retry writes nothing
    assert list(log.read()) == list(file.read())
    assert [r["event"]["seq"] for r in log.read("a")] == [1, 2, 3, 4]
    head = log.write([]).cases
    assert head == {}
    anchors = {case: Anchor(h.head, h.records) for case, h in file.write(records("a", 4, 4) + records("b", 3, 3)).cases.items()}  # fmt: skip
    verdict = log.verify(keys=KEYS, anchors=anchors)
    assert (verdict.ok, verdict.records, verdict.where, verdict.notes) == (True, 7, "seq", ())
    log.close()


def test_tampering_in_the_table_is_detected(dsn: str) -> None:
    log = PostgresAuditLog(dsn, keys=KEYS)
    anchors: dict[str, tuple[str, int]] = {}
    for case, first, last in (("a", 1, 3), ("b", 1, 2), ("a", 4, 5)):
        anchors.update(
            {c: (h.head, h.records) for c, h in log.write(records(case, first, last)).cases.items()}
        )
    assert log.verify(keys=KEYS, anchors=anchors).ok

    def check(statement: str, *params: Any) -> str:
        with psycopg.connect(dsn) as conn:  # one transaction, rolled back: each tampering on the intact table
            conn.execute(statement, params or None)
            verdict = PostgresAuditLog._verify(conn, KEYS, anchors)
            conn.rollback()
        assert not verdict.ok
        return str(verdict)

    # Delete the last records: the head row notices, the anchors name the case.
    deleted = check("DELETE FROM baton_audit WHERE seq > 5")
    assert deleted.startswith("the head row names seq 7")
    assert deleted.endswith("records missing for 1 case(s): a")
    assert "records missing for 2 case(s): a, b" in check("TRUNCATE baton_audit")  # emptied
    forged = seal({"key": "b/run/3", "workflow_id": "b", "event": {"actor": "mallory"}}, anchors["a"][0])
    assert check(  # a forged row with a correct chain hash, unsigned
        "INSERT INTO baton_audit (key, workflow_id, record, line, prev, sha256) VALUES (%s, %s, %s, %s, %s, %s)",
        "b/run/3", "b", line_of(forged), line_of(forged).strip(), forged["prev"], forged["sha256"],
    ).startswith("seq 8: unsigned record after signed ones")  # fmt: skip
    edited = check("UPDATE baton_audit SET line = replace(line, 'alice', 'mallory'), "
                   "record = jsonb_set(record, '{event,actor}', '\"mallory\"') WHERE seq = 2")  # fmt: skip
    assert edited.startswith("seq 2: record changed")
    assert check("UPDATE baton_audit SET record = jsonb_set(record, '{event,actor}', '\"mallory\"') WHERE seq = 2"
                 ).startswith("seq 2: the jsonb record differs from the hashed line")  # fmt: skip
    # Recompute the whole chain (with the attacker's own key) after changing an approver.
    rows, prev, statements = list(log.read()), GENESIS, []
    for row in rows:
        body = {k: v for k, v in row.items() if k not in ("prev", "sha256", "sig", "key_id")}
        if body["key"] == "a/run/2":
            body["event"] = {**body["event"], "actor": "mallory"}
        sealed = seal(body, prev, AuditKeys({"k1": b"m" * 32}, "k1"))
        statements.append(
            (line_of(sealed).strip(), sealed["prev"], sealed["sha256"], sealed["sig"], row["key"])
        )
        prev = sealed["sha256"]
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.executemany("UPDATE baton_audit SET line = %s, record = %s::jsonb, prev = %s, sha256 = %s, "
                            "sig = %s WHERE key = %s", [(s[0], s[0], *s[1:]) for s in statements])  # fmt: skip
        conn.execute("UPDATE baton_audit_head SET sha256 = %s", (prev,))
        verdict = PostgresAuditLog._verify(conn, KEYS, anchors)
        conn.rollback()
    assert (verdict.line, verdict.problem) == (
        1,
        "signature does not match: written or changed without the writers' key",
    )
    assert [gap.case for gap in verdict.missing] == ["a", "b"]
    assert log.verify(keys=KEYS, anchors=anchors).ok  # all of it rolled back
    log.close()


WRITER = """
import sys, time
from baton.audit.keys import AuditKeys
from baton.audit.postgres import PostgresAuditLog
log = PostgresAuditLog(sys.argv[1], keys=AuditKeys({"k1": b"p" * 32}, "k1"))
name, batches = sys.argv[2], int(sys.argv[3])
start = time.monotonic()
for i in range(batches):
    batch = [(f"{name}/{i}/{j}", {"workflow_id": f"{name}-{i % 10}", "event": {"i": i, "j": j}}) for j in range(5)]
    batch.append((f"shared/{i}", {"workflow_id": "shared", "event": {"i": i}}))  # every writer tries these
    log.write(batch)
print(time.monotonic() - start)
"""


def test_concurrent_writers_on_several_hosts_keep_one_chain(dsn: str) -> None:
    """Four processes (as four worker hosts would) append at once: one intact chain, nothing twice."""
    writers, batches = 4, 100
    PostgresAuditLog(dsn).close()  # nothing to prepare: every writer creates the schema if needed
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, dsn, f"w{n}", str(batches)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for n in range(writers)]  # fmt: skip
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    elapsed = time.monotonic() - started
    assert [p.returncode for p in procs] == [0] * writers
    log = PostgresAuditLog(dsn, keys=KEYS)
    keys = [r["key"] for r in log.read()]
    assert len(keys) == len(set(keys)) == writers * batches * 5 + batches  # shared keys written once
    verdict = log.verify(keys=KEYS)
    assert verdict.ok, str(verdict)
    with psycopg.connect(dsn) as conn:
        interleaved = conn.execute(
            "SELECT count(*) FROM (SELECT split_part(key, '/', 1) <> lag(split_part(key, '/', 1)) "
            "OVER (ORDER BY seq) AS switched FROM baton_audit) t WHERE switched"
        ).fetchone()
    assert interleaved is not None
    assert interleaved[0] > writers  # the writers really ran at the same time
    busiest = max(float(o) for o in outputs)  # each writer's own time, without process start-up
    print(f"\n{writers} writers x {batches} appends of 6 records (server fsync=off): {len(keys)} records, "
          f"each writer {busiest:.2f} s at most ({writers * batches / busiest:.0f} appends/s, "
          f"{len(keys) / busiest:.0f} records/s together; {elapsed:.1f} s with process start-up); "
          f"writers took turns {interleaved[0]} times; chain intact, no duplicates")  # fmt: skip
    log.close()


def test_a_stopped_or_read_only_database_fails_visibly_and_heals(server: Server, dsn: str) -> None:
    log = PostgresAuditLog(dsn, keys=KEYS, connect_timeout=2)
    log.write(records("a", 1, 1))
    server.ctl("stop")
    try:
        with pytest.raises(AuditLogUnavailable) as info:
            log.write(records("a", 2, 2))
        assert info.value.type == "AuditLogUnavailable"
        assert not info.value.non_retryable
        assert info.value.reason == "AdminShutdown"  # the open connection, closed by the shutdown
        with pytest.raises(AuditLogUnavailable) as info:  # the retry: nobody to connect to
            log.write(records("a", 2, 2))
        assert info.value.reason == "OperationalError"
        assert info.value.message.startswith(
            f"audit log {log.where} unavailable: OperationalError (connection"
        )
    finally:
        server.ctl("start")
    started = time.monotonic()
    assert log.write(records("a", 2, 2)).written == ["a/run/2"]  # reconnects by itself
    print(f"\nfirst append after the database returned: {time.monotonic() - started:.3f} s")

    name = dsn.rsplit("=", 1)[1]
    sql(server.dsn(), f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    sql(dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'baton-audit'")
    with pytest.raises(AuditLogUnavailable) as info:
        log.write(records("a", 3, 3))
    with pytest.raises(AuditLogUnavailable) as info:  # the terminated connection first, then read-only
        log.write(records("a", 3, 3))
    assert info.value.reason == "ReadOnlySqlTransaction"
    sql(server.dsn(), f"ALTER DATABASE {name} SET default_transaction_read_only = off")
    log.close()
    assert log.write(records("a", 3, 3)).written == ["a/run/3"]
    assert log.verify(keys=KEYS).records == 3
    log.close()


async def test_the_activity_and_cli_use_the_sink_the_environment_names(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_AUDIT_SINK", "postgres")
    monkeypatch.setenv("BATON_AUDIT_DSN", dsn)
    monkeypatch.delenv("BATON_AUDIT_KEYS", raising=False)
    activities = AuditActivities(AuditLog(tmp_path / "audit.jsonl"))  # as the worker builds it
    assert isinstance(activities.log, PostgresAuditLog)
    now = datetime.now(UTC)
    batch = AuditBatch(case_id="c", process="p", workflow_id="c", run_id="r",
                       events=[AuditEvent(seq=i, at=now, kind=AuditKind.HANDOFF, detail="x") for i in (1, 2)])  # fmt: skip
    receipt = await activities.audit_append(batch)
    assert (receipt.written, receipt.records) == (2, 2)
    assert not (tmp_path / "audit.jsonl").exists()
    assert isinstance(open_sink(tmp_path / "audit.jsonl"), PostgresAuditLog)

    async def baton(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(BATON, "audit", *args, env={**os.environ, "BATON_HOME": str(tmp_path)},
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    where = PostgresAuditLog(dsn).where
    assert await baton("verify", "--no-temporal") == (
        0, f"{where}: ok: 2 records, chain intact\n", "baton: note: unsigned: forgery not detectable; set BATON_AUDIT_KEYS\n"
    )  # fmt: skip
    code, out, _ = await baton("c", "--log")
    assert code == 0
    assert len(out.splitlines()) == 2
    sql(dsn, "DELETE FROM baton_audit WHERE seq = 2")
    code, _, err = await baton("verify", "--dsn", dsn, "--no-temporal")
    assert code == 1
    assert err.startswith(f"{where}: the head row names seq 2")


def test_a_sink_name_or_dsn_missing_stops_the_worker_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from baton.audit.sink import configured_sink
    from baton.errors import BatonUsageError

    default = AuditLog(tmp_path / "a.jsonl")
    assert configured_sink(default, {}) is default
    assert configured_sink(default, {"BATON_AUDIT_SINK": "file"}) is default
    for env, message in (
        ({"BATON_AUDIT_SINK": "mongo"}, "BATON_AUDIT_SINK='mongo': expected one of file, postgres"),
        (
            {"BATON_AUDIT_SINK": "postgres"},
            "BATON_AUDIT_SINK=postgres needs BATON_AUDIT_DSN (a libpq connection string)",
        ),
    ):
        with pytest.raises(BatonUsageError) as info:
            configured_sink(default, env)
        assert str(info.value) == message
