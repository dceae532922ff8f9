"""
The live page as twistd serves it (C{--web}, C{--web-history},
C{--web-credentials}): the options, the start-up warning when it is
reachable beyond this host without TLS or credentials, HTTP Basic
against a real credentials file, and a real SCU's record in the JSON API.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from twisted.internet.testing import MemoryReactor
from twisted.python.usage import UsageError

from dicomecho.observability.levels import logLevel, setLogLevel

from dicomecho.security.credentials import formatEntry
from dicomecho.security.passcodes import hashPasscode
from dicomecho.server.services import WebListeningService
from dicomecho.server.tap import Options, makeService
from tests.support.peers import requireEchoscu, runEchoscu
from tests.support.processes import Server, freePort

PYTHON_M = [sys.executable, "-m", "dicomecho"]


def parsed(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_options(tmp_path: Path) -> None:
    assert parsed()["web"] is None
    options = parsed("--web", "tcp:0:interface=127.0.0.1", "--web-history", "5")
    assert options["web-history"] == 5
    with pytest.raises(UsageError, match="--web-credentials needs --web"):
        parsed("--web-credentials", str(tmp_path / "x"))
    with pytest.raises(UsageError, match="--web-credentials"):
        parsed("--web", "tcp:0", "--web-credentials", str(tmp_path / "missing"))
    with pytest.raises(UsageError):
        parsed("--web", "tcp:0", "--web-history", "0")
    with pytest.raises(UsageError):
        parsed("--web", "nonsense:1")


@pytest.fixture(autouse=True)
def restoreLogLevel() -> Iterator[None]:
    previous = logLevel()
    yield
    setLogLevel(previous)


def test_makeService() -> None:
    """--web adds its listener and gives the factory a history; without it, none."""
    reactor = MemoryReactor()
    service = makeService(parsed("--web", "tcp:0:interface=127.0.0.1", "--web-history", "7"), reactor)
    web = [s for s in service if isinstance(s, WebListeningService)]  # type: ignore[attr-defined]
    assert len(web) == 1 and not web[0].authenticated
    assert web[0].factory.resource is not None
    factory = next(iter(service)).factory  # type: ignore[call-overload]
    assert factory.history.limit == 7
    plain = makeService(parsed(), reactor)
    assert all(not isinstance(s, WebListeningService) for s in plain)  # type: ignore[attr-defined]
    assert next(iter(plain)).factory.history is None  # type: ignore[call-overload]


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    path = tmp_path / "web.passwd"
    path.write_text(formatEntry("admin", hashPasscode(b"s3cret", n=2**4, r=8, p=1)) + "\n")
    return path


def get(url: str, user: str | None = None, passcode: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{passcode}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def server(request: Any) -> Iterator[Server]:
    started = Server(PYTHON_M + ["-p", "tcp:0:interface=127.0.0.1", "-v", *request.param])
    try:
        yield started
    finally:
        started.stop()


@pytest.mark.parametrize("server", [["--web", "tcp:0"]], indirect=True)
def test_warnsWhenOpenToAll(server: Server) -> None:
    server.waitFor("Serving the live page on")
    line = server.waitFor(r"W: Serving the live page on .* without TLS or --web-credentials")
    assert "any host that can reach it may read who called" in line.string


def test_credentialsAgainstARealServer(credentials: Path) -> None:
    """
    With --web-credentials, nothing is served without the right username
    and passcode; with them, the page and the API show a real SCU's echo.
    No warning on loopback.
    """
    echoscu = requireEchoscu()
    webPort = freePort()
    started = Server(PYTHON_M + [
        "-p", "tcp:0:interface=127.0.0.1", "-v",
        "--web", f"tcp:{webPort}:interface=127.0.0.1", "--web-credentials", str(credentials),
    ])
    try:
        started.waitFor("Serving the live page on")
        url = f"http://127.0.0.1:{webPort}/"
        assert get(url)[0] == 401
        assert get(url, "admin", "wrong")[0] == 401
        status, output = runEchoscu(echoscu, started.port(), calling="WEBSCU")
        assert status == 0, output
        status, body = get(url + "api/associations", "admin", "s3cret")
        assert status == 200
        (association,) = json.loads(body)["associations"]
        assert association["callingAETitle"] == "WEBSCU" and association["product"] == "DCMTK 3.6.7"
        assert get(url, "admin", "s3cret")[0] == 200
        assert "W: " not in started.output()
    finally:
        started.stop()


def test_overTLS(tmp_path: Path) -> None:
    """
    --web takes any endpoint: over ssl: the page is served with the
    server's certificate (verified against its CA); on 0.0.0.0 without
    credentials the start-up warning names what is still missing.
    """
    import ssl

    from tests.support.tlscerts import TestPKI

    pki = TestPKI.create(tmp_path)
    web = f"ssl:0:privateKey={pki.serverKey}:certKey={pki.serverCert}"
    started = Server(PYTHON_M + ["-p", "tcp:0:interface=127.0.0.1", "-v", "--web", web])
    try:
        line = started.waitFor(r"Serving the live page on .* \(0\.0\.0\.0:(\d+)\)")
        port = int(line.group(1))
        warning = started.waitFor(r"W: Serving the live page on .* without --web-credentials:")
        assert "without TLS" not in warning.string
        context = ssl.create_default_context(cafile=pki.caCert)
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/", timeout=5, context=context) as r:
            assert r.status == 200 and b'id="associations"' in r.read()
    finally:
        started.stop()
