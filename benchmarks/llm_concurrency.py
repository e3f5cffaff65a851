"""200 concurrent LLM cases against the scripted server: Baton against the engine's floor.

Set-up: one dev server, the scripted OpenAI-compatible server in a **subprocess**
(``baton fake-llm``, replies after 0.5 s), and this process as worker + client.

1. HTTP path: 200 parallel chat-completion POSTs with aiohttp alone (reference),
   httpx on its own pool and on the aiohttp transport (``httpx-aiohttp``), and the
   whole ``baton.llm_agent`` activity: wall time and this process's CPU per request.
2. Cases: 200 concurrent cases of a spec with three LLM agents in sequence
   (critical path 3 x 0.5 s = 1.5 s; ``llm/bench.yaml``, advisory: no action),
   with each transport, beside the floor: a hand-written workflow of three
   activities that sleep 0.5 s. Then the shape with a side effect: the same spec
   plus a no-op action (``llm/bench-action.yaml``) beside the floor plus a no-op
   fourth activity. Every Baton variant and those floors run on Baton's production
   worker configuration (``build_worker``: tracing interceptor, production sandbox
   mode) with the audit log on; one more floor runs on a plain temporalio Worker
   with its defaults (sandboxed runner, no interceptors). Reported: wall time,
   its ratio to the floor and to the critical path, CPU per LLM call of this
   process (worker + client), of the dev server and of the scripted LLM server
   (all three share the two cores), and the connections the LLM server accepted.
   Then, per variant against its floor (``benchmarks/costs.py``), the median over
   rounds of history events per case (read back from Temporal) and CPU per case of
   this process and of the dev server: figures that stay put on a noisy machine. The
   worker CPU there includes the client's (they share this process); the dev server
   runs with Baton's dynamic config (``costs.start_server``).

Run: ``.venv/bin/python benchmarks/llm_concurrency.py [--cases 200] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "refunds"))  # the refund app
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.audit import AuditActivities
from activities.llm import LlmActivities, make_transport
from activities.llm.providers import ProviderConfig
from activities.signing import SigningActivities
from baton.auditlog import AuditLog
from baton.client import BatonClient
from baton.devserver import port_open
from baton.messages import ActionInput, ActionResult, AgentInput, LlmCall
from baton.signing import SigningPolicy
from baton.spec import SpecSnapshot, load_spec, snapshot_of
from benchmarks.costs import Cost, child_cpu, cost_table, events_per_case, median_cost, self_cpu, start_server
from benchmarks.minimal import MinimalSleeps, noop, sleep_half_second
from worker import build_worker

HERE = Path(__file__).resolve().parent / "llm"
FAKE_PORT = 8391  # default; --llm-port picks another
DEFAULT_FLOOR = "floor on a default Worker"
"""The same floor on a plain ``temporalio`` Worker (sandboxed runner, no tracing): what a
hand-written workflow gets out of the box. The other floor rows share Baton's worker."""
CASE = {"order_id": "ORD-1001", "customer_id": "CUS-001", "requested_amount": 10.0, "reason": "defective"}
FLOORS = {
    "baton · aiohttp": "floor: 3 sleeping activities",
    "baton · httpx pool": "floor: 3 sleeping activities",
    "baton + no-op action · aiohttp": "floor + no-op action",
}
"""Each Baton variant's floor, for the table of costs per case."""


@activity.defn(name="bench.noop_action")
async def noop_action(inp: ActionInput) -> ActionResult:
    return ActionResult(reference="noop", applied_now=True)


def transport_factory(kind: str | None) -> Callable[[], httpx.AsyncBaseTransport]:
    return lambda: make_transport(kind)


async def run_case(baton: BatonClient, spec: SpecSnapshot) -> str:
    """One governed case of ``spec``, to its end: its id (the workflow's)."""
    case_id = await baton.start_case(spec, CASE)
    await baton.result(case_id)
    return case_id


@dataclass
class Run:
    """One timed batch of cases: wall time and the CPU each process spent on it."""

    wall: float
    cpu: float  # this process: worker + client
    connections: int  # LLM connections the scripted server accepted
    temporal_cpu: float  # the dev server
    llm_cpu: float  # the scripted LLM server

    def cost(self, cases: int, events: float) -> Cost:
        """Per case: ``events``, this process's CPU (worker + client: not separable) and the server's."""
        return Cost(events, self.cpu * 1000 / cases, self.temporal_cpu * 1000 / cases, float("nan"))


async def stats(base: str) -> dict[str, int]:
    async with httpx.AsyncClient() as client:
        data: dict[str, int] = (await client.get(f"{base}/fake/stats")).json()
        return data


