"""The anchors: what Temporal recorded of each case's audit log, read back for ``baton audit verify``.

After each append the workflow keeps the receipt in its memo (``audit_head``, the
hash of the case's newest record; ``audit_records``, how many records of the case
the log held). The memo is part of Temporal's history, not of the log, so whoever
edits the log cannot edit it too. Cases older than the anchors have neither key
and are skipped: nothing can be claimed for them beyond the chain itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.client import Client, WorkflowExecution
from temporalio.common import RawValue

from baton.audit.chain import Anchor
from baton.codec import CodecKeyError, is_encrypted

HEAD_MEMO = "audit_head"
RECORDS_MEMO = "audit_records"
WORKFLOW_TYPE = "GovernedProcess"


@dataclass
class Anchors:
    """Anchors by workflow id, and what could not be read.

    Attributes:
        cases: workflow id → the newest anchor the engine recorded for it.
        runs: how many workflow runs were listed.
        unanchored: runs without anchors (started before them, or nothing appended yet).
        unreadable: workflow ids whose memo is encrypted with a key this client lacks.
    """

    cases: dict[str, Anchor] = field(default_factory=dict)
    runs: int = 0
    unanchored: int = 0
    unreadable: list[str] = field(default_factory=list)

    def add(self, workflow_id: str, anchor: Anchor) -> None:
        """Keep the anchor with the most records (a case continued-as-new has one per run)."""
        known = self.cases.get(workflow_id)
        if known is None or anchor.records > known.records:
            self.cases[workflow_id] = anchor


def query_for(task_queue: str | None) -> str:
    """The visibility query listing the governed cases (of one task queue, when given)."""
    query = f"WorkflowType = '{WORKFLOW_TYPE}'"
    if task_queue:
        escaped = task_queue.replace("\\", "\\\\").replace("'", "\\'")
        query += f" AND TaskQueue = '{escaped}'"
    return query


async def anchor_of(wf: WorkflowExecution) -> Anchor | None:
    """The anchor in one run's memo; None when it has none.

    Raises:
        CodecKeyError: the memo is encrypted with a key this client lacks.
        ValueError: the memo is encrypted and this client has no codec.
    """
    head = await wf.memo_value(HEAD_MEMO, None, type_hint=RawValue)
    records = await wf.memo_value(RECORDS_MEMO, None, type_hint=RawValue)
    if head is None or records is None:
        return None
    if is_encrypted(head.payload) or is_encrypted(records.payload):
        raise ValueError("memo is encrypted")
    convert = wf.data_converter.payload_converter
    value, count = convert.from_payloads([head.payload, records.payload], [str, int])
    return Anchor(str(value), int(count))


async def list_anchors(client: Client, *, task_queue: str | None = None) -> Anchors:
    """Every governed case's newest anchor (on ``task_queue``, when given)."""
    found = Anchors()
    async for wf in client.list_workflows(query_for(task_queue)):
        found.runs += 1
        try:
            anchor = await anchor_of(wf)
        except (CodecKeyError, ValueError):
            found.unreadable.append(wf.id)
            continue
        if anchor is None:
            found.unanchored += 1
        else:
            found.add(wf.id, anchor)
    return found
