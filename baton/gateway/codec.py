"""The codec endpoint for the Temporal UI, behind the gateway's login instead of a shared token.

The stock Temporal UI (2.54) cannot send a bearer token to a codec endpoint over plain
http, and a shared token would be one secret for every engineer anyway. So the gateway
serves ``/codec/encode`` and ``/codec/decode`` to whoever is signed in to it: the UI,
configured with this endpoint and "include cross-origin credentials", sends the
gateway's session cookie (the UI and the gateway are the same site, so the ``SameSite``
cookie travels). When the UI itself uses SSO it can pass its own access token instead
(``Authorization: Bearer``), checked against the same identity provider.

Only people holding a role may read plaintext (a signed-in account with no role gets
401), and a cookie only counts from an origin allowed in ``BATON_GATEWAY_CODEC_ORIGINS``,
so another site cannot have a visitor's browser decrypt for it.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from baton.codec import AesGcmCodec
from baton.codecserver import CodecRequestError, transcode
from baton.gateway.context import Gateway
from baton.gateway.oidc import OidcError

log = logging.getLogger(__name__)
ALLOWED = "POST, OPTIONS"


def routes(gw: Gateway, codec: AesGcmCodec | None) -> list[Route]:
    """``/codec/encode`` and ``/codec/decode`` (absent when the gateway holds no codec keys)."""
    if codec is None:
        return []
    allowed = {*gw.settings.codec_origins, gw.settings.origin}

    def cors(request: Request, response: Response) -> Response:
        origin = request.headers.get("origin", "")
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Allow-Methods"] = ALLOWED
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Namespace"
            response.headers["Access-Control-Max-Age"] = "600"
        response.headers["Vary"] = "Origin"
        return response

    async def who(request: Request) -> str | None:
        """The reader's identity, or None: no session with a role, and no valid SSO token."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            if gw.oidc is None:
                return None
            try:
                identity = await gw.oidc.verify_access_token(token.strip())
            except OidcError as exc:
                log.warning("codec: access token refused: %s", exc.reason)
                return None
            account = gw.directory.account(identity.user_id)
            roles = identity.roles if identity.roles is not None else (account.roles if account else ())
            return identity.user_id if roles else None
        origin = request.headers.get("origin")
        if origin is not None and origin not in allowed:
            return None
        me = gw.user(request)
        return me.id if me is not None and me.roles else None

    def handler(encode: bool):  # type: ignore[no-untyped-def]
        async def handle(request: Request) -> Response:
            if request.method == "OPTIONS":
                return cors(request, Response(status_code=204))
            try:
                reader = await who(request)
                if reader is None:
                    raise CodecRequestError(401, "sign in to the gateway (or send the UI's SSO token)")
                body = await transcode(codec, await request.body(), encode=encode)
            except CodecRequestError as refusal:
                log.warning("codec %s refused (%d): %s", request.url.path, refusal.status, refusal.reason)
                return cors(request, JSONResponse({"error": refusal.reason}, status_code=refusal.status))
            return cors(request, Response(body, media_type="application/json"))

        return handle

    return [
        Route("/codec/encode", handler(True), methods=["POST", "OPTIONS"]),
        Route("/codec/decode", handler(False), methods=["POST", "OPTIONS"]),
    ]
