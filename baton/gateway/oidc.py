"""Signing people in to ``baton serve`` with OpenID Connect, and checking the UI's access tokens.

An approval is only worth what the approver's identity is worth: separation of duties
compares the person who decides with the person who submitted, so the gateway must
not take a name on trust. It lets the organisation's identity provider (Keycloak,
Entra ID, Okta, Google, ...) say who is at the browser, with the authorization-code
flow and every check that flow needs to resist a forged or replayed login:

* ``state`` (compared in constant time) ties the callback to the browser that began
  the login, so nobody can log a victim in as the attacker (login CSRF);
* PKCE (S256) ties the authorization code to this login, so an intercepted code is
  useless to anyone else;
* ``nonce`` ties the ID token to this login, so a token from another login cannot be
  replayed into it;
* the ID token's signature is checked against the provider's published keys (JWKS),
  and only asymmetric algorithms are accepted: never ``none``, never HMAC (which would
  let anyone holding the client secret, or a confused library, mint tokens);
* ``iss``, ``aud`` (and ``azp``) and ``exp`` make sure the token was issued by the
  configured provider, for this gateway, and recently.

Discovery and the key set are fetched once and kept; a token naming an unknown key
makes the client fetch the key set again (at most once a minute) so the provider can
rotate its keys without a restart.

The same keys check the bearer access tokens the Temporal UI sends to the codec
endpoint when the UI itself signs in with SSO (:meth:`OidcClient.verify_access_token`).

Every refusal is an :class:`OidcError` whose ``reason`` names what is wrong in one
line a person can act on; no reason ever carries a token, a code or a secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import httpx
import jwt

from baton.errors import BatonUsageError
from baton.identity import IdentityError, canonical
from baton.safetext import printable

ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
"""Signature algorithms accepted on tokens: asymmetric only, so only the provider can sign."""

JWKS_REFETCH_SECONDS = 60.0
"""An unknown key id refetches the key set at most this often (a rotation, not a flood)."""

HTTP_TIMEOUT = httpx.Timeout(10.0)
"""Each call to the provider (discovery, keys, token exchange) gives up after this long."""

_DISCOVERY_PATH = "/.well-known/openid-configuration"
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_MAX_NAME = 200


def _loopback(url: str) -> bool:
    """Plain http is only for a provider on this machine (tests, a local Keycloak)."""
    return (urlsplit(url).hostname or "") in ("localhost", "127.0.0.1", "::1")


class OidcError(Exception):
    """A login or token the gateway refuses.

    Attributes:
        reason: one line saying what is wrong, fit to show the user; never holds a token or secret.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class OidcSettings:
    """How the gateway talks to the identity provider.

    Attributes:
        issuer: the provider's issuer URL; discovery is at ``issuer + /.well-known/openid-configuration``.
        client_id: the gateway's client id at the provider.
        client_secret: the client secret (sent with HTTP Basic at the token endpoint), or None for a
            public client that relies on PKCE alone.
        redirect_uri: the gateway's callback URL, registered at the provider.
        scopes: the scopes asked for.
        user_claim: the claim holding the Baton user id (falling back to ``email``, then ``sub``).
        roles_claim: the claim listing the user's roles (a dotted path such as ``realm_access.roles``
            reaches into an object), or None when roles come from Baton's roles directory.
        access_audience: the audience required on access tokens presented to the codec endpoint
            (None: the client id).
        leeway_seconds: clock skew tolerated on ``exp`` and ``iat``.
    """

    issuer: str
    client_id: str
    client_secret: str | None
    redirect_uri: str
    scopes: str = "openid profile email"
    user_claim: str = "preferred_username"
    roles_claim: str | None = None
    access_audience: str | None = None
    leeway_seconds: int = 60

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        secret = None if self.client_secret is None else "***"
        return (
            f"OidcSettings(issuer={self.issuer!r}, client_id={self.client_id!r}, client_secret={secret}, "
            f"redirect_uri={self.redirect_uri!r})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, redirect_uri: str) -> OidcSettings | None:
        """The settings from ``BATON_OIDC_*`` variables, or None when ``BATON_OIDC_ISSUER`` is unset.

        Args:
            env: the environment to read.
            redirect_uri: the gateway's callback URL.

        Raises:
            BatonUsageError: a variable is missing or malformed; the message names it.
        """

        def get(name: str) -> str:
            return env.get(name, "").strip()

        issuer = get("BATON_OIDC_ISSUER")
        if not issuer:
            return None
        parts = urlsplit(issuer)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
            raise BatonUsageError("BATON_OIDC_ISSUER must be an http(s) URL without query or fragment")
        if parts.scheme == "http" and not _loopback(issuer):
            raise BatonUsageError(
                "BATON_OIDC_ISSUER must be https outside localhost: its signing keys travel from it"
            )
        client_id = get("BATON_OIDC_CLIENT_ID")
        if not client_id:
            raise BatonUsageError("BATON_OIDC_CLIENT_ID must be set when BATON_OIDC_ISSUER is")
        secret: str | None = get("BATON_OIDC_CLIENT_SECRET") or None
        secret_file = get("BATON_OIDC_CLIENT_SECRET_FILE")
        if secret_file:
            if secret is not None:
                raise BatonUsageError(
                    "set BATON_OIDC_CLIENT_SECRET or BATON_OIDC_CLIENT_SECRET_FILE, not both"
                )
            try:
                secret = Path(secret_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise BatonUsageError(
                    f"BATON_OIDC_CLIENT_SECRET_FILE {secret_file}: {type(exc).__name__}"
                ) from None
            if not secret:
                raise BatonUsageError(f"BATON_OIDC_CLIENT_SECRET_FILE {secret_file} is empty")
        scopes = get("BATON_OIDC_SCOPES") or cls.scopes
        if "openid" not in scopes.split():
            raise BatonUsageError("BATON_OIDC_SCOPES must include 'openid'")
        return cls(
            issuer=issuer,
            client_id=client_id,
            client_secret=secret,
            redirect_uri=redirect_uri,
            scopes=scopes,
            user_claim=get("BATON_OIDC_USER_CLAIM") or cls.user_claim,
            roles_claim=get("BATON_OIDC_ROLES_CLAIM") or None,
            access_audience=get("BATON_OIDC_ACCESS_AUDIENCE") or None,
        )


@dataclass(frozen=True)
class LoginState:
    """What the gateway keeps (in its signed session) between the redirect and the callback.

    Attributes:
        state: the anti-CSRF value the callback must echo.
        nonce: the value the ID token must carry.
        verifier: the PKCE code verifier.
    """

    state: str
    nonce: str
    verifier: str

    def to_dict(self) -> dict[str, str]:
        """The state as a JSON-able dict."""
        return {"state": self.state, "nonce": self.nonce, "verifier": self.verifier}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LoginState | None:
        """The state read back from :meth:`to_dict`'s output, or None if ``d`` is malformed."""
        if not isinstance(d, Mapping):
            return None
        state, nonce, verifier = d.get("state"), d.get("nonce"), d.get("verifier")
        if not all(isinstance(v, str) and 0 < len(v) <= 256 for v in (state, nonce, verifier)):
            return None
        return cls(state=str(state), nonce=str(nonce), verifier=str(verifier))


@dataclass(frozen=True)
class OidcIdentity:
    """Who the provider says signed in.

    Attributes:
        user_id: the Baton user id (canonical, see :func:`baton.identity.canonical`).
        name: the display name (the ``name`` claim, else the user id).
        roles: the roles from the roles claim, or None when no roles claim is configured.
        subject: the provider's ``sub`` for this person.
    """

    user_id: str
    name: str
    roles: tuple[str, ...] | None
    subject: str


class OidcClient:
    """An OpenID Connect relying party: the authorization-code flow with PKCE, and token checks.

    Args:
        settings: the provider and client.
        http: the client for calls to the provider (the caller owns and closes it).
    """

    def __init__(self, settings: OidcSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self._http = http
        self._discovery: dict[str, Any] | None = None
        self._keys: dict[str, dict[str, Any]] = {}
        self._unnamed_keys: list[dict[str, Any]] = []
        self._keys_loaded = False
        self._last_refetch: float | None = None
        self._lock = asyncio.Lock()

    async def begin(self) -> tuple[str, LoginState]:
        """Start a login: the URL to send the browser to, and the state to keep for the callback."""
        discovery = await self._discover()
        login = LoginState(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(48),
        )
        challenge = base64.urlsafe_b64encode(hashlib.sha256(login.verifier.encode()).digest()).rstrip(b"=")
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": self.settings.redirect_uri,
                "scope": self.settings.scopes,
                "state": login.state,
                "nonce": login.nonce,
                "code_challenge": challenge.decode(),
                "code_challenge_method": "S256",
            }
        )
        endpoint = discovery["authorization_endpoint"]
        return f"{endpoint}{'&' if urlsplit(endpoint).query else '?'}{query}", login

    async def finish(self, params: Mapping[str, str], expected: LoginState) -> OidcIdentity:
        """Complete a login from the callback's query parameters.

        Args:
            params: the callback's query parameters.
            expected: the state :meth:`begin` returned for this browser.

        Raises:
            OidcError: the provider refused, the callback does not belong to this login, or the
                ID token does not pass its checks.
        """
        if "error" in params:
            raise OidcError(f"the identity provider refused the login: {_error_code(params['error'])}")
        if not hmac.compare_digest(params.get("state", "").encode(), expected.state.encode()):
            raise OidcError("the login's state does not match: start the login again")
        discovery = await self._discover()
        issuer = params.get("iss")
        if issuer is None and discovery.get("authorization_response_iss_parameter_supported") is True:
            raise OidcError("the login response does not name its identity provider: start the login again")
        if issuer is not None and issuer != self.settings.issuer:
            raise OidcError("the login response came from another identity provider: start the login again")
        code = params.get("code", "")
        if not code:
            raise OidcError("the identity provider sent no authorization code: start the login again")
        id_token = await self._exchange(discovery["token_endpoint"], code, expected.verifier)
        claims = await self._validate(id_token, "ID token", self.settings.client_id, require_iat=True)
        azp = claims.get("azp")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if (azp is not None or len(audiences) > 1) and azp != self.settings.client_id:
            raise OidcError("the ID token was issued to another client (its 'azp' is not this gateway)")
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), expected.nonce.encode()):
            raise OidcError("the ID token's nonce does not match this login: start the login again")
        return self._identity(claims, "ID token")

    async def verify_access_token(self, token: str) -> OidcIdentity:
        """The identity in a bearer access token (a JWT from the provider), for the codec endpoint.

        Raises:
            OidcError: the token is opaque, or fails the signature, issuer, audience or expiry check.
        """
        if token.count(".") != 2:
            raise OidcError("the access token is not a JWT (opaque access tokens cannot be verified here)")
        audience = self.settings.access_audience or self.settings.client_id
        claims = await self._validate(token, "access token", audience)
        return self._identity(claims, "access token")

    # -- the provider's documents ----------------------------------------------------------------------

    async def _discover(self) -> dict[str, Any]:
        if self._discovery is not None:
            return self._discovery
        async with self._lock:
            if self._discovery is None:
                url = self.settings.issuer.rstrip("/") + _DISCOVERY_PATH
                doc = await self._get_json(url, "discovery document")
                if doc.get("issuer") != self.settings.issuer:
                    raise OidcError(
                        "the identity provider's discovery document names another issuer than "
                        "BATON_OIDC_ISSUER (they must match exactly, including any trailing slash)"
                    )
                for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    value = doc.get(field)
                    if not isinstance(value, str) or urlsplit(value).scheme not in ("https", "http"):
                        raise OidcError(f"the identity provider's discovery document lacks {field}")
                    if urlsplit(value).scheme == "http" and not _loopback(value):
                        raise OidcError(f"the identity provider's {field} is not https")
                methods = doc.get("code_challenge_methods_supported")
                if isinstance(methods, list) and "S256" not in methods:
                    raise OidcError("the identity provider does not support PKCE with S256")
                self._discovery = doc
        return self._discovery

    async def _load_keys(self) -> None:
        discovery = await self._discover()
        doc = await self._get_json(discovery["jwks_uri"], "key set")
        keys = doc.get("keys")
        if not isinstance(keys, list):
            raise OidcError("the identity provider's key set has no 'keys' list")
        named: dict[str, dict[str, Any]] = {}
        unnamed: list[dict[str, Any]] = []
        for key in keys:
            if not isinstance(key, dict) or key.get("use", "sig") != "sig" or key.get("kty") == "oct":
                continue
            kid = key.get("kid")
            if isinstance(kid, str):
                named[kid] = key
            else:
                unnamed.append(key)
        self._keys, self._unnamed_keys, self._keys_loaded = named, unnamed, True

    async def _key_for(self, kid: object, what: str) -> dict[str, Any]:
        await self._discover()  # before taking the lock: discovery takes it too
        async with self._lock:
            if not self._keys_loaded:
                await self._load_keys()
            key = self._find_key(kid)
            now = time.monotonic()
            if key is None and (
                self._last_refetch is None or now - self._last_refetch >= JWKS_REFETCH_SECONDS
            ):
                self._last_refetch = now  # the provider may have rotated its keys
                await self._load_keys()
                key = self._find_key(kid)
        if key is None:
            raise OidcError(f"the {what} is signed with a key the identity provider does not publish")
        return key

    def _find_key(self, kid: object) -> dict[str, Any] | None:
        if isinstance(kid, str):
            return self._keys.get(kid)
        if kid is None and len(self._keys) + len(self._unnamed_keys) == 1:
            return next(iter(self._keys.values()), None) or self._unnamed_keys[0]
        return None

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"}, timeout=HTTP_TIMEOUT)
        except httpx.HTTPError as exc:
            raise OidcError(
                f"the identity provider's {what} could not be fetched ({type(exc).__name__})"
            ) from exc
        if response.status_code != 200:
            raise OidcError(
                f"the identity provider's {what} could not be fetched (HTTP {response.status_code})"
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise OidcError(f"the identity provider's {what} is not a JSON object")
        return data

    # -- the code exchange and the tokens ------------------------------------------------------------------

    async def _exchange(self, token_endpoint: str, code: str, verifier: str) -> str:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.redirect_uri,
            "code_verifier": verifier,
            "client_id": self.settings.client_id,
        }
        headers = {"Accept": "application/json"}
        if self.settings.client_secret is not None:  # client_secret_basic: RFC 6749 §2.3.1 form-encodes both
            pair = f"{quote_plus(self.settings.client_id)}:{quote_plus(self.settings.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            response = await self._http.post(token_endpoint, data=form, headers=headers, timeout=HTTP_TIMEOUT)
        except httpx.HTTPError as exc:
            raise OidcError(
                f"the identity provider's token endpoint could not be reached ({type(exc).__name__})"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not 200 <= response.status_code < 300:
            code_name = body.get("error") if isinstance(body, dict) else None
            detail = _error_code(code_name) if code_name is not None else f"HTTP {response.status_code}"
            raise OidcError(f"the identity provider refused the code exchange: {detail}")
        id_token = body.get("id_token") if isinstance(body, dict) else None
        if not isinstance(id_token, str) or not id_token:
            raise OidcError("the identity provider's token response holds no ID token")
        return id_token

    async def _validate(
        self, token: str, what: str, audience: str, *, require_iat: bool = False
    ) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise OidcError(f"the {what} is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise OidcError(
                f"the {what}'s signing algorithm is not allowed (only {', '.join(ALLOWED_ALGORITHMS)})"
            )
        jwk = await self._key_for(header.get("kid"), what)
        if jwk.get("alg", alg) != alg:
            raise OidcError(f"the {what}'s signing algorithm is not the one its key is published for")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            raise OidcError(f"the {what}'s signing key does not suit its algorithm") from None
        required = ["exp", "iat", "iss", "aud", "sub"] if require_iat else ["exp", "iss", "aud", "sub"]
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": required, "enforce_minimum_key_length": True},
            )
        except jwt.InvalidSignatureError:
            raise OidcError(f"the {what}'s signature does not verify") from None
        except jwt.ExpiredSignatureError:
            raise OidcError(f"the {what} has expired") from None
        except jwt.InvalidAudienceError:
            raise OidcError(f"the {what}'s audience is not this gateway") from None
        except jwt.InvalidIssuerError:
            raise OidcError(f"the {what}'s issuer is not the configured identity provider") from None
        except jwt.ImmatureSignatureError:
            raise OidcError(f"the {what} is not valid yet (are the clocks in step?)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise OidcError(f"the {what} lacks the {exc.claim!r} claim") from None
        except jwt.InvalidKeyError:
            raise OidcError(f"the {what}'s signing key is too weak") from None
        except jwt.PyJWTError:
            raise OidcError(f"the {what} is malformed or its claims are invalid") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise OidcError(f"the {what}'s 'sub' claim is not a string")
        return claims

    def _identity(self, claims: Mapping[str, Any], what: str) -> OidcIdentity:
        user_id: str | None = None
        for claim in dict.fromkeys((self.settings.user_claim, "email", "sub")):
            value = claims.get(claim)
            if not isinstance(value, str) or not value.strip():
                continue
            if (
                claim == "email"
                and claim != self.settings.user_claim
                and claims.get("email_verified") is not True
            ):
                continue  # an unverified (or unstated) address is whatever the user typed
            try:
                user_id = canonical(value)
            except IdentityError as exc:
                raise OidcError(
                    f"the {what}'s {claim!r} claim is not a usable Baton user id: {exc}"
                ) from None
            break
        if user_id is None:
            raise OidcError(f"the {what} holds no user id (claim {self.settings.user_claim!r})")
        name = claims.get("name")
        display = printable(name.strip())[:_MAX_NAME] if isinstance(name, str) and name.strip() else user_id
        return OidcIdentity(
            user_id=user_id, name=display, roles=self._roles(claims, what), subject=str(claims["sub"])
        )

    def _roles(self, claims: Mapping[str, Any], what: str) -> tuple[str, ...] | None:
        path = self.settings.roles_claim
        if path is None:
            return None
        value: Any = claims.get(path)
        if path not in claims:  # "realm_access.roles": walk into objects (a literal key wins)
            value = claims
            for part in path.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(role, str) for role in value):
            raise OidcError(f"the {what}'s {path!r} claim is not a list of role names")
        return tuple(dict.fromkeys(role.strip() for role in value if role.strip()))


def _error_code(value: object) -> str:
    """An OAuth error code fit to show, or a placeholder when it is not one (RFC 6749 §4.1.2.1)."""
    return value if isinstance(value, str) and _ERROR_CODE.fullmatch(value) else "an unrecognised error"
