"""Draw a process spec as a Mermaid flowchart: agents, checks, reviews, rules, ladders.

The drawing is generated from the same validated model the workflow runs, so
what reviewers approve on paper is what executes.
"""

from __future__ import annotations

from baton.durations import format_duration
from baton.spec.models import ProcessSpec


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
    for step in spec.flow:
        agent = spec.agents[step.agent_name]
        output = agent.output.rpartition(":")[2]
        if agent.kind == "llm":
            runs = f"LLM {agent.model or 'default model'} via {agent.provider}"
        else:
            runs = f"{agent.activity} ({'local activity' if agent.local else 'activity'})"
        sees = "" if step.sees is None else f"<br/>sees only: {', '.join(step.sees) or 'nothing earlier'}"
        sees += "" if step.when is None else f"<br/>only when: {step.when}"
        lines.append(f"  {step.step}[{_label(f'{step.step}: {runs} → {output}{sees}')}]")
        lines.append(f"  {previous} --> {step.step}")
        check = f"{step.step}_check"
        guards = "<br/>".join(g.expr for g in step.guards) or "no guards"
        lines.append(f"  {check}{{{_label(f'handoff check<br/>{output} contract<br/>{guards}')}}}")
        lines.append(f"  {step.step} --> {check}")
        lines.append(
            f"  {check} -- {_label(f'fails {step.check_attempts}× (re-run with feedback)')} --> {escalate_to}"
        )
        previous = check
        if step.reviews:
            review = f"{step.step}_review"
            lines.append(f"  {review}{{{_label(f'review passes?<br/>{step.passes}')}}}")
            lines.append(f"  {previous} -- pass --> {review}")
            lines.append(
                f"  {review} -- {_label(f'no: findings back (≤{step.max_rounds} rounds)')} --> {step.reviews}"
            )
            lines.append(f"  {review} -- {_label('still no')} --> {escalate_to}")
            previous = review
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
        approve = "approve"
        if spec.escalation and name == spec.escalation.ladder:
            approve = "approve: failed handoff runs again / review overruled"
        lines.append(f"  ladder_{name} -- {_label(approve)} --> action")
        lines.append(f"  ladder_{name} -- reject --> rejected")
        lines.append(f"  ladder_{name} -- {_label(f'timeout → {spec.on_timeout}')} --> rejected")
    if spec.action is not None:
        lines.append(f"  action[/{_label(f'action: {spec.action.activity} (idempotent)')}/]")
        lines.append("  action --> actioned([actioned])")
    else:
        lines.append("  action([approved: no action, the handoffs are the result])")
    lines.append(f"  rejected([{_label(f'rejected (safe default: {spec.on_timeout})')}])")
    return "\n".join(lines) + "\n"
