"""Minimal reproduction: the dev server's 40 ms wait before each workflow task.

Standalone on purpose (temporalio and the ``temporal`` CLI only, no Baton), so it
can be attached to an issue on the server's or the CLI's tracker as it is.

What it shows. A workflow of two no-op activities, run back to back on
``temporal server start-dev``: the first ~10 cases take 20-30 ms start -> result,
then every case takes ~100 ms. Each case's history shows where: after an activity
completes, WorkflowTaskScheduled is written at once and WorkflowTaskStarted follows
30-45 ms later. Cause: the history service's transfer queue reader loads new tasks
through a per-shard token bucket of ``history.transferProcessorMaxPollRPS`` (default
20/s, burst ratio 2, so 40 tokens). The dev server has one history shard, each case
costs about four loads, so ~10 back-to-back cases spend the burst and from then on
every task waits for the next token (up to 50 ms). Idle gaps refill the bucket,
which is why a pause between cases hides it. Raising the rate removes the wait:
durability is unchanged, the reader still loads every task from persistence.

Run: ``.venv/bin/python benchmarks/queue_poll_repro.py [--cases 40] [--temporal PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

RAISED = ["--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000"]


@activity.defn
async def nothing(value: str) -> str:
    return value


@workflow.defn(sandboxed=False)
class TwoActivities:
    @workflow.run
    async def run(self) -> str:
        value = "x"
        for _ in range(2):
            value = await workflow.execute_activity(
                nothing, value, start_to_close_timeout=timedelta(seconds=10)
            )
        return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def waits(client: Client, workflow_id: str) -> list[float]:
    """Milliseconds from each WorkflowTaskScheduled to its WorkflowTaskStarted."""
    gaps, scheduled = [], None
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            scheduled = event.event_time.ToDatetime()
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and scheduled is not None:
            gaps.append((event.event_time.ToDatetime() - scheduled).total_seconds() * 1000)
    return gaps


async def run(temporal: str, extra: list[str], cases: int) -> tuple[list[float], list[float]]:
    """Start a dev server with ``extra`` flags, run ``cases`` back to back; (latencies, waits)."""
    port = free_port()
    server = subprocess.Popen(
        [temporal, "server", "start-dev", "--headless", "--port", str(port), "--log-level", "error", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = None
        for _ in range(100):
            try:
                client = await Client.connect(f"127.0.0.1:{port}")
                break
            except RuntimeError:
                await asyncio.sleep(0.2)
        assert client is not None, "dev server did not start"
        queue = f"repro-{uuid.uuid4().hex[:8]}"
        latencies, gaps, ids = [], [], []
        async with Worker(client, task_queue=queue, workflows=[TwoActivities], activities=[nothing]):
            for _ in range(cases):
                workflow_id = f"repro-{uuid.uuid4().hex[:8]}"
                started = time.perf_counter()
                await client.execute_workflow(
                    TwoActivities.run, id=workflow_id, task_queue=queue, request_eager_start=True
                )
                latencies.append((time.perf_counter() - started) * 1000)
                ids.append(workflow_id)
        for workflow_id in ids:  # read histories afterwards, so the reads add no gaps
            gaps.append(max((await waits(client, workflow_id))[1:], default=0.0))
        return latencies, gaps
    finally:
        server.terminate()
        server.wait(timeout=15)


def report(label: str, latencies: list[float], gaps: list[float]) -> None:
    tail = latencies[len(latencies) // 2 :]
    print(f"{label}")
    print("  start->result ms, case by case: " + " ".join(f"{v:.0f}" for v in latencies))
    print("  worst WorkflowTaskScheduled->Started wait ms: " + " ".join(f"{v:.0f}" for v in gaps))
    worst = max(gaps[len(gaps) // 2 :])
    print(f"  second half: p50 {statistics.median(tail):.1f} ms, max wait {worst:.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=40)
    beside = Path(sys.executable).parent / "temporal"
    parser.add_argument("--temporal", default=str(beside) if beside.exists() else shutil.which("temporal"))
    args = parser.parse_args()
    stock = await run(args.temporal, [], args.cases)
    report("stock dev server (history.transferProcessorMaxPollRPS=20)", *stock)
    raised = await run(args.temporal, RAISED, args.cases)
    report("with " + " ".join(RAISED[1:]), *raised)


if __name__ == "__main__":
    asyncio.run(main())
