"""The floor Baton is measured against: a hand-written workflow of four no-op activities."""

from __future__ import annotations

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
