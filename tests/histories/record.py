"""Record the replay gate's histories: every demo path (and the LLM one), run for real.

    .venv/bin/python -m tests.histories.record            # every refund demo path
    .venv/bin/python -m tests.histories.record --groups   # only the parallel-group paths

Re-record only when a change to GovernedProcess is meant to apply to new cases
only and is guarded by ``workflow.patched`` (see README, "Changing the
interpreter safely"); never to make a failing replay pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

from temporalio.client import WorkflowFailureError

from baton.scenario import Scenario, run_scenario
from baton.testing import AppHarness, serve_app, start_dev_server
from tests.conftest import ACCESS_APP, REFUNDS_APP, refund_scenario

HERE = Path(__file__).resolve().parent


GROUP_CASES = {"refunds": ["panel", "panel-person"], "access": ["board-agrees", "board-splits"]}
"""Parallel-group paths (recorded by ``--groups`` alone, so the older histories keep guarding)."""


async def record_groups() -> list[Path]:
    """Record only the parallel-group demo cases of both example apps."""
    home = Path(tempfile.mkdtemp(prefix="baton-histories-"))
    written = []
    async with await start_dev_server() as env:
        for app in (REFUNDS_APP, ACCESS_APP):
            script = app.dev_file("scenario")
            assert script is not None, f"{app.config.name} has a demo scenario"
            scenario = Scenario.load(script)
            wanted = GROUP_CASES[app.config.name]
            only = scenario.model_copy(update={"cases": [c for c in scenario.cases if c.slug in wanted]})
            async with serve_app(app, env.client, home=home / app.config.name) as harness:
                for report in await run_scenario(harness.client, only, prefix=f"history-{app.config.name}"):
                    assert report.ok, report.line()
                    history = await env.client.get_workflow_handle(report.case_id).fetch_history()
                    path = HERE / f"{report.scripted.slug}.json"
                    path.write_text(history.to_json())
                    written.append(path)
    return written


async def record() -> list[Path]:
    """Run the refund app's scenario on a fresh dev server and write one history per case."""
    home = Path(tempfile.mkdtemp(prefix="baton-histories-"))
    written = []
    async with await start_dev_server() as env, serve_app(REFUNDS_APP, env.client, home=home) as harness:
        reports = await run_scenario(harness.client, refund_scenario(), prefix="history")
        reports += await run_scenario(
            harness.client, refund_scenario("refund-request-llm"), prefix="history-llm"
        )
        for report in reports:
            assert report.ok, report.line()
            history = await env.client.get_workflow_handle(report.case_id).fetch_history()
            path = HERE / f"{report.scripted.slug}.json"
            path.write_text(history.to_json())
            written.append(path)
        written.append(await record_refused_then_cancelled(harness))
    return written


async def record_refused_then_cancelled(harness: AppHarness) -> Path:
    """A case that waits, is sent malformed, misnamed and unauthorised decisions, then is cancelled."""
    case = {
        "order_id": "ORD-1002",
        "customer_id": "CUS-002",
        "requested_amount": 249.0,
        "reason": "defective",
    }
    case_id = await harness.start("refund-request", case, submitted_by="bob", case_id="history-cancelled")
    await harness.wait_for_approval(case_id)
    handle = harness.client.temporal.get_workflow_handle(case_id)
    await handle.signal("approve", {"user": "alice"})
    await handle.signal("approved", {"approver": "alice"})
    await handle.signal("approve", {"approver": "Bob", "comment": "my own case"})
    await handle.cancel()
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    path = HERE / "cancelled.json"
    path.write_text((await handle.fetch_history()).to_json())
    return path


if __name__ == "__main__":
    for path in asyncio.run(record_groups() if "--groups" in sys.argv else record()):
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
