"""The three deterministic agents of ``access-request``: lookup, proposer, risk reviewer.

Plain functions over typed inputs, so they can be tested directly;
:mod:`access_requests.activities` exposes them as activities. None of them
decides anything: they retrieve, propose and review, and the workflow's checks
and rules decide what flows on and who must approve.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime

from access_requests.contracts import (
    LEVEL_RANK,
    AccessRequest,
    CurrentGrant,
    Entitlement,
    GrantProposal,
    Level,
    OwnerReview,
    RiskFinding,
    RiskReview,
)
from baton import AgentInput

ELEVATED_MAX_DAYS = 14
"""Write or admin access to a high-sensitivity system lasts at most two weeks."""
CHANGE_TICKET = re.compile(r"\bCHG-\d{3,}\b")
DAYS = re.compile(r"\b(\d{1,3})\s*days?\b")
SENSITIVITY_RISK = {"low": 10, "medium": 30, "high": 50}
LEVEL_RISK = {"read": 0, "write": 15, "admin": 30}


def lookup(conn: sqlite3.Connection, request: AccessRequest, *, now: datetime) -> Entitlement:
    """Retrieve the employee, the system and the employee's current grants; say what does not check out."""
    person = conn.execute("SELECT * FROM employees WHERE id = ?", (request.employee_id,)).fetchone()
    system = conn.execute("SELECT * FROM systems WHERE id = ?", (request.system,)).fetchone()
    problems = []
    if person is None:
        problems.append(f"no employee {request.employee_id} in the directory")
    elif not person["active"]:
        problems.append(f"{request.employee_id} is no longer active")
    if system is None:
        problems.append(f"no system {request.system!r} in the catalogue")
    grants = [
        CurrentGrant(system=row["system_id"], level=row["level"], expires_at=row["expires_at"])
        for row in conn.execute(
            "SELECT system_id, level, expires_at FROM grants WHERE employee_id = ? ORDER BY id",
            (request.employee_id,),
        )
        if datetime.fromisoformat(row["expires_at"]) > now
    ]
    here = [g.level for g in grants if g.system == request.system]
    return Entitlement(
        employee_id=request.employee_id,
        employee_exists=person is not None,
        employee_name=person["name"] if person else None,
        active=bool(person["active"]) if person else False,
        employment=person["employment"] if person else None,
        department=person["department"] if person else None,
        manager_id=person["manager_id"] if person else None,
        system=request.system,
        system_exists=system is not None,
        system_name=system["name"] if system else None,
        sensitivity=system["sensitivity"] if system else None,
        owner_team=system["owner_team"] if system else None,
        max_duration_days=system["max_duration_days"] if system else 0,
        current_level=max(here, key=LEVEL_RANK.__getitem__) if here else None,
        current_grants=grants,
        problems=problems,
    )


def propose(inp: AgentInput) -> GrantProposal:
    """Propose a grant. The first proposal takes the request at face value; feedback narrows it."""
    request = AccessRequest.model_validate(inp.case)
    facts = Entitlement.model_validate(inp.handoffs["lookup"])
    level: Level = request.level
    days = request.duration_days
    if inp.feedback:
        caps = [f.data["max_duration_days"] for f in inp.feedback if f.data.get("max_duration_days")]
        # A person's feedback is free text; "N days" in it is read as a cap and "read only"
        # as a lower level (a deterministic stand-in for a model reading the comment).
        caps += [
            int(m.group(1)) for f in inp.feedback if f.source == "human" if (m := DAYS.search(f.message))
        ]
        days = max(1, min([days, facts.max_duration_days or days, *caps]))
        lower: list[Level] = [f.data["max_level"] for f in inp.feedback if f.data.get("max_level")]
        if any(f.source == "human" and "read only" in f.message.lower() for f in inp.feedback):
            lower.append("read")
        level = min([level, *lower], key=LEVEL_RANK.__getitem__)
    why = " ".join(request.justification.split())
    return GrantProposal(
        employee_id=request.employee_id,
        system=request.system,
        level=level,
        duration_days=days,
        justification_summary=f"{level} on {request.system} for {days} days: {why}"[:500],
    )


def review_risk(inp: AgentInput) -> RiskReview:
    """Review a proposal for risk; findings say what would pass, when anything would.

    Whether the employee already holds the access is not a risk finding (no revision
    could fix it): the spec's decision rules reject such a request.
    """
    request = AccessRequest.model_validate(inp.case)
    facts = Entitlement.model_validate(inp.handoffs["lookup"])
    proposal = GrantProposal.model_validate(inp.handoffs["proposer"])
    findings: list[RiskFinding] = []
    if proposal.duration_days > facts.max_duration_days:
        findings.append(
            RiskFinding(
                code="too_long_for_system",
                message=f"{proposal.system} grants last at most {facts.max_duration_days} days",
                max_duration_days=facts.max_duration_days,
            )
        )
    elevated = proposal.level != "read" and facts.sensitivity == "high"
    if elevated and proposal.duration_days > ELEVATED_MAX_DAYS:
        findings.append(
            RiskFinding(
                code="elevated_too_long",
                message=f"{proposal.level} access to a high-sensitivity system lasts at most "
                f"{ELEVATED_MAX_DAYS} days",
                max_duration_days=ELEVATED_MAX_DAYS,
            )
        )
    if proposal.level == "admin" and not CHANGE_TICKET.search(request.justification):
        findings.append(
            RiskFinding(
                code="admin_without_ticket",
                message="admin access needs a change ticket (CHG-…) in the justification",
                max_level="write",
            )
        )
    score = (
        SENSITIVITY_RISK.get(facts.sensitivity or "high", 50)
        + LEVEL_RISK[proposal.level]
        + min(proposal.duration_days // 7, 20)
        + (10 if facts.employment == "contractor" else 0)
    )
    return RiskReview(passes=not findings, findings=findings, risk_score=min(score, 100))


def review_as_owner(inp: AgentInput) -> OwnerReview:
    """Review a proposal as the system's owning team, independently of the risk review.

    The owner agrees to read access for anyone and to more for its own team; anything
    else is an objection no revision can fix, so a disagreement with the risk reviewer
    goes to a person.
    """
    facts = Entitlement.model_validate(inp.handoffs["lookup"])
    proposal = GrantProposal.model_validate(inp.handoffs["proposer"])
    owner = facts.owner_team
    if proposal.level == "read" or owner is None or facts.department == owner:
        return OwnerReview(approves=True, owner_team=owner)
    objection = RiskFinding(
        code="outside_owner_team",
        message=f"{proposal.level} on {proposal.system} for {facts.department or 'unknown department'}: "
        f"{owner} owns it and grants more than read only to its own team",
    )
    return OwnerReview(approves=False, owner_team=owner, objections=[objection])


def utc_now() -> datetime:
    """The agents' clock (activities may read clocks; workflows may not)."""
    return datetime.now(UTC)
