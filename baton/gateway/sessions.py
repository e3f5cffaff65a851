"""Sessions in signed cookies, and the CSRF token every form carries.

A session is a small JSON object (who, how they logged in, a CSRF token, when it was
issued, one-shot messages for the next page) in a cookie signed with HMAC-SHA256: the
browser holds it and cannot alter it, and any replica with the key can read it, so the
gateway keeps no session store. The cookie is ``HttpOnly`` (no script can read it),
``SameSite=Lax`` (other sites' forms do not carry it; the identity provider's redirect
back, a top-level GET, does) and ``Secure`` over https. Keys rotate like Baton's other
keys: the first signs, every listed key verifies, a removed key logs its sessions out.

Signed, not encrypted: it holds nothing secret (no password, no token, no case data).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "baton_session"
FORM_EXPIRED = "This form is out of date or did not come from this site: reload the page and try again."
CSRF_FIELD = "csrf"
MAX_COOKIE = 3800
"""Browsers keep cookies up to ~4 KB; a session never needs more (flash messages are trimmed)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CookieSigner:
    """Signs and opens session cookies: ``<key id>.<base64 JSON>.<base64 MAC>``."""

    def __init__(self, keys: dict[str, bytes], *, max_age: float, clock: Callable[[], float] = time.time):
        if not keys:
            raise ValueError("a session needs at least one key")
        self._keys = keys
        self._current = next(iter(keys))
        self.max_age = max_age
        self._clock = clock

    def _mac(self, key: bytes, key_id: str, body: str) -> bytes:
        return hmac.new(key, f"{key_id}.{body}".encode(), hashlib.sha256).digest()

    def dumps(self, data: dict[str, Any]) -> str:
        """The cookie value for ``data`` (stamped with the time it was first issued)."""
        data.setdefault("iat", int(self._clock()))
        body = _b64(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
        mac = self._mac(self._keys[self._current], self._current, body)
        return f"{self._current}.{body}.{_b64(mac)}"

    def loads(self, value: str) -> dict[str, Any] | None:
        """The session in ``value``, or None: unsigned, altered, signed by a retired key, or expired."""
        key_id, _, rest = value.partition(".")
        body, _, mac = rest.partition(".")
        key = self._keys.get(key_id)
        if key is None or not body or not mac:
            return None
        try:
            if not hmac.compare_digest(_unb64(mac), self._mac(key, key_id, body)):
                return None
            data = json.loads(_unb64(body))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("iat"), int):
            return None
        if self._clock() - data["iat"] > self.max_age:
            return None
        return data


class SessionMiddleware:
    """Puts the signed session in ``scope["session"]`` and writes it back when it changed.

    A session that becomes empty (logout) clears the cookie.
    """

    def __init__(self, app: ASGIApp, *, signer: CookieSigner, secure: bool) -> None:
        self.app = app
        self.signer = signer
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = _cookie(scope, COOKIE)
        loaded = self.signer.loads(raw) if raw else None
        session: dict[str, Any] = dict(loaded or {})
        scope["session"] = session
        before = json.dumps(session, sort_keys=True)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                after = json.dumps(session, sort_keys=True)
                if after != before or (raw and loaded is None):
                    headers = MutableHeaders(scope=message)
                    headers.append("Set-Cookie", self._cookie_header(session))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _cookie_header(self, session: MutableMapping[str, Any]) -> str:
        flags = "; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if self.secure else "")
        if not session:
            return f"{COOKIE}=; Max-Age=0" + flags
        value = self.signer.dumps(dict(session))
        while len(value) > MAX_COOKIE and session.get("flash"):
            session["flash"] = session["flash"][1:]  # drop the oldest message, never the login
            value = self.signer.dumps(dict(session))
        return f"{COOKIE}={value}; Max-Age={int(self.signer.max_age)}" + flags


def _cookie(scope: Scope, name: str) -> str:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            for part in bytes(value).decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name:
                    return v
    return ""


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's CSRF token, made on first use (one per session, checked on every post)."""
    token = session.get(CSRF_FIELD)
    if isinstance(token, str) and len(token) >= 32:
        return token
    made = secrets.token_urlsafe(32)
    session[CSRF_FIELD] = made
    return made


def csrf_ok(session: MutableMapping[str, Any], submitted: object) -> bool:
    """True when a form's token is the session's (constant time)."""
    token = session.get(CSRF_FIELD)
    return (
        isinstance(token, str)
        and isinstance(submitted, str)
        and hmac.compare_digest(token.encode(), submitted.encode())
    )


def flash(session: MutableMapping[str, Any], kind: str, text: str) -> None:
    """A message for the next page this browser loads (``kind``: ok or error)."""
    messages = list(session.get("flash", []))[-3:]
    messages.append([kind, text[:500]])
    session["flash"] = messages


def take_flash(session: MutableMapping[str, Any]) -> list[tuple[str, str]]:
    """The messages waiting for this page, removed from the session."""
    found = session.pop("flash", [])
    return [(str(k), str(t)) for k, t in found] if isinstance(found, list) else []
