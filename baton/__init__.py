"""Baton: governed multi-agent processes on Temporal.

The library both sides import. Everything reachable from here is pure and
sandbox-safe (spec models, rule evaluation, contracts, messages), so the
workflow interpreter can use it; the client API, CLI and dev-server helpers
live in their own modules and are imported explicitly.
"""

from baton.errors import BatonError, BatonRuntimeError, BatonUsageError, CaseInputError, SpecError

__all__ = [
    "BatonError",
    "BatonRuntimeError",
    "BatonUsageError",
    "CaseInputError",
    "SpecError",
]
