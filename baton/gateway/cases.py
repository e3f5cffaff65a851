"""The case page and the decision buttons on it.

The page shows what ``baton show`` shows; the form under it carries the digest of the
proposal on screen, so a decision applies to exactly what the person read: if the draft
changed since the page loaded, the case refuses it and the page says so. The form also
carries a decision id made when the page was drawn, so a double click decides once.
Every decision goes out signed by the gateway (when it holds a signing key) in the name
of the signed-in person; the case's own validator has the last word, and its refusal
("separation of duties: you submitted this case") is shown as it comes.

Who may open a case: the people its current rung waits on, its submitter, the people who
already decided on it (so an approver sees where her decision took it), and auditors.
Anyone else gets the same "not found" as for a case that does not exist.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, cast
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from baton.client import DecisionRefusedError
from baton.errors import BatonError
from baton.gateway.context import Gateway, User
from baton.gateway.sessions import FORM_EXPIRED, csrf_ok, flash
from baton.messages import CaseFile, Verdict
from baton.show import contract_name, draft_changes

log = logging.getLogger(__name__)
VERDICTS = {"approve": "approved", "reject": "rejected", "request_changes": "sent back for changes"}
NOT_FOUND = "No such case, or it is not waiting on you."


def may_view(me: User, case: CaseFile, gw: Gateway) -> bool:
    """The current rung's role, the submitter, the people who decided on it, and auditors."""
    waiting_on_me = case.awaiting is not None and case.awaiting.role in me.roles
    involved = case.submitted_by == me.id or me.id in case.deciders
    return waiting_on_me or involved or me.is_auditor(gw.settings)


def shown(value: Any) -> str:
    """A field's value as text: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def sections(case: CaseFile) -> list[dict[str, Any]]:
    """The request, then each checked handoff (its fields in contract order, changes since its last draft)."""
    found: list[dict[str, Any]] = [
        {"name": "request", "contract": contract_name(case.input_contract), "fields": case.case}
    ]
    for name, output in case.handoffs.items():
        earlier = case.drafts.get(name, [])
        found.append(
            {
                "name": name,
                "contract": contract_name(case.contracts.get(name)),
                "fields": output,
                "version": len(earlier) + 1,
                "changes": draft_changes(earlier[-1], output) if earlier else [],
            }
        )
    return found


def routes(gw: Gateway) -> list[Route]:
    """``/cases/{case_id}`` (the page) and ``/cases/{case_id}/decide`` (the buttons)."""

    async def read(request: Request, me: User) -> CaseFile | None:
        try:
            case = await gw.client.casefile(request.path_params["case_id"])
        except BatonError as exc:
            log.info("case page: %s", exc)
            return None
        return case if may_view(me, case, gw) else None

    async def case_page(request: Request) -> Response:
        me = gw.user(request)
        if me is None:
            return gw.login_redirect()
        case = await read(request, me)
        if case is None:
            return gw.error(request, "Not found", NOT_FOUND, status=404)
        awaiting = case.awaiting
        return gw.render(
            request,
            "case.html",
            {
                "case": case,
                "sections": sections(case),
                "shown": shown,
                "can_decide": awaiting is not None and awaiting.role in me.roles and bool(awaiting.proposal),
                "decision_id": uuid.uuid4().hex,
                "ui_link": f"{gw.settings.temporal_ui_url}/namespaces/{gw.client.temporal.namespace}"
                f"/workflows/{quote(case.case_id, safe='')}",
            },
        )

    async def decide(request: Request) -> Response:
        me = gw.user(request)
        if me is None:
            return gw.login_redirect()
        case_id = request.path_params["case_id"]
        back = RedirectResponse(f"/cases/{quote(case_id, safe='')}", status_code=303)
        form = await request.form()
        if not csrf_ok(request.session, form.get("csrf")):
            return gw.error(request, "Form expired", FORM_EXPIRED, status=403)
        verdict = str(form.get("verdict", ""))
        comment = str(form.get("comment", "")).strip()
        proposal = str(form.get("proposal", ""))
        decision_id = str(form.get("decision_id", "")) or None
        if verdict not in VERDICTS:
            flash(request.session, "error", "choose approve, reject or request changes")
            return back
        if verdict != "approve" and not comment:
            flash(request.session, "error", "say why: a rejection or a change request needs a comment")
            return back
        if not proposal:
            flash(request.session, "error", "this page is out of date: review the case again")
            return back
        try:
            awaiting = (await gw.client.status(case_id)).awaiting
        except BatonError:
            awaiting = None
        if awaiting is None or awaiting.role not in me.roles:  # what the page would say: no hints
            return gw.error(request, "Not found", NOT_FOUND, status=404)
        try:
            receipt = await gw.client.decide(
                case_id,
                cast(Verdict, verdict),  # checked against VERDICTS above
                approver=me.id,
                comment=comment,
                decision_id=decision_id,
                proposal=proposal,
            )
        except DecisionRefusedError as exc:
            flash(request.session, "error", f"Refused: {exc.reason}")
            return back
        except BatonError as exc:
            flash(request.session, "error", str(exc))
            return back
        state = receipt.state if receipt is not None else "sent"
        flash(request.session, "ok", f"You {VERDICTS[verdict]} this case ({state}).")
        return back

    return [
        Route("/cases/{case_id}", case_page, methods=["GET"]),
        Route("/cases/{case_id}/decide", decide, methods=["POST"]),
    ]
