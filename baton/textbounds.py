"""Bounding text that arrives from outside before Baton keeps it.

A comment, a name or a malformed payload ends up in a case's history, audit trail
and result, which Temporal caps (2 MiB a payload); text kept for the record is cut
to an excerpt that says how much was cut, with the whole text's digest beside it
where it matters. Pure: workflow code uses it.
"""

from __future__ import annotations

EXCERPT = 200
"""Characters of outside text an audit event keeps by default."""


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"
