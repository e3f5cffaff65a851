"""The gateway's configuration: from the environment, with local defaults, checked at start.

Everything a deployment must get right is refused at start with the variable named,
not discovered by the first approver: a public URL over plain http (cookies would travel
in clear), a missing session key outside localhost (every restart would log everyone out,
and replicas would not accept each other's cookies), a roles claim without an issuer.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from baton.errors import BatonUsageError
from baton.gateway.oidc import OidcSettings
from baton.keyring import read_keyring

SESSION_KEYS_VARIABLE = "BATON_GATEWAY_SESSION_KEYS"
DEV_SESSION_KEYS_FILE = "gateway-session-keys.json"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK_HOSTS


@dataclass(frozen=True)
class GatewaySettings:
    """How ``baton serve`` runs.

    Attributes:
        public_url: where people reach the gateway (``BATON_GATEWAY_URL``); decides the
            OIDC redirect URI and whether cookies are ``Secure``.
        session_keys: key id → HMAC key for session cookies; the first signs, all verify
            (``BATON_GATEWAY_SESSION_KEYS=k2:<base64>,k1:<base64>``, or ``…_FILE``).
        session_hours: how long a login lasts (``BATON_GATEWAY_SESSION_HOURS``, default 8).
        auditor_roles: roles that may read any case and its audit trail
            (``BATON_GATEWAY_AUDITOR_ROLES``, default ``auditor``).
        temporal_ui_url: the Temporal UI the auditor's links point at (``BATON_TEMPORAL_UI_URL``).
        trace_url: a link template for a case's trace, ``{case_id}`` filled in
            (``BATON_TRACE_URL``, e.g. ``http://jaeger:16686/trace/{trace_id}``); empty: no link.
        codec_origins: origins whose pages may call the codec endpoint with credentials
            (``BATON_GATEWAY_CODEC_ORIGINS``, default the Temporal UI's origin).
        oidc: the identity provider, when ``BATON_OIDC_ISSUER`` is set; else local accounts.
    """

    public_url: str = "http://localhost:8300"
    session_keys: dict[str, bytes] = field(default_factory=dict)
    session_hours: float = 8.0
    auditor_roles: frozenset[str] = frozenset({"auditor"})
    temporal_ui_url: str = "http://localhost:8233"
    trace_url: str = ""
    codec_origins: tuple[str, ...] = ()
    oidc: OidcSettings | None = None
    trusted_proxies: str = "127.0.0.1"
    """Addresses whose ``X-Forwarded-For`` names the client (``BATON_GATEWAY_TRUSTED_PROXIES``):
    the TLS proxy in front, so login throttling counts people, not the proxy."""

    @property
    def secure_cookies(self) -> bool:
        """Cookies carry ``Secure`` whenever the gateway is served over https."""
        return urlsplit(self.public_url).scheme == "https"

    @property
    def origin(self) -> str:
        """The gateway's own origin, which every form post must come from."""
        return _origin(self.public_url)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, home: Path, default_url: str = "http://localhost:8300"
    ) -> GatewaySettings:
        """Read the settings; create a development session key in ``home`` on localhost only.

        Raises:
            BatonUsageError: a variable is malformed or a production requirement is missing.
        """
        public_url = env.get("BATON_GATEWAY_URL", "").strip().rstrip("/") or default_url
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BatonUsageError(f"BATON_GATEWAY_URL={public_url!r}: expected http(s)://host[:port]")
        if parts.scheme == "http" and not _is_loopback(public_url):
            raise BatonUsageError(
                f"BATON_GATEWAY_URL={public_url!r}: outside localhost the gateway must be served over "
                "https (session cookies are Secure); put it behind a TLS-terminating proxy"
            )
        keyring = read_keyring(env, SESSION_KEYS_VARIABLE, what="gateway session keys file")
        if keyring is None:
            if not _is_loopback(public_url):
                raise BatonUsageError(
                    f"{SESSION_KEYS_VARIABLE} is not set: a gateway outside localhost needs a session key "
                    "shared by its replicas (make one: python -c 'import secrets,base64;"
                    'print("k1:"+base64.b64encode(secrets.token_bytes(32)).decode())\')'
                )
            keys = dev_session_keys(home)
        else:
            keys = keyring[0]
            if keyring[1] != next(iter(keys)):  # the file's "current" signs: put it first
                keys = {keyring[1]: keys[keyring[1]], **keys}
        for key_id, key in keys.items():
            if len(key) < 32:
                raise BatonUsageError(f"{SESSION_KEYS_VARIABLE}: key {key_id!r} has {len(key)} bytes; use 32")
        try:
            hours = float(env.get("BATON_GATEWAY_SESSION_HOURS", "8"))
        except ValueError:
            raise BatonUsageError("BATON_GATEWAY_SESSION_HOURS: expected a number of hours") from None
        if not 0 < hours <= 24 * 30:
            raise BatonUsageError("BATON_GATEWAY_SESSION_HOURS: expected more than 0 and at most 720")
        ui = env.get("BATON_TEMPORAL_UI_URL", "").strip().rstrip("/") or "http://localhost:8233"
        auditors = frozenset(r.strip() for r in env.get("BATON_GATEWAY_AUDITOR_ROLES", "auditor").split(","))
        origins = tuple(
            o.strip().rstrip("/") for o in env.get("BATON_GATEWAY_CODEC_ORIGINS", _origin(ui)).split(",")
        )
        return cls(
            public_url=public_url,
            session_keys=keys,
            session_hours=hours,
            auditor_roles=frozenset(r for r in auditors if r),
            temporal_ui_url=ui,
            trace_url=env.get("BATON_TRACE_URL", "").strip(),
            codec_origins=tuple(o for o in origins if o),
            oidc=OidcSettings.from_env(env, redirect_uri=public_url + "/login/callback"),
            trusted_proxies=env.get("BATON_GATEWAY_TRUSTED_PROXIES", "").strip() or "127.0.0.1",
        )


def dev_session_keys(home: Path) -> dict[str, bytes]:
    """The development session key in ``home`` (created on first use, readable by its owner only)."""
    path = home / DEV_SESSION_KEYS_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another gateway made it first: use theirs
        else:
            with os.fdopen(fd, "w") as handle:
                json.dump({"current": "dev", "keys": {"dev": key}}, handle)
    found = read_keyring({f"{SESSION_KEYS_VARIABLE}_FILE": str(path)}, SESSION_KEYS_VARIABLE, what="file")
    assert found is not None
    return found[0]
