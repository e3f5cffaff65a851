"""Payload encryption: AES-GCM with key ids, so no case data is readable in the history.

Keys come from the environment or a file, never from code:

    BATON_CODEC_KEYS="k2:<base64 32 bytes>,k1:<base64 32 bytes>"   # first = current
    BATON_CODEC_KEYS_FILE=/run/secrets/baton-keys.json            # {"current": "k2", "keys": {...}}

Each payload is encrypted with the current key and records that key's id, so
rotation is: add a new key first in the list; old payloads still decrypt with the
old key, which may be removed once no history needs it. Failure messages and stack
traces are encoded too (``DefaultFailureConverterWithEncodedAttributes``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from baton.errors import BatonUsageError
from baton.keyring import read_keyring

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEYS_HINT = "set BATON_CODEC_KEYS (or BATON_CODEC_KEYS_FILE) to the keys its workers use"
"""The fix for reading an encrypted case without keys, quoted in every such error."""


def is_encrypted(payload: Payload) -> bool:
    """True if ``payload`` is still sealed by :class:`AesGcmCodec` (no codec, or none decoded it)."""
    return payload.metadata.get("encoding") == ENCODING


class CodecKeyError(ValueError):
    """An encrypted payload this codec cannot open: its key id is unknown, or the key is wrong.

    A ValueError, as before, for callers that catch that; its own class so that
    clients can tell "wrong keys configured" (a usage error with a fix) from a bug.

    Attributes:
        key_id: the key id the payload names.
        missing: True if no key has that id; False if the key with that id does not
            open the payload (different key bytes, or the payload was altered).
    """

    def __init__(self, key_id: str, *, missing: bool) -> None:
        self.key_id = key_id
        self.missing = missing
        if missing:
            message = f"no codec key {key_id!r} to decrypt this payload (rotated out?)"
        else:
            message = (
                f"codec key {key_id!r} does not decrypt this payload "
                "(not the key it was encrypted with, or the payload was altered)"
            )
        super().__init__(message)


class AesGcmCodec(PayloadCodec):
    """Encrypts every payload with the current key; decrypts with whichever key it names."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise BatonUsageError(f"codec: current key {current!r} is not among the keys")
        for key_id, key in keys.items():
            if len(key) not in (16, 24, 32):
                raise BatonUsageError(f"codec: key {key_id!r} must be 16, 24 or 32 bytes, not {len(key)}")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload (its whole protobuf, metadata included) with the current key."""
        cipher = self._ciphers[self.current]
        out = []
        for payload in payloads:
            nonce = os.urandom(12)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), self.current.encode())
            out.append(
                Payload(metadata={"encoding": ENCODING, KEY_ID: self.current.encode()}, data=nonce + sealed)
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt encrypted payloads; pass others through (histories from before encryption).

        Raises:
            CodecKeyError: a payload names a key id this codec lacks, or its key does not fit.
        """
        out = []
        for payload in payloads:
            if not is_encrypted(payload):
                out.append(payload)
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode()
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise CodecKeyError(key_id, missing=True)
            try:
                plain = cipher.decrypt(payload.data[:12], payload.data[12:], key_id.encode())
            except InvalidTag:
                raise CodecKeyError(key_id, missing=False) from None
            out.append(Payload.FromString(plain))
        return out


def load_codec(environ: dict[str, str] | None = None) -> AesGcmCodec | None:
    """The codec configured by ``BATON_CODEC_KEYS`` or ``BATON_CODEC_KEYS_FILE``, if any."""
    env = os.environ if environ is None else environ
    ring = read_keyring(env, "BATON_CODEC_KEYS", what="codec keys file")
    return None if ring is None else AesGcmCodec(*ring)


def with_codec(converter: DataConverter, codec: AesGcmCodec | None) -> DataConverter:
    """``converter`` encrypting payloads and failure details with ``codec`` (if one is set)."""
    if codec is None:
        return converter
    return replace(
        converter, payload_codec=codec, failure_converter_class=DefaultFailureConverterWithEncodedAttributes
    )
