"""The digest of a payload: what audit events, proposals and signatures carry instead of it."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def digest(payload: Any) -> str:
    """SHA-256 of a payload's canonical JSON (sorted keys, no spaces).

    Clients and workflows compute it alike: a signed submission's case digest, checked by
    the workers, must be the one the client signed.
    """
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
