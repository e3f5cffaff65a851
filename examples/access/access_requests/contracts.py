"""Contracts of the ``access-request`` process: the case and each agent's handoff.

These models are checked inside workflow code (every handoff is validated
there), so their validators are pure: no clock, I/O or randomness. Levels and
sensitivities are plain strings so the spec's CEL rules can compare them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Level = Literal["read", "write", "admin"]
Sensitivity = Literal["low", "medium", "high"]
Employment = Literal["employee", "contractor"]

EMPLOYEE_ID = r"^EMP-\d{3,}$"
SYSTEM_ID = r"^[a-z][a-z0-9-]{1,39}$"
LEVEL_RANK: dict[str, int] = {"read": 1, "write": 2, "admin": 3}
"""Read < write < admin; the spec's guards use the same order."""


class AccessRequest(BaseModel):
    """An employee's request for access to one system: the case input."""

    model_config = ConfigDict(extra="forbid")

    employee_id: str = Field(pattern=EMPLOYEE_ID)
    system: str = Field(pattern=SYSTEM_ID, description="The system's id in the directory, e.g. payroll-db.")
    level: Level
    justification: str = Field(min_length=10, max_length=2000)
    duration_days: int = Field(ge=1, le=365)


class CurrentGrant(BaseModel):
    """Access the employee holds today."""

    system: str
    level: Level
    expires_at: datetime


class Entitlement(BaseModel):
    """What the lookup found in the directory: the employee, the system, current grants."""

    employee_id: str
    employee_exists: bool
    employee_name: str | None = None
    active: bool = False
    employment: Employment | None = None
    department: str | None = None
    manager_id: str | None = None
    system: str
    system_exists: bool
    system_name: str | None = None
    sensitivity: Sensitivity | None = None
    owner_team: str | None = None
    max_duration_days: int = Field(default=0, ge=0, le=365)
    current_level: Level | None = Field(default=None, description="What the employee holds on this system.")
    current_grants: list[CurrentGrant] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


class GrantProposal(BaseModel):
    """The proposer's grant: what access, for how long, and why, in one line for approvers."""

    employee_id: str = Field(pattern=EMPLOYEE_ID)
    system: str = Field(pattern=SYSTEM_ID)
    level: Level
    duration_days: int = Field(ge=1, le=365)
    justification_summary: str = Field(min_length=10, max_length=500)


class RiskFinding(BaseModel):
    """One risk problem; ``max_duration_days``/``max_level`` say what would pass, when anything would."""

    code: str
    message: str
    max_duration_days: int | None = Field(default=None, ge=1, le=365)
    max_level: Level | None = None


class RiskReview(BaseModel):
    """The risk reviewer's verdict on a proposal, with a 0-100 score for the inbox."""

    passes: bool
    findings: list[RiskFinding] = Field(default_factory=list)
    risk_score: int = Field(ge=0, le=100)


class OwnerReview(BaseModel):
    """The system owner's review of a proposal: does the owning team agree to the grant?"""

    approves: bool
    owner_team: str | None = None
    objections: list[RiskFinding] = Field(default_factory=list)


class ApproverBrief(BaseModel):
    """The LLM's risk summary for whoever approves: what is asked, what could go wrong."""

    summary: str = Field(min_length=20, max_length=1200)
    concerns: list[str] = Field(default_factory=list, max_length=5)
    recommendation: Literal["grant", "grant_with_conditions", "deny"]
