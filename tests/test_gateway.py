"""The approval gateway over real HTTP: logins, the inbox, the case page, decisions, the auditor.

A real worker requires signed decisions; the gateway (real uvicorn on loopback) signs in the
signed-in person's name. The browser tests (tests/test_gateway_browser.py) drive the same
pages in Chromium; these check what a browser hides: statuses, headers, cookies, refusals.
"""

from __future__ import annotations

import base64
import logging
import uuid
from pathlib import Path

import httpx
import pytest

from baton.gateway.serve import bind
from baton.messages import Outcome
from baton.settings import Settings
from tests.conftest import Running
from tests.gateway_harness import (
    csrf_of,
    gateway_settings,
    oidc_settings,
    running_gateway,
    start,
    waiting,
)
from tests.oidc_idp import TestIdentityProvider


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """This test's own files and queue, with local accounts (passwords) in the roles file."""
    return gateway_settings(tmp_path)


async def test_login_inbox_case_page_and_approve(on_dev: Running) -> None:
    async with running_gateway(on_dev) as gw:
        case_id = await start(gw, "ORD-1002", "CUS-002", 249.0)
        async with gw.browser() as http:
            assert (await http.get("/")).headers["location"] == "/login"
            response = await gw.login(http, "alice")
            assert response.status_code == 303, response.text
            cookie = response.headers["set-cookie"]
            assert "HttpOnly" in cookie
            assert "SameSite=Lax" in cookie
            inbox = await http.get("/")
            assert inbox.status_code == 200
            assert "<title>(1) Inbox · Baton</title>" in inbox.text
            assert case_id in inbox.text
            assert "249.00" in inbox.text
            page = await http.get(f"/cases/{case_id}")
            assert page.status_code == 200
            assert "RefundProposal" in page.text
            assert "Approve" in page.text
            form = {
                "csrf": csrf_of(page.text),
                "verdict": "approve",
                "comment": "verified",
                "proposal": (await gw.baton.status(case_id)).awaiting.proposal,  # type: ignore[union-attr]
                "decision_id": uuid.uuid4().hex,
            }
            decided = await http.post(f"/cases/{case_id}/decide", data=form)
            assert decided.status_code == 303
            result = await gw.baton.result(case_id)
            assert result.outcome == Outcome.ACTIONED
            assert result.decided_by == "alice"
            after = await http.get(f"/cases/{case_id}")
            assert after.status_code == 200
            assert 'id="outcome"' in after.text
            assert "You approved this case" in after.text


async def test_wrong_password_and_throttle(on_dev: Running) -> None:
    async with running_gateway(on_dev) as gw, gw.browser() as http:
        for _ in range(5):
            bad = await gw.login(http, "alice", "wrong password!!")
            assert bad.status_code == 401
            assert "wrong user name or password" in bad.text
        throttled = await gw.login(http, "alice")
        assert throttled.status_code == 429
        assert "too many failed logins" in throttled.text
        unknown = await gw.login(http, "nobody-here")
        assert unknown.status_code == 401
        assert "wrong user name or password" in unknown.text


async def test_post_without_csrf_refused_and_headers(
    on_dev: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="baton.gateway.requests")
    async with running_gateway(on_dev) as gw:
        case_id = await start(gw, "ORD-1002", "CUS-002", 249.0)
        proposal = await waiting(gw.baton, case_id)
        async with gw.browser() as http:
            await gw.login(http, "alice")
            page = await http.get(f"/cases/{case_id}")
            for name in (
                "Content-Security-Policy",
                "X-Frame-Options",
                "X-Content-Type-Options",
                "Referrer-Policy",
            ):
                assert name in page.headers
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            assert page.headers["cache-control"] == "no-store"
            refused = await http.post(
                f"/cases/{case_id}/decide", data={"verdict": "approve", "proposal": proposal}
            )
            assert refused.status_code == 403
            assert (await gw.baton.status(case_id)).awaiting is not None
        async with gw.browser() as anon:
            health = await anon.get("/healthz")
            assert health.json() == {"status": "ok"}
    lines = [r.getMessage() for r in caplog.records if r.name == "baton.gateway.requests"]
    assert any('"route":"/cases/{case_id}"' in line for line in lines)
    assert not any(case_id in line for line in lines), "a case id reached the request log"


async def test_others_cannot_see_a_case(on_dev: Running) -> None:
    async with running_gateway(on_dev) as gw:
        case_id = await start(gw, "ORD-1002", "CUS-002", 249.0)
        async with gw.browser() as http:
            await gw.login(http, "carol")  # finance: the case waits on support-lead
            assert (await http.get(f"/cases/{case_id}")).status_code == 404
            assert (await http.get("/audit")).status_code == 403
        async with gw.browser() as http:
            await gw.login(http, "olga")  # auditor
            assert (await http.get(f"/cases/{case_id}")).status_code == 200
            trail = await http.get(f"/audit/cases/{case_id}")
            assert trail.status_code == 200
            assert "case_started" in trail.text.replace(" ", "_").lower()


