"""Draw a process spec as a Mermaid flowchart: agents, checks, reviews, rules, ladders.

The drawing is generated from the same validated model the workflow runs, so
what reviewers approve on paper is what executes.
"""

from __future__ import annotations

from baton.durations import format_duration
from baton.spec.models import GroupSpec, MemberSpec, ProcessSpec, StepSpec


def _label(text: str) -> str:
    escaped = text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    escaped = escaped.replace("#lt;br/#gt;", "<br/>")  # our own line breaks stay markup
    return f'"{escaped}"'


def mermaid(spec: ProcessSpec) -> str:
    """The Mermaid ``flowchart`` source for ``spec``."""
    contract = spec.input.rpartition(":")[2]
    lines = [
        "flowchart TD",
        f"  start([{_label(f'case: {contract}')}])",
    ]
    escalate_to = f"ladder_{spec.escalation.ladder}" if spec.escalation else "rejected"
    previous = "start"
    for item in spec.flow:
        if isinstance(item, GroupSpec):
            previous = _group(spec, item, previous, escalate_to, lines)
            continue
        previous = _step(spec, item, previous, escalate_to, lines)
        if item.reviews:
            review = f"{item.step}_review"
            lines.append(f"  {review}{{{_label(f'review passes?<br/>{item.passes}')}}}")
            lines.append(f"  {previous} -- pass --> {review}")
            lines.append(
                f"  {review} -- {_label(f'no: findings back (≤{item.max_rounds} rounds)')} --> {item.reviews}"
            )
            lines.append(f"  {review} -- {_label('still no')} --> {escalate_to}")
            previous = review
    first = spec.flow[0].parallel[0].step if isinstance(spec.flow[0], GroupSpec) else spec.flow[0].step
    lines.append("  decide{decision rules}")
    lines.append(f"  {previous} -- pass --> decide")
    for i, rule in enumerate(spec.decide):
        when = rule.when or "otherwise"
        target = {"auto": "action", "reject": "rejected"}.get(str(rule.then))
        if target is None:
            assert not isinstance(rule.then, str)
            target = f"ladder_{rule.then.approval}"
        lines.append(f"  decide -- {_label(f'{i + 1}. {when}')} --> {target}")
    for name, rungs in spec.ladders.items():
        chain = " → ".join(
            f"{r.role}{f' ×{r.approvers}' if r.approvers > 1 else ''} ({format_duration(r.timeout)})"
            for r in rungs
        )
        lines.append(f"  ladder_{name}[[{_label(f'approval ladder {name}:<br/>{chain}')}]]")
        escalations = {spec.escalation.ladder} if spec.escalation else set()
        escalations |= {g.ladder for g in spec.flow if isinstance(g, GroupSpec) and g.ladder}
        if name in escalations:
            # after an escalation the flow goes on and the decision rules still apply
            lines.append(f"  ladder_{name} -- {_label('approve: failed handoff runs again')} --> {first}")
            lines.append(
                f"  ladder_{name} -- {_label('approve: reviewer overruled, the rules decide')} --> decide"
            )
        else:
            lines.append(f"  ladder_{name} -- approve --> action")
        lines.append(f"  ladder_{name} -- reject --> rejected")
        lines.append(f"  ladder_{name} -- {_label(f'timeout → {spec.on_timeout}')} --> rejected")
    if spec.action is not None:
        lines.append(f"  action[/{_label(f'action: {spec.action.activity} (idempotent)')}/]")
        lines.append("  action --> actioned([actioned])")
    else:
        lines.append("  action([approved: no action, the handoffs are the result])")
    lines.append(f"  rejected([{_label(f'rejected (safe default: {spec.on_timeout})')}])")
    return "\n".join(lines) + "\n"


def _step(
    spec: ProcessSpec, step: StepSpec, previous: str, escalate_to: str, lines: list[str], join: str = ""
) -> str:
    """Draw one step and its handoff check after ``previous``; returns the check's node.

    An optional group member that never passes goes on to the group's ``join``.
    """
    agent = spec.agents[step.agent_name]
    output = agent.output.rpartition(":")[2]
    if agent.kind == "llm":
        runs = f"LLM {agent.model or 'default model'} via {agent.provider}"
    else:
        runs = f"{agent.activity} ({'local activity' if agent.local else 'activity'})"
    notes = "" if step.sees is None else f"<br/>sees only: {', '.join(step.sees) or 'nothing earlier'}"
    notes += "" if step.when is None else f"<br/>only when: {step.when}"
    if isinstance(step, MemberSpec):
        opinion = step.verdict or step.passes
        notes += "" if opinion is None else f"<br/>opinion: {opinion}"
        notes += "<br/>optional" if step.optional else ""
    lines.append(f"  {step.step}[{_label(f'{step.step}: {runs} → {output}{notes}')}]")
    lines.append(f"  {previous} --> {step.step}")
    check = f"{step.step}_check"
    guards = "<br/>".join(g.expr for g in step.guards) or "no guards"
    lines.append(f"  {check}{{{_label(f'handoff check<br/>{output} contract<br/>{guards}')}}}")
    lines.append(f"  {step.step} --> {check}")
    failing = f"fails {step.check_attempts}× (re-run with feedback)"
    if isinstance(step, MemberSpec) and step.optional:
        failing += ": carried on without it"
        lines.append(f"  {check} -. {_label(failing)} .-> {join}")
    else:
        lines.append(f"  {check} -- {_label(failing)} --> {escalate_to}")
    return check


def _group(spec: ProcessSpec, group: GroupSpec, previous: str, escalate_to: str, lines: list[str]) -> str:
    """Draw a parallel group: fork, each member and its check, join, and the resolution."""
    fork, join = f"{group.group}_fork", f"{group.group}_join"
    when = "" if group.when is None else f"<br/>only when: {group.when}"
    lines.append(f"  {fork}[/{_label(f'parallel group {group.group}{when}')}\\]")
    lines.append(f"  {previous} --> {fork}")
    lines.append(f"  {join}[\\{_label(f'{group.group}: every member checked')}/]")
    for member in group.parallel:
        check = _step(spec, member, fork, escalate_to, lines, join)
        lines.append(f"  {check} -- pass --> {join}")
    if group.reviews is None:
        return join
    resolve = f"{group.group}_resolve"
    words = " > ".join(group.verdicts)
    detail = f"resolve: {group.resolve}"
    if group.resolve == "quorum":
        detail += f" ({group.quorum} of {len(group.parallel)})"
    detail += f"<br/>scale: {words}<br/>passing: {', '.join(group.passing_verdicts)}"
    lines.append(f"  {resolve}{{{_label(detail)}}}")
    lines.append(f"  {join} --> {resolve}")
    back = f"revise: combined findings back (≤{group.max_rounds} rounds)"
    lines.append(f"  {resolve} -- {_label(back)} --> {group.reviews}")
    people = group.ladder or (spec.escalation.ladder if spec.escalation else None)
    reasons = ["disagreement"] if group.resolve == "escalate_on_disagreement" else []
    reasons += group.escalating
    if reasons:
        target = f"ladder_{people}" if people else "rejected"
        lines.append(f"  {resolve} -- {_label(' / '.join(reasons) + ': a person decides')} --> {target}")
    lines.append(f"  {resolve} -- {_label('still no')} --> {escalate_to}")
    return resolve
