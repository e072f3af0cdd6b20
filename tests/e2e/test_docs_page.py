"""GET /docs in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) opens the page on the live server and sees every operation of the document listed,
with nothing fetched from anywhere but the service itself.

Where Chromium is not installed the test skips, except under CI (CI set), where it fails:
.ci/run installs it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ledger.http import openapi
from ledger.http.routes import ROUTES
from tests.support.servers import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RENDER_TIMEOUT_MS = 60_000


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run installs it, so under CI it must be there")
        pytest.skip(message)
    return CHROMIUM


def test_the_docs_page_and_its_assets_are_served_by_the_service(live_server: LiveServer) -> None:
    page = httpx.get(f"{live_server.url}/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/docs/docs.js"):
        assert f'"{asset}"' in page.text, asset
        answer = httpx.get(f"{live_server.url}{asset}")
        assert answer.status_code == 200, asset
        assert len(answer.content) > 0, asset


def test_chromium_shows_every_operation_on_the_docs_page(live_server: LiveServer, chromium: Path) -> None:
    from playwright.sync_api import sync_playwright

    document = openapi.document(ROUTES)
    operations = [(method.upper(), path) for path, item in document["paths"].items() for method in item]
    requested: list[str] = []
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(chromium), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{live_server.url}/docs")
            page.wait_for_selector(".opblock", timeout=RENDER_TIMEOUT_MS)
            shown = page.eval_on_selector_all(
                ".opblock-summary",
                """blocks => blocks.map(block => [
                    block.querySelector('.opblock-summary-method').textContent.trim(),
                    block.querySelector('.opblock-summary-path').getAttribute('data-path'),
                ])""",
            )
            title = page.text_content(".info .title")
        finally:
            browser.close()
    assert sorted(tuple(pair) for pair in shown) == sorted(operations)
    assert title is not None and "ledger" in title
    served_by = {urlsplit(url).netloc for url in requested}
    assert served_by == {urlsplit(live_server.url).netloc}, f"fetched from elsewhere: {served_by}"
