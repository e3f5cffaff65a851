"""The floor Baton is measured against: a hand-written workflow of four no-op activities."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="noop")
async def noop(value: str) -> str:
    return value


@workflow.defn(name="Minimal")
class Minimal:
    """The floor: the same number of activities, nothing else."""

    @workflow.run
    async def run(self, local: bool) -> str:
        value = "x"
        for _ in range(3):
            if local:
                value = await workflow.execute_local_activity(
                    noop, value, start_to_close_timeout=timedelta(seconds=10)
                )
            else:
                value = await workflow.execute_activity(
                    noop, value, start_to_close_timeout=timedelta(seconds=10)
                )
        return await workflow.execute_activity(noop, value, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn(name="MinimalBookkept")
class MinimalBookkept:
    """The local floor plus two no-op local activities where Baton runs its own bookkeeping.

    Baton's reference case runs two local activities the floor does not: the submission
    check before the agents and the audit append after the action. This floor runs two
    no-ops in those places, so the gap between it and the reference is what Baton spends
    beyond the engine's price of those two round trips.
    """

    @workflow.run
    async def run(self) -> str:
        value = "x"
        for _ in range(4):  # the "submission check", then the three agents
            value = await workflow.execute_local_activity(
                noop, value, start_to_close_timeout=timedelta(seconds=10)
            )
        value = await workflow.execute_activity(noop, value, start_to_close_timeout=timedelta(seconds=10))
        return await workflow.execute_local_activity(  # the "audit append"
            noop, value, start_to_close_timeout=timedelta(seconds=10)
        )


@activity.defn(name="sleep_half_second")
async def sleep_half_second(value: str) -> str:
    """Stands in for an LLM call that takes 0.5 s."""
    await asyncio.sleep(0.5)
    return value


@workflow.defn(name="MinimalSleeps")
class MinimalSleeps:
    """The engine's floor for three sequential 0.5 s calls (``then_act``: and a no-op action)."""

    @workflow.run
    async def run(self, then_act: bool) -> str:
        value = "x"
        for _ in range(3):
            value = await workflow.execute_activity(
                sleep_half_second, value, start_to_close_timeout=timedelta(seconds=30)
            )
        if then_act:
            value = await workflow.execute_activity(noop, value, start_to_close_timeout=timedelta(seconds=30))
        return value
