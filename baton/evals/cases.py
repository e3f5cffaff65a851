"""The labelled case set ``baton eval`` measures against: one JSON object per line.

Each line is a case the process takes as input, the outcome a correct process reaches,
the fields of the committed action that matter, and what the scripted people decide
when the case waits, so an eval runs unattended and still counts human touches::

    {"id": "window-late-1", "case": {"order_id": "ORD-1", ...},
     "expect": {"outcome": "actioned", "action": {"amount": {"equals": 120.0, "tolerance": 0.01}}},
     "human": [{"decide": "approve", "as": "alice", "comment": "checked"}], "tags": ["refund-window"]}

Blank lines and lines starting with ``#`` are skipped. A bad file is refused whole,
with every problem named by file, line and field, before any case runs: an eval that
stops at case 140 because of a typo wastes the 139 before it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from baton.contracts import validation_problems
from baton.errors import BatonUsageError
from baton.messages import JsonDict
from baton.scenario import Person

Label = Literal["actioned", "rejected", "escalated"]
"""What a correct process does with the case: commits the action, refuses it, or asks a person."""

JsonScalar = bool | int | float | str | None

MAX_PROBLEMS = 20
"""Problems listed before the rest are summarised: enough to fix a file, short enough to read."""


class FieldExpectation(BaseModel):
    """The value one field of the committed action must have.

    ``tolerance`` is for numbers only (amounts computed by an agent are rarely exact);
    without it a number must be equal.
    """

    model_config = ConfigDict(extra="forbid")
    equals: JsonScalar
    tolerance: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _tolerance_needs_a_number(self) -> FieldExpectation:
        if self.tolerance is not None and not _is_number(self.equals):
            raise ValueError("tolerance applies to numbers only")
        return self

    def matches(self, value: Any) -> bool:
        """Whether ``value`` (a field of the committed action) is what the label expects."""
        if _is_number(self.equals) and _is_number(value):
            return bool(abs(value - self.equals) <= (self.tolerance or 0.0))
        # bool is an int in Python: True must not pass for 1, nor 1 for True
        return type(value) is type(self.equals) and bool(value == self.equals)


class Expectation(BaseModel):
    """The label: the outcome and, optionally, the committed action's fields that matter."""

    model_config = ConfigDict(extra="forbid")
    outcome: Label
    action: dict[str, FieldExpectation] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_action_on_a_refusal(self) -> Expectation:
        if self.outcome == "rejected" and self.action:
            raise ValueError("a case labelled rejected commits no action, so expects no action fields")
        return self

    def action_mismatches(self, action: JsonDict | None) -> list[str]:
        """The expected fields the committed action misses or gets wrong (empty: all match)."""
        given = action or {}
        return [
            name for name, want in self.action.items() if name not in given or not want.matches(given[name])
        ]


class EvalCase(BaseModel):
    """One labelled case.

    The id is kept plain (letters, digits, ``.``, ``_``, ``:``, ``-``) because it becomes
    part of workflow ids, file names and terminal tables.
    """

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    case: JsonDict
    expect: Expectation
    human: list[Person] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    after: str | None = Field(
        default=None,
        description="A case that must finish first in the same arm (a repeated refund on one order "
        "depends on the first); every other case is independent and may run at once.",
    )


def load_cases(path: str | Path) -> list[EvalCase]:
    """Read a JSONL case set; refuse it whole if any line is bad.

    Args:
        path: the ``.jsonl`` file.

    Returns:
        The cases in file order.

    Raises:
        BatonUsageError: the file cannot be read, a line is not a JSON object, a field is
            wrong (``cases.jsonl:14: expect.outcome: Input should be ...``), an id repeats
            (both lines named), or there are no cases at all.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatonUsageError(f"{path}: cannot read the case set: {exc}") from None
    cases: list[EvalCase] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        case, line_problems = _parse_line(stripped)
        problems += [f"{path}:{number}: {problem}" for problem in line_problems]
        if case is None:
            continue
        if case.id in first_line:
            problems.append(f"{path}:{number}: id {case.id!r} repeats line {first_line[case.id]}")
            continue
        if case.after is not None and case.after not in first_line:
            problems.append(f"{path}:{number}: after: {case.after!r} is not a case on an earlier line")
        first_line[case.id] = number
        cases.append(case)
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more")
        raise BatonUsageError("\n".join(shown))
    if not cases:
        raise BatonUsageError(f"{path}: no cases (every line is blank or a # comment)")
    return cases


def _parse_line(line: str) -> tuple[EvalCase | None, list[str]]:
    """One line → the case, or the problems (``field: message``) that refuse it."""
    try:
        data = json.loads(line, parse_constant=_refuse_constant)
    except ValueError as exc:
        return None, [f"not JSON: {exc}"]
    if not isinstance(data, dict):
        return None, [f"expected a JSON object, got {_json_kind(data)}"]
    try:
        return EvalCase.model_validate(data), []
    except ValidationError as exc:
        return None, validation_problems(exc)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(type(value), "null")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
