"""What every page handler shares: the client, the directory, who is signed in, rendering.

Who a person is comes from their session; what they may do comes from their roles,
read afresh on every request (from the roles directory, or from the identity
provider's claim at login), so a role taken away in the directory takes effect at
once. A local account's session also holds a fingerprint of its password hash, so
changing a password (``baton user passwd``) ends every session made with the old one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from baton.client import BatonClient
from baton.durations import format_duration
from baton.errors import BatonError
from baton.gateway.oidc import OidcClient
from baton.gateway.sessions import csrf_token, take_flash
from baton.gateway.settings import GatewaySettings
from baton.gateway.throttle import LoginThrottle
from baton.roles import YamlRoleDirectory

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class User:
    """The person behind a request: canonical id, display name, roles, how they logged in."""

    id: str
    name: str
    roles: frozenset[str]
    source: str

    def is_auditor(self, settings: GatewaySettings) -> bool:
        """May read any case and its audit trail."""
        return bool(self.roles & settings.auditor_roles)


def password_fingerprint(password_hash: str | None) -> str:
    """A short stand-in for the password hash, kept in the session (never the hash itself)."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


@dataclass
class Gateway:
    """The gateway's shared parts, built once by :func:`baton.gateway.app.create_app`."""

    client: BatonClient
    directory: YamlRoleDirectory
    settings: GatewaySettings
    oidc: OidcClient | None = None
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    templates: Environment = field(
        default_factory=lambda: Environment(
            loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True)
        )
    )

    def __post_init__(self) -> None:
        self.templates.filters["ago"] = _ago
        self.templates.filters["until"] = _until
        self.templates.filters["money"] = _money
        self.templates.filters["when"] = _when

    def user(self, request: Request) -> User | None:
        """Who is signed in, or None (a session whose account is gone or changed is ended).

        Worked out once per request (a handler and its page both ask), and again only if the
        session changed hands in between.
        """
        session = request.session
        user_id = session.get("user")
        if not isinstance(user_id, str):
            return None
        known: User | None = getattr(request.state, "baton_user", None)
        if known is not None and known.id == user_id:
            return known
        found = self._user(session, user_id)
        request.state.baton_user = found
        return found

    def _user(self, session: dict[str, Any], user_id: str) -> User | None:
        claimed = session.get("roles")
        if session.get("src") != "local" and isinstance(claimed, list):  # roles from the SSO claim
            return User(user_id, str(session.get("name") or user_id), frozenset(map(str, claimed)), "oidc")
        account = self.directory.account(user_id)
        if session.get("src") == "local":
            if account is None or session.get("pw") != password_fingerprint(account.password_hash):
                session.clear()
                return None
            return User(user_id, account.name or user_id, frozenset(account.roles), "local")
        roles = frozenset(account.roles) if account is not None else frozenset()
        return User(user_id, str(session.get("name") or user_id), roles, "oidc")

    def render(
        self, request: Request, template: str, context: Mapping[str, Any], *, status: int = 200
    ) -> HTMLResponse:
        """A page: the template with the user, the CSRF token and the flash messages."""
        try:
            me = self.user(request)
        except BatonError:
            me = None  # the directory cannot be read: the page says so without a user
        page = self.templates.get_template(template).render(
            request=request,
            me=me,
            csrf=csrf_token(request.session),
            messages=take_flash(request.session),
            now=datetime.now(UTC),
            settings=self.settings,
            **context,
        )
        return HTMLResponse(page, status_code=status)

    def error(self, request: Request, title: str, text: str, *, status: int) -> HTMLResponse:
        """A page that says what went wrong, in words, with the status that goes with it."""
        return self.render(request, "error.html", {"title": title, "text": text}, status=status)

    def login_redirect(self) -> Response:
        """Where a request without a session goes: the login page (no return path in the URL)."""
        return RedirectResponse("/login", status_code=303)


def _ago(moment: datetime) -> str:
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    return format_duration(timedelta(seconds=seconds)) + " ago" if seconds >= 60 else "just now"


def _until(moment: datetime | None) -> str:
    if moment is None:
        return "held: no deadline"
    seconds = int((moment - datetime.now(UTC)).total_seconds())
    return f"in {format_duration(timedelta(seconds=seconds))}" if seconds > 0 else "overdue"


def _money(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
