"""A full or read-only disk pauses cases, says why, and heals by itself: on real file systems.

The audit file is put on a 64 KiB tmpfs (so "disk full" is the kernel's ENOSPC, not a
mock), made immutable with ``chattr +i`` (root ignores file modes) and remounted
read-only. Mounting needs root; without it these tests skip and say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from activities import audit as audit_activity
from activities.audit import AuditActivities
from baton import auditlog
from baton.audit.chain import Appended, line_of, seal
from baton.audit.keys import AuditKeys
from baton.audit.sink import Records
from baton.auditlog import AuditLog, AuditLogUnavailable
from baton.messages import AuditBatch, AuditEvent, AuditKind, Outcome
from tests.conftest import Running, refund

KEYS = AuditKeys({"k1": b"w" * 32}, "k1")


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of this test's own, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8): full-disk tests not run")
    done = run("mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        for path in mount.glob("*"):
            run("chattr", "-i", str(path))
        run("umount", "-l", str(mount))


def fill(directory: Path) -> Path:
    """Fill the file system until the kernel says ENOSPC; the filler file, to delete later."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 1024)
    finally:
        os.close(fd)
    return filler


def records(case: str, first: int, last: int) -> list[tuple[str, dict[str, Any]]]:
    """Records of ~400 bytes each, so a batch of ten needs more than a page of new space."""
    return [
        (
            f"{case}/run/{seq}",
            {"case_id": case, "workflow_id": case, "event": {"seq": seq, "detail": "x" * 300}},
        )
        for seq in range(first, last + 1)
    ]


def test_a_full_disk_fails_the_append_cleanly_and_it_heals(tmpfs: Path) -> None:
    log = AuditLog(tmpfs / "audit.jsonl", keys=KEYS)
    log.append(records("c", 1, 3))
    before = log.path.read_bytes()
    filler = fill(tmpfs)
    with pytest.raises(AuditLogUnavailable) as info:
        log.append(records("c", 4, 13))
    error = info.value
    assert error.type == "AuditLogUnavailable"
    assert not error.non_retryable  # Temporal retries it
    assert error.reason == "ENOSPC"
    assert error.message == f"audit log {log.path} unavailable: ENOSPC (No space left on device)"
    assert log.path.read_bytes() == before  # the partial write was cut back: no torn record
    filler.unlink()
    assert log.append(records("c", 4, 13)) == [f"c/run/{i}" for i in range(4, 14)]  # heals by itself
    verdict = auditlog.verify(log.path, keys=KEYS)
    assert (verdict.ok, verdict.records, verdict.notes) == (True, 13, ())


def test_a_torn_record_is_cut_and_noted_on_the_next_append(tmpfs: Path) -> None:
    """What ENOSPC did to the old writer: half a record at the end; then every append failed."""
    log = AuditLog(tmpfs / "audit.jsonl", keys=KEYS)
    log.append(records("c", 1, 2))
    filler = fill(tmpfs)
    prev, lines = list(auditlog.read(log.path))[-1]["sha256"], []
    for key, record in records("c", 3, 12):  # what the old writer sent: a correctly chained batch
        sealed = seal({"key": key, **record}, prev, KEYS)
        lines.append(line_of(sealed))
        prev = sealed["sha256"]
    batch = "".join(lines).encode()
    fd = os.open(log.path, os.O_WRONLY | os.O_APPEND)
    written = os.write(fd, batch)  # the kernel writes what fits: some whole records, then half of one
    os.close(fd)
    assert 0 < written < len(batch)
    whole = log.path.read_bytes().count(b"\n")
    cut = log.path.stat().st_size - len(log.path.read_bytes().rsplit(b"\n", 1)[0]) - 1
    assert cut > 0
    assert not auditlog.verify(log.path).ok  # torn: verify says so until a writer repairs it
    filler.unlink()
    fresh = AuditLog(log.path, keys=KEYS)  # a restarted worker; Temporal retries the whole batch
    assert fresh.append(records("c", 3, 12)) == [f"c/run/{i}" for i in range(whole + 1, 13)]
    repair = [r for r in auditlog.read(log.path) if "repair" in r]
    assert len(repair) == 1
    assert repair[0]["repair"]["cut_bytes"] == cut
    assert (
        repair[0]["repair"]["reason"]
        == "no trailing newline; a write was interrupted by a full disk or a crash"
    )
    keys = [r["key"] for r in auditlog.read(log.path) if "repair" not in r]
    assert keys == [f"c/run/{i}" for i in range(1, 13)]  # each once, in order
    verdict = auditlog.verify(log.path, keys=KEYS)
    assert verdict.ok
    assert verdict.records == 13  # twelve and the repair note
    assert verdict.notes[0].startswith(f"line {whole + 1}: the writer cut {cut} bytes of a torn record")


def test_an_immutable_file_then_a_read_only_mount_fail_visibly_and_heal(tmpfs: Path) -> None:
    log = AuditLog(tmpfs / "audit.jsonl", keys=KEYS)
    log.append(records("c", 1, 1))
    if run("chattr", "+i", str(log.path)).returncode != 0:
        pytest.skip("chattr +i is not supported on this tmpfs")
    with pytest.raises(AuditLogUnavailable) as info:
        log.append(records("c", 2, 2))
    assert info.value.reason == "EPERM"
    assert run("chattr", "-i", str(log.path)).returncode == 0
    assert log.append(records("c", 2, 2)) == ["c/run/2"]

    assert run("mount", "-o", "remount,ro", str(tmpfs)).returncode == 0
    try:
        with pytest.raises(AuditLogUnavailable) as info:
            log.append(records("c", 3, 3))
        assert info.value.reason == "EROFS"
        assert info.value.message == f"audit log {log.path} unavailable: EROFS (Read-only file system)"
    finally:
        assert run("mount", "-o", "remount,rw", str(tmpfs)).returncode == 0
    assert log.append(records("c", 3, 3)) == ["c/run/3"]
    assert auditlog.verify(log.path, keys=KEYS).records == 3


