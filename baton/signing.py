"""Signed decisions and submissions: who sent a decision, proven by a key the workers trust.

Temporal lets any client with namespace access signal or update a case, and the name a
decision carries (``--as alice``) is only what that client typed. A deployment that
requires signing makes the workers accept a decision (and a case submission, which
separation of duties depends on) only when it is signed by a trusted sender: the approval
gateway (or, in development, the CLI with the key ``baton dev`` creates); approvers never
hold a key. Ed25519 (the sender holds ``BATON_DECISION_SIGNING_KEY``, the workers only
``BATON_DECISION_PUBLIC_KEYS``: nothing a worker holds can sign) or HMAC-SHA256 with a shared
``BATON_DECISION_KEYS`` (one service signs and verifies with the same secret).

Keys rotate like the codec's: ``NAME=k2:<base64>,k1:<base64>`` (the first signs; every
listed key verifies) or ``NAME_FILE``; a key removed from the ring is refused from then
on. Only the key id and the signature enter a case's history, never a key.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from pydantic import BaseModel, Field

from baton.errors import BatonUsageError
from baton.keyring import read_keyring

KEYS_VARIABLE = "BATON_DECISION_KEYS"
PUBLIC_VARIABLE = "BATON_DECISION_PUBLIC_KEYS"
PRIVATE_VARIABLE = "BATON_DECISION_SIGNING_KEY"
REQUIRE_VARIABLE = "BATON_REQUIRE_SIGNED_DECISIONS"
DEV_KEYS_FILE = "decision-keys.json"
"""The development key ``baton dev`` creates in the app's home, read by the CLI when no
``BATON_DECISION_KEYS`` is set."""


class Signature(BaseModel):
    """Which key signed, how, and the signature (hex) over the signed content."""

    key_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    alg: Literal["hmac-sha256", "ed25519"] = "hmac-sha256"
    mac: str = Field(
        pattern=r"^(?:[0-9a-f]{64}|[0-9a-f]{128})$", description="HMAC or Ed25519 signature, hex."
    )


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
    """The keys a sender signs with and a worker verifies with.

    Two kinds, by who may sign. **HMAC** keys (``BATON_DECISION_KEYS``) are shared: every
    holder can sign and verify, for a deployment where one trusted service signs and the
    workers verify with the same secret. **Ed25519** separates them: the sender holds the
    private key (``BATON_DECISION_SIGNING_KEY``), the workers only public keys
    (``BATON_DECISION_PUBLIC_KEYS``), so nothing a worker holds can forge an approval.
    Each is a ring (``id:base64,...``, first current); a key id names one key of one kind.
    """

    def __init__(
        self,
        keys: dict[str, bytes] | None = None,
        current: str | None = None,
        *,
        public: dict[str, bytes] | None = None,
        private: tuple[str, bytes] | None = None,
    ) -> None:
        self._keys = dict(keys or {})
        if current is not None and current not in self._keys:
            raise BatonUsageError(f"decision keys: the current key {current!r} is not in the ring")
        short = [k for k, v in self._keys.items() if len(v) < 16]
        if short:
            raise BatonUsageError(f"decision keys: key {short[0]!r} is shorter than 16 bytes")
        self._public: dict[str, Ed25519PublicKey] = {}
        for key_id, raw in (public or {}).items():
            self._public[key_id] = _ed25519(key_id, raw, Ed25519PublicKey.from_public_bytes)
        self._private: tuple[str, Ed25519PrivateKey] | None = None
        if private is not None:
            self._private = (
                private[0],
                _ed25519(private[0], private[1], Ed25519PrivateKey.from_private_bytes),
            )
        self.current = private[0] if private is not None else current or next(iter(self._keys), "")
        self.development = False
        """True for the development key found in the app's home (``baton dev``)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str], home: Path | None) -> DecisionKeys | None:
        """The keys in the environment, else the development key in ``home`` (clients only:
        workers pass None and trust only keys they are given), else None."""
        ring = read_keyring(env, KEYS_VARIABLE, what="decision keys file")
        public = read_keyring(env, PUBLIC_VARIABLE, what="decision public keys file")
        private = read_keyring(env, PRIVATE_VARIABLE, what="decision signing key file")
        if ring is None and public is None and private is None:
            if home is None or not (home / DEV_KEYS_FILE).is_file():
                return None
            ring = read_keyring({f"{KEYS_VARIABLE}_FILE": str(home / DEV_KEYS_FILE)}, KEYS_VARIABLE,
                                what="decision keys file")  # fmt: skip
            assert ring is not None
            found = cls(*ring)
            found.development = True
            return found
        return cls(
            *(ring or ({}, None)),
            public=public[0] if public else None,
            private=(private[1], private[0][private[1]]) if private else None,
        )

    def sign(self, message: bytes) -> Signature:
        """Sign ``message`` with the Ed25519 signing key if there is one, else the current HMAC key."""
        if self._private is not None:
            key_id, key = self._private
            return Signature(key_id=key_id, alg="ed25519", mac=key.sign(message).hex())
        if self.current not in self._keys:
            raise BatonUsageError("decision keys: only public keys here, nothing to sign with")
        mac = hmac.new(self._keys[self.current], message, hashlib.sha256).hexdigest()
        return Signature(key_id=self.current, mac=mac)

    def problem(self, message: bytes, signature: Signature | None, *, what: str = "decision") -> str | None:
        """Why ``signature`` does not prove ``message`` (a ``what``), or None when it does."""
        if signature is None:
            return f"unsigned {what}: this deployment accepts only {what}s signed by a trusted sender"
        untrusted = f"signed with key {signature.key_id!r}, which the workers do not trust (rotated out?)"
        forged = f"bad signature: the {what} is not what its sender signed"
        if signature.alg == "ed25519":
            public = self._public.get(signature.key_id)
            if public is None:
                return untrusted
            try:
                public.verify(bytes.fromhex(signature.mac), message)
            except (InvalidSignature, ValueError):
                return forged
            return None
        key = self._keys.get(signature.key_id)
        if key is None:
            return untrusted
        expected = hmac.new(key, message, hashlib.sha256).hexdigest()
        return None if hmac.compare_digest(expected, signature.mac) else forged

    @property
    def can_sign(self) -> bool:
        """True when these keys can sign (an Ed25519 private key or an HMAC key)."""
        return self._private is not None or self.current in self._keys


