"""``baton show``: what a person deciding on a case needs to see, as text.

The case and every checked handoff field by field (in the order its contract declares
them), the earlier drafts as a diff, the checks and rules that led here, and what the
case waits for: the ladder position, the deadline, who already approved, and the digest
of the proposal a decision must name. Every value comes from outside (a case, an
agent's output), so each is escaped before it reaches a terminal.
"""

from __future__ import annotations

import difflib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from baton.durations import format_duration
from baton.messages import CaseFile, JsonDict
from baton.safetext import printable

FIELD_WIDTH = 22
VALUE_LIMIT = 400
"""Characters of one field's value shown (the ``--json`` output holds them whole)."""


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = printable(text)
    return text if len(text) <= VALUE_LIMIT else text[:VALUE_LIMIT] + f"… ({len(text)} characters)"


def field_lines(data: JsonDict) -> list[str]:
    """``field  value`` lines, in the order the handoff holds them (its contract's order)."""
    return [f"  {printable(name):<{FIELD_WIDTH}} {_value(value)}" for name, value in data.items()]


def draft_changes(previous: JsonDict, current: JsonDict) -> list[str]:
    """The field lines that changed between two versions of a handoff, ``-`` old and ``+`` new."""
    diff = difflib.unified_diff(field_lines(previous), field_lines(current), lineterm="", n=0)
    return [line for line in diff if not line.startswith(("---", "+++", "@@"))]


def contract_name(path: str | None) -> str:
    """A contract's class name from its import path (a group's resolution has none)."""
    return path.rpartition(":")[2] if path else "resolution"


def _relative(deadline: datetime, now: datetime) -> str:
    seconds = int((deadline - now).total_seconds())
    return f"in {format_duration(timedelta(seconds=seconds))}" if seconds > 0 else "overdue"


def format_casefile(case: CaseFile, *, now: datetime | None = None) -> list[str]:
    """The lines ``baton show`` prints."""
    now = now or datetime.now(UTC)
    lines = [
        f"{printable(case.case_id)}  {printable(case.process)} v{case.spec_version}  "
        f"spec {case.spec_sha256[:12]}  submitted by {printable(case.submitted_by)}",
        f"  stage: {printable(case.stage)}",
    ]
    if case.awaiting is not None:
        a = case.awaiting
        lines.append(
            f"  waiting for {printable(a.role)} (ladder {printable(a.ladder)}, rung {a.rung}/{a.rungs})"
        )
        if a.deadline is not None:
            lines.append(f"  deadline: {a.deadline.isoformat()} ({_relative(a.deadline, now)})")
        else:
            lines.append("  deadline: none (held)")
        lines.append(f"  why: {printable(a.purpose)}")
        approved = ", ".join(printable(p) for p in a.approved_by) or "nobody yet"
        lines.append(f"  approvals: {len(a.approved_by)} of {a.approvers_needed} ({approved})")
        if a.proposal:
            lines.append(f"  proposal: {a.proposal}")
            lines.append(f"    decide on exactly this: baton approve {printable(case.case_id)} --as YOU "
                         f"--proposal {a.proposal[:12]}")  # fmt: skip
    if case.outcome is not None:
        lines.append(f"  outcome: {case.outcome.value}: {printable(case.reason or '')}")
    lines += ["", f"case ({contract_name(case.input_contract)})", *field_lines(case.case)]
    for name, output in case.handoffs.items():
        earlier = case.drafts.get(name, [])
        note = f", version {len(earlier) + 1}" if earlier else ""
        lines += [
            "",
            f"{printable(name)} ({contract_name(case.contracts.get(name))}{note})",
            *field_lines(output),
        ]
        if earlier:
            changed = [f"  {line}" for line in draft_changes(earlier[-1], output)]
            lines.append(f"  changes since the previous version of {printable(name)}:" if changed
                         else f"  (unchanged since the previous version of {printable(name)})")  # fmt: skip
            lines += changed
    if case.checks:
        lines += ["", "checks, reviews and rules that led here"]
        lines += [f"  #{e.seq:<3} {e.kind.value:<18} {printable(e.detail)}" for e in case.checks]
    lines += ["", "path: " + " → ".join(printable(p) for p in case.path)]
    return lines
