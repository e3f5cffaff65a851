"""A parallel group of three LLM reviewers, 200 concurrent cases: its critical path against one call.

Set-up, as in ``llm_concurrency.py``: one dev server, the scripted OpenAI-compatible
server in a **subprocess** (``baton fake-llm --script llm/panel-script.yaml``: the
drafter answers at once, every reviewer after 0.5 s), and this process as worker +
client, on Baton's production worker (``build_worker``) with the audit log on.

Variants, run in interleaved rounds, each with ``--cases`` concurrent cases:

1. ``baton · parallel group`` (``llm/panel.yaml``): an LLM drafter, then a group of
   three LLM reviewers (``resolve: unanimous``) that run at once.
2. ``baton · in sequence`` (``llm/panel-sequence.yaml``): the same three reviewers as
   three reviewing steps one after another, for contrast (critical path 3 calls).
3. ``floor: 3 parallel sleeps``: a hand-written temporalio workflow on the same
   worker, a no-op activity (the drafter) then three 0.5 s sleeping activities at once
   (``asyncio.gather``).

Measured, from each case's workflow history (the server's event times): the
reviewers' critical path, from the first reviewer activity scheduled to the last one
completed, and its ratio to one call (0.5 s); history events per case. Where the
time goes, per reviewer activity: schedule-to-start as the server records it (0 for
an activity the worker took eagerly), the time from being scheduled to its function
beginning in the worker (noted by the activity itself, wall clock like the server's
event times) and from there to completed; the workflow task between the drafter's
completion and the reviewers' scheduling; how late this process's event loop runs.
From the client: each case's start-to-result time and the batch's wall time; the CPU
of this process, the dev server and the scripted server per reviewer call. Last, per
variant against the floor (``benchmarks/costs.py``), the median over rounds of history
events per case and CPU per case of this process and of the dev server, figures that
stay put on a noisy machine; the worker CPU there includes the client's (they share
this process). The dev server runs with Baton's dynamic config (``costs.start_server``).

``--pool N`` caps the LLM client's connections at N instead of Baton's 256 (a
diagnostic: 600 calls at once exceed 256 connections).

Run: ``.venv/bin/python benchmarks/parallel_reviewers.py [--cases 200] [--rounds N]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from httpx_aiohttp import AiohttpTransport
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.audit import AuditActivities
from activities.llm import LIMITS, LlmActivities, make_transport
from activities.llm.providers import ProviderConfig
from activities.signing import SigningActivities
from baton.auditlog import AuditLog
from baton.client import BatonClient
from baton.devserver import port_open
from baton.messages import LlmCall, LlmResult
from baton.signing import SigningPolicy
from baton.spec import SpecSnapshot, load_spec, snapshot_of
from baton.spec.models import LLM_ACTIVITY
from benchmarks.costs import Cost, start_server
from benchmarks.llm_concurrency import HERE, Run, print_costs, run_case, timed_run
from benchmarks.minimal import noop, sleep_half_second
from worker import build_worker

CALL = 0.5
"""Seconds each reviewer (and each sleeping activity) takes: one call."""
REVIEWERS = 3
FLOOR = "floor: 3 parallel sleeps"
VARIANTS = {FLOOR: None, "baton · parallel group": "panel", "baton · in sequence": "panel-sequence"}
"""Variant name: its spec under ``llm/`` (None: the hand-written floor)."""
FLOORS = {name: FLOOR for name, spec in VARIANTS.items() if spec}
"""Each Baton variant's floor, for the table of costs per case."""


@workflow.defn(name="ParallelSleeps")
class ParallelSleeps:
    """The engine's floor for the panel: a no-op first step, then three 0.5 s calls at once."""

    @workflow.run
    async def run(self) -> list[str]:
        timeout = timedelta(seconds=30)
        drafted = await workflow.execute_activity(noop, "x", start_to_close_timeout=timeout)
        calls = (
            workflow.execute_activity(sleep_half_second, drafted, start_to_close_timeout=timeout)
            for _ in range(REVIEWERS)
        )
        return list(await asyncio.gather(*calls))


BEGAN: dict[tuple[str, str], float] = {}
"""When each timed activity's function began in this worker, by (workflow id, activity id).

Wall clock, as are the server's event times: the dev server runs on the same machine."""


def note_start() -> None:
    info = activity.info()
    BEGAN[(info.workflow_id or "", info.activity_id)] = time.time()


class TimedLlm(LlmActivities):
    """Baton's LLM activity, noting when each call's function begins in the worker."""

    @activity.defn(name=LLM_ACTIVITY)
    async def llm_agent(self, call: LlmCall) -> LlmResult:
        note_start()
        return await super().llm_agent(call)


@activity.defn(name="sleep_half_second")
async def timed_sleep(value: str) -> str:
    """The floor's 0.5 s call, noting when it begins."""
    note_start()
    return await sleep_half_second(value)


