"""Logging in and out: local accounts (the embedded default) or OpenID Connect.

A successful login starts a fresh session (a new CSRF token; nothing carried over from
before it), so a session planted before login cannot be ridden after it. Failed local
logins are throttled per user and per address, and every failure reads the same
("wrong user name or password") and costs the same work, so neither the message nor
the timing tells which user names exist.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from baton.gateway.context import Gateway, password_fingerprint
from baton.gateway.oidc import LoginState, OidcError
from baton.gateway.passwords import verify_password, verify_unknown_user
from baton.gateway.sessions import FORM_EXPIRED, csrf_ok, csrf_token, flash
from baton.identity import canonical_or_none

log = logging.getLogger(__name__)
WRONG = "wrong user name or password"
HASHING = asyncio.Semaphore(4)
MAX_ROLES = 40
"""More roles than any person approves for: a claim beyond it (e.g. every group) is refused."""


def routes(gw: Gateway) -> list[Route]:
    """``/login`` (form and post), ``/login/sso`` and its callback, ``/logout``."""

    async def login_page(request: Request) -> Response:
        if gw.user(request) is not None:
            return RedirectResponse("/", status_code=303)
        csrf_token(request.session)
        return gw.render(request, "login.html", {"sso": gw.oidc is not None, "username": ""})

    async def login(request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request.session, form.get("csrf")):
            return gw.render(
                request,
                "login.html",
                {"sso": gw.oidc is not None, "username": "", "error": "the form expired: try again"},
                status=403,
            )
        typed = str(form.get("username", ""))[:200]
        password = str(form.get("password", ""))[:1024]
        address = request.client.host if request.client else "?"
        user_id = canonical_or_none(typed) or typed
        wait = gw.throttle.retry_after(user_id, address)
        if wait > 0:
            log.warning("login throttled for %s from %s", user_id, address)
            return gw.render(
                request,
                "login.html",
                {
                    "sso": gw.oidc is not None,
                    "username": typed,
                    "error": f"too many failed logins: try again in {int(wait) + 1} seconds",
                },
                status=429,
            )
        account = gw.directory.account(user_id)
        async with HASHING:  # scrypt is slow and 32 MiB on purpose: off the event loop, a few at once
            if account is None or account.password_hash is None:
                await asyncio.to_thread(verify_unknown_user, password)
                ok = False
            else:
                ok = await asyncio.to_thread(verify_password, password, account.password_hash)
        if not ok or account is None:
            gw.throttle.failed(user_id, address)
            return gw.render(
                request,
                "login.html",
                {"sso": gw.oidc is not None, "username": typed, "error": WRONG},
                status=401,
            )
        gw.throttle.succeeded(user_id, address)
        request.session.clear()
        request.session.update(
            {"user": account.user_id, "src": "local", "pw": password_fingerprint(account.password_hash)}
        )
        return RedirectResponse("/", status_code=303)

    async def sso_start(request: Request) -> Response:
        if gw.oidc is None:
            return RedirectResponse("/login", status_code=303)
        try:
            url, state = await gw.oidc.begin()
        except OidcError as exc:
            return gw.render(
                request, "login.html", {"sso": True, "username": "", "error": exc.reason}, status=502
            )
        request.session["oidc"] = state.to_dict()
        return RedirectResponse(url, status_code=303)

    async def sso_callback(request: Request) -> Response:
        if gw.oidc is None:
            return RedirectResponse("/login", status_code=303)
        expected = LoginState.from_dict(request.session.pop("oidc", None) or {})
        if expected is None:
            flash(request.session, "error", "the login expired or was started elsewhere: start it again")
            return RedirectResponse("/login", status_code=303)
        try:
            identity = await gw.oidc.finish(dict(request.query_params), expected)
        except OidcError as exc:
            log.warning("OIDC login refused: %s", exc.reason)
            flash(request.session, "error", exc.reason)
            return RedirectResponse("/login", status_code=303)
        roles: list[str] | None = None
        if identity.roles is not None:  # only roles Baton knows: a groups claim can hold hundreds
            known = set(gw.directory.roles()) | gw.settings.auditor_roles
            roles = sorted(set(identity.roles) & known)
            if len(roles) > MAX_ROLES:
                flash(request.session, "error", f"your account holds over {MAX_ROLES} of this app's roles")
                return RedirectResponse("/login", status_code=303)
        request.session.clear()
        request.session.update({"user": identity.user_id, "src": "oidc", "name": identity.name[:128]})
        if roles is not None:
            request.session["roles"] = roles
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request.session, form.get("csrf")):
            return gw.error(request, "Form expired", FORM_EXPIRED, status=403)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/login/sso", sso_start, methods=["GET"]),
        Route("/login/callback", sso_callback, methods=["GET"]),
        Route("/logout", logout, methods=["POST"]),
    ]
