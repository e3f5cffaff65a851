"""CEL evaluation for guards, review verdicts and decision rules.

CEL is evaluated by a maintained library (``common-expression-language``),
never by Python ``eval``. It is pure and deterministic, so the workflow calls
it directly; compiled programs are cached per expression text.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import cel


class RuleError(Exception):
    """An expression could not be compiled or evaluated; the message says why."""


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
    """Evaluate ``expr`` over ``context``; any failure becomes a RuleError."""
    program = compile_expr(expr)
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
