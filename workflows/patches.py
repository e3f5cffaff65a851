"""One version marker per case instead of one per change.

Every ``workflow.patched(id)`` a new case calls writes two events to its history: the
marker and, since Core does it for each patch, an upsert of ``TemporalChangeVersion``.
A refund case crossed three such patches, six of its 23 events. From ``engine-v7`` on,
a new case records one marker that stands for every change made before it, and asks
for no other; a case whose history lacks that marker (it started on older code) still
asks each patch as it did, so it replays as recorded.

A change made after ``engine-v7`` gets a patch of its own again (asked through
:meth:`Patches.since`, which a later engine marker can fold in the same way).
"""

from __future__ import annotations

from temporalio import workflow

ENGINE_PATCH = "engine-v7"
"""Stands for: audit-log-v1, audit-anchor-v1, cancel-recorded-v1, signed-decisions-v1,
budget-after-review-v1, overrule-decides-v1, llm-invalid-reply-usage-v1,
decision-digest-v1, deciders-index-v1."""


class Patches:
    """Asks whether this run takes a change's code path, at one marker per case."""

    def __init__(self) -> None:
        # Asked once, when the run's first task starts: a new case records the marker;
        # a replayed case finds it in its history, or (started before it) does not.
        self._all = workflow.patched(ENGINE_PATCH)

    def since(self, patch_id: str) -> bool:
        """True when this run takes the path ``patch_id`` introduced (``workflow.patched``)."""
        return self._all or workflow.patched(patch_id)
