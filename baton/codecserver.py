"""``baton codec-server``: /encode and /decode for the Temporal UI, behind a bearer token.

The UI (configured with this server as its codec endpoint) sends payloads here to
show them decrypted; only callers presenting ``Authorization: Bearer <token>``
(the token from ``BATON_CODEC_TOKEN``) get plaintext. CORS admits the UI's origin.

Every request the server refuses gets a status and a one-line reason, as JSON
``{"error": "..."}``, and one line in the log, never a traceback: 405 for a method
other than POST (or OPTIONS, the CORS preflight), 401 without the right bearer
token, 400 for a body that is not ``{"payloads": [...]}`` with base64 fields, or
for a payload the keys cannot open (an unknown key id, or altered ciphertext).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from baton.codec import AesGcmCodec
from baton.errors import BatonUsageError
from baton.safetext import printable

log = logging.getLogger(__name__)

ALLOWED = "POST, OPTIONS"
SHAPE = 'expected a JSON object {"payloads": [{"metadata": {...}, "data": "<base64>"}, ...]}'
_FIELDS = frozenset(f.json_name for f in Payload.DESCRIPTOR.fields) | {
    f.name for f in Payload.DESCRIPTOR.fields
}
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}|[A-Za-z0-9_-]*={0,2}")
"""Proto3 JSON bytes: standard or URL-safe base64, with or without padding."""
_MAX_REASON = 200


class CodecRequestError(Exception):
    """A request answered with ``status`` and the one-line ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = printable(reason if len(reason) <= _MAX_REASON else reason[:_MAX_REASON] + "…")


def make_app(codec: AesGcmCodec, *, token: str, origins: list[str]) -> web.Application:
    """The aiohttp application serving the Temporal codec-server protocol."""
    if not token:
        raise BatonUsageError("codec server: the bearer token must not be empty")
    expected = token.encode("utf-8", "surrogatepass")

    def cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        if origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = ALLOWED
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Namespace"
            response.headers["Vary"] = "Origin"
        return response

    def authorised(request: web.Request) -> bool:
        # RFC 7235: the scheme is case-insensitive; the token must follow it.
        scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
        supplied = credentials.strip(" ").encode("utf-8", "surrogatepass")
        return scheme.lower() == "bearer" and hmac.compare_digest(supplied, expected)

    def handler(encode: bool) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if request.method == "OPTIONS":
                return cors(request, web.Response())
            try:
                if request.method != "POST":
                    raise CodecRequestError(405, f"method {request.method} not allowed: POST the payloads")
                if not authorised(request):
                    raise CodecRequestError(401, "unauthorised: send Authorization: Bearer <token>")
                body = await transcode(codec, await request.read(), encode=encode)
            except CodecRequestError as refusal:
                log.warning(
                    "%s %s refused (%d): %s", request.method, request.path, refusal.status, refusal.reason
                )
                response = web.json_response({"error": refusal.reason}, status=refusal.status)
                if refusal.status == 405:
                    response.headers["Allow"] = ALLOWED
                return cors(request, response)
            return cors(request, web.Response(text=body, content_type="application/json"))

        return handle

    app = web.Application()
    app.router.add_route("*", "/encode", handler(True))
    app.router.add_route("*", "/decode", handler(False))
    return app


async def transcode(codec: AesGcmCodec, body: bytes, *, encode: bool) -> str:
    """The codec protocol's answer to a request ``body``: its payloads encoded or decoded, as JSON.

    Raises:
        CodecRequestError: 400, naming what is wrong with the body, or why a payload cannot be opened.
    """
    payloads = parse_payloads(body)
    convert = codec.encode if encode else codec.decode
    try:
        result = Payloads(payloads=await convert(payloads.payloads))
    except ValueError as exc:  # CodecKeyError, a short nonce, a key id not UTF-8
        raise CodecRequestError(400, f"cannot {'encode' if encode else 'decode'}: {exc}") from None
    return json_format.MessageToJson(result)


def parse_payloads(body: bytes) -> Payloads:
    """The ``Payloads`` in a request body, checked field by field before protobuf reads it.

    Raises:
        CodecRequestError: 400, naming the first thing wrong (protobuf alone accepts invalid
            base64 and answers some shapes with a TypeError).
    """
    try:
        data: Any = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise CodecRequestError(400, "malformed JSON: the body is not UTF-8") from None
    except RecursionError:
        raise CodecRequestError(400, "malformed JSON: nested too deeply") from None
    except ValueError as exc:
        raise CodecRequestError(400, f"malformed JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("payloads"), list):
        raise CodecRequestError(400, SHAPE)
    for key in data:
        if key != "payloads":
            raise CodecRequestError(400, f"unknown field {key!r}: {SHAPE}")
    for i, item in enumerate(data["payloads"]):
        where = f"payloads[{i}]"
        if not isinstance(item, dict):
            raise CodecRequestError(400, f"{where} is not an object: {SHAPE}")
        for key in item:
            if key not in _FIELDS:
                raise CodecRequestError(400, f"{where} has unknown field {key!r}")
        metadata = item.get("metadata", {})
        if not isinstance(metadata, dict):
            raise CodecRequestError(400, f"{where}.metadata is not an object of base64 strings")
        for name, value in metadata.items():
            _check_base64(f"{where}.metadata[{name!r}]", value)
        if "data" in item:
            _check_base64(f"{where}.data", item["data"])
    try:
        return json_format.ParseDict(data, Payloads())
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise CodecRequestError(
            400, f"wrong shape: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from None


def _check_base64(where: str, value: object) -> None:
    if not isinstance(value, str):
        raise CodecRequestError(400, f"{where} is not a base64 string")
    unpadded = value.rstrip("=")
    padded_badly = unpadded != value and len(value) % 4 != 0
    if not _BASE64.fullmatch(value) or len(unpadded) % 4 == 1 or padded_badly:
        raise CodecRequestError(400, f"{where} is not valid base64")
