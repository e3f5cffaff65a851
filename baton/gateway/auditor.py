"""The auditor's view: any case's audit trail and whether the log still holds it; a search.

Only people holding an auditor role (``BATON_GATEWAY_AUDITOR_ROLES``) see these pages.
A case's page checks the audit log's chain and signatures and compares it with the
anchor the case recorded in Temporal (its newest record's hash and its record count), so
records cut from the end of the log show as missing, not as a shorter clean log. The
search runs on Temporal's visibility store over closed cases; its terms travel in a form
post, not in the URL.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.service import RPCError

from baton import search
from baton.audit.anchors import WORKFLOW_TYPE, anchor_of
from baton.audit.chain import Verdict
from baton.audit.keys import load_audit_keys
from baton.audit.sink import open_sink
from baton.codec import CodecKeyError
from baton.errors import BatonError
from baton.gateway.context import Gateway, User
from baton.gateway.sessions import FORM_EXPIRED, csrf_ok
from baton.identity import canonical_or_none
from baton.messages import Outcome

log = logging.getLogger(__name__)
MAX_RESULTS = 200
TERMS = ("process", "outcome", "decider", "since", "until")


@dataclass(frozen=True)
class ClosedCase:
    """One search result."""

    case_id: str
    process: str
    outcome: str
    closed: datetime | None
    deciders: list[str]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def search_query(task_queue: str, terms: dict[str, str]) -> tuple[str, list[str]]:
    """The visibility query for the search form's ``terms``, and the problems with them (if any)."""
    problems: list[str] = []
    query = (
        f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus != 'Running'"
        f" AND TaskQueue = '{_quote(task_queue)}'"
    )
    if terms.get("process"):
        query += f" AND {search.PROCESS.name} = '{_quote(terms['process'])}'"
    if terms.get("outcome"):
        if terms["outcome"] not in {o.value for o in Outcome}:
            problems.append(f"outcome: one of {', '.join(o.value for o in Outcome)}")
        query += f" AND {search.OUTCOME.name} = '{_quote(terms['outcome'])}'"
    if terms.get("decider"):
        decider = canonical_or_none(terms["decider"])
        if decider is None:
            problems.append("decider: not a user id")
        query += f" AND {search.DECIDERS.name} = '{_quote(decider or '')}'"
    for name, op, suffix in (("since", ">=", "T00:00:00Z"), ("until", "<=", "T23:59:59Z")):
        value = terms.get(name, "")
        if value:
            try:
                date.fromisoformat(value)
            except ValueError:
                problems.append(f"{name}: a date, YYYY-MM-DD")
            query += f" AND CloseTime {op} '{_quote(value)}{suffix}'"
    return query, problems


def routes(gw: Gateway) -> list[Route]:
    """``/audit`` (search) and ``/audit/cases/{case_id}`` (a case's trail and its verification)."""

    def auditor(request: Request) -> User | None:
        me = gw.user(request)
        return me if me is not None and me.is_auditor(gw.settings) else None

    def forbidden(request: Request) -> Response:
        text = "These pages are for auditors (" + ", ".join(sorted(gw.settings.auditor_roles)) + ")."
        return gw.error(request, "Not allowed", text, status=403)

    async def search_page(request: Request) -> Response:
        if gw.user(request) is None:
            return gw.login_redirect()
        if auditor(request) is None:
            return forbidden(request)
        terms: dict[str, str] = {}
        results: list[ClosedCase] | None = None
        problems: list[str] = []
        if request.method == "POST":
            form = await request.form()
            if not csrf_ok(request.session, form.get("csrf")):
                return gw.error(request, "Form expired", FORM_EXPIRED, status=403)
            else:
                terms = {k: str(form.get(k, "")).strip()[:128] for k in TERMS}
                if terms["decider"] and not await gw.client.deciders_indexed():
                    problems.append(
                        "decider: this namespace lacks the BatonDeciders search attribute "
                        "(see README, The inbox)"
                    )
                query, found = search_query(gw.client.task_queue, terms)
                problems += found
                if not problems:
                    results = await _closed(gw, query)
        processes = sorted(gw.client.app.processes()) if gw.client.app is not None else []
        return gw.render(
            request,
            "audit_search.html",
            {
                "terms": terms,
                "results": results,
                "problems": problems,
                "processes": processes,
                "outcomes": [o.value for o in Outcome],
                "limit": MAX_RESULTS,
            },
        )

    async def case_audit(request: Request) -> Response:
        if gw.user(request) is None:
            return gw.login_redirect()
        if auditor(request) is None:
            return forbidden(request)
        case_id = request.path_params["case_id"]
        try:
            events = await gw.client.audit(case_id)
        except BatonError as exc:
            return gw.error(request, "Not found", str(exc), status=404)
        verdict, anchored = await _verify(gw, case_id)
        ui = f"{gw.settings.temporal_ui_url}/namespaces/{gw.client.temporal.namespace}"
        return gw.render(
            request,
            "audit_case.html",
            {
                "case_id": case_id,
                "events": events,
                "verdict": verdict,
                "anchored": anchored,
                "ui_link": f"{ui}/workflows/{quote(case_id, safe='')}",
                "trace_link": gw.settings.trace_url.replace("{case_id}", quote(case_id, safe=""))
                if gw.settings.trace_url
                else "",
            },
        )

    return [
        Route("/audit", search_page, methods=["GET", "POST"]),
        Route("/audit/cases/{case_id}", case_audit, methods=["GET"]),
    ]


async def _closed(gw: Gateway, query: str) -> list[ClosedCase]:
    found: list[ClosedCase] = []
    async for wf in gw.client.temporal.list_workflows(query, limit=MAX_RESULTS):
        attrs = wf.typed_search_attributes
        found.append(
            ClosedCase(
                case_id=wf.id,
                process=attrs.get(search.PROCESS) or "",
                outcome=attrs.get(search.OUTCOME) or str(wf.status.name if wf.status else "").lower(),
                closed=wf.close_time,
                deciders=list(attrs.get(search.DECIDERS) or []),
            )
        )
    return found


async def _verify(gw: Gateway, case_id: str) -> tuple[Verdict | str, Any]:
    """The log's verdict against this case's anchor (or why it could not be checked), and the anchor."""
    try:
        anchor = await anchor_of(await gw.client.handle(case_id).describe())
    except (RPCError, CodecKeyError, ValueError) as exc:
        return f"the case's anchor cannot be read: {exc}", None
    anchors = {case_id: anchor} if anchor is not None else {}
    try:
        sink = open_sink(gw.client.settings.audit_log)
    except BatonError as exc:
        return f"the audit log cannot be opened: {exc}", anchor
    keys = load_audit_keys()
    try:
        verdict = await asyncio.to_thread(lambda: sink.verify(keys=keys, anchors=anchors))
    finally:
        sink.close()
    return verdict, anchor
