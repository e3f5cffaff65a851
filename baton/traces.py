"""Reading a case's spans back from the JSONL trace file: ``baton trace ID``."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from baton.safetext import printable

SHOWN = (
    "baton.agent", "baton.step", "baton.check.result", "baton.decision", "baton.approver",
    "baton.verdict", "gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
    "error.type",
)  # fmt: skip


def load(path: Path) -> list[dict[str, Any]]:
    """Every span in the file (an absent file has none)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def case_tree(path: Path, case_id: str) -> list[str]:
    """Lines of the span tree(s) of the traces that carry ``case_id``, children indented.

    Span names and attribute values are escaped (:func:`~baton.safetext.printable`):
    they carry names and text from outside, and each span must stay one line.
    """
    spans = load(path)
    trace_ids = {
        s["trace_id"]
        for s in spans
        if s["attributes"].get("baton.case_id") == case_id
        or s["attributes"].get("temporalWorkflowID") == case_id
    }
    mine = sorted((s for s in spans if s["trace_id"] in trace_ids), key=lambda s: (s["start"], s["name"]))
    ids = {s["span_id"] for s in mine}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in mine:
        children[span["parent_id"] if span["parent_id"] in ids else None].append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            took = (span["end"] - span["start"]) / 1e6
            extra = " ".join(
                f"{k.split('.')[-1]}={printable(span['attributes'][k])}"
                for k in SHOWN
                if k in span["attributes"]
            )
            status = "" if span["status"] != "ERROR" else " ✗"
            lines.append(f"{'  ' * depth}{printable(span['name'])}  {took:.1f} ms{status}  {extra}".rstrip())
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    if len(trace_ids) > 1:
        lines.insert(0, f"({len(trace_ids)} traces: {', '.join(printable(t) for t in sorted(trace_ids))})")
    return lines
