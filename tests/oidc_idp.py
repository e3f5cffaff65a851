"""A small but real OpenID Connect provider on loopback, for the gateway's login tests.

It serves discovery, a JWKS, ``/authorize`` (which "logs in" whoever the test put in
``next_user`` and redirects straight back, so a browser test just follows redirects)
and ``/token`` (single-use codes, redirect URI, PKCE S256 and client authentication
checked as a strict provider would). Knobs make it issue the bad tokens the gateway
must refuse: wrong audience or issuer, expired, signed by an unpublished key, or with
``alg: none`` / HS256.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any
from urllib.parse import unquote_plus, urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


def _new_key() -> tuple[str, rsa.RSAPrivateKey]:
    return f"k-{uuid.uuid4().hex[:8]}", rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(kid: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return jwk | {"kid": kid, "use": "sig", "alg": "RS256"}


class TestIdentityProvider:
    """``async with TestIdentityProvider() as idp:`` serves a provider at ``idp.issuer``."""

    __test__ = False  # not a test class, whatever its name

    def __init__(
        self,
        *,
        client_id: str = "baton-gateway",
        client_secret: str | None = "gateway-secret-with-at-least-32-bytes",
        redirect_uri: str = "http://localhost:8300/login/callback",
        access_audience: str = "temporal-ui",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.access_audience = access_audience
        self.next_user: dict[str, Any] | None = {"preferred_username": "dana", "name": "Dana Kim"}
        # knobs for bad tokens
        self.id_token_audience: str | list[str] | None = None  # None: the client id
        self.id_token_lifetime = 300
        self.id_token_alg = "RS256"  # "none" or "HS256" forge what a careless client would accept
        self.sign_with_other_key = False
        self.issuer_override: str | None = None
        self.extra_id_claims: dict[str, Any] = {}
        # state
        self.jwks_requests = 0
        self._keys = [_new_key()]
        self._other_key = _new_key()[1]
        self._codes: dict[str, dict[str, Any]] = {}
        self._runner: web.AppRunner | None = None
        self.issuer = ""

    async def __aenter__(self) -> TestIdentityProvider:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.issuer = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def rotate_key(self, *, keep_old: bool = True) -> str:
        """Start signing with a new key (new kid); the JWKS serves both, or only the new one."""
        self._keys = [_new_key(), *(self._keys if keep_old else [])]
        return self._keys[0][0]

    def issue_access_token(
        self, user_claims: dict[str, Any], *, audience: str | None = None, lifetime: int = 300
    ) -> str:
        """An access token as the provider would issue it (for the codec endpoint's tests)."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user_claims.get("sub", "sub-access"),
            "aud": audience or self.access_audience,
            "iat": now,
            "exp": now + lifetime,
            "scope": "openid",
        } | user_claims
        kid, key = self._keys[0]
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})

    # -- endpoints ---------------------------------------------------------------------------------------

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
                "authorization_response_iss_parameter_supported": True,
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_requests += 1
        return web.json_response({"keys": [_jwk(kid, key) for kid, key in self._keys]})

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != self.client_id or q.get("redirect_uri") != self.redirect_uri:
            return web.Response(status=400, text="unknown client or redirect_uri")  # never redirect then
        ok = (
            q.get("response_type") == "code"
            and q.get("code_challenge_method") == "S256"
            and len(q.get("code_challenge", "")) == 43
            and "openid" in q.get("scope", "").split()
            and q.get("nonce")
        )
        back: dict[str, str] = {"state": q.get("state", ""), "iss": self.issuer}
        if not ok:
            back["error"] = "invalid_request"
        elif self.next_user is None:
            back["error"] = "access_denied"
        else:
            back["code"] = code = secrets.token_urlsafe(24)
            self._codes[code] = {
                "redirect_uri": q["redirect_uri"],
                "challenge": q["code_challenge"],
                "nonce": q["nonce"],
                "user": dict(self.next_user),
            }
        raise web.HTTPFound(f"{self.redirect_uri}?{urlencode(back)}")

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()

        def refuse(error: str, status: int = 400) -> web.Response:
            return web.json_response({"error": error}, status=status)

        if not self._client_authenticated(request, str(form.get("client_id", ""))):
            return refuse("invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            return refuse("unsupported_grant_type")
        grant = self._codes.pop(str(form.get("code", "")), None)  # single use
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return refuse("invalid_grant")
        verifier = str(form.get("code_verifier", ""))
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not hmac.compare_digest(digest, grant["challenge"]):
            return refuse("invalid_grant")
        user: dict[str, Any] = grant["user"]
        return web.json_response(
            {
                "access_token": self.issue_access_token(user),
                "id_token": self._id_token(user, grant["nonce"]),
                "token_type": "Bearer",
                "expires_in": 300,
            },
            headers={"Cache-Control": "no-store"},
        )

    def _client_authenticated(self, request: web.Request, form_client_id: str) -> bool:
        if self.client_secret is None:  # a public client: PKCE is its proof
            return form_client_id == self.client_id
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return False
        return unquote_plus(client_id) == self.client_id and hmac.compare_digest(
            unquote_plus(secret), self.client_secret
        )

    def _id_token(self, user: dict[str, Any], nonce: str) -> str:
        now = int(time.time())
        aud = self.id_token_audience or self.client_id
        claims: dict[str, Any] = {
            "iss": self.issuer_override or self.issuer,
            "sub": user.get("sub", f"sub-{user.get('preferred_username', 'anon')}"),
            "aud": aud,
            "iat": now,
            "exp": now + self.id_token_lifetime,
            "auth_time": now,
            "nonce": nonce,
        }
        if isinstance(aud, list):
            claims["azp"] = self.client_id
        claims |= {k: v for k, v in user.items() if k != "sub"} | self.extra_id_claims
        kid, key = self._keys[0]
        if self.id_token_alg == "none":
            return jwt.encode(claims, "", algorithm="none", headers={"kid": kid})
        if self.id_token_alg == "HS256":
            return jwt.encode(claims, self.client_secret or "k" * 32, algorithm="HS256", headers={"kid": kid})
        return jwt.encode(claims, self._other_key if self.sign_with_other_key else key, "RS256", {"kid": kid})
