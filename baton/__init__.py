"""Baton: governed multi-agent processes on Temporal.

The names here are the API an app author writes against (pinned by
``tests/test_exported_names.py``):

- ``AgentInput``: what every agent activity receives (the case, the earlier checked
  handoffs it may see, and ``feedback`` when it runs again). An agent returns its
  output contract, a pydantic model.
- ``Feedback``: why an agent runs again (a failed check, a review finding, a person).
- ``ActionInput`` / ``ActionResult``: the side effect's input, with an idempotency key
  unique to the case, and what it did (``applied_now`` false when a retry found it done).
- ``ApprovalRecord``: an accepted human decision, as the action sees it.
- ``AppContext``: what an app's activity registry receives (home dir, clean-up hooks).
- The two exception roots (``BatonUsageError``, ``BatonRuntimeError``) and their kin.

Contracts run inside workflow code (every handoff is checked there), so their
validators must be pure: no clocks, I/O or randomness. Agents and actions are
activities and may do I/O. Everything importable from here is sandbox-safe.
"""

from baton.app import AppContext
from baton.errors import BatonError, BatonRuntimeError, BatonUsageError, CaseInputError, SpecError
from baton.messages import ActionInput, ActionResult, AgentInput, ApprovalRecord, Feedback

__all__ = [
    "ActionInput",
    "ActionResult",
    "AgentInput",
    "AppContext",
    "ApprovalRecord",
    "BatonError",
    "BatonRuntimeError",
    "BatonUsageError",
    "CaseInputError",
    "Feedback",
    "SpecError",
]
