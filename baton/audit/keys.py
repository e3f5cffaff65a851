"""The audit log's signing keys: only writers hold them, so only writers can sign records.

A hash chain alone proves order, not authorship: anyone who can edit the log can
recompute every hash after a change. Each record is therefore also signed with an
HMAC-SHA256 key that the workers (and the auditors who verify) hold and the log's
storage does not. Keys come from the environment or a file, never from code, in the
same shape as the payload codec's (:mod:`baton.codec`):

    BATON_AUDIT_KEYS="a2:<base64, at least 16 bytes>,a1:<base64>"   # first = current
    BATON_AUDIT_KEYS_FILE=/run/secrets/baton-audit-keys.json        # {"current": "a2", "keys": {...}}

Each record names the id of the key that signed it, so rotation is: put a new key
first; records signed before still verify with the old key, which must stay in the
verifiers' list as long as those records are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from baton.errors import BatonUsageError
from baton.keyring import read_keyring

MIN_KEY_BYTES = 16
"""Shorter HMAC keys are guessable; refused at start-up rather than trusted."""

KEYS_HINT = "set BATON_AUDIT_KEYS (or BATON_AUDIT_KEYS_FILE) to the keys its writers use"


@dataclass(frozen=True)
class AuditKeys:
    """The signing keys by id, and which one signs new records.

    Attributes:
        keys: key id → secret bytes; every id a verifier may meet in the log.
        current: the id new records are signed with.
    """

    keys: Mapping[str, bytes]
    current: str

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise BatonUsageError(f"audit keys: current key {self.current!r} is not among the keys")
        for key_id, key in self.keys.items():
            if len(key) < MIN_KEY_BYTES:
                raise BatonUsageError(
                    f"audit keys: key {key_id!r} has {len(key)} bytes; at least {MIN_KEY_BYTES} are needed"
                )

    def sign(self, body: str) -> tuple[str, str]:
        """``(key_id, signature)`` of ``body`` (a record's canonical JSON) with the current key."""
        return self.current, _mac(self.keys[self.current], body)

    def check(self, key_id: str, body: str, signature: str) -> bool | None:
        """Whether ``signature`` is ``body``'s under ``key_id``; None if that key is unknown."""
        key = self.keys.get(key_id)
        if key is None:
            return None
        return hmac.compare_digest(_mac(key, body), signature)


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def load_audit_keys(environ: Mapping[str, str] | None = None) -> AuditKeys | None:
    """The keys configured by ``BATON_AUDIT_KEYS_FILE`` or ``BATON_AUDIT_KEYS``, or None.

    Raises:
        BatonUsageError: the setting is present but malformed (a worker then refuses
            to start rather than write records nobody can verify).
    """
    env = os.environ if environ is None else environ
    ring = read_keyring(env, "BATON_AUDIT_KEYS", what="audit keys file")
    return None if ring is None else AuditKeys(*ring)
