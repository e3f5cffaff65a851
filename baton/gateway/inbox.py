"""The inbox: the cases waiting on my roles, oldest (or largest) first.

Read from Temporal's visibility store (Baton's search attributes and memo), not from the
cases themselves, so the inbox answers even while workers are busy or down, and one
query serves thousands of waiting cases. Every waiting case is listed (to count and order
them) but only the page shown has its memo (summary) read. The filters (process, role, order, page) are
the only things in the URL: no case data.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from baton.client import PendingCase
from baton.errors import BatonUsageError
from baton.gateway.context import Gateway

PAGE_SIZE = 100
MAX_LISTED = 5000
"""The inbox reads at most this many waiting cases (the count says "5000+" beyond)."""


def order(cases: list[PendingCase], by: str) -> list[PendingCase]:
    """Oldest first (the default), or largest amount first (cases without one last), ties oldest first."""
    if by == "largest":
        return sorted(cases, key=lambda c: (c.amount is None, -(c.amount or 0.0), c.started))
    return sorted(cases, key=lambda c: (c.started, -(c.amount or 0.0)))


def routes(gw: Gateway) -> list[Route]:
    """``/``: the signed-in person's inbox."""

    async def inbox(request: Request) -> Response:
        me = gw.user(request)
        if me is None:
            return gw.login_redirect()
        params = request.query_params
        role = params.get("role", "")
        process = params.get("process", "")
        by = "largest" if params.get("sort") == "largest" else "oldest"
        try:
            page = max(1, int(params.get("page", "1")))
        except ValueError:
            page = 1
        roles = sorted(me.roles & {role}) if role else sorted(me.roles)
        error = ""
        try:
            cases = await gw.client.pending(
                roles=roles, process=process or None, limit=MAX_LISTED, memo=False
            )
        except BatonUsageError as exc:
            cases, error = [], str(exc)
        processes = sorted(gw.client.app.processes()) if gw.client.app is not None else []
        cases = order(cases, by)
        pages = max(1, -(-len(cases) // PAGE_SIZE))
        page = min(page, pages)
        return gw.render(
            request,
            "inbox.html",
            {
                "cases": await gw.client.with_memo(cases[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]),
                "total": len(cases),
                "capped": len(cases) >= MAX_LISTED,
                "page": page,
                "pages": pages,
                "role": role,
                "process": process,
                "sort": by,
                "roles": sorted(me.roles),
                "processes": processes,
                "error": error,
            },
        )

    return [Route("/", inbox, methods=["GET"])]
