"""2,000 cases parked on people: worker memory, inbox listing, approve-to-resume latency.

One embedded dev server (with Baton's search attributes), one ``baton worker``
subprocess (so its RSS is the worker's alone), and this process as the client.
The cases are real refund-request cases on their own seeded orders, each waiting
for a support lead. Then:

  - worker RSS (VmRSS now, VmHWM peak) with every case parked;
  - the time ``BatonClient.pending(role="support-lead")`` takes to list them all;
  - approve-to-resume for a sample, one at a time: the ``decide`` update returning
    (the workflow has run the handler and resumed), and approve → case closed
    (the refund written). More cases than the worker's workflow cache (1,000 by
    default) are parked, so some approvals first replay their case from history.

Run: ``.venv/bin/python benchmarks/approvals.py [--cases 2000] [--sample 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "refunds"))  # the refund app
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refunds.db import RefundsDB

from baton import search
from baton.app import App
from baton.client import BatonClient
from baton.connection import connect
from baton.devserver import DevServer, port_open
from baton.settings import Settings

PORT = 7391

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def seed_orders(db: RefundsDB, count: int) -> list[str]:
    """``count`` extra delivered orders of 100-400, so every case needs a support lead."""
    db.reset()
    ids = [f"ORD-{200000 + n}" for n in range(count)]
    db.add_orders({oid: 100 + n % 300 for n, oid in enumerate(ids)}, days_ago=3)
    return ids


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(cases: int, sample: int, port: int = PORT) -> None:
    if port_open("127.0.0.1", port) or port_open("127.0.0.1", port + 1000):
        raise SystemExit(f"port {port} or its UI port {port + 1000} is busy")
    home = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    app = App.load(ROOT / "examples" / "refunds")
    settings = dataclasses.replace(Settings.for_app(app), home=home, task_queue=f"bench-{uuid.uuid4()}")
    orders = seed_orders(RefundsDB(home / "r.db"), cases)
    server = DevServer(home / "temporal.db", port=port, ui_port=port + 1000,
                       search_attributes=search.TYPE_NAMES_BY_NAME)  # fmt: skip
    await server.start()
    env = {**os.environ, "TEMPORAL_ADDRESS": server.address, "BATON_TASK_QUEUE": settings.task_queue,
           "BATON_HOME": str(home), "BATON_APP": str(app.root), "REFUNDS_DB": str(home / "r.db")}  # fmt: skip
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "baton"), "worker"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        client = BatonClient(await connect(address=server.address), task_queue=settings.task_queue,
                             settings=settings, app=app)  # fmt: skip
        spec = client.load("refund-request")
        started = time.perf_counter()
        ids: list[str] = []
        for batch in range(0, cases, 100):
            ids += await asyncio.gather(
                *(
                    client.start_case(
                        spec,
                        {
                            "order_id": o,
                            "customer_id": "CUS-001",
                            "requested_amount": 100 + (batch + i) % 300,
                            "reason": "defective",
                        },
                        submitted_by="bench",
                    )
                    for i, o in enumerate(orders[batch : batch + 100])
                )
            )
        query = f"{search.STAGE.name} = '{search.AWAITING}' AND {search.AWAITING_ROLE.name} = 'support-lead'"
        while (await client.temporal.count_workflows(query)).count < cases:
            await asyncio.sleep(1)
        parked = time.perf_counter() - started
        await asyncio.sleep(5)  # let the worker settle (notifications, cache)
        rss, peak = rss_mb(worker.pid)

        listing = []
        for _ in range(3):
            t0 = time.perf_counter()
            found = await client.pending(role="support-lead", limit=cases + 10)
            listing.append(time.perf_counter() - t0)
        assert len(found) == cases, len(found)

        accepted, closed = [], []
        for case_id in ids[:: max(1, cases // sample)][:sample]:
            t0 = time.perf_counter()
            receipt = await client.approve(case_id, approver="alice")
            t1 = time.perf_counter()
            result = await client.result(case_id)
            t2 = time.perf_counter()
            assert receipt is not None and result.outcome.value == "actioned", result.reason
            accepted.append((t1 - t0) * 1000)
            closed.append((t2 - t0) * 1000)
        rss_after, peak_after = rss_mb(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        server.stop()

    print(f"cases parked: {cases} in {parked:.1f}s ({cases / parked:.1f} cases/s)")
    print(f"worker RSS with all parked: {rss:.0f} MB (peak {peak:.0f} MB); after approvals: "
          f"{rss_after:.0f} MB (peak {peak_after:.0f} MB)")  # fmt: skip
    print(f"pending --role support-lead ({cases} rows): median {statistics.median(listing):.2f}s "
          f"(runs: {', '.join(f'{t:.2f}' for t in listing)})")  # fmt: skip
    print(f"approve → update accepted (n={len(accepted)}): p50 {percentile(accepted, 0.5):.0f} ms, "
          f"p99 {percentile(accepted, 0.99):.0f} ms, max {max(accepted):.0f} ms")  # fmt: skip
    print(f"approve → case closed, refund written: p50 {percentile(closed, 0.5):.0f} ms, "
          f"p99 {percentile(closed, 0.99):.0f} ms")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--port", type=int, default=PORT, help="dev server port (its UI: port + 1000)")
    options = parser.parse_args()
    asyncio.run(main(options.cases, options.sample, options.port))
