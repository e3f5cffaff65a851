"""The pydantic shape of a process spec.

Every model forbids unknown fields: a misspelt key (``gaurds``) is a problem to
report, not a setting to ignore. Cross-references (agents named by steps,
ladders named by rules, CEL syntax, contracts) are checked by the loader, which
can see the whole document and name the line.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from baton.durations import Duration

IDENTIFIER = r"^[a-z][a-z0-9_]*$"
"""Step and agent names double as CEL variables, so they must be identifiers."""

PositiveDuration = Annotated[Duration, Field(gt=timedelta(0))]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySpec(_Strict):
    """Temporal's retry policy for an activity; Temporal, not the agent, retries."""

    max_attempts: int = Field(default=3, ge=1, le=100)
    initial_interval: PositiveDuration = timedelta(seconds=1)
    backoff: float = Field(default=2.0, ge=1.0, le=10.0)
    max_interval: PositiveDuration | None = None
    non_retryable: list[str] = Field(default_factory=list, description="Error types that are never retried.")


class TimeoutSpec(_Strict):
    """Activity timeouts. ``start_to_close`` bounds one attempt."""

    start_to_close: PositiveDuration = timedelta(seconds=30)
    schedule_to_close: PositiveDuration | None = None
    heartbeat: PositiveDuration | None = None


LLM_ACTIVITY = "baton.llm_agent"
"""The activity every ``llm`` agent runs as."""


