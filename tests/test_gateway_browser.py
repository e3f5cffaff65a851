"""The approval gateway in a real browser: headless Chromium (Playwright) against real uvicorn.

Each person gets their own browser context (their own cookies), as two people at two
desks would. The worker behind the gateway requires signed decisions, so every approval
here went through the gateway's signing, the case's validator and the rules of the refund
process (examples/refunds/processes/refund-request.yaml).

Set ``BATON_SCREENSHOTS=1`` to rewrite docs/images/gateway-inbox.png and gateway-case.png;
without it the screenshot test still draws and checks the pages, and writes nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from baton.gateway.serve import bind
from baton.messages import Outcome
from baton.settings import Settings
from tests import browser
from tests.conftest import ROOT, Running
from tests.gateway_harness import (
    PASSWORD,
    Gateway,
    gateway_settings,
    oidc_settings,
    refund_case,
    running_gateway,
    start,
    waiting,
)
from tests.oidc_idp import TestIdentityProvider

chromium = browser.chromium  # the session's headless Chromium (a fixture, found here by its name)
IMAGES = ROOT / "docs" / "images"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1200, "height": 800}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """This test's own files and queue, with local accounts (passwords) in the roles file."""
    return gateway_settings(tmp_path)


async def person(engine: Browser, gw: Gateway, **options: object) -> BrowserContext:
    """A fresh browser context (its own cookies) pointed at the gateway."""
    return await engine.new_context(base_url=gw.url, **options)  # type: ignore[arg-type]


async def log_in(context: BrowserContext, user: str) -> Page:
    """A page in ``context`` with ``user`` logged in through the login form; it shows the inbox."""
    page = await context.new_page()
    await page.goto("/login")
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(re.compile(r"/$"))
    return page


async def reload_until(page: Page, locator: Locator, *, seconds: float = 10.0) -> None:
    """Reload ``page`` until ``locator`` is on it (the server's state is what is awaited)."""
    deadline = time.monotonic() + seconds
    while await locator.count() == 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"{locator} not on {page.url} after {seconds} s")
        await asyncio.sleep(0.2)
        await page.reload()


async def inbox_counts(page: Page, count: int) -> None:
    """Reload the inbox until it lists ``count`` cases (the visibility store may lag a moment)."""
    deadline = time.monotonic() + 10
    while (title := await page.title()) != f"({count}) Inbox · Baton":
        if time.monotonic() > deadline:
            raise AssertionError(f"the inbox shows {title!r}, not {count} cases")
        await asyncio.sleep(0.2)
        await page.reload()


def drafter_field(page: Page, name: str) -> Locator:
    """The value of one field of the drafter's RefundProposal on a case page."""
    section = page.locator("section.handoff").filter(has_text="RefundProposal")
    return section.locator(f"dt:text-is('{name}') + dd")


async def test_approver_logs_in_reviews_and_approves(on_dev: Running, chromium: Browser) -> None:
    async with running_gateway(on_dev) as gw:
        case_id = await start(gw, "ORD-1002", "CUS-002", 249.0)
        alice_ctx = await person(chromium, gw)
        try:
            page = await log_in(alice_ctx, "alice")
            await expect(page).to_have_title("(1) Inbox · Baton")
            row = page.get_by_role("row").filter(has_text=case_id)
            await expect(row).to_contain_text("249.00")
            await expect(row).to_contain_text("support-lead")
            await row.get_by_role("link", name=case_id).click()
            await expect(page.get_by_role("heading", level=1)).to_have_text(f"Case {case_id}")
            await expect(drafter_field(page, "amount")).to_have_text("249.0")
            await expect(drafter_field(page, "order_id")).to_have_text("ORD-1002")
            await expect(drafter_field(page, "reason_code")).to_have_text("defective")
            await page.get_by_label("Comment").fill("verified the defect photos")
            await page.get_by_role("button", name="Approve").click()
            await expect(page.get_by_role("status")).to_contain_text("You approved this case")

            # The approver follows the case she moved on to its end.
            await reload_until(page, page.locator("#outcome"))
            await expect(page.locator("#outcome")).to_contain_text("actioned")
            await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
        finally:
            await alice_ctx.close()
        result = await gw.baton.result(case_id)
        assert result.outcome == Outcome.ACTIONED
        assert result.decided_by == "alice"


