"""``baton codec-server``: /encode and /decode for the Temporal UI, behind a bearer token.

The UI (configured with this server as its codec endpoint) sends payloads here to
show them decrypted; only callers presenting ``Authorization: Bearer <token>``
(the token from ``BATON_CODEC_TOKEN``) get plaintext. CORS admits the UI's origin.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from baton.codec import AesGcmCodec


def make_app(codec: AesGcmCodec, *, token: str, origins: list[str]) -> web.Application:
    """The aiohttp application serving the Temporal codec-server protocol."""

    def cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        if origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Namespace"
            response.headers["Vary"] = "Origin"
        return response

    def handler(encode: bool) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if request.method == "OPTIONS":
                return cors(request, web.Response())
            supplied = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(supplied.encode(), token.encode()):
                return cors(request, web.json_response({"error": "unauthorised"}, status=401))
            payloads = json_format.Parse(await request.read(), Payloads())
            convert = codec.encode if encode else codec.decode
            try:
                result = Payloads(payloads=await convert(payloads.payloads))
            except ValueError as exc:
                return cors(request, web.json_response({"error": str(exc)}, status=400))
            body = json_format.MessageToJson(result)
            return cors(request, web.Response(text=body, content_type="application/json"))

        return handle

    app = web.Application()
    app.router.add_route("*", "/encode", handler(True))
    app.router.add_route("*", "/decode", handler(False))
    return app