async def follow(http: httpx.AsyncClient, response: httpx.Response, limit: int = 6) -> httpx.Response:
    """Follow redirects across hosts (gateway → identity provider → gateway), keeping cookies."""
    for _ in range(limit):
        if response.status_code not in (302, 303):
            return response
        response = await http.get(response.headers["location"])
    return response


async def test_oidc_login_and_wrong_audience(on_dev: Running) -> None:
    sock = bind("127.0.0.1", 0)
    url = f"http://localhost:{sock.getsockname()[1]}"
    async with TestIdentityProvider(redirect_uri=f"{url}/login/callback") as idp:
        oidc = oidc_settings(idp, url)
        async with running_gateway(on_dev, sock=sock, oidc=oidc) as gw, gw.browser() as http:
            idp.next_user = {"preferred_username": "Dana", "name": "Dana Kim", "roles": ["support-manager"]}
            login_page = await http.get("/login")
            assert 'href="/login/sso"' in login_page.text
            home = await follow(http, await http.get("/login/sso"))
            assert home.status_code == 200
            assert "Dana Kim" in home.text
            assert "support-manager" in home.text

            await http.post("/logout", data={"csrf": csrf_of(home.text)})
            assert (await http.get("/")).status_code == 303
            idp.id_token_audience = "some-other-app"
            refused = await follow(http, await http.get("/login/sso"))
            assert "audience" in refused.text
            assert (await http.get("/")).headers["location"] == "/login"


async def test_tampered_session_cookie_is_not_a_login(on_dev: Running) -> None:
    async with running_gateway(on_dev) as gw:
        async with gw.browser() as http:
            await gw.login(http, "bob")
            value = http.cookies["baton_session"]
        key_id, _, mac = value.split(".")
        forged = base64.urlsafe_b64encode(
            b'{"user":"olga","src":"oidc","roles":["auditor"],"iat":9999999999}'
        )
        forged_value = f"{key_id}.{forged.decode().rstrip('=')}.{mac}"
        for cookie, expected in ((value, 200), (forged_value, 303)):
            async with httpx.AsyncClient(
                base_url=gw.url, headers={"Cookie": f"baton_session={cookie}"}
            ) as http:
                assert (await http.get("/submit")).status_code == expected


async def test_submit_form_names_bad_fields_and_starts_nothing(on_dev: Running) -> None:
    async with running_gateway(on_dev) as gw, gw.browser() as http:
        await gw.login(http, "bob")
        form = await http.get("/submit/refund-request")
        assert 'name="requested_amount"' in form.text
        assert '<option value="defective"' in form.text
        data = {
            "csrf": csrf_of(form.text),
            "order_id": "ORD-1002",
            "customer_id": "CUS-002",
            "requested_amount": "-5",
            "reason": "defective",
        }
        bad = await http.post("/submit/refund-request", data=data)
        assert bad.status_code == 400
        assert "requested_amount: Input should be greater than or equal to 0" in bad.text
        assert 'value="ORD-1002"' in bad.text  # what was typed stays
        assert await gw.baton.pending(roles=["support-lead"]) == []
        started = await http.post("/submit/refund-request", data={**data, "requested_amount": "249"})
        assert started.status_code == 303
        case_id = started.headers["location"].rsplit("/", 1)[1]
        await waiting(gw.baton, case_id)
        assert (await gw.baton.casefile(case_id)).submitted_by == "bob"