async def timed_run(base: str, one: Callable[[], Awaitable[str]], cases: int) -> tuple[Run, list[str]]:
    """Run ``cases`` of ``one`` at once: what the batch took, and each case's workflow id."""
    before = await stats(base)
    s0, l0 = child_cpu("start-dev"), child_cpu("fake-llm")
    c0, t0 = self_cpu(), time.perf_counter()
    ids = await asyncio.gather(*(one() for _ in range(cases)))
    wall, used = time.perf_counter() - t0, self_cpu() - c0
    served, answered = child_cpu("start-dev") - s0, child_cpu("fake-llm") - l0
    opened = (await stats(base))["connections"] - before["connections"] - 1  # less a stats request's own
    return Run(wall, used, opened, served, answered), ids


async def transport_figures(base: str, count: int, spec: SpecSnapshot) -> dict[str, tuple[float, float]]:
    """Per HTTP path: (wall s, CPU s) for ``count`` parallel requests, the median of 3 batches.

    From the bare wire up: aiohttp's own session (for reference: Baton keeps httpx's
    API), httpx on each transport, and the whole ``baton.llm_agent`` activity (prompt
    rendering, request, span, parsing, contract validation) as the bench spec calls it.
    """
    body = {"model": "m", "messages": [{"role": "system", "content": "You are the 'probe' agent"}]}
    url = f"{base}/chat/completions"
    agent = spec.spec.agents["first"]
    assert agent.prompt_text is not None
    call = LlmCall(
        agent=AgentInput(case_id="probe", process=spec.spec.process, step="first", agent="first", case=CASE),
        provider="openai",
        prompt=agent.prompt_text,
        contract=agent.output,
    )
    # Called directly, outside a worker: the row is the adapter's own cost, not the SDK's
    # per-activity work (which the case rows include). No heartbeat is due within a batch.
    llm = LlmActivities({"openai": ProviderConfig(base_url=base, default_model="fake")}, heartbeat_every=60)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))

    async def bare() -> None:
        async with session.post(url, json=body) as response:
            await response.read()

    paths: dict[str, Callable[[], Awaitable[Any]]] = {"aiohttp alone": bare}
    clients = {k: httpx.AsyncClient(transport=make_transport(k), timeout=60) for k in ("httpx", "aiohttp")}
    for kind, client in clients.items():
        paths[f"httpx on {kind}"] = functools.partial(client.post, url, json=body)
    paths["adapter (aiohttp)"] = functools.partial(llm.llm_agent, call)
    figures = {}
    try:
        for name, one in paths.items():
            await one()  # warm-up
            batches = []
            for _ in range(3):
                c0, t0 = self_cpu(), time.perf_counter()
                await asyncio.gather(*(one() for _ in range(count)))
                batches.append((time.perf_counter() - t0, self_cpu() - c0))
            walls, cpus = zip(*batches, strict=True)
            figures[name] = (statistics.median(walls), statistics.median(cpus))
    finally:
        await session.close()
        await llm.aclose()
        for client in clients.values():
            await client.aclose()
    return figures


