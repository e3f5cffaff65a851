"""A real headless Chromium for the gateway's browser tests: Debian's, driven by Playwright.

Playwright's own browser download needs the internet; the system ``chromium`` (installed by
``.ci/run`` when missing) is launched instead. Without one, the tests skip with one line.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """The system Chromium, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[object]:
    """A headless Chromium for the whole session (skips when there is no browser)."""
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium on this machine: `apt-get install chromium` (.ci/run does)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()
