"""
What the ping tests share: running L{dicomecho.cli.ping.main} in-process,
starting a dicomecho server to ping, and their bounds.
"""

from __future__ import annotations

import sys
from typing import Iterator

import pytest

from dicomecho.cli.ping import main
from tests.support.processes import Server, freePort

#: Seconds any wait for a server may take.
WAIT = 15.0

PASSCODE = "s3cret-Passcode-42"


def startDicomecho(*options: str) -> tuple[Server, int]:
    port = freePort()
    server = Server(
        [sys.executable, "-m", "dicomecho", "-v", "--bind-address", "127.0.0.1", *options, str(port)]
    )
    try:
        server.waitFor("Listening on")
    except AssertionError:
        server.stop()
        raise
    return server, port


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """
    C{main(argv)} in-process: the exit status, stdout and stderr.
    """
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def oneLine(text: str) -> str:
    """
    C{text} is exactly one line; return it.
    """
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)
    return text[:-1]


@pytest.fixture(scope="module")
def plainServer() -> Iterator[int]:
    """
    A plain dicomecho for the module's pings, its port.
    """
    server, port = startDicomecho()
    yield port
    server.stop()
