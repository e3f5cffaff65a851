"""The Baton worker: GovernedProcess, Baton's own activities, and one app's activities.

Run it with ``baton worker`` in an app (or ``--app PATH``). It connects using
Temporal's standard environment variables, serves the app's task queue, refuses
to start while any spec of the app names an activity, provider or role the
deployment lacks, and drains in-flight work on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import ActivitySet, build_activities
from activities.llm.providers import ProviderConfig
from baton import telemetry
from baton.app import App, AppContext, activity_name
from baton.connection import connect
from baton.errors import BatonUsageError
from baton.logfilter import install_activity_log_filter
from baton.roles import YamlRoleDirectory
from baton.settings import SandboxMode, Settings
from baton.spec import ProcessSpec
from baton.wiring import Wiring, app_activities, load_app_specs
from workflows import GovernedProcess

log = logging.getLogger("baton.worker")

PURE_MODULES = ("baton", "cel", "pydantic", "yaml")
"""Pure libraries the workflow sandbox shares instead of re-importing per run."""

WORKFLOW_MODULES = ("workflows",)
"""Baton's own deterministic workflow code."""


def workflow_runner(mode: SandboxMode = "off", *, contracts: Sequence[str] = ()) -> WorkflowRunner:
    """How GovernedProcess runs: ``off`` in production, ``strict`` in every test and replay.

    The Python sandbox exists to catch non-deterministic *workflow code*. Baton's
    workflow code is its own (users write specs and activities, never workflow
    code), and every test and the replay gate run it in the ``strict`` sandbox,
    which re-imports it per run and enforces the sandbox's restrictions on it. In
    production the sandbox would only re-check that tested code, at a price paid on
    every activation and payload: about 2.5 ms of worker CPU per LLM call in the
    LLM concurrency benchmark (BENCHMARKS.md). ``shared`` keeps a sandbox with
    Baton's modules passed through, for operators who want one anyway.

    ``contracts`` are the app's contract modules: pure pydantic, imported once and
    shared with the sandbox rather than re-imported for every case.
    """
    if mode == "off":
        return UnsandboxedWorkflowRunner()
    modules = (*PURE_MODULES, *contracts)
    if mode == "shared":
        modules += WORKFLOW_MODULES
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
    contracts: Sequence[str] = (),
    **options: Any,
) -> Worker:
    """A worker for GovernedProcess and the given activities on ``task_queue``."""
    install_activity_log_filter()  # an expected, retried failure is one log line, not a traceback
    traced = any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"])
    return Worker(
        client,
        interceptors=[] if traced else [TracingInterceptor()],
        task_queue=task_queue,
        workflows=[GovernedProcess, *extra_workflows],
        activities=list(activities),
        workflow_runner=workflow_runner(sandbox, contracts=contracts),
        graceful_shutdown_timeout=graceful_shutdown,
        **options,
    )


class AppWorkerParts:
    """Everything one app's worker serves, and what to close when it stops."""

    def __init__(
        self, own: ActivitySet, context: AppContext, app_activities: list[Callable[..., Any]]
    ) -> None:
        self.own, self.context, self.app_activities = own, context, app_activities
        self.contracts: list[str] = []
        """The app's contract packages (shared with the sandbox), set once its specs check out."""

    @property
    def activities(self) -> list[Callable[..., Any]]:
        """Baton's activities and the app's."""
        return [*self.own.activities, *self.app_activities]

    @property
    def names(self) -> frozenset[str]:
        """Names of every activity served."""
        return frozenset(activity_name(a) or "" for a in self.activities)

    async def aclose(self) -> None:
        """Close the app's resources, then Baton's shared clients."""
        await self.context.aclose()
        await self.own.aclose()


@contextlib.asynccontextmanager
async def prepared(
    app: App, settings: Settings, *, providers: dict[str, ProviderConfig] | None = None
) -> AsyncIterator[AppWorkerParts]:
    """Baton's activities and the app's, checked against every spec of the app; closed after.

    Raises:
        BatonUsageError: an activity takes a name Baton reserves, or a spec names an
            activity, provider or role this worker lacks (listing every problem: such a
            case would otherwise escalate to people).
    """
    app.activate()
    context = AppContext(app=app, home=settings.home, roles_file=settings.roles_file)
    parts = AppWorkerParts(build_activities(settings, providers=providers), context, [])
    try:
        parts.app_activities = app_activities(app, context)
        wiring = Wiring(
            roles=YamlRoleDirectory(settings.roles_file).roles(),
            activities=parts.names,
            providers=frozenset(parts.own.llm.providers),
        )
        specs, problems = load_app_specs(app, wiring)
        if problems:
            listing = "\n".join(f"  {p}" for p in problems)
            raise BatonUsageError(f"the worker for app {app.name!r} will not start:\n{listing}")
        parts.contracts = contract_packages(specs, app.config.contract_aliases.values())
        yield parts
    finally:
        await parts.aclose()


def contract_packages(specs: Iterable[ProcessSpec], aliases: Iterable[str] = ()) -> list[str]:
    """Top-level packages of every contract the specs name (shared with the sandbox)."""
    found = {
        ref.partition(":")[0].split(".")[0]
        for s in specs
        for ref in [s.input, *(a.output for a in s.agents.values())]
    }
    return sorted(found | {alias.split(".")[0] for alias in aliases})


async def run_worker(
    app: App,
    settings: Settings | None = None,
    *,
    stop: asyncio.Event | None = None,
    providers: dict[str, ProviderConfig] | None = None,
) -> None:
    """Connect, serve ``app`` until ``stop`` is set (or SIGINT/SIGTERM), then drain."""
    settings = settings or Settings.for_app(app)
    try:
        async with prepared(app, settings, providers=providers) as parts:  # checked before connecting
            telemetry.configure(settings.home, service=f"baton-worker-{app.name}")
            client = await connect()
            worker = build_worker(
                client,
                task_queue=settings.task_queue,
                activities=parts.activities,
                graceful_shutdown=timedelta(seconds=settings.shutdown_grace),
                sandbox=settings.workflow_sandbox,
                contracts=parts.contracts,
            )
            stop = stop or _stop_on_signals()
            log.info("worker for app %r serving task queue %r", app.name, settings.task_queue)
            async with worker:
                await stop.wait()
    finally:
        telemetry.shutdown()
    log.info("worker stopped")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def main() -> None:
    """Entry point for ``python worker.py`` (the app from ``$BATON_APP`` or the working directory)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker(App.require()))


if __name__ == "__main__":
    main()
