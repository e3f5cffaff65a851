"""Baton's exception roots.

Two roots, so callers can tell a mistake they can fix from a failure they must
handle:

    BatonError
    ├── BatonUsageError        misuse: a bad spec, a bad case file, a bad call
    │   ├── SpecError          the process spec has problems (all of them listed)
    │   └── CaseInputError     a case does not match the process's input contract
    └── BatonRuntimeError      something failed while running (server, worker, I/O)

At the activity boundary failures become ``temporalio.exceptions.ApplicationError``
so Temporal's retry policy decides what happens next.
"""

from __future__ import annotations


class BatonError(Exception):
    """Root of every error Baton raises on purpose."""


class BatonUsageError(BatonError):
    """The caller asked for something that cannot work as asked."""


class SpecError(BatonUsageError):
    """A process spec failed validation.

    Attributes:
        problems: every problem found, each prefixed with its location
            (``flow[2].agent (line 31): unknown agent 'polcy'``).
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{listing}")


class CaseInputError(BatonUsageError):
    """A case does not match the process's input contract; nothing was started.

    Attributes:
        problems: one line per bad field (``customer_id: Field required``).
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("case input refused:\n" + "\n".join(f"  {p}" for p in problems))


class BatonRuntimeError(BatonError):
    """A failure while running: the server is unreachable, a process died, I/O failed."""