def _ed25519(key_id: str, raw: bytes, load: Callable[[bytes], Any]) -> Any:
    try:
        return load(raw)
    except ValueError:
        raise BatonUsageError(f"decision keys: key {key_id!r} is not a raw 32-byte Ed25519 key") from None


def new_ed25519_pair(key_id: str) -> tuple[str, str]:
    """A fresh Ed25519 pair as the two settings: the sender's signing key, the workers' public key."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return (
        f"{PRIVATE_VARIABLE}={key_id}:{base64.b64encode(seed).decode()}",
        f"{PUBLIC_VARIABLE}={key_id}:{base64.b64encode(public).decode()}",
    )


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
        keys = DecisionKeys.from_env(env, None)  # a worker never trusts a key file it merely finds
        if required and keys is None:
            raise BatonUsageError(
                f"{REQUIRE_VARIABLE} is set but no {PUBLIC_VARIABLE} or {KEYS_VARIABLE} (or _FILE) "
                "to verify with"
            )
        return cls(required=required, keys=keys)

    def decision_problem(self, case_id: str, verdict: str, decision: Any) -> str | None:
        """Why a decision on a case that requires signing is not proven signed, or None.

        Called only for cases that recorded that signing is required, so a worker whose own
        setting has since changed still verifies them, and one without keys refuses them.
        """
        if self.keys is None:
            return (
                f"unsigned decisions are refused here and this worker has no {PUBLIC_VARIABLE} or "
                f"{KEYS_VARIABLE} to verify with"
            )
        if decision.signature is not None and decision.decision_id is None:
            return "a signed decision needs a decision_id"
        if decision.signature is not None and (decision.proposal is None or len(decision.proposal) != 64):
            return "a signed decision names the whole proposal digest (64 hex digits)"
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
