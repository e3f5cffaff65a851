"""CEL evaluation for guards, review verdicts and decision rules.

CEL is evaluated by a maintained library (``common-expression-language``),
never by Python ``eval``. It is pure and deterministic, so the workflow calls
it directly; compiled programs are cached per expression text.

Rules run inside workflow code, where a slow one stalls every case on the worker
(Temporal's deadlock detector fires after 2 s). CEL has no loops but its
comprehension macros (``all``, ``exists``, ``exists_one``, ``map``, ``filter``), and
nesting them over lists from the case multiplies their sizes. The library offers
no cost limit, so Baton bounds cost itself, deterministically (the same data and
rule always give the same answer, as replay requires):

- at validate time, a rule nesting more than ``MAX_NESTING`` comprehensions is refused;
- before each evaluation, the cost is estimated as (the largest list or map the rule
  can reach) to the power of its comprehension nesting, and a rule over
  ``COST_BUDGET`` is not run: it fails like any broken rule (a failed check, an
  escalation), with a message saying why.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import cel

MACROS = ("all", "exists", "exists_one", "map", "filter")
MAX_NESTING = 2
"""Comprehensions a rule may nest; beyond that its cost is a high power of list sizes."""
COST_BUDGET = 1_000_000
"""Estimated iterations a rule may take (a few hundred milliseconds at most)."""
_MACRO_CALL = re.compile(r"\.(?:" + "|".join(MACROS) + r")\s*\(")


class RuleError(Exception):
    """An expression could not be compiled or evaluated; the message says why."""


@lru_cache(maxsize=4096)
def nesting(expr: str) -> int:
    """How deeply ``expr`` nests comprehension macros (0 for none), read from its text.

    String literals are skipped, so a quoted ``.all(`` does not count.
    """
    text = _without_strings(expr)
    depth = deepest = 0
    stack: list[bool] = []
    position = 0
    while position < len(text):
        match = _MACRO_CALL.match(text, position) if text[position] == "." else None
        if match is not None:
            stack.append(True)
            depth += 1
            deepest = max(deepest, depth)
            position = match.end()
            continue
        char = text[position]
        if char == "(":
            stack.append(False)
        elif char == ")" and stack:
            depth -= 1 if stack.pop() else 0
        position += 1
    return deepest


def estimated_cost(expr: str, context: dict[str, Any]) -> int:
    """Iterations ``expr`` may take over ``context``: the largest reachable collection
    to the power of its comprehension nesting (at least 1)."""
    depth = nesting(expr)
    if depth == 0:
        return 1
    names = referenced_names(expr)
    largest: int = max((_largest_collection(context[n]) for n in names if n in context), default=0)
    cost: int = max(1, largest) ** depth
    return cost


def _largest_collection(value: Any, budget: int = 100_000) -> int:
    """Size of the largest list or map inside ``value`` (a bounded walk, no recursion)."""
    largest, pending, seen = 0, [value], 0
    while pending and seen < budget:
        item = pending.pop()
        seen += 1
        if isinstance(item, dict):
            largest = max(largest, len(item))
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            largest = max(largest, len(item))
            pending.extend(item)
        elif isinstance(item, str):
            largest = max(largest, len(item) // 64)  # long strings cost too (size, matches)
    return largest


def _without_strings(expr: str) -> str:
    """``expr`` with the contents of string literals blanked (lengths kept)."""
    out: list[str] = []
    quote: str | None = None
    escaped = False
    for char in expr:
        if quote is None:
            if char in "'\"":
                quote = char
            out.append(char)
            continue
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == quote:
            quote = None
            out.append(char)
            continue
        out.append(" ")
    return "".join(out)


@lru_cache(maxsize=4096)
def compile_expr(expr: str) -> cel.Program:
    """Compile ``expr`` once; raises RuleError with the parser's message on bad syntax."""
    try:
        return cel.compile(expr)
    except (ValueError, RuntimeError) as exc:
        raise RuleError(f"CEL syntax error in {expr!r}: {_first_line(exc)}") from None


def referenced_names(expr: str) -> list[str]:
    """Top-level identifiers an expression reads (includes macro-bound names)."""
    return compile_expr(expr).variables()


def evaluate(expr: str, context: dict[str, Any]) -> Any:
    """Evaluate ``expr`` over ``context``; any failure becomes a RuleError.

    A rule whose estimated cost is over :data:`COST_BUDGET` is not run at all.
    """
    program = compile_expr(expr)
    cost = estimated_cost(expr, context)
    if cost > COST_BUDGET:
        raise RuleError(
            f"{expr!r} is over its cost budget: about {cost:,} iterations ({nesting(expr)} nested "
            f"comprehensions over up to {round(cost ** (1 / nesting(expr))):,} items; the budget is "
            f"{COST_BUDGET:,}). Not run: simplify the rule or bound the list in the contract."
        )
    try:
        return program.execute(context)
    except KeyError as exc:
        raise RuleError(f"{expr!r}: no such field {exc.args[0]!r}") from None
    except Exception as exc:  # the extension raises several types; all mean "failed"
        raise RuleError(f"{expr!r}: {_first_line(exc)}") from None


def evaluate_bool(expr: str, context: dict[str, Any]) -> bool:
    """Evaluate a predicate; anything but a boolean result is an error, not falsy."""
    value = evaluate(expr, context)
    if not isinstance(value, bool):
        raise RuleError(f"{expr!r} gave {type(value).__name__} {value!r}, expected a boolean")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
