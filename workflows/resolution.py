"""Resolving a parallel group's reviewers: each opinion read by the spec's CEL, then one rule.

A group of reviewers judges the same handoff independently. Each member's opinion
is a word on the group's verdict scale (``passes`` maps to the scale's ends); the
group's declared strategy turns the opinions into one effect: ``pass`` (flow on),
``revise`` (the reviewers' combined findings go back to the reviewed step) or
``escalate`` (a person sees every opinion and decides). Pure functions of the spec
and the handoffs, so they run inside the workflow and replay identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from baton.messages import Feedback, JsonDict
    from baton.rules import RuleError, evaluate, evaluate_bool
    from baton.spec.models import GroupSpec, MemberSpec

Effect = Literal["pass", "revise", "escalate"]


@dataclass
class Opinion:
    """One reviewer's verdict on the group's scale, what it does, and its findings."""

    member: str
    verdict: str
    effect: Effect
    findings: list[Feedback] = field(default_factory=list)


@dataclass
class Resolution:
    """The group's answer: its effect, the verdict it stands on, and why."""

    effect: Effect
    verdict: str
    reason: str
    findings: list[Feedback] = field(default_factory=list)


def opinion_of(group: GroupSpec, member: MemberSpec, context: JsonDict) -> Opinion:
    """Read ``member``'s opinion from its handoff (in ``context``) by the spec's CEL.

    Raises:
        RuleError: the expression failed, or named a verdict not on the scale.
    """
    scale = group.verdicts
    if member.verdict is not None:
        word = evaluate(member.verdict, context)
        if not isinstance(word, str) or word not in scale:
            raise RuleError(f"{member.step}'s verdict {word!r} is not on the scale ({', '.join(scale)})")
    else:
        assert member.passes is not None, "validated: a reviewer gives passes or verdict"
        word = group.passing_verdicts[0] if evaluate_bool(member.passes, context) else scale[0]
    effect = group.effect(word)
    findings: list[Feedback] = []
    if effect != "pass":
        findings = findings_of(member.findings, context, by=member.step) or [
            Feedback(source="review", message=f"{member.step}: {word}", data={"reviewer": member.step})
        ]
    return Opinion(member.step, word, effect, findings)


def findings_of(expr: str | None, context: JsonDict, *, by: str = "") -> list[Feedback]:
    """A review's findings by its CEL (strings or objects with ``message``), as feedback;
    ``by`` marks each with the reviewer who said it (a group combines several)."""
    if expr is None:
        return []
    raw = evaluate(expr, context)
    prefix = f"{by}: " if by else ""
    found: list[Feedback] = []
    for item in raw if isinstance(raw, list) else [raw]:
        if isinstance(item, dict):
            found.append(
                Feedback(source="review", message=prefix + str(item.get("message", item)), data=item)
            )
        else:
            found.append(Feedback(source="review", message=prefix + str(item)))
    return found


def resolve(group: GroupSpec, opinions: list[Opinion]) -> Resolution:
    """Apply the group's strategy to the opinions given (left-out members give none)."""
    if not opinions:
        return Resolution("escalate", group.verdicts[0], "no reviewer gave an opinion")
    scale = group.verdicts
    worst = min(opinions, key=lambda o: scale.index(o.verdict))
    passing = [o for o in opinions if o.effect == "pass"]
    dissent = [o for o in opinions if o.effect != "pass"]
    findings = [f for o in dissent for f in o.findings]
    said = ", ".join(f"{o.member} {o.verdict}" for o in opinions)
    if group.resolve == "quorum":
        need = group.quorum or len(group.parallel)
        if len(passing) >= need:
            least = min(passing, key=lambda o: scale.index(o.verdict))
            return Resolution("pass", least.verdict, f"{len(passing)} of {need} needed passed ({said})")
        if not dissent:  # short of reviewers, not of agreement: nothing to revise, a person decides
            reason = f"only {len(opinions)} reviewer(s) gave an opinion; the quorum is {need} ({said})"
            return Resolution("escalate", worst.verdict, reason)
        shortfall = f"only {len(passing)} of {need} needed passed ({said})"
        return Resolution(_dissent_effect(dissent, scale), worst.verdict, shortfall, findings)
    if group.resolve == "most_conservative":
        effect = group.effect(worst.verdict)
        return Resolution(
            effect, worst.verdict, f"most conservative: {worst.member} {worst.verdict} ({said})", findings
        )
    if group.resolve == "escalate_on_disagreement":
        effects = {o.effect for o in opinions}
        if len(effects) > 1:
            return Resolution("escalate", worst.verdict, f"the reviewers disagree ({said})", findings)
        return Resolution(effects.pop(), worst.verdict, f"the reviewers agree ({said})", findings)
    if dissent:  # unanimous
        return Resolution(_dissent_effect(dissent, scale), worst.verdict, f"not unanimous ({said})", findings)
    return Resolution("pass", worst.verdict, f"unanimous ({said})")


def _dissent_effect(dissent: list[Opinion], scale: list[str]) -> Effect:
    """What the most conservative dissent does: findings back, or (an escalating word) a person."""
    return min(dissent, key=lambda o: scale.index(o.verdict)).effect
