"""The replay gate: histories recorded from real runs must replay against today's code.

A change to GovernedProcess that would break a case already running (a command
added, removed or reordered without ``workflow.patched``) fails here, in CI,
instead of in production. Histories live in ``tests/histories/`` and are
re-recorded with ``python -m tests.histories.record``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.conftest import ACCESS_APP, REFUND_CONTRACTS
from worker import workflow_runner
from workflows import GovernedProcess

ACCESS_APP.activate()  # the access board's histories decode its contracts
CONTRACTS = [*REFUND_CONTRACTS, "access_requests"]
HISTORIES = {
    p.stem: p.read_text() for p in sorted(Path(__file__).parent.joinpath("histories").glob("*.json"))
}


def test_every_demo_path_has_a_recorded_history() -> None:
    assert set(HISTORIES) >= {
        "auto", "approval", "revision", "contained", "escalated", "timeout",
        "finance", "changes", "dual", "exception", "llm", "cancelled",
        "panel", "panel-person", "board-agrees", "board-splits",
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_recorded_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(f"history-{name}", HISTORIES[name])
    replayer = Replayer(
        workflows=[GovernedProcess],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner("strict", contracts=CONTRACTS),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
