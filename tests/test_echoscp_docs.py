"""
Every line of pynetdicom's echoscp documentation (docs/apps/echoscp.rst)
that starts a server, run with C{python -m pynetdicom echoscp} replaced by
each of our three entry points, echoed by DCMTK's echoscu; the log lines
the documentation shows must appear, in its order.

The documentation's port, 11112, is replaced by a free port so that the
suite runs beside anything else. Where the documentation's text is older
than echoscp 3.0.4 itself (its C{-d} banner names C{echoscp.py v0.7.0} and
its block header says C{BEGIN}), the expectation is what echoscp 3.0.4
prints at -d, with our name in the banner.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from dicomecho import __version__
from tests.support.peers import requireEchoscu
from tests.support.processes import BIN, TIMEOUT, Server, freePort, servers, start, waitListening  # noqa: F401 (fixture)

pytestmark = pytest.mark.peer

#: The documentation's command lines after C{echoscp}, as written.
DOC_LINES = ["11112", "11112 -v", "11112 -d"]

#: How each entry point is started; C{twistd} gets dicomecho's echoscp
#: observer (a twistd option, so before the subcommand).
ENTRY_POINTS = {
    "python -m dicomecho": [sys.executable, "-m", "dicomecho"],
    "dicomecho script": [str(BIN / "dicomecho")],
    "twistd -n dicomecho": [str(BIN / "twistd"), "-n", "--pidfile=",
                            "--logger", "dicomecho.logs.consoleObserver", "dicomecho"],
}

#: What the documentation shows for each line, after one echo.
VERBOSE = [
    "I: Accepting Association",
    "I: Received Echo Request (MsgID 1)",
    "I: Association Released",
]
DEBUG = [
    f"D: dicomecho v{__version__}",
    "D: ",
    "D: Request Parameters:",
    "D: ======================= INCOMING A-ASSOCIATE-RQ PDU ========================",
    re.compile(r"^D: Their Implementation Class UID:      1\.2\.276\.0\.7230010\.3\.0\.3\.6\.\d+$"),
    # the documentation's "..."
    "I: Received Echo Request (MsgID 1)",
    "D: ========================== INCOMING DIMSE MESSAGE ==========================",
    "D: Message Type                  : C-ECHO RQ",
    "D: Presentation Context ID       : 1",
    "D: Message ID                    : 1",
    "D: Data Set                      : None",
    "D: ============================ END DIMSE MESSAGE =============================",
    "I: Association Released",
]


def inOrder(lines: list[str], expected: list[str | re.Pattern[str]]) -> bool:
    """
    Whether C{expected} appear in C{lines} in that order (others may stand
    between them, as the documentation's "..." does).
    """
    remaining = iter(lines)
    for want in expected:
        for line in remaining:
            if (want.search(line) if isinstance(want, re.Pattern) else line == want):
                break
        else:
            return False
    return True


@pytest.mark.parametrize("docLine", DOC_LINES)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_documentedCommandLine(servers: list[Server], entry: str, docLine: str) -> None:
    port = freePort()
    args = [str(port) if arg == "11112" else arg for arg in docLine.split()]
    server = start(servers, ENTRY_POINTS[entry] + args)
    waitListening(port, server)
    echo = subprocess.run(
        [requireEchoscu(), "-aet", "MYSCU", "-aec", "ECHOSCP", "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    )
    assert echo.returncode == 0, echo.stderr
    if docLine == "11112":
        assert server.stop(signal.SIGINT) == 0
        # echoscp prints nothing at its default level; we print only the
        # start-up warning for a port open beyond loopback without TLS or
        # an allow-list (a documented difference).
        assert [l for l in server.lines if l] == [
            f"W: Listening on 0.0.0.0:{port} without TLS or an allow-list: any host "
            "that can reach it may associate (see 'Securing dicomecho' in README.rst)"
        ]
        return
    server.waitFor(re.escape("I: Association Released"))
    expected = VERBOSE if docLine.endswith("-v") else DEBUG
    assert server.stop(signal.SIGINT) == 0
    assert inOrder(server.lines, expected), server.output()
    if expected is VERBOSE:
        at = server.lines.index(VERBOSE[0])
        assert server.lines[at : at + 3] == VERBOSE, server.output()
