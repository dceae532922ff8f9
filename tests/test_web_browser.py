"""
The live page (C{--web}) in a real browser: Debian's Chromium, headless,
driven by selenium (tests/support/browser.py), against a real twistd
server, with DCMTK's echoscu and pynetdicom as the SCUs. Rows must appear
without a reload; a rejection shows its hint; a peer's markup stays text;
a row opens its details; the page holds on a phone's width. The screenshot
in docs/ is the one this test takes (UPDATE_SCREENSHOT=1 rewrites it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.browser import (  # noqa: F401 (fixtures)
    browser,
    consoleErrors,
    phoneBrowser,
    saveScreenshot,
    waitFor,
)
from tests.support.hostile import Client
from tests.support.harness import rq
from tests.support.peers import requireEchoscu, requirePynetdicom, runEchoscu
from tests.support.processes import ROOT, Server, freePort
from dicomecho.wire.pdu import AssociateRQ, ReleaseRQ, encode

pytestmark = pytest.mark.browser

TWISTD = [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "dicomecho"]
HOSTILE = "<svg/onload=f()>"
#: Rows must appear within this many seconds of the association's end.
LIVE = 2.0


class LiveServer:
    def __init__(self, server: Server, port: int, url: str) -> None:
        self.server, self.port, self.url = server, port, url


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    webPort = freePort()
    server = Server(TWISTD + [
        "-p", "tcp:0:interface=127.0.0.1", "-v", "--require-called-aet",
        "--web", f"tcp:{webPort}:interface=127.0.0.1",
    ])
    try:
        server.waitFor("Serving the live page on")
        yield LiveServer(server, server.port(), f"http://127.0.0.1:{webPort}/")
    finally:
        server.stop()


def rowsText(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [row.text for row in driver.find_elements(By.CSS_SELECTOR, "#rows tr.association")]


def pynetdicomEcho(port: int, calling: str = "PYNETSCU") -> None:
    pynetdicom = requirePynetdicom()
    ae = pynetdicom.AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 5
    ae.add_requested_context("1.2.840.10008.1.1")
    association = ae.associate("127.0.0.1", port, ae_title="ECHOSCP")
    assert association.is_established
    association.send_c_echo()
    association.release()


def test_livePage(live: LiveServer, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    echoscu = requireEchoscu()
    browser.get(live.url)
    consoleErrors(browser)
    browser.execute_script("window.notReloaded = true;")
    waitFor(browser, lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live")

    status, output = runEchoscu(echoscu, live.port, calling="DCMTKSCU")
    assert status == 0, output
    waitFor(browser, lambda d: any("DCMTKSCU" in r for r in rowsText(d)), LIVE)
    pynetdicomEcho(live.port)
    waitFor(browser, lambda d: any("PYNETSCU" in r for r in rowsText(d)), LIVE)
    rows = rowsText(browser)
    assert "DCMTK 3.6.7" in next(r for r in rows if "DCMTKSCU" in r)
    assert "pynetdicom 3.0.4" in next(r for r in rows if "PYNETSCU" in r)
    assert browser.execute_script("return window.notReloaded === true;")

    status, output = runEchoscu(echoscu, live.port, calling="DCMTKSCU", called="WRONGAE")
    assert status != 0, output
    waitFor(browser, lambda d: any("WRONGAE" in r for r in rowsText(d)), LIVE)
    rejected = browser.find_element(By.CSS_SELECTOR, "#rows tr.association.rejected")
    hint = rejected.find_element(By.CSS_SELECTOR, "td.hint").text
    assert "WRONGAE" in hint and "ECHOSCP" in hint, hint

    # Were the markup run, it would call f().
    browser.execute_script("window.f = function () { window.ran = true; };")
    with Client(live.port) as client:
        client.send(encode(AssociateRQ("ECHOSCP", HOSTILE, presentationContexts=rq().presentationContexts)))
        assert client.recvPDU() is not None
        client.send(encode(ReleaseRQ()))
        client.recvPDU()
    waitFor(browser, lambda d: any(HOSTILE in r for r in rowsText(d)), LIVE)
    assert browser.find_elements(By.CSS_SELECTOR, "#rows svg") == []
    assert browser.execute_script("return window.ran === undefined;")
    assert consoleErrors(browser) == []

    # The chart follows (redrawn by the server a second after new rows).
    waitFor(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart rect.rejected"), LIVE)
    waitFor(browser, lambda d: d.execute_script("return document.getAnimations().length") == 0, 3.0)
    shot = Path(ROOT / "docs" / "live-page.png") if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "live.png"
    saveScreenshot(browser, shot)
    assert shot.read_bytes().startswith(b"\x89PNG")

    # A click on a row opens its details: the -d blocks as a table.
    browser.find_element(By.CSS_SELECTOR, "#rows tr.association.rejected td.peer").click()
    waitFor(browser, lambda d: "/associations/" in d.current_url)
    page = browser.find_element(By.TAG_NAME, "body").text
    for text in ("OUTGOING A-ASSOCIATE-RJ PDU", "Calling Application Name", "DCMTKSCU", "WRONGAE"):
        assert text in page, text
    assert consoleErrors(browser) == []


def test_pageWithoutScriptAndOnAPhone(live: LiveServer, phoneBrowser: Any) -> None:
    """
    The list is rendered by the server (it is there before any script
    runs), and at a phone's width the page does not scroll sideways.
    """
    from selenium.webdriver.common.by import By

    pynetdicomEcho(live.port, "PHONESCU")
    phoneBrowser.get(live.url + "?ae=PHONESCU")
    assert any("PHONESCU" in r for r in rowsText(phoneBrowser))
    width = phoneBrowser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth];")
    assert width[0] <= width[1], width
    assert phoneBrowser.find_elements(By.CSS_SELECTOR, "ul.counters li")
    assert consoleErrors(phoneBrowser) == []