@dataclass
class Case:
    """One case as its history tells it (seconds); the reviewers are every activity after the first."""

    path: float  # first reviewer scheduled → last reviewer completed
    queued: list[float]  # each reviewer's schedule-to-start as the server records it (0 when eager)
    dispatched: list[float]  # scheduled → the activity's function began in the worker
    ran: list[float]  # the function began → completed (the call itself and reporting back)
    handover: float  # drafter completed → first reviewer scheduled (a workflow task)
    events: int
    failed: int  # reviewer activities that never completed (none, in a healthy run)


@dataclass
class Batch:
    """One variant's timed batch: the run's totals, each case's history and start-to-result time."""

    run: Run
    latency: list[float]
    lag: list[float]  # how late this process's event loop woke a 10 ms sleep, sample by sample
    cases: list[Case] = field(default_factory=list)

    def cost(self) -> Cost:
        """Per case: mean history events (every case's, read back), CPU of this process and the server."""
        return self.run.cost(len(self.cases), statistics.fmean(case.events for case in self.cases))


async def history_of(client: Client, workflow_id: str) -> Case:
    """Read one case's history: the drafter (or the floor's no-op) is its first activity."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled: dict[int, tuple[float, str]] = {}  # event id: time, activity id
    started: dict[int, float] = {}
    completed: dict[int, float] = {}
    for event in history.events:
        at = event.event_time.ToNanoseconds() / 1e9
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = at, event.activity_task_scheduled_event_attributes.activity_id
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = at
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed[event.activity_task_completed_event_attributes.scheduled_event_id] = at
    first, *reviewers = sorted(scheduled)
    done = [r for r in reviewers if r in completed]  # a failed attempt is retried as a new activity
    began = {r: BEGAN.pop((workflow_id, scheduled[r][1])) for r in done}
    return Case(
        path=max(completed[r] for r in done) - min(scheduled[r][0] for r in reviewers),
        queued=[started[r] - scheduled[r][0] for r in done],
        dispatched=[began[r] - scheduled[r][0] for r in done],
        ran=[completed[r] - began[r] for r in done],
        handover=min(scheduled[r][0] for r in reviewers) - completed[first],
        events=len(history.events),
        failed=len(reviewers) - len(done),
    )


@contextlib.asynccontextmanager
async def scripted_llm(port: int) -> AsyncIterator[str]:
    """The scripted server in its own process, answering as ``llm/panel-script.yaml`` says."""
    if port_open("127.0.0.1", port):
        raise SystemExit(f"port {port} is busy")
    baton = Path(sys.executable).parent / "baton"
    script = HERE / "panel-script.yaml"
    with subprocess.Popen([baton, "fake-llm", "--script", script, "--port", str(port)],
                          stdout=subprocess.DEVNULL) as server:  # fmt: skip
        try:
            while not port_open("127.0.0.1", port):
                await asyncio.sleep(0.1)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            server.terminate()


async def timed_batch(one: Callable[[], Awaitable[str]], cases: int, base: str) -> tuple[Batch, list[str]]:
    """Run ``cases`` at once: the totals and start-to-result times, and each case's workflow id."""
    latency: list[float] = []
    lag: list[float] = []

    async def timed() -> str:
        began = time.perf_counter()
        workflow_id = await one()
        latency.append(time.perf_counter() - began)
        return workflow_id

    async def watch_loop() -> None:  # the worker shares this loop: lag is work waiting its turn
        while True:
            began = time.perf_counter()
            await asyncio.sleep(0.01)
            lag.append(time.perf_counter() - began - 0.01)

    watcher = asyncio.create_task(watch_loop())
    run, ids = await timed_run(base, timed, cases)
    watcher.cancel()
    return Batch(run, latency, lag), ids


def transport(pool: int | None) -> Callable[[], httpx.AsyncBaseTransport]:
    """Baton's LLM transport, or the same with at most ``pool`` connections (a diagnostic)."""
    if pool is None:
        return make_transport
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=LIMITS.max_keepalive_connections)
    return lambda: AiohttpTransport(limits=limits, retries=0)


def starter(client: Client, queue: str, spec: SpecSnapshot | None) -> Callable[[], Awaitable[str]]:
    """One case of a variant (a governed case of ``spec``, or the floor): its id once it ends."""
    baton = BatonClient(client, task_queue=queue)

    async def governed() -> str:
        assert spec is not None
        return await run_case(baton, spec)

    async def floor() -> str:
        workflow_id = f"floor-{uuid.uuid4()}"
        await client.execute_workflow(ParallelSleeps.run, id=workflow_id, task_queue=queue)
        return workflow_id

    return governed if spec else floor


