"""200 concurrent LLM cases against the scripted server: Baton against the engine's floor.

Set-up: one dev server, the scripted OpenAI-compatible server in a **subprocess**
(``baton fake-llm``, replies after 0.5 s), and this process as worker + client.

1. Transport: 200 parallel chat-completion POSTs with httpx's own pool and with
   the aiohttp transport (``httpx-aiohttp``): wall time and this process's CPU.
2. Cases: 200 concurrent cases of a spec with three LLM agents in sequence
   (critical path 3 x 0.5 s = 1.5 s) plus a no-op action, with each transport,
   beside the floor: a hand-written workflow of three activities that sleep
   0.5 s (and the same plus a no-op action, the shape Baton's case has). Reported:
   wall time, its ratio to the floor and to the critical path, CPU per LLM
   call, and the connections the LLM server accepted.

Run: ``.venv/bin/python benchmarks/llm_concurrency.py [--cases 200] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from temporalio import activity
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.audit import AuditActivities
from activities.llm import LlmActivities, make_transport
from activities.llm.providers import ProviderConfig
from baton.auditlog import AuditLog
from baton.client import BatonClient
from baton.devserver import port_open
from baton.messages import ActionInput, ActionResult
from baton.spec import load_spec, snapshot_of
from benchmarks.minimal import MinimalSleeps, noop, sleep_half_second
from worker import build_worker

HERE = Path(__file__).resolve().parent / "llm"
FAKE_PORT = 8391
CASE = {"order_id": "ORD-1001", "customer_id": "CUS-001", "requested_amount": 10.0, "reason": "defective"}


@activity.defn(name="bench.noop_action")
async def noop_action(inp: ActionInput) -> ActionResult:
    return ActionResult(reference="noop", applied_now=True)


def transport_factory(kind: str | None) -> Callable[[], httpx.AsyncBaseTransport]:
    return lambda: make_transport(kind)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def stats(base: str) -> dict[str, int]:
    async with httpx.AsyncClient() as client:
        data: dict[str, int] = (await client.get(f"{base}/fake/stats")).json()
        return data


async def transport_figures(base: str, count: int) -> dict[str, tuple[float, float]]:
    """Per transport: (wall s, CPU s) for ``count`` parallel requests."""
    body = {"model": "m", "messages": [{"role": "system", "content": "You are the 'probe' agent"}]}
    figures = {}
    for kind in ("httpx", "aiohttp"):
        async with httpx.AsyncClient(transport=make_transport(kind), timeout=60) as client:
            await client.post(f"{base}/chat/completions", json=body)  # warm-up
            c0, t0 = cpu(), time.perf_counter()
            await asyncio.gather(*(client.post(f"{base}/chat/completions", json=body) for _ in range(count)))
            figures[kind] = (time.perf_counter() - t0, cpu() - c0)
    return figures


async def main(cases: int, rounds: int) -> None:
    if port_open("127.0.0.1", FAKE_PORT):
        raise SystemExit(f"port {FAKE_PORT} is busy")
    fake = subprocess.Popen(
        [str(Path(sys.executable).parent / "baton"), "fake-llm", "--script", str(HERE / "script.yaml"),
         "--port", str(FAKE_PORT)], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{FAKE_PORT}/v1"
    while not port_open("127.0.0.1", FAKE_PORT):
        await asyncio.sleep(0.1)
    try:
        transports = await transport_figures(base, cases)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            data_converter=pydantic_data_converter,
            dev_server_log_level="error",
        )
        async with env:
            results = await run_cases(env, base, cases, rounds)
    finally:
        fake.terminate()
        fake.wait()
    report(transports, results, cases)


async def run_cases(
    env: WorkflowEnvironment, base: str, cases: int, rounds: int
) -> dict[str, list[tuple[float, float, int]]]:
    """Per variant, per round: (wall s, CPU s of this process, connections opened)."""
    spec = snapshot_of(load_spec(HERE / "bench.yaml"))
    providers = {"openai": ProviderConfig(base_url=base, default_model="fake")}
    results: dict[str, list[tuple[float, float, int]]] = {}
    variants: dict[str, str | None] = {
        "floor: 3 sleeping activities": None,
        "floor: 3 sleeps + no-op action": "floor+action",
        "baton · aiohttp": "aiohttp",
        "baton · httpx pool": "httpx",
    }
    audit = AuditActivities(AuditLog(Path(tempfile.mkdtemp(prefix="baton-bench-")) / "audit.jsonl"))
    for _ in range(rounds):
        for name, transport in variants.items():
            queue = f"bench-{uuid.uuid4()}"
            llm = LlmActivities(providers, transport=transport_factory(transport))
            floor_acts = transport == "floor+action"
            worker = build_worker(
                env.client,
                task_queue=queue,
                activities=[*llm.all(), *audit.all(), noop_action, sleep_half_second, noop],
                extra_workflows=[MinimalSleeps],
                max_concurrent_activities=cases * 3,
            )
            baton = BatonClient(env.client, task_queue=queue)

            async def governed(baton: BatonClient = baton) -> Any:
                return await baton.result(await baton.start_case(spec, CASE))

            async def floor(queue: str = queue, act: bool = floor_acts) -> Any:
                return await env.client.execute_workflow(
                    MinimalSleeps.run, act, id=f"floor-{uuid.uuid4()}", task_queue=queue
                )

            is_floor = transport is None or floor_acts
            one: Callable[[], Awaitable[Any]] = floor if is_floor else governed
            async with worker:
                await one()  # warm-up
                before = await stats(base)
                c0, t0 = cpu(), time.perf_counter()
                await asyncio.gather(*(one() for _ in range(cases)))
                wall, used = time.perf_counter() - t0, cpu() - c0
                after = await stats(base)
            await llm.aclose()
            opened = after["connections"] - before["connections"] - 1  # less the stats request's own
            results.setdefault(name, []).append((wall, used, opened))
    return results


def report(transports: dict[str, tuple[float, float]], results: dict[str, list[tuple[float, float, int]]],
           cases: int) -> None:  # fmt: skip
    print(f"## transport: {cases} parallel requests, server answers after 0.5 s")
    for kind, (wall, used) in transports.items():
        print(f"  {kind:<8} wall {wall:.2f}s  client CPU {used:.2f}s ({used / cases * 1000:.2f} ms/request)")
    print(f"\n## {cases} concurrent cases, 3 sequential LLM calls each (critical path 1.5 s)")
    floor = statistics.median(w for w, _, _ in results["floor: 3 sleeping activities"])
    for name, runs in results.items():
        wall = statistics.median(w for w, _, _ in runs)
        used = statistics.median(c for _, c, _ in runs)
        conns = max(n for _, _, n in runs)
        calls = cases * 3
        print(
            f"  {name:<30} wall {wall:.2f}s (runs {', '.join(f'{w:.2f}' for w, _, _ in runs)}) "
            f"×floor {wall / floor:.2f} ×critical path {wall / 1.5:.1f}; "
            f"CPU {used * 1000 / calls:.2f} ms per LLM call (worker+client, whole case); "
            f"LLM connections opened {conns}"
        )
    print(json.dumps({k: v for k, v in results.items()}, default=str))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    asyncio.run(main(options.cases, options.rounds))
    os._exit(0)  # skip finalisation (temporalio/sdk-python#300)