async def test_codec_endpoint_needs_a_session_with_a_role(
    on_dev: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    monkeypatch.setenv("BATON_CODEC_KEYS", f"k1:{key}")
    ui = "http://localhost:8233"
    body = {
        "payloads": [
            {
                "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                "data": base64.b64encode(b'"ORD-1002"').decode(),
            }
        ]
    }
    async with running_gateway(on_dev, codec_origins=(ui,)) as gw:
        async with gw.browser() as anon:
            refused = await anon.post("/codec/encode", json=body, headers={"Origin": ui})
            assert refused.status_code == 401
        async with gw.browser() as http:
            await gw.login(http, "alice")
            preflight = await http.options(
                "/codec/decode", headers={"Origin": ui, "Access-Control-Request-Method": "POST"}
            )
            assert preflight.headers["access-control-allow-origin"] == ui
            assert preflight.headers["access-control-allow-credentials"] == "true"
            encoded = await http.post("/codec/encode", json=body, headers={"Origin": ui})
            assert encoded.status_code == 200
            decoded = await http.post("/codec/decode", content=encoded.content, headers={"Origin": ui})
            assert decoded.status_code == 200
            assert decoded.json()["payloads"][0]["data"] == body["payloads"][0]["data"]
            elsewhere = await http.post(
                "/codec/decode", content=encoded.content, headers={"Origin": "http://evil.localhost"}
            )
            assert elsewhere.status_code == 401
            assert "access-control-allow-origin" not in elsewhere.headers


async def test_auditor_searches_by_decider_and_sees_a_cut_log(on_dev: Running) -> None:
    async with running_gateway(on_dev) as gw:
        case_id = await start(gw, "ORD-1002", "CUS-002", 249.0)
        proposal = await waiting(gw.baton, case_id)
        await gw.baton.approve(case_id, approver="alice", proposal=proposal)
        await gw.baton.result(case_id)
        async with gw.browser() as http:
            await gw.login(http, "olga")
            search = await http.get("/audit")
            found = await http.post(
                "/audit", data={"csrf": csrf_of(search.text), "decider": "alice", "outcome": "actioned"}
            )
            assert case_id in found.text
            nobody = await http.post("/audit", data={"csrf": csrf_of(search.text), "decider": "carol"})
            assert case_id not in nobody.text
            trail = await http.get(f"/audit/cases/{case_id}")
            assert "The log verifies" in trail.text
            log = gw.baton.settings.audit_log
            lines = log.read_bytes().splitlines(keepends=True)
            log.write_bytes(b"".join(lines[:-2]))  # records cut from the end: the chain alone still holds
            cut = await http.get(f"/audit/cases/{case_id}")
            assert "does NOT verify" in cut.text


async def test_unreadable_roles_directory_is_a_page_not_a_traceback(on_dev: Running) -> None:
    async with running_gateway(on_dev) as gw, gw.browser() as http:
        await gw.login(http, "alice")
        gw.baton.settings.roles_file.write_text("users: [this is not a mapping")
        page = await http.get("/")
        assert page.status_code == 503
        assert "roles directory" in page.text
        assert "Traceback" not in page.text


async def test_codec_bearer_token_needs_a_role(on_dev: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_CODEC_KEYS", "k1:" + base64.b64encode(bytes(range(32))).decode())
    sock = bind("127.0.0.1", 0)
    url = f"http://localhost:{sock.getsockname()[1]}"
    async with TestIdentityProvider(redirect_uri=f"{url}/login/callback") as idp:
        oidc = oidc_settings(idp, url, access_audience=idp.access_audience)
        body = {
            "payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()}, "data": "IjEi"}]
        }
        async with running_gateway(on_dev, sock=sock, oidc=oidc) as gw, gw.browser() as http:
            for roles, expected in ((["finance"], 200), ([], 401)):
                token = idp.issue_access_token({"preferred_username": "carol", "roles": roles})
                answer = await http.post(
                    "/codec/encode", json=body, headers={"Authorization": f"Bearer {token}"}
                )
                assert answer.status_code == expected, roles
            wrong = idp.issue_access_token(
                {"preferred_username": "carol", "roles": ["finance"]}, audience="x"
            )
            answer = await http.post("/codec/encode", json=body, headers={"Authorization": f"Bearer {wrong}"})
            assert answer.status_code == 401


async def test_refusals_that_give_nothing_away(on_dev: Running) -> None:
    async with running_gateway(on_dev) as gw:
        case_id = await start(gw, "ORD-1002", "CUS-002", 249.0)
        proposal = await waiting(gw.baton, case_id)
        async with gw.browser() as http:
            await gw.login(http, "carol")  # finance: the case waits on a support lead
            page = await http.get("/submit/refund-request")
            decided = await http.post(
                f"/cases/{case_id}/decide",
                data={"csrf": csrf_of(page.text), "verdict": "approve", "proposal": proposal},
            )
            assert decided.status_code == 404  # the same answer as for a case that does not exist
            assert "lacks role" not in decided.text
            missing = await http.post(
                "/cases/no-such-case/decide",
                data={"csrf": csrf_of(page.text), "verdict": "approve", "proposal": proposal},
            )
            assert missing.status_code == 404
            infinite = await http.post(
                "/submit/refund-request",
                data={"csrf": csrf_of(page.text), "order_id": "ORD-1002", "customer_id": "CUS-002",
                      "requested_amount": "inf", "reason": "defective"},
            )  # fmt: skip
            assert infinite.status_code == 400
            assert "requested_amount: expected a finite number" in infinite.text
            assert (await http.post("/logout", data={})).status_code == 403
            assert (await http.get("/submit")).status_code == 200  # still logged in
        async with gw.browser() as http:
            await gw.login(http, "olga")
            search = await http.get("/audit")
            bad = await http.post("/audit", data={"csrf": csrf_of(search.text), "since": "2024-02-30"})
            assert bad.status_code == 200
            assert "since: a date, YYYY-MM-DD" in bad.text
