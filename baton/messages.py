"""Typed messages between client, workflow and activities.

One input object per workflow, activity, signal and query, so fields can be
added later without breaking cases that are already running. All are pure
pydantic and travel through Temporal's pydantic data converter.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from baton.identity import MAX_IDENTITY
from baton.signing import Signature
from baton.spec.models import SpecSnapshot

JsonDict = dict[str, Any]


Verdict = Literal["approve", "reject", "request_changes"]


class Resume(BaseModel):
    """A case's state carried into a new run by continue-as-new (history kept bounded)."""

    start_at: int
    feedback: dict[str, list[Feedback]] = Field(default_factory=dict)
    outputs: dict[str, JsonDict] = Field(default_factory=dict)
    rounds: dict[str, int] = Field(default_factory=dict)
    path: list[str] = Field(default_factory=list)
    audit: list[AuditEvent] = Field(default_factory=list)
    logged: int = 0
    usage: Usage = Field(default_factory=lambda: Usage())
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    budget_waived: bool = False
    runs: int = 1
    refusals: int = 0
    overruled_by: str | None = None
    skipped: list[str] = Field(default_factory=list)
    signing_required: bool = False
    drafts: dict[str, list[JsonDict]] = Field(default_factory=dict)
    decision_ids: list[str] = Field(default_factory=list)


class CaseStart(BaseModel):
    """Everything a case needs at start: the case, who submitted it, the frozen spec.

    The case comes first, so it is what the Temporal UI shows at the top of the input.
    ``index`` says the namespace has Baton's search attributes registered, so the
    case keeps them current (the inbox); without them it must not try. ``signature``
    signs the submission when the deployment requires it (see ``baton.signing``).
    """

    case_id: str
    case: JsonDict
    submitted_by: str = "anonymous"
    signature: Signature | None = None
    spec: SpecSnapshot
    index: bool = False
    index_deciders: bool = False
    """The namespace has ``BatonDeciders``: the case records who decided it when it closes."""
    resume: Resume | None = None


class SubmissionCheck(BaseModel):
    """What ``baton.check_submission`` is asked: digests and the signature, never the case or
    the spec themselves (the spec's digest, computed by the workflow, stands for it)."""

    case_id: str
    workflow_id: str = ""
    submitted_by: str
    case_sha256: str
    spec_sha256: str
    """The digest the submission names (and its signature covers)."""
    spec_content_sha256: str
    """The digest of the spec that came with the case: it must be ``spec_sha256``."""
    signature: Signature | None = None


class SubmissionVerdict(BaseModel):
    """Whether the deployment requires signing, which key signed, or why the submission fails."""

    required: bool
    signed_by: str | None = None
    problem: str | None = None


class Feedback(BaseModel):
    """Why an agent is being run again: a failed check, a review finding, an error."""

    source: Literal["contract", "guard", "review", "agent_error", "human"]
    message: str
    data: JsonDict = Field(default_factory=dict)


class AgentInput(BaseModel):
    """What one agent run is shown: the case, earlier handoffs, and any feedback."""

    case_id: str
    process: str
    step: str
    agent: str
    attempt: int = 1
    revision: int = 0
    case: JsonDict
    handoffs: dict[str, JsonDict] = Field(default_factory=dict)
    feedback: list[Feedback] = Field(default_factory=list)


class Usage(BaseModel):
    """LLM tokens spent, from the responses' ``usage``; summed per call, agent and case."""

    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0

    @property
    def total(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            calls=self.calls + other.calls,
        )


class LlmCall(BaseModel):
    """Input of the ``baton.llm_agent`` activity: what to ask, of which model, for which contract.

    Holds no secret: the worker reads the provider's API key from its own environment.
    """

    agent: AgentInput
    provider: str
    model: str | None = None
    prompt: str
    contract: str
    temperature: float = 0.0
    max_tokens: int = 1024
    repair_attempts: int = 1


class LlmResult(BaseModel):
    """The parsed, contract-valid reply and what it cost."""

    output: JsonDict
    usage: Usage
    model: str


MAX_COMMENT = 4000
"""Longest comment, reason or feedback a decision may carry (characters)."""
MAX_ID = 200
"""Longest case id or decision id."""


class HumanDecision(BaseModel):
    """An approver's decision, sent as the ``approve``/``reject``/``request_changes`` signal.

    ``comment`` is the reason for a rejection and the feedback for a change request.
    ``decision_id`` makes a repeated send apply once. Every field is bounded: a decision
    comes from outside, and its text lands in the case's history and audit trail.
    """

    model_config = ConfigDict(extra="forbid")

    approver: str = Field(min_length=1, max_length=MAX_IDENTITY)
    comment: str = Field(default="", max_length=MAX_COMMENT)
    decision_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID)
    signature: Signature | None = Field(
        default=None, description="HMAC by a trusted sender's key (see baton.signing); never the key."
    )
    proposal: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{12,64}$",
        description="The digest (or its first 12+ hex digits) of the proposal decided on, as "
        "`baton show`, `baton pending` and notifications print it: a decision on a proposal "
        "that has changed since is refused.",
    )


class DecisionRequest(HumanDecision):
    """The ``decide`` update: a decision whose refusal the caller hears at once."""

    verdict: Verdict


class DecisionReceipt(BaseModel):
    """What an accepted ``decide`` update did."""

    verdict: Verdict
    approver: str
    state: str


class ApprovalRecord(BaseModel):
    """An accepted human decision, as the action and the audit trail see it."""

    decision: Verdict
    approver: str
    role: str
    comment: str = ""
    at: datetime


