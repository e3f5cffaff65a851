"""Deterministic workflow code: the process interpreter and the approval ladder.

Nothing here does I/O, reads clocks or calls httpx; every side effect is an
activity. Modules from ``baton`` are imported through
``workflow.unsafe.imports_passed_through()`` because they are pure.
"""

from workflows.governed import GovernedProcess

__all__ = ["GovernedProcess"]