async def main(cases: int, rounds: int, only: list[str], port: int = FAKE_PORT) -> None:
    if port_open("127.0.0.1", port):
        raise SystemExit(f"port {port} is busy")
    fake = subprocess.Popen(
        [str(Path(sys.executable).parent / "baton"), "fake-llm", "--script", str(HERE / "script.yaml"),
         "--port", str(port)], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    while not port_open("127.0.0.1", port):
        await asyncio.sleep(0.1)
    try:
        transports = await transport_figures(base, cases, snapshot_of(load_spec(HERE / "bench.yaml")))
        env = await start_server()
        async with env:
            results, costs = await run_cases(env, base, cases, rounds, only)
    finally:
        fake.terminate()
        fake.wait()
    report(transports, results, cases)
    print_costs(costs, FLOORS, rounds)


async def run_cases(
    env: WorkflowEnvironment, base: str, cases: int, rounds: int, only: list[str]
) -> tuple[dict[str, list[Run]], dict[str, list[Cost]]]:
    """Per variant, the runs of each round and what a case cost in each."""
    specs = {name: snapshot_of(load_spec(HERE / f"{name}.yaml")) for name in ("bench", "bench-action")}
    providers = {"openai": ProviderConfig(base_url=base, default_model="fake")}
    results: dict[str, list[Run]] = {}
    costs: dict[str, list[Cost]] = {}
    variants = {  # name: (transport, or None for the floor; with an action)
        "floor: 3 sleeping activities": (None, False),
        DEFAULT_FLOOR: (None, False),
        "baton · aiohttp": ("aiohttp", False),
        "baton · httpx pool": ("httpx", False),
        "floor + no-op action": (None, True),
        "baton + no-op action · aiohttp": ("aiohttp", True),
    }
    if only:
        variants = {
            k: v
            for k, v in variants.items()
            if k.startswith(("floor: 3 sleeping", DEFAULT_FLOOR)) or any(o in k for o in only)
        }
    audit = AuditActivities(AuditLog(Path(tempfile.mkdtemp(prefix="baton-bench-")) / "audit.jsonl"))
    for _ in range(rounds):
        for name, (transport, acts) in variants.items():
            queue = f"bench-{uuid.uuid4()}"
            llm = LlmActivities(providers, transport=transport_factory(transport))
            worker = (
                # temporalio's defaults: the sandboxed runner, no interceptors
                Worker(env.client, task_queue=queue, workflows=[MinimalSleeps],
                       activities=[sleep_half_second, noop], max_concurrent_activities=cases * 3)
                if name == DEFAULT_FLOOR
                else build_worker(  # Baton's production worker, which the floor rows share
                    env.client,
                    task_queue=queue,
                    activities=[*llm.all(), *audit.all(), *SigningActivities(SigningPolicy()).all(),
                                noop_action, sleep_half_second, noop],
                    extra_workflows=[MinimalSleeps],
                    max_concurrent_activities=cases * 3,
                )
            )  # fmt: skip
            baton = BatonClient(env.client, task_queue=queue)

            governed = functools.partial(run_case, baton, specs["bench-action" if acts else "bench"])

            async def floor(queue: str = queue, act: bool = acts) -> str:
                workflow_id = f"floor-{uuid.uuid4()}"
                await env.client.execute_workflow(MinimalSleeps.run, act, id=workflow_id, task_queue=queue)
                return workflow_id

            one: Callable[[], Awaitable[str]] = floor if transport is None else governed
            async with worker:
                await one()  # warm-up
                run, ids = await timed_run(base, one, cases)
            await llm.aclose()
            results.setdefault(name, []).append(run)
            costs.setdefault(name, []).append(run.cost(cases, await events_per_case(env.client, ids[:10])))
    return results, costs


def print_costs(costs: dict[str, list[Cost]], floors: dict[str, str], rounds: int) -> None:
    """The table of costs per case, each variant's median over rounds, against its floor."""
    print(
        f"\n## cost per case, median of {rounds} round(s); worker CPU here includes the client's "
        "(worker and client share this process), so client CPU is not separated"
    )
    print(cost_table({name: median_cost(c) for name, c in costs.items()}, floors))


def report(transports: dict[str, tuple[float, float]], results: dict[str, list[Run]],
           cases: int) -> None:  # fmt: skip
    print(f"## transport: {cases} parallel requests, server answers after 0.5 s")
    for kind, (wall, used) in transports.items():
        print(f"  {kind:<18} wall {wall:.2f}s  client CPU {used:.2f}s ({used / cases * 1000:.2f} ms/request)")
    print(f"\n## {cases} concurrent cases, 3 sequential LLM calls each (critical path 1.5 s)")
    floors = {
        shape: results[name]
        for shape, name in (("plain", "floor: 3 sleeping activities"), ("action", "floor + no-op action"))
        if name in results
    }
    calls = cases * 3
    for name, runs in results.items():
        wall = statistics.median(run.wall for run in runs)
        floor = floors["action" if "action" in name and "action" in floors else "plain"]
        # Rounds are interleaved, so each round's ratio compares runs that met the same drift.
        paired = statistics.median(run.wall / base.wall for run, base in zip(runs, floor, strict=True))

        def per_call(figure: Callable[[Run], float], runs: list[Run] = runs) -> str:
            return f"{statistics.median(figure(run) for run in runs) * 1000 / calls:.2f}"

        print(
            f"  {name:<30} wall {wall:.2f}s (runs {', '.join(f'{run.wall:.2f}' for run in runs)}) "
            f"×floor of its shape: {paired:.2f} median of per-round ratios, "
            f"{wall / statistics.median(run.wall for run in floor):.2f} of medians; "
            f"×critical path {wall / 1.5:.1f}; CPU ms per LLM call: "
            f"worker+client {per_call(lambda r: r.cpu)}, dev server {per_call(lambda r: r.temporal_cpu)}, "
            f"LLM server {per_call(lambda r: r.llm_cpu)}; "
            f"LLM connections opened {max(run.connections for run in runs)}"
        )
    if DEFAULT_FLOOR in results:
        default = results[DEFAULT_FLOOR]
        for name, runs in results.items():
            if name.startswith("baton") and "action" not in name:
                paired = statistics.median(r.wall / d.wall for r, d in zip(runs, default, strict=True))
                print(f"  {name} against the {DEFAULT_FLOOR}: ×{paired:.2f} (median of per-round ratios)")
    print(json.dumps({k: [vars(run) for run in v] for k, v in results.items()}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--only", action="append", default=[], help="run only variants naming this (and the floor)"
    )
    parser.add_argument("--llm-port", type=int, default=FAKE_PORT, help="the scripted server's loopback port")
    options = parser.parse_args()
    asyncio.run(main(options.cases, options.rounds, options.only, options.llm_port))
    os._exit(0)  # skip finalisation (temporalio/sdk-python#300)
