"""The gateway as one ASGI application: pages, logins, the codec endpoint, health.

Built from a :class:`~baton.client.BatonClient` (which signs what it sends when it holds
a decision key) and the app's roles directory. Middleware, outermost first: the request
log, the security headers, the session; a page handler only ever sees a request whose
session is already verified.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from temporalio.service import RPCError

from baton.client import BatonClient
from baton.codec import load_codec
from baton.errors import BatonError
from baton.gateway import auditor, cases, codec, inbox, login, submit
from baton.gateway.context import Gateway
from baton.gateway.oidc import HTTP_TIMEOUT, OidcClient
from baton.gateway.sessions import CookieSigner, SessionMiddleware
from baton.gateway.settings import GatewaySettings
from baton.gateway.web import RequestLog, SecurityHeaders, route_template
from baton.roles import YamlRoleDirectory

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 1024 * 1024
"""No form or codec request needs more; larger bodies are refused before they are read."""


def create_app(client: BatonClient, settings: GatewaySettings) -> Starlette:
    """The gateway for ``client``'s app and namespace, configured by ``settings``."""
    http = httpx.AsyncClient(timeout=HTTP_TIMEOUT)
    gw = Gateway(
        client=client,
        directory=YamlRoleDirectory(client.settings.roles_file),
        settings=settings,
        oidc=OidcClient(settings.oidc, http) if settings.oidc is not None else None,
    )

    async def health(request: Request) -> Response:
        try:
            healthy = await client.temporal.service_client.check_health()
        except Exception as exc:  # any failure is "not ready"
            return JSONResponse({"status": "unavailable", "temporal": type(exc).__name__}, status_code=503)
        return JSONResponse(
            {"status": "ok" if healthy else "unavailable"}, status_code=200 if healthy else 503
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        return gw.error(request, "Not found", "There is no such page.", status=404)

    async def unavailable(request: Request, exc: Exception) -> Response:
        # An expected failure (the roles directory unreadable, Temporal refusing): a page, not a traceback.
        log.warning("%s %s: %s", request.method, route_template(request.scope), exc)
        return gw.error(request, "Unavailable", str(exc), status=503)

    async def temporal_unavailable(request: Request, exc: Exception) -> Response:
        text = exc.message if isinstance(exc, RPCError) else str(exc)
        log.warning("%s %s: Temporal: %s", request.method, route_template(request.scope), text)
        return gw.error(
            request,
            "Unavailable",
            f"Temporal did not answer ({text}); if this persists, check that it and the app's "
            f"workers (task queue {client.task_queue!r}) are running.",
            status=503,
        )

    routes = [
        Route("/healthz", health, methods=["GET"]),
        *login.routes(gw),
        *inbox.routes(gw),
        *cases.routes(gw),
        *submit.routes(gw),
        *auditor.routes(gw),
        *codec.routes(gw, load_codec()),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await http.aclose()

    signer = CookieSigner(settings.session_keys, max_age=settings.session_hours * 3600)
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestLog),
            Middleware(SecurityHeaders, hsts=settings.secure_cookies),
            Middleware(SessionMiddleware, signer=signer, secure=settings.secure_cookies),
        ],
        exception_handlers={404: not_found, BatonError: unavailable, RPCError: temporal_unavailable},
        lifespan=lifespan,
        max_body_size=MAX_BODY,
    )
    app.state.gateway = gw
    return app