async def test_submitter_cannot_approve_her_own_case(on_dev: Running, chromium: Browser) -> None:
    async with running_gateway(on_dev) as gw:
        context = await person(chromium, gw)
        try:
            page = await log_in(context, "erin")
            await page.goto("/submit/refund-request")
            await page.get_by_label("Order Id").fill("ORD-1007")
            await page.get_by_label("Customer Id").fill("CUS-007")
            await page.get_by_label("Requested Amount").fill("1899")
            await page.get_by_label("Reason").select_option("defective")
            await page.get_by_role("button", name="Start the case").click()
            await expect(page).to_have_url(re.compile(r"/cases/[^/]+$"))
            case_id = page.url.rsplit("/", 1)[1]
            await expect(page.get_by_role("status")).to_contain_text(f"Case {case_id} started")
            assert (await gw.baton.casefile(case_id)).submitted_by == "erin"
            approve = page.get_by_role("button", name="Approve")
            await reload_until(page, approve)  # the agents ran; the case waits on finance, erin's role
            await expect(page.locator("#waiting-h")).to_have_text("Waiting for finance")
            await approve.click()
            await expect(page.get_by_role("alert")).to_contain_text("separation of duties")
        finally:
            await context.close()
        status = await gw.baton.status(case_id)
        assert status.outcome is None
        assert status.awaiting is not None
        assert status.awaiting.role == "finance"
        assert status.awaiting.approved_by == []


async def test_two_finance_approvers_in_two_browsers(on_dev: Running, chromium: Browser) -> None:
    async with running_gateway(on_dev) as gw:
        case_id = await start(gw, "ORD-1013", "CUS-009", 7200.0)
        carol_ctx, erin_ctx = await person(chromium, gw), await person(chromium, gw)
        try:
            carol = await log_in(carol_ctx, "carol")
            await carol.goto(f"/cases/{case_id}")
            await expect(carol.locator("#approvals")).to_have_text("0 of 2")
            await carol.get_by_label("Comment").fill("invoice checked")
            await carol.get_by_role("button", name="Approve").click()
            await expect(carol.get_by_role("status")).to_contain_text("You approved this case")
            await expect(carol.locator("#approvals")).to_contain_text("1 of 2")
            await expect(carol.locator("#approvals")).to_contain_text("carol")
            assert (await gw.baton.status(case_id)).outcome is None  # one finance approval is not enough

            erin = await log_in(erin_ctx, "erin")
            await erin.goto(f"/cases/{case_id}")
            await expect(erin.locator("#approvals")).to_contain_text("1 of 2")
            await erin.get_by_label("Comment").fill("second pair of eyes")
            await erin.get_by_role("button", name="Approve").click()
            await expect(erin.get_by_role("status")).to_contain_text("You approved this case")
        finally:
            await carol_ctx.close()
            await erin_ctx.close()
        result = await gw.baton.result(case_id)
        assert result.outcome == Outcome.ACTIONED
        approvals = [(a.approver, a.decision, a.role) for a in result.approvals]
        assert approvals == [("carol", "approve", "finance"), ("erin", "approve", "finance")]


