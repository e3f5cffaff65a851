"""Signed decisions and submissions: who sent a decision, proven by a key the workers trust.

Temporal lets any client with namespace access signal or update a case, and the name a
decision carries (``--as alice``) is only what that client typed. A deployment that
requires signing makes the workers accept a decision (and a case submission, which
separation of duties depends on) only when it carries an HMAC-SHA256 over its content by a
key from ``BATON_DECISION_KEYS``: the approval gateway (or, in development, the CLI with the
key ``baton dev`` creates) holds the key; approvers do not.

Keys rotate like the codec's: ``BATON_DECISION_KEYS=k2:<base64>,k1:<base64>`` (the first
signs; every listed key verifies) or ``BATON_DECISION_KEYS_FILE``; a key removed from the
ring is refused from then on. Only the key id and the MAC enter a case's history, never a key.

The workers' policy is installed once per worker process (:func:`install`) and read by the
``decide`` update's validator, which Temporal does not run on replay, so rotating keys never
changes how a recorded case replays. Signals carry no reply and are replayed, so with signing
required they are refused outright: signed decisions go through the update.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from baton.errors import BatonUsageError
from baton.keyring import read_keyring

KEYS_VARIABLE = "BATON_DECISION_KEYS"
REQUIRE_VARIABLE = "BATON_REQUIRE_SIGNED_DECISIONS"
DEV_KEYS_FILE = "decision-keys.json"
"""The development key ``baton dev`` creates in the app's home, read by the CLI when no
``BATON_DECISION_KEYS`` is set."""


class Signature(BaseModel):
    """Which key signed, and the HMAC-SHA256 (hex) over the signed content."""

    key_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    mac: str = Field(pattern=r"^[0-9a-f]{64}$")


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decision_message(
    case_id: str, verdict: str, approver: str, comment: str, proposal: str | None, decision_id: str | None
) -> bytes:
    """The bytes a decision's signature covers: bound to the case, the verdict and what was seen."""
    return _canonical(
        {
            "kind": "baton-decision-v1",
            "case_id": case_id,
            "verdict": verdict,
            "approver": approver,
            "comment_sha256": hashlib.sha256(comment.encode()).hexdigest(),
            "proposal": proposal,
            "decision_id": decision_id,
        }
    )


def submission_message(case_id: str, submitted_by: str, case_sha256: str, spec_sha256: str) -> bytes:
    """The bytes a case submission's signature covers: who submitted which case under which spec."""
    return _canonical(
        {
            "kind": "baton-submission-v1",
            "case_id": case_id,
            "submitted_by": submitted_by,
            "case_sha256": case_sha256,
            "spec_sha256": spec_sha256,
        }
    )


class DecisionKeys:
    """A ring of HMAC keys: the current one signs, every one verifies."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise BatonUsageError(f"decision keys: the current key {current!r} is not in the ring")
        short = [k for k, v in keys.items() if len(v) < 16]
        if short:
            raise BatonUsageError(f"decision keys: key {short[0]!r} is shorter than 16 bytes")
        self._keys = dict(keys)
        self.current = current

    @classmethod
    def from_env(cls, env: Mapping[str, str], home: Path) -> DecisionKeys | None:
        """``BATON_DECISION_KEYS``/``_FILE``, else the development key in ``home``, else None."""
        ring = read_keyring(env, KEYS_VARIABLE, what="decision keys file")
        if ring is None and (home / DEV_KEYS_FILE).is_file():
            ring = read_keyring({f"{KEYS_VARIABLE}_FILE": str(home / DEV_KEYS_FILE)}, KEYS_VARIABLE,
                                what="decision keys file")  # fmt: skip
        return None if ring is None else cls(*ring)

    def sign(self, message: bytes) -> Signature:
        """Sign ``message`` with the current key."""
        mac = hmac.new(self._keys[self.current], message, hashlib.sha256).hexdigest()
        return Signature(key_id=self.current, mac=mac)

    def problem(self, message: bytes, signature: Signature | None, *, what: str = "decision") -> str | None:
        """Why ``signature`` does not prove ``message`` (a ``what``), or None when it does."""
        if signature is None:
            return f"unsigned {what}: this deployment accepts only {what}s signed by a trusted sender"
        key = self._keys.get(signature.key_id)
        if key is None:
            return f"signed with key {signature.key_id!r}, which the workers do not trust (rotated out?)"
        expected = hmac.new(key, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.mac):
            return f"bad signature: the {what} is not what its sender signed"
        return None


def create_dev_keys(home: Path) -> Path:
    """Write a fresh development key to ``home`` (once; an existing file is kept), mode 0600."""
    path = home / DEV_KEYS_FILE
    if path.exists():
        return path
    home.mkdir(parents=True, exist_ok=True)
    key_id = f"dev-{secrets.token_hex(3)}"
    encoded = base64.b64encode(secrets.token_bytes(32)).decode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        json.dump({"current": key_id, "keys": {key_id: encoded}}, stream)
    return path


@dataclass(frozen=True)
class SigningPolicy:
    """What a worker requires of decisions and submissions, and the keys it verifies with."""

    required: bool = False
    keys: DecisionKeys | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], home: Path) -> SigningPolicy:
        """``BATON_REQUIRE_SIGNED_DECISIONS`` and the keys; requiring without keys is an error."""
        flag = env.get(REQUIRE_VARIABLE, "").strip().lower()
        if flag not in ("", "0", "1", "true", "false", "yes", "no"):
            raise BatonUsageError(f"{REQUIRE_VARIABLE}={flag!r}: expected 1 or 0")
        required = flag in ("1", "true", "yes")
        keys = DecisionKeys.from_env(env, home)
        if required and keys is None:
            raise BatonUsageError(
                f"{REQUIRE_VARIABLE} is set but no {KEYS_VARIABLE} (or _FILE) to verify with"
            )
        return cls(required=required, keys=keys)

    def decision_problem(self, case_id: str, verdict: str, decision: Any) -> str | None:
        """Why a decision on a case that requires signing is not proven signed, or None.

        Called only for cases that recorded that signing is required, so a worker whose own
        setting has since changed still verifies them, and one without keys refuses them.
        """
        if self.keys is None:
            return (
                f"unsigned decisions are refused here and this worker has no {KEYS_VARIABLE} to verify with"
            )
        if decision.signature is not None and decision.decision_id is None:
            return "a signed decision needs a decision_id"
        message = decision_message(
            case_id, verdict, decision.approver, decision.comment, decision.proposal, decision.decision_id
        )
        return self.keys.problem(message, decision.signature)


_INSTALLED = SigningPolicy()


def install(policy: SigningPolicy) -> None:
    """Make ``policy`` the one this worker process's ``decide`` validators apply."""
    global _INSTALLED
    _INSTALLED = policy


def installed() -> SigningPolicy:
    """The policy the worker installed (none required until it does)."""
    return _INSTALLED
