"""Canonical identities: the one spelling of a person that every comparison uses.

Separation of duties compares the submitter with the approver. Compared as typed,
``Alice``, `` alice``, ``ALICE`` and ``alice`` + an invisible zero-width space are four
people, and the submitter approves their own case. So every identity that arrives
from outside (submitter, approver, directory user ids) is made canonical: Unicode
NFKC (so look-alike compatibility forms fold together), surrounding space removed,
case folded; control, format (zero-width, bidi) and line-separator characters, and
space inside a name, are refused rather than silently dropped, because a name that
needs them is an attempt to look like someone else.

Pure and deterministic: the workflow calls it when it checks a decision.
"""

from __future__ import annotations

import unicodedata

MAX_IDENTITY = 128
"""Longest identity accepted (e-mail addresses and IdP subject ids fit)."""

_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


class IdentityError(ValueError):
    """An identity that cannot be made canonical; the message says why."""


def canonical(name: str) -> str:
    """The canonical form of ``name``.

    Raises:
        IdentityError: empty, too long, or holding control, invisible or space characters.
    """
    text = unicodedata.normalize("NFKC", name).strip()
    if not text:
        raise IdentityError("an identity may not be empty")
    if len(text) > MAX_IDENTITY:
        raise IdentityError(f"an identity may be at most {MAX_IDENTITY} characters")
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise IdentityError(f"an identity may not contain {_describe(char)}")
        if char.isspace():
            raise IdentityError("an identity may not contain spaces")
    return text.casefold()


def canonical_or_none(name: str) -> str | None:
    """The canonical form, or None when ``name`` cannot be one (for refusals, not errors)."""
    try:
        return canonical(name)
    except IdentityError:
        return None


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name.lower()})" if name else " (a control character)")
