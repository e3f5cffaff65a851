"""Password hashes for local accounts: scrypt from the standard library, self-describing.

A hash is stored in the roles file as ``scrypt$ln=15,r=8,p=1$<salt>$<key>`` (salt and
key in unpadded standard base64), so the parameters travel with the hash: raising the
cost later leaves old hashes verifiable, and :func:`needs_rehash` says which to renew.
scrypt is memory-hard (32 MiB per guess at these parameters), which is what makes a
stolen roles file expensive to crack on GPUs; it needs no dependency beyond OpenSSL.

Verification never raises: a malformed hash, an unknown scheme or absurd parameters
(a hand-edited file asking for gigabytes) all read as "wrong password", so a login
form cannot be turned into an error oracle or a memory bomb. A login for a user that
does not exist calls :func:`verify_unknown_user`, which does the same work against a
fixed hash, so response time does not tell which user names exist.

Passwords are NFC-normalised before hashing, so the same password typed on systems
that compose accents differently still matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass

from baton.errors import BatonUsageError

SCHEME = "scrypt"
LOG2_N = 15
"""log2 of scrypt's cost ``n``: 2**15 with r=8 is 32 MiB and about 0.1 s per hash."""
BLOCK_SIZE = 8
PARALLELISM = 1
SALT_BYTES = 16
KEY_BYTES = 32

MIN_PASSWORD = 12
"""Shortest password accepted: length is what makes a guess expensive, not symbol rules."""
MAX_PASSWORD = 1024
"""Longest password accepted: a bound on the work one login can ask for."""

_MAX_MEMORY = 256 * 1024 * 1024
"""The most memory a stored hash may make one verification use; beyond it the hash is refused."""
_MAX_WORK = 1 << 24
"""The most work (n * r * p, 64 times today's) a stored hash may ask of one verification."""

_DUMMY_HASH = "scrypt$ln=15,r=8,p=1$YmF0b24tbm8tc3VjaC11cw$Zlnu6ITjfahvs7WfX+mHVkXrJeVCz12t1M7xIpC2FvQ"
"""A hash no password is expected to match, at the current parameters, for unknown users."""


@dataclass(frozen=True)
class _Parsed:
    log2_n: int
    r: int
    p: int
    salt: bytes
    key: bytes


def check_new_password(password: str) -> None:
    """Refuse a password that should not be set.

    Raises:
        BatonUsageError: shorter than :data:`MIN_PASSWORD` or longer than :data:`MAX_PASSWORD`
            characters, or holding control characters or text that is not valid Unicode
            (a terminal or form would not send it the same way twice).
    """
    text = unicodedata.normalize("NFC", password)
    if len(text) < MIN_PASSWORD:
        raise BatonUsageError(f"a password must be at least {MIN_PASSWORD} characters")
    if len(text) > MAX_PASSWORD:
        raise BatonUsageError(f"a password may be at most {MAX_PASSWORD} characters")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in text):
        raise BatonUsageError("a password may not contain control characters or invalid Unicode")


def hash_password(password: str) -> str:
    """The encoded scrypt hash of ``password`` with a fresh random salt.

    Raises:
        BatonUsageError: the password is refused by :func:`check_new_password` (so no
            caller can store a hash of a password the policy forbids).
    """
    check_new_password(password)
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, LOG2_N, BLOCK_SIZE, PARALLELISM, KEY_BYTES)
    return f"{SCHEME}$ln={LOG2_N},r={BLOCK_SIZE},p={PARALLELISM}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the hash ``encoded``; False (never an exception) for a
    malformed hash, an unknown scheme, parameters out of bounds or an unusable password."""
    parsed = _parse(encoded)
    if parsed is None or len(password) > MAX_PASSWORD:
        return False
    try:
        key = _derive(password, parsed.salt, parsed.log2_n, parsed.r, parsed.p, len(parsed.key))
    except (UnicodeError, ValueError, MemoryError):
        return False
    return hmac.compare_digest(key, parsed.key)


def verify_unknown_user(password: str) -> bool:
    """Do a verification's work for a user that does not exist; always False.

    Without it a login for an unknown name answers at once and a wrong password for a
    real one takes a tenth of a second: the difference lists the accounts.
    """
    verify_password(password, _DUMMY_HASH)
    return False


def needs_rehash(encoded: str) -> bool:
    """Whether ``encoded`` should be replaced at the next successful login (or by
    ``baton user passwd``): malformed, another scheme, or not the current parameters."""
    parsed = _parse(encoded)
    if parsed is None:
        return True
    current = (LOG2_N, BLOCK_SIZE, PARALLELISM, SALT_BYTES, KEY_BYTES)
    return (parsed.log2_n, parsed.r, parsed.p, len(parsed.salt), len(parsed.key)) != current


def _derive(password: str, salt: bytes, log2_n: int, r: int, p: int, length: int) -> bytes:
    secret = unicodedata.normalize("NFC", password).encode("utf-8")
    n = 1 << log2_n
    return hashlib.scrypt(
        secret, salt=salt, n=n, r=r, p=p, maxmem=_memory(log2_n, r, p) + (1 << 20), dklen=length
    )


def _memory(log2_n: int, r: int, p: int) -> int:
    """What OpenSSL's scrypt allocates: ``p`` blocks of 128*r bytes and a table of n+2 more."""
    return 128 * r * ((1 << log2_n) + 2 + p)


def _parse(encoded: str) -> _Parsed | None:
    """The parts of an encoded hash, or None if it is not one this module can verify safely."""
    if not isinstance(encoded, str) or len(encoded) > 512:
        return None
    parts = encoded.split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        return None
    params: dict[str, int] = {}
    for item in parts[1].split(","):
        name, sep, value = item.partition("=")
        if not sep or name in params or not (value.isascii() and value.isdigit()) or len(value) > 3:
            return None
        params[name] = int(value)
    if set(params) != {"ln", "r", "p"}:
        return None
    log2_n, r, p = params["ln"], params["r"], params["p"]
    if not (1 <= log2_n <= 24 and 1 <= r <= 32 and 1 <= p <= 16):
        return None
    if _memory(log2_n, r, p) > _MAX_MEMORY or (1 << log2_n) * r * p > _MAX_WORK:
        return None
    salt, key = _unb64(parts[2]), _unb64(parts[3])
    if salt is None or key is None or not (8 <= len(salt) <= 64 and 16 <= len(key) <= 64):
        return None
    return _Parsed(log2_n, r, p, salt, key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes | None:
    if not text.isascii():
        return None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