class ActionInput(BaseModel):
    """The final side effect's input; ``idempotency_key`` makes re-runs apply once."""

    idempotency_key: str
    case_id: str
    process: str
    case: JsonDict
    handoffs: dict[str, JsonDict]
    decided_by: str
    approvals: list[ApprovalRecord] = Field(default_factory=list)


class ActionResult(BaseModel):
    """What the action did. ``applied_now`` is false when an earlier attempt applied it."""

    reference: str
    applied_now: bool
    detail: JsonDict = Field(default_factory=dict)


class RoleQuery(BaseModel):
    """Input of the directory lookup: who holds ``role`` right now."""

    role: str


class RoleMembers(BaseModel):
    """Output of the directory lookup, recorded in history so replays see the same answer."""

    role: str
    members: list[str]


class AuditKind(StrEnum):
    """Kinds of audit events; the audit trail is the case's accountable history."""

    CASE_STARTED = "case_started"
    HANDOFF = "handoff"
    CHECK_PASSED = "check_passed"
    CHECK_FAILED = "check_failed"
    SKIPPED = "skipped"
    REVIEW_REJECTED = "review_rejected"
    OPINION = "opinion"
    RESOLVED = "resolved"
    REVISION = "revision"
    ESCALATED = "escalated"
    DECISION = "decision"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"
    REFUSED = "refused"
    CANCELLED = "cancelled"
    REMINDED = "reminded"
    TIMED_OUT = "timed_out"
    HELD = "held"
    NOTIFY_FAILED = "notify_failed"
    CONTINUED = "continued_as_new"
    ACTION = "action"
    CASE_CLOSED = "case_closed"


class AuditEvent(BaseModel):
    """One accountable fact about a case. Large payloads appear as digests only."""

    seq: int
    at: datetime
    kind: AuditKind
    detail: str
    step: str | None = None
    agent: str | None = None
    actor: str | None = None
    data: JsonDict = Field(default_factory=dict)


class AuditBatch(BaseModel):
    """Events for the chained audit log (the activity adds the trace and span ids)."""

    case_id: str
    process: str
    workflow_id: str
    run_id: str
    events: list[AuditEvent]


class AuditReceipt(BaseModel):
    """What an append to the audit log returns: the anchor the case keeps in its history.

    ``head`` is the hash of the case's newest record in the log after the append and
    ``records`` how many records of the case the log holds; the workflow keeps both in
    its memo, so ``baton audit verify`` can compare a log with what the engine saw
    (records removed from the end, an emptied or rewritten log).
    """

    written: int
    head: str
    records: int


class Outcome(StrEnum):
    """How a case ended."""

    ACTIONED = "actioned"
    APPROVED = "approved"  # decided in favour; the process has no action (advisory)
    REJECTED = "rejected"
    ACTION_FAILED = "action_failed"
    INVALID_INPUT = "invalid_input"
    CANCELLED = "cancelled"


class Awaiting(BaseModel):
    """What a case is waiting for while it sits on an approval ladder.

    ``deadline`` is None while the case is held (the ladder ran out and the
    spec says ``on_timeout: hold``).
    """

    ladder: str
    rung: int
    rungs: int
    role: str
    deadline: datetime | None
    purpose: str
    approvers_needed: int = 1
    approved_by: list[str] = Field(default_factory=list)
    proposal: str | None = Field(
        default=None, description="sha256 of the case and its checked handoffs the people decide on."
    )


NotifyEvent = Literal["approval_requested", "reminder", "escalated", "decided"]


class Notification(BaseModel):
    """What the ``baton.notify`` activity posts to a role's webhooks. No case payload."""

    event: NotifyEvent
    case_id: str
    process: str
    role: str
    ladder: str
    rung: int
    deadline: datetime | None = None
    purpose: str = ""
    summary: str = ""
    amount: float | None = None
    decided: str | None = None
    proposal: str | None = Field(default=None, description="The digest a decision must name.")
    idempotency_key: str


class CaseStatus(BaseModel):
    """A live view of a case, served by the ``status`` query."""

    case_id: str
    process: str
    spec_version: int
    spec_sha256: str
    stage: str
    path: list[str]
    awaiting: Awaiting | None = None
    outcome: Outcome | None = None
    reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    refusals: int = 0
    """Decisions refused so far (only the first few are itemised in the audit trail)."""


class CaseResult(BaseModel):
    """What the workflow returns: the outcome, the path taken and the full audit trail."""

    case_id: str
    process: str
    outcome: Outcome
    reason: str
    path: list[str]
    decided_by: str | None = None
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    action: ActionResult | None = None
    handoffs: dict[str, JsonDict] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    audit: list[AuditEvent] = Field(default_factory=list)
    refusals: int = 0


Resume.model_rebuild()
CaseStart.model_rebuild()


class CaseFile(BaseModel):
    """What a person needs to decide on a case: the case, every checked handoff, how it got here.

    ``handoffs`` are in flow order, each with its contract in ``contracts`` (a group's
    resolution has none); ``drafts`` holds the earlier versions of handoffs that were
    produced again (a revision, a rerun), oldest first; ``checks`` are the audit events
    of the checks, reviews, opinions, routing and rules that led here.
    """

    case_id: str
    process: str
    spec_version: int
    spec_sha256: str
    submitted_by: str
    case: JsonDict
    input_contract: str
    handoffs: dict[str, JsonDict]
    contracts: dict[str, str]
    drafts: dict[str, list[JsonDict]] = Field(default_factory=dict)
    checks: list[AuditEvent] = Field(default_factory=list)
    path: list[str] = Field(default_factory=list)
    stage: str
    awaiting: Awaiting | None = None
    outcome: Outcome | None = None
    reason: str | None = None
    deciders: list[str] = Field(default_factory=list)
    """The people whose decisions the case applied so far (they may still read it)."""
