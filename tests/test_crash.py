"""Crash test: ``kill -9`` the worker over and over; nothing is lost, nothing done twice.

A dev server of its own on a SQLite file, workers as real subprocesses (``baton
worker``), 24 refund cases (16 decided by rules, 8 needing a support lead). The
worker is killed at random points at least 20 times and restarted each time:
mid-agent, while cases wait for approval (the approvals are sent while no worker
runs), and inside the refund action after the ledger commit but before the
result is reported (the action holds for 0.4 s after writing). Then two workers
share the queue and one is killed for good, and finally the server itself is
restarted on its database file. Every case must end actioned, with exactly one
ledger row, and the audit log must verify with no duplicate records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from refunds.db import RefundsDB

from baton import auditlog, search
from baton.client import BatonClient
from baton.connection import connect
from baton.devserver import DevServer, port_open
from baton.messages import Outcome
from baton.settings import Settings
from tests.conftest import REFUNDS_APP

BATON = str(Path(sys.executable).parent / "baton")
PORT = 7394
AUTO, APPROVAL = 16, 8

pytestmark = pytest.mark.timeout(480)


class Workers:
    """Worker subprocesses on one task queue, killed with SIGKILL on demand."""

    def __init__(self, server: DevServer, settings: Settings) -> None:
        self.env = {
            **os.environ,
            "TEMPORAL_ADDRESS": server.address,
            "BATON_TASK_QUEUE": settings.task_queue,
            "BATON_HOME": str(settings.home),
            "BATON_APP": str(REFUNDS_APP.root),
            "REFUNDS_DB": str(refunds_db(settings)),
            "REFUNDS_CHAOS_PAUSE_AFTER_WRITE": "0.4",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        }
        self.running: list[subprocess.Popen[bytes]] = []
        self.kills = 0

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([BATON, "worker"], env=self.env, stderr=subprocess.DEVNULL)
        self.running.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        proc = proc or self.running[-1]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.running.remove(proc)
        self.kills += 1

    def stop_all(self) -> None:
        for proc in list(self.running):
            self.kill(proc)


def refunds_db(settings: Settings) -> Path:
    """The refund app's database in this test's home (the workers get it as REFUNDS_DB)."""
    return settings.home / "r.db"


def seed(db: RefundsDB, count: int) -> list[str]:
    db.reset()
    ids = [f"ORD-{300000 + n}" for n in range(count)]
    db.add_orders({oid: 40 if n < AUTO else 200 for n, oid in enumerate(ids)})
    return ids


@pytest.fixture
async def crash_site(tmp_path: Path) -> AsyncIterator[tuple[DevServer, Settings]]:
    if port_open("127.0.0.1", PORT):
        pytest.skip(f"port {PORT} busy")
    settings = dataclasses.replace(
        Settings.for_app(REFUNDS_APP), home=tmp_path, task_queue=f"crash-{uuid.uuid4()}"
    )
    server = DevServer(tmp_path / "temporal.db", port=PORT, ui_port=PORT + 1000,
                       search_attributes=search.TYPE_NAMES_BY_NAME)  # fmt: skip
    await server.start()
    yield server, settings
    server.stop()


async def test_kill_nine_everywhere_loses_nothing_and_doubles_nothing(
    crash_site: tuple[DevServer, Settings],
) -> None:
    server, settings = crash_site
    orders = seed(RefundsDB(refunds_db(settings)), AUTO + APPROVAL)
    workers = Workers(server, settings)
    rng = random.Random(20261124)
    client = BatonClient(
        await connect(address=server.address),
        task_queue=settings.task_queue,
        settings=settings,
        app=REFUNDS_APP,
    )
    spec = client.load("refund-request")
    workers.start()
    case_ids = [
        await client.start_case(spec, {"order_id": o, "customer_id": "CUS-001",
                                       "requested_amount": 40 if n < AUTO else 200, "reason": "defective"})
        for n, o in enumerate(orders)
    ]  # fmt: skip

    # 1. Kill storm: 14 kills at random points while agents, actions and ladders run.
    for _ in range(14):
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        workers.kill()
        workers.start()

    # 2. Let the approval cases park, then kill the worker and approve while none runs.
    waiting = f"{search.STAGE.name} = '{search.AWAITING}'"
    for _ in range(300):
        if (await client.temporal.count_workflows(waiting)).count == APPROVAL:
            break
        await asyncio.sleep(0.2)
    workers.kill()
    for case_id in case_ids[AUTO:]:
        await client.approve(case_id, approver="alice", signal=True)

    # 3. Restart into actions that pause after their ledger write: kill inside that window.
    for _ in range(4):
        workers.start()
        await asyncio.sleep(rng.uniform(1.0, 1.6))
        workers.kill()

    # 4. Two workers share the queue; one is killed for good, the other finishes.
    survivor, doomed = workers.start(), workers.start()
    await asyncio.sleep(0.8)
    workers.kill(doomed)
    workers.kill(survivor)
    workers.start()
    await asyncio.sleep(1.0)

    # 5. The server itself restarts on its database file.
    server.stop()
    await server.start()
    client = BatonClient(
        await connect(address=server.address),
        task_queue=settings.task_queue,
        settings=settings,
        app=REFUNDS_APP,
    )
    # Generous bound: an activity lost with a killed worker is only retried after its
    # start-to-close timeout (30 s for the action), and retries back off; this test is
    # about nothing lost and nothing doubled, not about speed.
    try:
        results = await asyncio.wait_for(asyncio.gather(*(client.result(c) for c in case_ids)), 300)
    except TimeoutError:
        raise AssertionError(f"cases still open after 300 s: {await _open_cases(client, case_ids)}") from None
    workers.stop_all()

    assert workers.kills >= 20
    assert [r.outcome for r in results] == [Outcome.ACTIONED] * len(case_ids), [r.reason for r in results]
    ledger = RefundsDB(refunds_db(settings)).ledger()
    per_case = Counter(str(row["case_id"]) for row in ledger if row["case_id"] != "seed")
    assert per_case == Counter(case_ids)  # exactly one ledger row per refunded case
    assert auditlog.verify(settings.audit_log).ok
    keys = [r["key"] for r in auditlog.read(settings.audit_log)]
    assert len(keys) == len(set(keys))
    for result in results:
        logged = [r["event"]["seq"] for r in auditlog.read(settings.audit_log, case_id=result.case_id)]
        assert logged == [e.seq for e in result.audit]
    reapplied = sum(1 for r in results if r.action is not None and not r.action.applied_now)
    print(f"\ncrash test: {workers.kills} kills, {len(case_ids)} cases, 0 duplicates, "
          f"{reapplied} actions found already applied on retry")  # fmt: skip


async def test_sigterm_drains_in_flight_work_within_the_grace_period(
    crash_site: tuple[DevServer, Settings],
) -> None:
    server, settings = crash_site
    orders = seed(RefundsDB(refunds_db(settings)), 1)
    workers = Workers(server, settings)
    workers.env["REFUNDS_CHAOS_PAUSE_AFTER_WRITE"] = "2.0"  # the action is mid-flight for 2 s
    workers.env["BATON_SHUTDOWN_GRACE_SECONDS"] = "10"
    client = BatonClient(
        await connect(address=server.address),
        task_queue=settings.task_queue,
        settings=settings,
        app=REFUNDS_APP,
    )
    proc = workers.start()
    case_id = await client.start_case(
        client.load("refund-request"),
        {"order_id": orders[0], "customer_id": "CUS-001", "requested_amount": 40, "reason": "defective"},
    )
    db = RefundsDB(refunds_db(settings))
    for _ in range(200):  # wait until the refund is written and the action is holding
        if any(r["case_id"] == case_id for r in db.ledger()):
            break
        await asyncio.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 30)
    drained = time.monotonic() - sent
    workers.running.remove(proc)
    assert code == 0
    assert 1.0 < drained < 10  # waited for the in-flight action, well within the grace period
    workers.start()  # the case's next step goes to whichever worker polls next
    result = await asyncio.wait_for(client.result(case_id), 60)
    workers.stop_all()
    assert result.outcome == Outcome.ACTIONED
    assert result.action is not None
    assert result.action.applied_now is True  # the draining worker finished it; nothing was redone
    assert sum(1 for r in db.ledger() if r["case_id"] == case_id) == 1


async def _open_cases(client: BatonClient, case_ids: list[str]) -> list[str]:
    """Each unfinished case with its pending activities and attempts, for a failure message."""
    found = []
    for case_id in case_ids:
        described = await client.handle(case_id).describe()
        if described.status is not None and described.status.name != "RUNNING":
            continue
        raw = described.raw_description
        pending = [
            f"{p.activity_type.name} attempt {p.attempt} ({p.last_failure.message or 'no failure'})"
            for p in raw.pending_activities
        ]
        found.append(f"{case_id}: {pending or 'no pending activity'}; task {raw.pending_workflow_task}")
    return found