class AgentSpec(_Strict):
    """One specialised agent: an activity with a typed output contract.

    ``kind: python`` names its activity. ``kind: llm`` runs Baton's LLM activity
    with a prompt template (a file beside the spec, frozen into the snapshot as
    ``prompt_text``), a model, and a provider configured outside the spec.
    """

    kind: Literal["python", "llm"] = "python"
    activity: str | None = Field(default=None, min_length=1, description="Registered activity name.")
    output: str = Field(description="Import path of the output contract, 'module:Class'.")
    prompt: str | None = Field(default=None, description="llm: prompt template file, beside the spec.")
    prompt_text: str | None = Field(default=None, description="llm: the template itself (filled at load).")
    provider: str = Field(default="openai", description="llm: provider name in the providers file.")
    model: str | None = Field(default=None, description="llm: model; default: the provider's.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=1, le=200_000)
    repair_attempts: int = Field(default=1, ge=0, le=3, description="llm: re-asks after a bad reply.")
    description: str = ""
    local: bool = Field(
        default=False,
        description="Run as a local activity: for cheap deterministic agents only.",
    )
    timeouts: TimeoutSpec = TimeoutSpec()
    retry: RetrySpec = RetrySpec()

    @model_validator(mode="after")
    def _kind_fits(self) -> AgentSpec:
        if self.kind == "python":
            if self.activity is None:
                raise ValueError("a python agent needs 'activity'")
            if self.prompt or self.prompt_text or self.model:
                raise ValueError("prompt and model only apply to kind: llm")
        elif self.prompt_text is None:
            raise ValueError("an llm agent needs 'prompt' (a template file beside the spec)")
        if self.kind == "llm" and self.local:
            raise ValueError("llm agents cannot be local activities (they heartbeat and run long)")
        return self

    @property
    def activity_name(self) -> str:
        """The activity this agent runs as."""
        return self.activity or LLM_ACTIVITY


class Guard(_Strict):
    """A CEL expression that must be true before a handoff flows on."""

    expr: str = Field(min_length=1)
    message: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return {"expr": value} if isinstance(value, str) else value


class StepSpec(_Strict):
    """One handoff in the flow: an agent runs, its output is checked, then it flows on.

    A step with ``reviews`` is a review: when ``passes`` is false its
    ``findings`` go back to the reviewed step, which runs again (with every
    step between) for at most ``max_rounds`` revisions before the case escalates.
    """

    step: str = Field(pattern=IDENTIFIER)
    agent: str | None = Field(default=None, description="Defaults to the step name.")
    guards: list[Guard] = Field(default_factory=list)
    check_attempts: int = Field(
        default=2, ge=1, le=10, description="Runs allowed to produce a passing handoff."
    )
    reviews: str | None = None
    passes: str | None = Field(default=None, description="CEL: true when the review passes.")
    findings: str | None = Field(
        default=None, description="CEL: a list of findings sent back to the reviewed step."
    )
    max_rounds: int = Field(default=2, ge=0, le=10)
    when: str | None = Field(
        default=None,
        description="CEL over the case and earlier steps: the step runs only when true; otherwise it is "
        "skipped (audited) and reads as null in later rules.",
    )
    sees: list[str] | None = Field(
        default=None,
        description="What the agent is shown: 'case' and earlier steps by name (default: everything "
        "earlier). Enforced by the workflow, so independent reviewers stay independent.",
    )

    @property
    def agent_name(self) -> str:
        """The agent this step runs (the step name unless given)."""
        return self.agent or self.step


class MemberSpec(StepSpec):
    """A step of a parallel group: it runs at the same time as the group's other members.

    In a group that reviews a step, each member gives an opinion: ``passes`` (CEL, true =
    the group's first passing verdict, false = its most conservative one) or ``verdict``
    (CEL, a word on the group's ``scale``). ``optional`` members may fail their handoff
    checks without failing the group: the group carries on without them (recorded).
    """

    verdict: str | None = Field(default=None, description="CEL: this reviewer's word on the group's scale.")
    optional: bool = Field(
        default=False, description="If its handoff never passes, the group carries on without it (recorded)."
    )


Strategy = Literal["unanimous", "most_conservative", "quorum", "escalate_on_disagreement"]
DEFAULT_SCALE = ("reject", "approve")
"""The verdict scale of a review group that declares none: ``passes`` false, then true."""


class GroupSpec(_Strict):
    """Steps that run at once as separate activities, each handoff checked on its own.

    A group that ``reviews`` a step resolves its members' opinions by a declared
    ``resolve`` strategy; the resolution is a CEL variable named after the group
    (``verdict``, ``effect``, ``opinions``, ``decided_by``), so decision rules can read it.
    ``scale`` orders the verdicts, most conservative first; ``passing`` words let the
    reviewed step through, ``escalating`` words go to a person (``ladder``), every other
    word sends the reviewers' combined findings back to the reviewed step.
    """

    group: str = Field(pattern=IDENTIFIER, description="The group's name: a CEL variable for its resolution.")
    parallel: list[MemberSpec] = Field(min_length=2, max_length=10)
    when: str | None = Field(
        default=None, description="CEL over the case and earlier steps: otherwise the whole group is skipped."
    )
    reviews: str | None = Field(default=None, description="The earlier step the members review together.")
    resolve: Strategy | None = Field(default=None, description="How the reviewers' opinions are resolved.")
    scale: list[str] | None = Field(
        default=None, min_length=2, max_length=10, description="Verdict words, most conservative first."
    )
    passing: list[str] | None = Field(
        default=None, description="Verdicts that pass (default: the scale's last word)."
    )
    escalating: list[str] = Field(default_factory=list, description="Verdicts a person decides.")
    quorum: int | None = Field(default=None, ge=1, le=10, description="quorum: passing opinions needed.")
    ladder: str | None = Field(
        default=None,
        description="Who decides an escalation or disagreement (default: the spec's escalation).",
    )
    max_rounds: int = Field(default=2, ge=0, le=10)

    @property
    def step(self) -> str:
        """The group's name, where a flow item's name is wanted."""
        return self.group

    @property
    def verdicts(self) -> list[str]:
        """The scale in force (the default two words when none is declared)."""
        return list(self.scale or DEFAULT_SCALE)

    @property
    def passing_verdicts(self) -> list[str]:
        """Words that let the reviewed step through."""
        return list(self.passing) if self.passing is not None else [self.verdicts[-1]]

    def effect(self, verdict: str) -> Literal["pass", "escalate", "revise"]:
        """What a verdict word does: pass, go to a person, or send findings back."""
        if verdict in self.passing_verdicts:
            return "pass"
        return "escalate" if verdict in self.escalating else "revise"


def _flow_item_kind(value: Any) -> str:
    if isinstance(value, GroupSpec) or (isinstance(value, dict) and "group" in value):
        return "Group"
    return "Step"


FlowItem = Annotated[
    Annotated[StepSpec, Tag("Step")] | Annotated[GroupSpec, Tag("Group")],
    Discriminator(_flow_item_kind),
]
"""A flow entry: one step (``step:``), or a parallel group (``group:`` with ``parallel:``)."""


class Approval(_Strict):
    """Outcome of a rule that needs people: the named approval ladder."""

    approval: str


class DecisionRule(_Strict):
    """First matching rule wins; a rule without ``when`` always matches."""

    when: str | None = None
    then: Literal["auto", "reject"] | Approval
    reason: str | None = None

    @property
    def outcome(self) -> str:
        """``auto``, ``reject`` or ``approval:<ladder>``, for audit and diagrams."""
        return self.then if isinstance(self.then, str) else f"approval:{self.then.approval}"


class Rung(_Strict):
    """One rung of an approval ladder: who decides, and how long they have.

    ``remind`` sends a reminder that long after the rung opens (so before
    ``timeout``); ``approvers`` is how many different people of the role must
    approve (one rejection or change request from any of them decides).
    """

    role: str = Field(min_length=1)
    timeout: PositiveDuration
    remind: PositiveDuration | None = None
    approvers: int = Field(default=1, ge=1, le=5)

    @model_validator(mode="after")
    def _reminder_before_timeout(self) -> Rung:
        if self.remind is not None and self.remind >= self.timeout:
            raise ValueError("remind must come before the timeout")
        return self


class Inbox(_Strict):
    """How a waiting case shows in ``baton pending`` and the Temporal UI (CEL over the case)."""

    amount: str | None = Field(default=None, description="CEL: the number to show and filter on.")
    summary: str | None = Field(default=None, description="CEL: a one-line string.")


class Escalation(_Strict):
    """Where a case goes when its agents cannot produce a handoff that passes."""

    ladder: str


class ActionSpec(_Strict):
    """The side effect a case ends in; receives an idempotency key from the workflow."""

    activity: str = Field(min_length=1)
    timeouts: TimeoutSpec = TimeoutSpec()
    retry: RetrySpec = RetrySpec(max_attempts=10)


class ProcessSpec(_Strict):
    """A whole governed process."""

    process: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    version: int = Field(ge=1)
    description: str = ""
    input: str = Field(description="Import path of the case contract, 'module:Class'.")
    agents: dict[str, AgentSpec] = Field(min_length=1)
    flow: list[FlowItem] = Field(min_length=1)
    decide: list[DecisionRule] = Field(min_length=1)
    ladders: dict[str, list[Rung]] = Field(default_factory=dict)
    escalation: Escalation | None = None
    on_timeout: Literal["reject", "hold"] = Field(
        default="reject",
        description="When the last rung times out: reject, or hold the case for a person.",
    )
    changes_go_to: str | None = Field(
        default=None,
        description="Step that gets a reviewer's request_changes feedback "
        "(default: the step the last review reviews, else the last step).",
    )
    inbox: Inbox = Inbox()
    continue_as_new_after: int = Field(
        default=10_000,
        ge=20,
        description="History events after which a case carries on in a fresh run (Temporal caps history).",
    )
    token_budget: int | None = Field(
        default=None, ge=1, description="LLM tokens a case may spend before it escalates."
    )
    action: ActionSpec | None = Field(
        default=None,
        description="The side effect an approved case ends in. Without one the process is advisory: "
        "an approved case ends 'approved' and its checked handoffs are the result.",
    )

    @field_validator("ladders")
    @classmethod
    def _ladders_have_rungs(cls, value: dict[str, list[Rung]]) -> dict[str, list[Rung]]:
        empty = [name for name, rungs in value.items() if not rungs]
        if empty:
            raise ValueError(f"ladder {empty[0]!r} has no rungs")
        return value

    def steps(self) -> list[StepSpec]:
        """Every step, groups' members in place: the agents the flow can run."""
        found: list[StepSpec] = []
        for item in self.flow:
            found.extend(item.parallel if isinstance(item, GroupSpec) else [item])
        return found

    def names(self) -> list[str]:
        """Every name rules may read from the flow: steps, members and groups, in flow order."""
        found: list[str] = []
        for item in self.flow:
            if isinstance(item, GroupSpec):
                found.append(item.group)
                found.extend(m.step for m in item.parallel)
            else:
                found.append(item.step)
        return found

    def step(self, name: str) -> StepSpec:
        """The step (or group member) called ``name``."""
        return next(s for s in self.steps() if s.step == name)

    def step_index(self, name: str) -> int:
        """Position in the flow of step ``name``, or of the group holding or named ``name``."""
        return next(i for i, item in enumerate(self.flow) if name in item_names(item))

    def revision_step(self) -> str:
        """The step a human's ``request_changes`` sends its feedback to."""
        if self.changes_go_to:
            return self.changes_go_to
        reviews = [s.reviews for s in self.flow if s.reviews]
        last = self.flow[-1]
        return (
            reviews[-1] if reviews else (last.parallel[0].step if isinstance(last, GroupSpec) else last.step)
        )

    def canonical_json(self) -> str:
        """Stable JSON of the spec: the bytes its sha256 is taken over."""
        return self.model_dump_json(exclude_defaults=False, round_trip=True)

    def sha256(self) -> str:
        """Digest recorded in each case's memo: which governance the case ran under."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


class SpecSnapshot(BaseModel):
    """The spec a case starts under, passed in whole so later edits never reach it."""

    spec: ProcessSpec
    sha256: str
    source: str = ""


def item_names(item: StepSpec | GroupSpec) -> list[str]:
    """The names a flow item puts in the case's context: a step's, or a group's and its members'."""
    if isinstance(item, GroupSpec):
        return [item.group, *(m.step for m in item.parallel)]
    return [item.step]
