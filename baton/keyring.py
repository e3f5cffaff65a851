"""Reading a ring of named keys from the environment: the codec's and the audit log's.

Both rotate the same way: ``NAME=k2:<base64>,k1:<base64>`` (the first key is current;
older ones stay to read what they wrote) or ``NAME_FILE`` holding
``{"current": "k2", "keys": {"k2": "<base64>", ...}}``. A malformed setting is a usage
error naming the variable, so a worker refuses to start rather than run half-keyed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path

from baton.errors import BatonUsageError


def read_keyring(env: Mapping[str, str], name: str, *, what: str) -> tuple[dict[str, bytes], str] | None:
    """The keys and the current key id from ``{name}_FILE`` or ``{name}``, or None when unset.

    Args:
        env: the environment to read.
        name: the variable, e.g. ``BATON_CODEC_KEYS``.
        what: how errors name the file (``codec keys file``).
    """
    if env.get(f"{name}_FILE"):
        path = Path(env[f"{name}_FILE"])
        try:
            data = json.loads(path.read_text())
            keys = {k: base64.b64decode(v, validate=True) for k, v in data["keys"].items()}
            return keys, str(data["current"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BatonUsageError(f"{what} {path}: {type(exc).__name__}: {exc}") from None
    spec = env.get(name, "").strip()
    if not spec:
        return None
    keys = {}
    for item in spec.split(","):
        key_id, sep, encoded = item.strip().partition(":")
        if not sep or not key_id:
            raise BatonUsageError(f"{name} must be 'id:base64key[,id:base64key...]'")
        try:
            keys[key_id] = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise BatonUsageError(f"{name}: key {key_id!r} is not valid base64") from None
    return keys, next(iter(keys))
