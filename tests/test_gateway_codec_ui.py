"""The stock Temporal Web UI decrypts a case's payloads through the gateway, for its signed-in users.

A dev server of its own runs the UI with ``--ui-codec-endpoint`` pointing at the gateway's
``/codec``; an encrypted refund case waits for approval. In Chromium, alice signs in to the
gateway, then turns on "Include cross-origin credentials" in the UI's Codec Server dialog (the
dev server cannot set it: its UI config hard-codes ``includeCredentials: false``), and the
workflow page shows the decrypted order. A browser with the same setting but no gateway
session gets 401 from the codec endpoint and sees no plaintext.

``BATON_SCREENSHOTS=1`` saves the decrypted page to docs/images/temporal-ui-decrypted.png.
"""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Response, expect
from refunds.activities import RefundActivities

from activities import LlmActivities
from baton import search
from baton.connection import connect
from baton.devserver import DevServer
from baton.gateway.serve import bind
from baton.scenario import wait_for_approval
from baton.settings import Settings
from tests.browser import chromium  # noqa: F401 (the fixture)
from tests.conftest import Running
from tests.gateway_harness import PASSWORD, gateway_settings, refund_case, running_gateway

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "images" / "temporal-ui-decrypted.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """This test's own files and queue, with local accounts (passwords) in the roles file."""
    return gateway_settings(tmp_path)


async def use_codec_with_credentials(page: Page, ui: str, endpoint: str) -> None:
    """What a user does once per browser: Codec Server → browser setting → credentials on → Apply."""
    await page.goto(f"{ui}/namespaces/default/workflows")
    await page.locator('[data-testid^="data-encoder-status"]').first.click()
    await page.get_by_test_id("use-local-endpoint-input").click()
    await page.locator("#data-encoder-endpoint-input").fill(endpoint)
    await page.locator("label").filter(has_text="Include cross-origin credentials").click()
    await page.locator('#data-encoder-settings [data-testid="confirm-modal-button"]').click()


def is_decode(response: Response) -> bool:
    """A POST to the gateway's codec ``/decode`` (not its CORS preflight)."""
    return "/codec/decode" in response.url and response.request.method == "POST"


def decode_statuses(page: Page) -> list[int]:
    """The statuses of the page's decode requests, as they arrive."""
    seen: list[int] = []

    def on_response(response: Response) -> None:
        if is_decode(response):
            seen.append(response.status)

    page.on("response", on_response)
    return seen


async def test_the_temporal_ui_decrypts_through_the_gateway_session(
    settings: Settings,
    refunds: RefundActivities,
    llm: LlmActivities,
    chromium: Browser,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("BATON_CODEC_KEYS", f"k1:{key}")  # the worker's client and the gateway
    sock = bind("127.0.0.1", 0)  # the gateway's port must be known before the UI starts
    gateway = f"http://localhost:{sock.getsockname()[1]}"
    port, ui_port = free_port(), free_port()
    ui = f"http://localhost:{ui_port}"
    server = DevServer(
        tmp_path / "temporal.db",
        port=port,
        ui_port=ui_port,
        log_file=tmp_path / "temporal.log",
        search_attributes=search.TYPE_NAMES_BY_NAME,
        ui_codec_endpoint=f"{gateway}/codec",
    )
    async with server:
        client = await connect(address=server.address)
        running = Running(client, settings, refunds, llm)
        async with running_gateway(running, sock=sock, codec_origins=(ui,)) as gw:
            case_id = await gw.baton.start_case(
                "refund-request", refund_case("ORD-1002", "CUS-002", 249.0), submitted_by="bob"
            )
            await wait_for_approval(gw.baton, case_id)
            history = await client.get_workflow_handle(case_id).fetch_history()
            assert "ORD-1002" not in history.to_json()  # the server only ever holds ciphertext
            workflow = f"{ui}/namespaces/default/workflows/{case_id}"

            signed_in = await chromium.new_context()
            try:
                page = await signed_in.new_page()
                await page.goto(f"{gateway}/login")
                await page.get_by_label("User name").fill("alice")
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Log in").click()
                await page.wait_for_url(f"{gateway}/")
                await use_codec_with_credentials(page, ui, f"{gateway}/codec")
                statuses = decode_statuses(page)
                await page.goto(workflow)
                await expect(page.get_by_text("ORD-1002").first).to_be_visible(timeout=30_000)
                assert statuses, "the UI never asked the codec endpoint"
                assert set(statuses) == {200}, statuses  # no bearer token: 200 only for alice's cookie
                if os.environ.get("BATON_SCREENSHOTS") == "1":
                    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                    await page.screenshot(path=str(SCREENSHOT), full_page=True)
            finally:
                await signed_in.close()

            stranger = await chromium.new_context()
            try:
                page = await stranger.new_page()
                await use_codec_with_credentials(page, ui, f"{gateway}/codec")
                statuses = decode_statuses(page)
                async with page.expect_response(is_decode) as refused:
                    await page.goto(workflow)
                assert (await refused.value).status == 401
                banner = page.locator("text=Codec Server could not connect >> visible=true")
                await expect(banner.first).to_be_visible()
                assert await page.get_by_text("ORD-1002").count() == 0
                assert 200 not in statuses, statuses
            finally:
                await stranger.close()
