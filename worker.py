"""The Baton worker: GovernedProcess plus every agent and action activity.

Run it with ``baton worker`` (or ``python worker.py``). It connects using
Temporal's standard environment variables, serves ``BATON_TASK_QUEUE``
(default ``baton``), and drains in-flight work on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import build_activities
from baton import telemetry
from baton.connection import connect
from baton.settings import SandboxMode, Settings
from workflows import GovernedProcess

log = logging.getLogger("baton.worker")

PURE_MODULES = ("baton", "processes", "cel", "pydantic", "yaml")
"""Pure libraries the workflow sandbox shares instead of re-importing per run."""

WORKFLOW_MODULES = ("workflows",)
"""Baton's own deterministic workflow code."""


def workflow_runner(mode: SandboxMode = "off") -> WorkflowRunner:
    """How GovernedProcess runs: ``off`` in production, ``strict`` in every test and replay.

    The Python sandbox exists to catch non-deterministic *workflow code*. Baton's
    workflow code is its own (users write specs and activities, never workflow
    code), and every test and the replay gate run it in the ``strict`` sandbox,
    which re-imports it per run and enforces the sandbox's restrictions on it. In
    production the sandbox would only re-check that tested code, at a price paid on
    every activation and payload: about 2.5 ms of worker CPU per LLM call in the
    LLM concurrency benchmark (BENCHMARKS.md). ``shared`` keeps a sandbox with
    Baton's modules passed through, for operators who want one anyway.
    """
    if mode == "off":
        return UnsandboxedWorkflowRunner()
    modules = PURE_MODULES if mode == "strict" else PURE_MODULES + WORKFLOW_MODULES
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*modules)
    )


def build_worker(
    client: Client,
    *,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    graceful_shutdown: timedelta = timedelta(seconds=20),
    extra_workflows: Sequence[type] = (),
    sandbox: SandboxMode = "off",
    **options: Any,
) -> Worker:
    """A worker for GovernedProcess and the given activities on ``task_queue``."""
    traced = any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"])
    return Worker(
        client,
        interceptors=[] if traced else [TracingInterceptor()],
        task_queue=task_queue,
        workflows=[GovernedProcess, *extra_workflows],
        activities=list(activities),
        workflow_runner=workflow_runner(sandbox),
        graceful_shutdown_timeout=graceful_shutdown,
        **options,
    )


async def run_worker(settings: Settings | None = None, *, stop: asyncio.Event | None = None) -> None:
    """Connect, serve until ``stop`` is set (or SIGINT/SIGTERM), then drain."""
    settings = settings or Settings()
    telemetry.configure(settings.home, service="baton-worker")
    client = await connect()
    parts = build_activities(settings)
    worker = build_worker(
        client,
        task_queue=settings.task_queue,
        activities=parts.activities,
        graceful_shutdown=timedelta(seconds=settings.shutdown_grace),
        sandbox=settings.workflow_sandbox,
    )
    stop = stop or _stop_on_signals()
    log.info("worker serving task queue %r", settings.task_queue)
    try:
        async with worker:
            await stop.wait()
    finally:
        await parts.aclose()
        telemetry.shutdown()
    log.info("worker stopped")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def main() -> None:
    """Entry point for ``python worker.py``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker())


if __name__ == "__main__":
    main()