async def run_variants(
    client: Client, base: str, cases: int, rounds: int, pool: int | None
) -> dict[str, list[Batch]]:
    """Every variant once per round, interleaved; each batch read back from its histories."""
    specs = {name: snapshot_of(load_spec(HERE / f"{name}.yaml")) for name in VARIANTS.values() if name}
    audit = AuditActivities(AuditLog(Path(tempfile.mkdtemp(prefix="baton-bench-")) / "audit.jsonl"))
    results: dict[str, list[Batch]] = {}
    for _ in range(rounds):
        for name, spec_name in VARIANTS.items():
            queue = f"bench-{uuid.uuid4()}"
            providers = {"openai": ProviderConfig(base_url=base, default_model="fake")}
            llm = TimedLlm(providers, transport=transport(pool))
            activities = [
                *llm.all(),
                *audit.all(),
                *SigningActivities(SigningPolicy()).all(),
                noop,
                timed_sleep,
            ]
            one = starter(client, queue, specs[spec_name] if spec_name else None)
            worker = build_worker(
                client, task_queue=queue, activities=activities, extra_workflows=[ParallelSleeps],
                max_concurrent_activities=cases * REVIEWERS,
            )  # fmt: skip
            async with worker:
                await one()  # warm-up
                batch, ids = await timed_batch(one, cases, base)
            await llm.aclose()
            batch.cases = list(await asyncio.gather(*(history_of(client, i) for i in ids)))
            BEGAN.clear()  # the warm-up case's
            results.setdefault(name, []).append(batch)
    return results


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 0.5) * 1000:.0f} / p95 {percentile(values, 0.95) * 1000:.0f} ms"


def report(results: dict[str, list[Batch]], cases: int, rounds: int, pool: int | None) -> None:
    print(
        f"## {cases} concurrent cases, {rounds} interleaved round(s); one call = {CALL * 1000:.0f} ms; "
        f"LLM connections at most {pool or LIMITS.max_connections}"
    )
    summary: dict[str, dict[str, float]] = {}
    for name, batches in results.items():
        every = [case for batch in batches for case in batch.cases]
        paths = [case.path for case in every]
        walls = [batch.run.wall for batch in batches]
        calls = cases * REVIEWERS
        per_call = {
            "worker+client": statistics.median(b.run.cpu for b in batches) * 1000 / calls,
            "dev server": statistics.median(b.run.temporal_cpu for b in batches) * 1000 / calls,
            "LLM server": statistics.median(b.run.llm_cpu for b in batches) * 1000 / calls,
        }
        print(
            f"  {name:<24} critical path {ms(paths)} "
            f"(×one call: p50 {percentile(paths, 0.5) / CALL:.2f}, "
            f"p95 {percentile(paths, 0.95) / CALL:.2f}); "
            f"wall {statistics.median(walls):.2f}s (runs {', '.join(f'{w:.2f}' for w in walls)}); "
            f"case start→result {ms([t for b in batches for t in b.latency])}; "
            f"history events per case {statistics.median(case.events for case in every):.0f}; "
            f"failed reviewer activities {sum(case.failed for case in every)}"
        )
        print(
            "    where it goes, per reviewer: "
            f"schedule-to-start (server) {ms([q for c in every for q in c.queued])}, "
            f"scheduled→function began in the worker {ms([d for c in every for d in c.dispatched])}, "
            f"began→completed {ms([r for c in every for r in c.ran])}; "
            f"drafter done→reviewers scheduled {ms([c.handover for c in every])}; "
            f"this process's event-loop lag {ms([x for b in batches for x in b.lag])}, "
            f"max {max(x for b in batches for x in b.lag) * 1000:.0f} ms; "
            "CPU ms per reviewer call: " + ", ".join(f"{k} {v:.2f}" for k, v in per_call.items())
        )
        summary[name] = {
            "path_p50": percentile(paths, 0.5),
            "path_p95": percentile(paths, 0.95),
            "wall": statistics.median(walls),
            "events": statistics.median(case.events for case in every),
        }
    print(json.dumps({"summary": summary, "runs": {k: [vars(b.run) for b in v] for k, v in results.items()}}))
    print_costs({name: [b.cost() for b in batches] for name, batches in results.items()}, FLOORS, rounds)


async def main(cases: int, rounds: int, port: int, pool: int | None) -> None:
    async with scripted_llm(port) as base:
        env = await start_server()
        async with env:
            results = await run_variants(env.client, base, cases, rounds, pool)
    report(results, cases, rounds, pool)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, default, meaning in (
        ("--cases", 200, "concurrent cases per batch"),
        ("--rounds", 3, "interleaved rounds of every variant"),
        ("--llm-port", 8392, "the scripted server's loopback port"),
        ("--pool", None, f"diagnostic: the LLM client's connection cap (Baton's: {LIMITS.max_connections})"),
    ):
        parser.add_argument(flag, type=int, default=default, help=meaning)
    options = parser.parse_args()
    asyncio.run(main(options.cases, options.rounds, options.llm_port, options.pool))
    os._exit(0)  # skip finalisation (temporalio/sdk-python#300)