async def test_the_activity_logs_and_counts_why_then_recovers(
    tmpfs: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr("opentelemetry.metrics.get_meter_provider", lambda: provider)
    audit_activity._failure_counter.cache_clear()
    sink = AuditActivities(AuditLog(tmpfs / "audit.jsonl", keys=KEYS))
    now = AuditEvent(seq=1, at=datetime.now(UTC), kind=AuditKind.HANDOFF, detail="x" * 3000)
    batch = AuditBatch(case_id="a", process="p", workflow_id="a", run_id="r",
                       events=[now.model_copy(update={"seq": i}) for i in range(1, 4)])  # fmt: skip
    filler = fill(tmpfs)
    caplog.set_level(logging.WARNING, logger="baton.audit")
    for _ in range(3):
        with pytest.raises(AuditLogUnavailable):
            await sink.audit_append(batch)
    filler.unlink()
    receipt = await sink.audit_append(batch)
    assert (receipt.written, receipt.records) == (3, 3)
    lines = [r.getMessage() for r in caplog.records if r.name == "baton.audit"]
    assert len(lines) == 2  # one when it started (not one per attempt), one when it healed
    assert lines[0].startswith(
        f"audit log {tmpfs / 'audit.jsonl'} unavailable: ENOSPC (No space left on device)"
    )
    assert lines[1].startswith(f"audit log {tmpfs / 'audit.jsonl'} writable again after ")
    assert lines[1].endswith("(3 failed attempts retried)")
    data = reader.get_metrics_data()
    assert data is not None
    points = [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
              if m.name == "baton.audit.append_failures" for p in m.data.data_points]  # fmt: skip
    assert [(dict(p.attributes or {}), getattr(p, "value", None)) for p in points] == [
        ({"error.type": "ENOSPC"}, 3)
    ]
    audit_activity._failure_counter.cache_clear()


def test_two_processes_appending_to_one_file_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    script = (
        "import sys; from baton.audit.keys import AuditKeys; from baton.auditlog import AuditLog\n"
        "log = AuditLog(sys.argv[1], keys=AuditKeys({'k1': b'w' * 32}, 'k1'))\n"
        "for i in range(100):\n"
        "    log.append([(f'{sys.argv[2]}/{i}/{j}', {'workflow_id': sys.argv[2]}) for j in range(3)]"
        " + [(f'shared/{i}', {'workflow_id': 'shared'})])\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), name], cwd=Path(__file__).parents[1])
        for name in ("w1", "w2")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    keys = [r["key"] for r in auditlog.read(path)]
    assert len(keys) == len(set(keys)) == 2 * 300 + 100  # the shared keys written once, by whoever came first
    assert auditlog.verify(path, keys=KEYS).ok


async def test_a_case_waits_for_a_full_disk_and_finishes_when_space_returns(
    on_dev: Running, tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole loop on a real worker: time from freeing space to the case moving on."""
    log = AuditLog(tmpfs / "audit.jsonl", keys=KEYS)
    attempts: list[tuple[float, bool]] = []
    real_write = log.write

    def write(batch: Records) -> Appended:
        try:
            appended = real_write(batch)
        except AuditLogUnavailable:
            attempts.append((time.monotonic(), False))
            raise
        attempts.append((time.monotonic(), True))
        return appended

    log.write = write  # type: ignore[method-assign,assignment]
    filler = fill(tmpfs)
    caplog.set_level(logging.WARNING, logger="baton.audit")
    outage = float(os.environ.get("AUDIT_TEST_OUTAGE_SECONDS", "6"))  # longer to measure longer outages
    async with on_dev.worker([AuditActivities(log).audit_append]):
        case_id = await on_dev.baton.start_case(
            "refund-request", refund("ORD-1001", "CUS-001", 20.0), case_id=f"full-{uuid.uuid4().hex[:6]}"
        )
        await asyncio.sleep(outage)
        assert attempts
        assert not any(ok for _, ok in attempts)  # the case waits on the append, retried by Temporal
        freed = time.monotonic()
        filler.unlink()
        result = await on_dev.baton.result(case_id)
        finished = time.monotonic()
    assert result.outcome == Outcome.ACTIONED
    first_ok = next(t for t, ok in attempts if ok)
    failed = sum(1 for _, ok in attempts if not ok)
    recovered, completed = first_ok - freed, finished - freed
    print(f"\nfull disk for {outage:.0f} s: {failed} failed attempts; first append {recovered:.2f} s after "
          f"space returned, case finished after {completed:.2f} s")  # fmt: skip
    assert first_ok > freed  # it healed by itself, once there was space (timings: BENCHMARKS-style print)
    logged = [r.getMessage() for r in caplog.records if r.name == "baton.audit"]
    assert any("unavailable: ENOSPC" in line for line in logged)
    assert any("writable again after" in line for line in logged)
    mine = list(auditlog.read(log.path, case_id=case_id))
    anchors = {case_id: (mine[-1]["sha256"], len(mine))}
    assert auditlog.verify(log.path, keys=KEYS, anchors=anchors).ok
    assert [r["event"]["seq"] for r in auditlog.read(log.path, case_id=case_id)] == [
        e.seq for e in result.audit
    ]
