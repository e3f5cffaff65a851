"""Contracts of a test process whose case carries a large list (the rule-cost test)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Bulk(BaseModel):
    """A case holding many items."""

    items: list[str] = Field(max_length=10_000)


class Count(BaseModel):
    """How many items the agent counted."""

    n: int


class Seen(BaseModel):
    """What a probe agent was shown (the scoped-inputs test)."""

    handoffs: list[str]
    case_fields: list[str]


class Said(BaseModel):
    """A probe reviewer's verdict and what it was shown (the parallel-group tests)."""

    verdict: str
    seen: list[str]
    findings: list[str] = Field(default_factory=list)
