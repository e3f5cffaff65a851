"""Record the replay gate's histories: every demo path (and the LLM one), run for real.

    .venv/bin/python -m tests.histories.record

Re-record only when a change to GovernedProcess is meant to apply to new cases
only and is guarded by ``workflow.patched`` (see README, "Changing the
interpreter safely"); never to make a failing replay pass.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities import build_activities
from baton import search
from baton.client import BatonClient
from baton.demo import FAKE_LLM_SCRIPT, LLM_SCENARIO, run_scenario
from baton.fakellm import FakeLlmServer, FakeScript
from baton.settings import Settings
from worker import build_worker

HERE = Path(__file__).resolve().parent


async def record() -> list[Path]:
    """Run the demo scenario on a fresh dev server and write one history per case."""
    home = Path(tempfile.mkdtemp(prefix="baton-histories-"))
    settings = Settings(
        home=home, task_queue=f"record-{uuid.uuid4()}", refunds_db_override=str(home / "r.db")
    )
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=search.ALL,
        dev_server_log_level="error",
    )
    written = []
    async with env:
        parts = build_activities(settings)
        worker = build_worker(
            env.client, task_queue=settings.task_queue, activities=parts.activities, sandbox="strict"
        )
        fake = FakeLlmServer(FakeScript.load(FAKE_LLM_SCRIPT))
        await fake.start()
        os.environ["OPENAI_BASE_URL"] = fake.base_url  # this recorder's own worker only
        os.environ["OPENAI_API_KEY"] = "recorder-key-not-secret"
        async with worker:
            client = BatonClient(env.client, task_queue=settings.task_queue, settings=settings)
            reports = await run_scenario(client, prefix="history")
            reports += await run_scenario(client, prefix="history-llm", scenario=LLM_SCENARIO)
        await fake.stop()
        await parts.aclose()
        for report in reports:
            assert report.ok, report.line()
            history = await env.client.get_workflow_handle(report.case_id).fetch_history()
            path = HERE / f"{report.demo.slug}.json"
            path.write_text(history.to_json())
            written.append(path)
    return written


if __name__ == "__main__":
    for path in asyncio.run(record()):
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
