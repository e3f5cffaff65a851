"""What one eval case's run through one arm records: the unit every figure is computed from.

The runner writes one :class:`CaseRun` per (case, arm) as a JSON line, so a rerun skips
what is finished and an interrupted run still has a report of what it did.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from baton.messages import JsonDict

Arm = Literal["governed", "unchecked", "single"]
"""The governed process as specified; the same agents with guards, reviews and rules off;
one agent for the whole task."""

ARMS: tuple[Arm, ...] = ("governed", "unchecked", "single")

FinalOutcome = Literal[
    "actioned", "approved", "rejected", "action_failed", "invalid_input", "cancelled", "failed"
]
"""How the run ended: a case outcome, or ``failed`` (the workflow itself failed or timed out)."""


class CaseRun(BaseModel):
    """One eval case through one arm."""

    model_config = ConfigDict(extra="forbid")

    case: str = Field(description="The eval case's id (its line's ``id``).")
    arm: Arm
    outcome: FinalOutcome
    escalated: bool = Field(description="The case waited on a person at least once.")
    human_touches: int = Field(ge=0, description="Scripted human decisions the case consumed.")
    action: JsonDict | None = Field(
        default=None, description="The committed action's fields (the handoff the action acted on), if any."
    )
    injected: str | None = Field(
        default=None, description="The fault injected into the first handoff, if any."
    )
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    latency_ms: float = Field(ge=0, description="Start to result, wall clock.")
    path: list[str] = Field(default_factory=list)
    error: str | None = None
