"""Human-friendly durations for specs: ``500ms``, ``30s``, ``4h``, ``1h30m``, ``2d``.

Specs are written by people, so ``4h`` beats ``PT4H``. Pydantic's own ISO 8601
and number-of-seconds forms still parse, which is what a spec snapshot
round-tripped through the data converter looks like.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")


def parse_duration(value: Any) -> Any:
    """Turn ``"1h30m"`` into a timedelta; leave other forms for pydantic to judge."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if _WHOLE.match(text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
            return timedelta(seconds=seconds)
        if not text.startswith("P"):
            raise ValueError(f"{value!r} is not a duration like 500ms, 30s, 4h or 1h30m")
    return value


def format_duration(value: timedelta) -> str:
    """Render a timedelta the way a spec author would write it (``1h30m``, ``250ms``)."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    if total_ms % 1000:
        return f"{total_ms}ms"
    seconds = total_ms // 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A timedelta field that accepts ``30s``-style text and serialises back to it."""
