"""Starting a case from the web, as the signed-in person.

The submitter is the session's identity (signed by the gateway like a decision), so
separation of duties holds: the person who submits a case cannot approve it. A case
that does not match its contract starts nothing; the form comes back with every
problem named by field and the values as typed.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from baton.contracts import resolve_contract
from baton.errors import BatonError, CaseInputError
from baton.gateway.context import Gateway
from baton.gateway.forms import form_fields, read_form
from baton.gateway.sessions import FORM_EXPIRED, csrf_ok, flash


def routes(gw: Gateway) -> list[Route]:
    """``/submit`` (the processes) and ``/submit/{process}`` (a process's form)."""

    def processes() -> list[str]:
        return sorted(gw.client.app.processes()) if gw.client.app is not None else []

    async def choose(request: Request) -> Response:
        if gw.user(request) is None:
            return gw.login_redirect()
        return gw.render(request, "submit_list.html", {"processes": processes()})

    async def form_page(request: Request) -> Response:
        me = gw.user(request)
        if me is None:
            return gw.login_redirect()
        process = request.path_params["process"]
        if process not in processes():
            return gw.error(request, "Not found", "No such process.", status=404)
        try:
            snapshot = gw.client.load(process)
        except BatonError as exc:
            return gw.error(request, "Process unavailable", str(exc), status=503)
        fields = form_fields(resolve_contract(snapshot.spec.input))
        values: dict[str, str] = {}
        problems: list[str] = []
        if request.method == "POST":
            form = await request.form()
            values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
            if not csrf_ok(request.session, form.get("csrf")):
                return gw.error(request, "Form expired", FORM_EXPIRED, status=403)
            case, problems = read_form(fields, values)
            if not problems:
                try:
                    case_id = await gw.client.start_case(snapshot, case, submitted_by=me.id)
                except CaseInputError as exc:
                    problems = exc.problems
                except BatonError as exc:
                    problems = [str(exc)]
                else:
                    flash(request.session, "ok", f"Case {case_id} started.")
                    return RedirectResponse(f"/cases/{quote(case_id, safe='')}", status_code=303)
        return gw.render(
            request,
            "submit.html",
            {
                "process": process,
                "description": snapshot.spec.description,
                "fields": fields,
                "values": values,
                "problems": problems,
                "bad": {p.split(":", 1)[0] for p in problems},
            },
            status=400 if problems else 200,
        )

    return [
        Route("/submit", choose, methods=["GET"]),
        Route("/submit/{process}", form_page, methods=["GET", "POST"]),
    ]
