"""
A real headless browser for the tests marked C{@pytest.mark.browser}:
Debian's Chromium driven by selenium through Debian's chromedriver.

L{requireBrowser} finds both binaries (and selenium), skipping the test on a
developer machine that lacks one and failing it when C{CI=true}, where
C{.ci/run} installs them. Nothing is ever downloaded: the driver and the
browser are given by path, so selenium's Selenium Manager is never asked
(and C{SE_OFFLINE=true} would stop it if it were).

Fixtures (import them into the test module, C{# noqa: F401 (fixture)}):

  - C{browser}: one started Chrome WebDriver per test module, headless,
    1280x900, with a fresh profile; quit at teardown whatever happened.
  - C{phoneBrowser}: the same driver narrowed to a phone's 390x844 for one
    test, then put back to 1280x900.

Helpers: L{consoleErrors} (the console's SEVERE entries), L{waitFor} (a
bounded wait for a condition) and L{saveScreenshot}.

The module driver is shared, so a test starts from whatever page the one
before left: load your page first, and call L{consoleErrors} once to drain
entries left over from the test before.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

__all__ = [
    "CHROMIUM",
    "CHROMEDRIVER",
    "DESKTOP",
    "PHONE",
    "browser",
    "phoneBrowser",
    "consoleErrors",
    "requireBrowser",
    "saveScreenshot",
    "waitFor",
]

#: Debian's Chromium (package C{chromium}) and its driver (C{chromium-driver}).
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

#: Window sizes (width, height) in CSS pixels.
DESKTOP = (1280, 900)
PHONE = (390, 844)

#: Seconds a page load, or a script run by the driver, may take.
PAGE_LOAD_TIMEOUT = 10
SCRIPT_TIMEOUT = 10

#: Chromium's flags: headless, able to run as root (no sandbox), and kept
#: off the network: without the background-networking flags it tries to
#: reach Google, and the machine only has loopback. --user-data-dir is added
#: per driver.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
)

T = TypeVar("T")


def requireBrowser() -> tuple[str, str]:
    """
    Return the paths of Chromium and chromedriver; skip the test if either
    (or selenium) is missing, or fail it when C{CI=true}.
    """
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    problem = None
    if missing:
        problem = f"{' and '.join(missing)} missing (apt-get install chromium chromium-driver)"
    else:
        try:
            importlib.import_module("selenium")
        except ImportError as e:
            problem = f"selenium not importable ({e}); pip install -e '.[test]'"
    if problem is not None:
        # The rule of tests/support/peers.py: the browser is part of the CI
        # install (.ci/run), so missing it there is a failure.
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return CHROMIUM, CHROMEDRIVER


def startChromium(profile: Path, log: Path) -> WebDriver:
    """
    Start chromedriver and, through it, a headless Chromium using the fresh
    profile directory C{profile}; chromedriver logs to C{log}.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = requireBrowser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=chromedriver, log_output=str(log))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_window_size(*DESKTOP)
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
        driver.set_script_timeout(SCRIPT_TIMEOUT)
    except BaseException:
        driver.quit()
        raise
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """
    One headless Chromium for the whole test module, quit at teardown.
    """
    requireBrowser()
    base = tmp_path_factory.mktemp("chromium")
    with pytest.MonkeyPatch.context() as patch:
        # Belt and braces: the paths are explicit, so Selenium Manager is
        # not asked; if it ever were, it must not download anything.
        patch.setenv("SE_OFFLINE", "true")
        driver = startChromium(base / "profile", base / "chromedriver.log")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def phoneBrowser(browser: WebDriver) -> Iterator[WebDriver]:
    """
    The module's browser at a phone's width (L{PHONE}) for one test.
    """
    browser.set_window_size(*PHONE)
    try:
        yield browser
    finally:
        browser.set_window_size(*DESKTOP)


def consoleErrors(driver: WebDriver) -> list[dict[str, Any]]:
    """
    The browser console's SEVERE entries logged since the last call (each
    call drains the driver's log): uncaught exceptions, failed loads, CSP
    violations, C{console.error}.
    """
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def waitFor(driver: WebDriver, condition: Callable[[WebDriver], T], timeout: float = 2.0) -> T:
    """
    Poll C{condition(driver)} until it returns something truthy, and return
    that; raise selenium's C{TimeoutException} after C{timeout} seconds.
    """
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        condition, f"condition not met within {timeout}s"
    )


def saveScreenshot(driver: WebDriver, path: Path | str) -> Path:
    """
    Save a PNG of the current viewport to C{path}; return the path.
    """
    target = Path(path)
    target.write_bytes(driver.get_screenshot_as_png())
    return target
