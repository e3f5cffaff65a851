"""Scale-out: the reference refund case on 1, 2 and 4 worker processes sharing one task queue.

Why. A deployment scales by adding worker processes on one task queue, and the README's
advice on scaling on a cluster (task-queue partitions, pollers per worker, the workflow
cache) rests on what an added process buys and costs. On this two-core machine
throughput will be flat (or fall) as processes are added: they share the cores with the
dev server and the client. So the figures to read are where the CPU goes: worker CPU
per case (does it stay put as processes are added, or do more pollers and sticky-cache
churn raise it?), server and client CPU per case, how evenly the task queue split the
work between processes, and how busy the machine was. Busy near 100 % means the cores
are the limit; well under it means something else (such as the dev server's single
history shard) caps throughput, and more processes cannot help either way.

What runs. One dev server (Baton's dynamic config), this process as the client, and
for each count K, K worker processes, each ``benchmarks/overhead.py --serve-worker`` so every
process builds the identical worker (instant agents, the reference ``refund-request``
spec as shipped). Each K gets a fresh task queue, 5 serial warm-up cases, then rounds
of C cases started at once; the median round is reported. Workers stop before the next K.

Run: ``.venv/bin/python benchmarks/scale_out.py [--workers 1,2,4] [--concurrent 200] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baton.app import App
from baton.client import BatonClient
from benchmarks import overhead
from benchmarks.costs import (
    Cost,
    WorkerProcess,
    child_pid,
    events_per_case,
    median_cost,
    process_cpu,
    self_cpu,
    start_server,
)

WARM_UP = 5


@dataclass(frozen=True)
class Reading:
    """Clock and CPU seconds so far of every process in the benchmark."""

    at: float
    workers: tuple[float, ...]
    server: float
    client: float

    @staticmethod
    def take(workers: list[WorkerProcess], server: int | None) -> Reading:
        return Reading(
            time.perf_counter(),
            tuple(w.cpu() for w in workers),
            process_cpu(server) if server is not None else float("nan"),
            self_cpu(),
        )


@dataclass(frozen=True)
class Span:
    """What one round of concurrent cases took: wall seconds and each process's CPU seconds."""

    wall: float
    workers: tuple[float, ...]
    server: float
    client: float

    @staticmethod
    def between(before: Reading, after: Reading) -> Span:
        return Span(
            after.at - before.at,
            tuple(b - a for a, b in zip(before.workers, after.workers, strict=True)),
            after.server - before.server,
            after.client - before.client,
        )

    def busy(self) -> float:
        """Share of the machine's CPU time this round used (1.0: every core busy throughout)."""
        used = sum(self.workers) + self.server + self.client
        return used / (self.wall * (os.cpu_count() or 1))

    def cost(self, cases: int, events: float) -> Cost:
        per_case = 1000 / cases
        return Cost(events, sum(self.workers) * per_case, self.server * per_case, self.client * per_case)


@dataclass(frozen=True)
class Row:
    """One K's figures: the median round's throughput and costs, and how work was split."""

    workers: int
    throughput: float
    wall_s: float
    cost: Cost
    busy: float
    shares: tuple[float, ...]


async def scale(env: WorkflowEnvironment, app: App, k: int, concurrent: int, rounds: int) -> Row:
    """K worker processes on a fresh task queue: warm up, then ``rounds`` bursts of ``concurrent``."""
    queue = f"scale-{k}-{uuid.uuid4()}"
    baton = BatonClient(env.client, task_queue=queue, app=app)
    snapshot = baton.load("refund-request")

    async def case() -> str:
        case_id = await baton.start_case(snapshot, overhead.CASE)
        outcome = await baton.result(case_id)
        if outcome.outcome.value != "actioned":
            raise RuntimeError(f"case {case_id} ended {outcome.outcome.value}: {outcome.reason}")
        return case_id

    address = env.client.service_client.config.target_host
    server = child_pid("start-dev")
    spans: list[Span] = []
    costs: list[Cost] = []
    async with contextlib.AsyncExitStack() as stack:
        workers = [
            await stack.enter_async_context(WorkerProcess(Path(overhead.__file__), address, queue))
            for _ in range(k)
        ]
        for _ in range(WARM_UP):
            await case()
        for _ in range(rounds):
            before = Reading.take(workers, server)
            ids = await asyncio.gather(*(case() for _ in range(concurrent)))
            spans.append(Span.between(before, Reading.take(workers, server)))
            costs.append(spans[-1].cost(concurrent, await events_per_case(env.client, ids[:10])))
    wall = statistics.median(s.wall for s in spans)
    per_worker = [sum(s.workers[i] for s in spans) for i in range(k)]
    return Row(
        k,
        concurrent / wall,
        wall,
        median_cost(costs),
        statistics.median(s.busy() for s in spans),
        tuple(cpu / sum(per_worker) for cpu in per_worker),
    )


def load() -> str:
    """The 1/5/15-minute load average: other work on the machine skews every figure here."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


async def main(ks: list[int], concurrent: int, rounds: int) -> list[Row]:
    env = await start_server()
    async with env:
        app = App.load(overhead.ROOT / "examples" / "refunds")
        return [await scale(env, app, k, concurrent, rounds) for k in ks]


def split(shares: tuple[float, ...]) -> str:
    """Each worker's share of the workers' CPU, e.g. ``52/48%``."""
    return "/".join(f"{share * 100:.0f}" for share in shares) + "%"


def report(rows: list[Row], concurrent: int, rounds: int, loads: tuple[str, str]) -> str:
    lines = [
        f"refund-request (instant agents), {concurrent} concurrent cases per round,"
        f" median of {rounds} round(s); CPU per case from /proc",
        "",
        "| worker processes | cases/s | wall s | workers CPU ms/case | server CPU ms/case"
        " | client CPU ms/case | machine CPU busy | split across workers |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r.workers} | {r.throughput:.1f} | {r.wall_s:.2f} | {r.cost.worker_cpu_ms:.1f}"
        f" | {r.cost.server_cpu_ms:.1f} | {r.cost.client_cpu_ms:.1f} | {r.busy:.0%} | {split(r.shares)} |"
        for r in rows
    ]
    events = ", ".join(f"{r.workers} → {r.cost.events:.0f}" for r in rows)
    lines += [
        "",
        f"history events per case (workers → events): {events}",
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()};"
        f" load average (1/5/15 min) at start {loads[0]}, end {loads[1]}",
    ]
    return "\n".join(lines)


def worker_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be positive integers: {text!r}")
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=worker_counts, default=[1, 2, 4], help="e.g. 1,2,4")
    parser.add_argument("--concurrent", type=int, default=200, help="cases started at once per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per worker count; median reported")
    options = parser.parse_args()
    at_start = load()
    rows = asyncio.run(main(options.workers, options.concurrent, options.rounds))
    print(report(rows, options.concurrent, options.rounds, (at_start, load())))