async def test_stale_page_refused_after_request_changes(on_dev: Running, chromium: Browser) -> None:
    # The demo's "refund at most 40.00" redraft is auto-approved (40 <= 50) and never waits
    # again; a cap of 80.00 keeps the redraft above 50, so it waits on support-lead once more.
    async with running_gateway(on_dev) as gw:
        case_id = await gw.baton.start_case(
            "refund-request",
            refund_case("ORD-1014", "CUS-010", 120.0, reason="not_as_described"),
            submitted_by="bob",
        )
        first = await waiting(gw.baton, case_id)
        context = await person(chromium, gw)
        try:
            page_a = await log_in(context, "alice")
            await page_a.goto(f"/cases/{case_id}")
            await expect(drafter_field(page_a, "amount")).to_have_text("120.0")

            page_b = await context.new_page()
            await page_b.goto(f"/cases/{case_id}")
            await page_b.get_by_label("Comment").fill(
                "only one of three items was damaged: refund at most 80.00"
            )
            await page_b.get_by_role("button", name="Request changes").click()
            await expect(page_b.get_by_role("status")).to_contain_text("sent back for changes")
            second = await waiting(gw.baton, case_id, other_than=first)
            await page_b.reload()
            await expect(drafter_field(page_b, "amount")).to_have_text("80.0")
            await expect(
                page_b.locator("details", has_text="Changes since the previous draft")
            ).to_contain_text("80.0")

            await page_a.get_by_role("button", name="Approve").click()  # page A still shows 120.0
            await expect(page_a.get_by_role("alert")).to_contain_text("changed since you looked")
            await expect(drafter_field(page_a, "amount")).to_have_text(
                "80.0"
            )  # the page now shows the new draft
        finally:
            await context.close()
        status = await gw.baton.status(case_id)
        assert status.outcome is None
        assert status.awaiting is not None
        assert status.awaiting.proposal == second
        assert status.awaiting.approved_by == []


async def test_form_without_csrf_token_is_refused(on_dev: Running, chromium: Browser) -> None:
    async with running_gateway(on_dev) as gw:
        case_id = await start(gw, "ORD-1002", "CUS-002", 249.0)
        context = await person(chromium, gw)
        try:
            page = await log_in(context, "alice")
            await page.goto(f"/cases/{case_id}")
            removed = await page.evaluate(
                "() => { const i = document.querySelector('section.decide input[name=csrf]');"
                " if (!i) return false; i.remove(); return true; }"
            )
            assert removed
            async with page.expect_response(lambda r: r.url.endswith("/decide")) as info:
                await page.get_by_role("button", name="Approve").click()
            assert (await info.value).status == 403
            await expect(page.get_by_role("heading", level=1)).to_have_text("Form expired")
            await expect(page).to_have_title("Form expired · Baton")
        finally:
            await context.close()
        status = await gw.baton.status(case_id)
        assert status.outcome is None
        assert status.awaiting is not None
        assert status.awaiting.approved_by == []


async def test_keyboard_only_without_javascript(on_dev: Running, chromium: Browser) -> None:
    async with running_gateway(on_dev) as gw:
        case_id = await start(gw, "ORD-1002", "CUS-002", 249.0)
        context = await person(chromium, gw, java_script_enabled=False)
        try:
            page = await context.new_page()
            await page.goto("/login")
            await expect(page.locator("script")).to_have_count(0)  # nothing here needs a script
            await page.get_by_label("User name").focus()
            await page.keyboard.type("alice")
            await page.keyboard.press("Tab")
            await page.keyboard.type(PASSWORD)
            await page.keyboard.press("Enter")
            await expect(page).to_have_title("(1) Inbox · Baton")
            await page.get_by_role("link", name=case_id).focus()
            await page.keyboard.press("Enter")
            await expect(page).to_have_title(f"Case {case_id} · Baton")
            await expect(page.locator("script")).to_have_count(0)
            await page.get_by_label("Comment").focus()
            await page.keyboard.type("verified, no script needed")
            await page.keyboard.press("Tab")  # the first button after the comment: Approve
            await expect(page.get_by_role("button", name="Approve")).to_be_focused()
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("status")).to_contain_text("You approved this case")
        finally:
            await context.close()
        result = await gw.baton.result(case_id)
        assert result.outcome == Outcome.ACTIONED
        assert result.decided_by == "alice"
        assert result.approvals[0].comment == "verified, no script needed"


async def no_horizontal_scroll(page: Page) -> None:
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{page.url} scrolls sideways on a phone: {widths}"


