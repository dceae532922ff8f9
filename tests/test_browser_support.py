"""
The headless-browser infrastructure (tests/support/browser.py) works with a
real page: Debian's Chromium, driven by selenium, loads pages from a local
HTTP server, runs their scripts under a strict Content-Security-Policy,
reports console errors, narrows to a phone's width and takes screenshots.

The pages come from the standard library's ThreadingHTTPServer on loopback
(a daemon thread): Twisted's reactor does not run beside pytest in a thread.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.browser import (  # noqa: F401 (fixture)
    PHONE,
    browser,
    consoleErrors,
    phoneBrowser,
    saveScreenshot,
    waitFor,
)

pytestmark = pytest.mark.browser

CSP = "default-src 'self'"

INDEX = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>browser smoke test</title>
<script src="/app.js" defer></script>
</head>
<body>
<h1>Smoke</h1>
<p id="status">waiting</p>
<button id="go" type="button">Go</button>
</body>
</html>
"""

APP = b"""document.getElementById("go").addEventListener("click", function () {
  document.getElementById("status").textContent = "clicked";
});
document.documentElement.dataset.external = "ran";
"""

# The inline script must be refused by the CSP; /app.js, from 'self', runs.
INLINE = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>inline</title></head>
<body>
<button id="go" type="button">Go</button><p id="status">waiting</p>
<script>document.documentElement.dataset.inline = "ran";</script>
<script src="/app.js"></script>
</body>
</html>
"""

PAGES = {
    "/": ("text/html; charset=utf-8", INDEX),
    "/inline.html": ("text/html; charset=utf-8", INLINE),
    "/app.js": ("text/javascript; charset=utf-8", APP),
}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PageHandler(BaseHTTPRequestHandler):
    """
    Serve L{PAGES}, every response with the strict L{CSP}; the favicon is
    204 (no console error for it), anything else 404.
    """

    def do_GET(self) -> None:
        page = PAGES.get(self.path)
        if page is None:
            self.send_response(204 if self.path == "/favicon.ico" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        contentType, body = page
        self.send_response(200)
        self.send_header("Content-Type", contentType)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """
    The base URL of L{PageHandler} on 127.0.0.1 (a port the kernel chose).
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="pages", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_clickRunsTheScript(browser, site: str, tmp_path: Path) -> None:
    """
    A click on the button runs /app.js's handler; the page logs no console
    error; the screenshot is a PNG.
    """
    from selenium.webdriver.common.by import By

    browser.get(site + "/")
    consoleErrors(browser)  # drain what an earlier test left
    status = browser.find_element(By.ID, "status")
    assert status.text == "waiting"
    browser.find_element(By.ID, "go").click()
    waitFor(browser, lambda d: d.find_element(By.ID, "status").text == "clicked")
    assert consoleErrors(browser) == []

    shot = saveScreenshot(browser, tmp_path / "smoke.png")
    data = shot.read_bytes()
    assert len(data) > len(PNG_SIGNATURE)
    assert data.startswith(PNG_SIGNATURE)


def test_phoneWidth(phoneBrowser, site: str) -> None:
    """
    At a phone's width the page is as wide as the window: no sideways
    scrolling.
    """
    phoneBrowser.get(site + "/")
    width, scrollWidth = phoneBrowser.execute_script(
        "return [window.innerWidth, document.documentElement.scrollWidth];"
    )
    assert width == PHONE[0]
    assert scrollWidth <= width
    assert consoleErrors(phoneBrowser) == []


def test_inlineScriptIsBlocked(browser, site: str) -> None:
    """
    Under C{default-src 'self'} the inline script never runs and the
    violation is a console error, while the page's own /app.js runs.
    """
    browser.get(site + "/inline.html")
    waitFor(browser, lambda d: d.execute_script("return document.documentElement.dataset.external") == "ran")
    assert browser.execute_script("return document.documentElement.dataset.inline") is None
    errors: list[dict] = []

    def violationLogged(driver) -> bool:
        errors.extend(consoleErrors(driver))
        return any("Content Security Policy" in e["message"] for e in errors)

    waitFor(browser, violationLogged)
    assert [e for e in errors if "Content Security Policy" not in e["message"]] == []
