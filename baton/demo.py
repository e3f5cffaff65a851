"""``baton demo``: an app's scripted scenario on the embedded dev server, printed.

It starts the dev server (unless told to use a running one), resets the app's
data with its ``seed`` function, serves the app with a worker in this process
(LLM agents answered by the app's scripted stand-in, when it declares one), runs
every case of the app's ``[dev] scenario`` file, prints what happened and stops
what it started. It exits non-zero when any case strays from its script.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from activities.llm.providers import ProviderConfig, load_providers, pointed_at
from baton import search, telemetry
from baton.app import App, AppContext
from baton.client import BatonClient
from baton.connection import connect
from baton.devserver import DevServer
from baton.errors import BatonUsageError
from baton.fakellm import FakeLlmServer, FakeScript
from baton.scenario import Scenario, run_scenario
from baton.settings import Settings


@contextlib.asynccontextmanager
async def offline_providers(app: App, settings: Settings) -> AsyncIterator[dict[str, ProviderConfig] | None]:
    """The app's providers pointed at its scripted LLM stand-in, while that runs; else None."""
    script = app.dev_file("fake_llm")
    if script is None:
        yield None
        return
    async with FakeLlmServer(FakeScript.load(script)) as fake:
        print(f"LLM agents answered by the scripted stand-in at {fake.base_url} ({script.name}; not a model)")
        yield pointed_at(load_providers(settings.providers_file), fake.base_url)


async def run_demo(app: App, settings: Settings, *, use_existing_server: bool = False) -> bool:
    """Run the app's scenario; True when every case took its scripted path."""
    from worker import build_worker, prepared  # the worker module is the composition root

    scenario_file = app.dev_file("scenario")
    if scenario_file is None:
        raise BatonUsageError(f"{app.source}: no [dev] scenario to run (see README, 'The app file')")
    scenario = Scenario.load(scenario_file)
    app.activate()
    seeded = app.seed(AppContext(app=app, home=settings.home, roles_file=settings.roles_file), reset=True)
    if seeded:
        print(seeded)
    telemetry.configure(settings.home, service="baton-demo")
    server = DevServer(
        settings.temporal_db,
        log_file=settings.home / "temporal.log",
        search_attributes=search.TYPE_NAMES_BY_NAME,
    )
    started = time.monotonic()
    if not use_existing_server:
        print(
            f"starting Temporal dev server (db {settings.temporal_db}, UI http://localhost:{server.ui_port})"
        )
        await server.start()
    try:
        temporal = await connect()
        async with (
            offline_providers(app, settings) as providers,
            prepared(app, settings, providers=providers) as parts,
        ):
            client = BatonClient(temporal, task_queue=settings.task_queue, settings=settings, app=app)
            worker = build_worker(
                temporal,
                task_queue=settings.task_queue,
                activities=parts.activities,
                contracts=parts.contracts,
            )
            async with worker:
                prefix = time.strftime(f"demo-{app.name}-%Y%m%d-%H%M%S")
                rungs = scenario.rung_timeout
                short = f" (approval rungs shortened to {rungs.total_seconds():g}s)" if rungs else ""
                print(f"running {len(scenario.cases)} {app.name} cases{short}\n")
                reports = await run_scenario(client, scenario, prefix=prefix)
    finally:
        server.stop()
    for report in reports:
        print(report.line())
    good = sum(r.ok for r in reports)
    print(
        f"\n{good}/{len(reports)} {app.name} cases took their scripted path; "
        f"{time.monotonic() - started:.1f}s.\nInspect them: `baton dev` in {app.root}, then open "
        f"http://localhost:{server.ui_port} (search: WorkflowId STARTS_WITH '{prefix}')."
    )
    return good == len(reports)
