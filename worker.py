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
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import build_activities
from baton.connection import connect
from baton.settings import Settings
from workflows import GovernedProcess

log = logging.getLogger("baton.worker")

PASSTHROUGH = ("baton", "processes", "cel", "pydantic", "yaml")
"""Pure modules the workflow sandbox shares instead of re-importing per run."""


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox GovernedProcess runs in (shared with the Replayer in tests)."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


def build_worker(
    client: Client,
    *,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    graceful_shutdown: timedelta = timedelta(seconds=20),
    extra_workflows: Sequence[type] = (),
    **options: Any,
) -> Worker:
    """A worker for GovernedProcess and the given activities on ``task_queue``."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[GovernedProcess, *extra_workflows],
        activities=list(activities),
        workflow_runner=workflow_runner(),
        graceful_shutdown_timeout=graceful_shutdown,
        **options,
    )


async def run_worker(settings: Settings | None = None, *, stop: asyncio.Event | None = None) -> None:
    """Connect, serve until ``stop`` is set (or SIGINT/SIGTERM), then drain."""
    settings = settings or Settings()
    client = await connect()
    worker = build_worker(client, task_queue=settings.task_queue, activities=build_activities(settings))
    stop = stop or _stop_on_signals()
    log.info("worker serving task queue %r", settings.task_queue)
    async with worker:
        await stop.wait()
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
