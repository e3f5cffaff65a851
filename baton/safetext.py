"""Text from outside, made safe to print on a terminal: one value, one visible line.

Names, comments, case ids and summaries come from people and programs Baton does
not control. Printed raw, a newline in an approver's name forges a line of
``baton audit`` output, an ANSI escape repaints the terminal, and a right-to-left
override (U+202E) shows text in an order other than the one stored. :func:`printable`
writes every such character as a visible escape instead (``\\n``, ``\\x1b``,
``\\u202e``), as Python's ``repr`` would, and leaves all other text (accents, CJK,
emoji, backslashes) as it is.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_ESCAPED = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
"""Unicode categories written as escapes: controls (C0, C1, DEL), format characters
(bidi overrides and isolates, zero-width characters), line and paragraph separators,
lone surrogates, private-use and unassigned code points."""

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


@lru_cache(maxsize=4096)
def _escape(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    if unicodedata.category(char) not in _ESCAPED:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: object) -> str:
    """``text`` (or ``str(text)``) with every control or invisible formatting character escaped.

    The result never contains a newline, carriage return, escape sequence or bidi
    control, so it prints as exactly what it is, on one line. Printable text, a
    backslash included, is left as it is.
    """
    value = text if isinstance(text, str) else str(text)
    if value.isprintable():
        return value  # the common case: nothing to escape
    return "".join(_escape(char) for char in value)