async def test_phone_inbox_and_case_fit_the_screen(on_dev: Running, chromium: Browser) -> None:
    async with running_gateway(on_dev) as gw:
        first = await start(gw, "ORD-1007", "CUS-007", 1899.0)
        await start(gw, "ORD-1005", "CUS-009", 120.0)  # wrong customer: the exceptions ladder
        context = await person(chromium, gw, viewport=PHONE, is_mobile=True, has_touch=True)
        try:
            page = await log_in(context, "erin")
            await inbox_counts(page, 2)
            await expect(page.locator("td[data-label=Amount]").first).to_be_visible()
            await expect(page.locator("thead")).not_to_be_in_viewport()  # phone layout: rows as cards
            await no_horizontal_scroll(page)
            await page.goto(f"/cases/{first}")
            await expect(page.get_by_role("button", name="Approve")).to_be_visible()
            await no_horizontal_scroll(page)
        finally:
            await context.close()


async def test_inbox_and_case_screenshots(on_dev: Running, chromium: Browser) -> None:
    """Draw a realistic inbox for erin (finance + support-manager); save it when asked to."""
    save = os.environ.get("BATON_SCREENSHOTS") == "1"
    async with running_gateway(on_dev) as gw:
        cases = [
            await start(gw, "ORD-1007", "CUS-007", 1899.0),  # finance
            await start(gw, "ORD-1013", "CUS-009", 7200.0),  # finance-dual
            await start(gw, "ORD-1005", "CUS-009", 120.0),  # wrong customer: exceptions, support-manager
            await start(gw, "ORD-1018", "CUS-006", 2400.0, process="refund-panel"),  # panel, redrafted
            await start(gw, "ORD-1002", "CUS-002", 249.0),  # support-lead: not erin's
        ]
        dual = cases[1]
        proposal = await waiting(gw.baton, dual)
        await gw.baton.approve(dual, approver="carol", comment="invoice checked", proposal=proposal)
        context = await person(chromium, gw, viewport=DESKTOP)
        try:
            page = await log_in(context, "erin")
            await inbox_counts(page, 4)
            rows = page.locator("tbody tr")
            await expect(rows).to_have_count(4)
            for case_id in cases[:4]:
                await expect(rows.filter(has_text=case_id)).to_have_count(1)
            await expect(rows.filter(has_text=cases[4])).to_have_count(0)
            await expect(page.locator("tbody")).to_contain_text("support-manager")
            if save:
                IMAGES.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(IMAGES / "gateway-inbox.png"), full_page=True)

            await page.goto(f"/cases/{dual}")
            await expect(page.locator("#approvals")).to_have_text("1 of 2 (carol)")
            await expect(drafter_field(page, "amount")).to_have_text("7200.0")
            await expect(page.get_by_role("button", name="Approve")).to_be_visible()
            if save:
                await page.screenshot(path=str(IMAGES / "gateway-case.png"), full_page=True)
        finally:
            await context.close()


async def test_sso_login_and_a_token_for_another_audience(on_dev: Running, chromium: Browser) -> None:
    sock = bind("127.0.0.1", 0)
    url = f"http://localhost:{sock.getsockname()[1]}"
    async with TestIdentityProvider(redirect_uri=f"{url}/login/callback") as idp:
        oidc = oidc_settings(idp, url)
        async with running_gateway(on_dev, sock=sock, oidc=oidc) as gw:
            case_id = await start(gw, "ORD-1006", "CUS-006", 310.0)  # waits on a support lead
            context = await person(chromium, gw)
            try:
                page = await context.new_page()
                idp.next_user = {"preferred_username": "alice", "name": "Alice Ng", "roles": ["support-lead"]}
                await page.goto("/login")
                await page.get_by_role("link", name="Log in with your company account").click()
                await expect(page).to_have_title("(1) Inbox · Baton")
                await expect(page.locator("form.who")).to_contain_text("Alice Ng")
                await expect(page.get_by_role("link", name=case_id)).to_be_visible()

                await page.get_by_role("button", name="Log out").click()
                idp.id_token_audience = "another-application"
                await page.get_by_role("link", name="Log in with your company account").click()
                await expect(page.get_by_role("alert")).to_contain_text("audience")
                await expect(page).to_have_title("Log in · Baton")
                await page.goto("/")
                await expect(page).to_have_url(re.compile(r"/login$"))
            finally:
                await context.close()
