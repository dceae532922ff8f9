# -*- test-case-name: tests.test_ping -*-
"""
Tests for L{dicomecho.cli.ping}, the command line: its usage errors, its
help, what C{import dicomecho.ping} loads, and the whole command against
real peers: dicomecho itself (plain, access control, user identity) and
DCMTK's storescp.


Every wait is bounded: servers are subprocesses stopped by PID (SIGTERM,
then SIGKILL), and the pings themselves run with short deadlines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from dicomecho.cli.pingassociation import ping
from dicomecho.cli.pingresult import ExitCode, PingResult
from tests.support.peers import requireEchoscu
from tests.support.ping import PASSCODE, WAIT, oneLine, plainServer, run, startDicomecho  # noqa: F401 (plainServer: a fixture)
from tests.support.processes import ROOT, Server, freePort, waitListening

def runCommand(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """
    C{python -m dicomecho.ping argv} as a subprocess.
    """
    return subprocess.run(
        [sys.executable, "-m", "dicomecho.ping", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


# --- module-scoped servers --------------------------------------------------------


@pytest.fixture(scope="module")
def strictServer() -> Iterator[int]:
    """
    A server called ECHOSCP that only takes that called AE title and only
    from OTHER.
    """
    server, port = startDicomecho("--require-called-aet", "--allow-calling-aet", "OTHER")
    yield port
    server.stop()


@pytest.fixture(scope="module")
def identityServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    credentials = tmp_path_factory.mktemp("credentials") / "users"
    subprocess.run(
        [sys.executable, "-m", "dicomecho.passwd", "--passcode-stdin", str(credentials), "alice"],
        cwd=ROOT,
        input=PASSCODE + "\n",
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    server, port = startDicomecho("--user-identity", "required", "--credentials", str(credentials))
    yield port
    server.stop()


# --- usage --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["127.0.0.1"],
        ["127.0.0.1", "notaport"],
        ["127.0.0.1", "0"],
        ["127.0.0.1", "65536"],
        ["127.0.0.1", "104", "-t", "0"],
        ["127.0.0.1", "104", "-t", "soon"],
        ["127.0.0.1", "104", "-aet", "SEVENTEEN-LETTERS"],
        ["127.0.0.1", "104", "-aec", "   "],
        ["127.0.0.1", "104", "-aec", "BACK\\SLASH"],
        ["127.0.0.1", "104", "--tls-cert", "client.pem"],
        ["127.0.0.1", "104", "--tls-key", "client.key"],
        ["127.0.0.1", "104", "--tls-no-verify-host"],
        ["127.0.0.1", "104", "--tls-ca", "/nonexistent/ca.pem"],
        ["127.0.0.1", "104", "--passcode-env", "HOME"],
        ["127.0.0.1", "104", "--user", ""],
        ["127.0.0.1", "104", "--unknown-option"],
        ["127.0.0.1", "104", "--tls-c", "x"],
    ],
)
def test_usageErrors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """
    Bad arguments exit 2 with one line on stderr and nothing on stdout.
    """
    status, out, err = run(capsys, *argv)
    assert status == ExitCode.USAGE == 2
    assert out == ""
    assert oneLine(err).startswith("python -m dicomecho.ping: error: ")


def test_passcodeVariableMissing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    --passcode-env naming an unset or empty variable is a usage error that
    names the variable.
    """
    monkeypatch.delenv("DICOMECHO_TEST_PASSCODE", raising=False)
    status, _, err = run(
        capsys, "127.0.0.1", "104", "--user", "alice", "--passcode-env", "DICOMECHO_TEST_PASSCODE"
    )
    assert status == 2
    assert "DICOMECHO_TEST_PASSCODE" in oneLine(err) and "not set" in err
    monkeypatch.setenv("DICOMECHO_TEST_PASSCODE", "")
    status, _, err = run(
        capsys, "127.0.0.1", "104", "--user", "alice", "--passcode-env", "DICOMECHO_TEST_PASSCODE"
    )
    assert status == 2
    assert "empty" in oneLine(err)


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    """
    --help exits 0 and documents every exit status.
    """
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for code in range(6):
        assert re.search(rf"^  {code}  ", out, re.M), code


def test_noTwistedNorPynetdicom() -> None:
    """
    The probe loads neither Twisted nor pynetdicom (a runtime dependency
    only of the tests).
    """
    done = subprocess.run(
        [sys.executable, "-c", "import sys, dicomecho.ping; print(sorted({m.split('.')[0] for m in sys.modules}))"],
        cwd=ROOT, capture_output=True, text=True, timeout=WAIT, check=True,
    )
    assert "'pynetdicom'" not in done.stdout
    assert "'twisted'" not in done.stdout


# --- dicomecho -------------------------------------------------------------------------


@pytest.mark.peer
def test_dicomecho(plainServer: int) -> None:
    """
    The module run as a user would: exit 0 and no output, one line on
    stdout with -v; L{ping} in-process says the same.
    """
    done = runCommand("127.0.0.1", str(plainServer))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = runCommand("-v", "127.0.0.1", str(plainServer))
    assert done.returncode == 0 and done.stderr == ""
    assert "C-ECHO to ANY-SCP succeeded" in oneLine(done.stdout)
    result = ping("127.0.0.1", plainServer, timeout=5)
    assert isinstance(result, PingResult)
    assert (result.ok, result.exitCode, result.status, result.tlsVersion) == (True, 0, 0, None)
    assert 0 < result.elapsed < 5


@pytest.mark.peer
def test_calledAETitleRejected(strictServer: int, capsys: pytest.CaptureFixture[str]) -> None:
    """
    --require-called-aet on the server and the wrong called AE title: exit
    1, the reason in words.
    """
    status, out, err = run(capsys, "127.0.0.1", str(strictServer), "-aet", "OTHER", "-aec", "NOT-IT")
    assert (status, out) == (1, "")
    assert "association rejected (permanent, service-user: called AE title not recognized)" in oneLine(err)


@pytest.mark.peer
def test_callingAETitleRejected(strictServer: int, capsys: pytest.CaptureFixture[str]) -> None:
    """
    --allow-calling-aet OTHER on the server: our default ECHOSCU is
    rejected, OTHER is served.
    """
    status, _, err = run(capsys, "127.0.0.1", str(strictServer), "-aec", "ECHOSCP")
    assert status == 1
    assert "calling AE title not recognized" in oneLine(err)
    assert run(capsys, "127.0.0.1", str(strictServer), "-aet", "OTHER", "-aec", "ECHOSCP")[:2] == (0, "")


@pytest.mark.peer
def test_userIdentity(identityServer: int) -> None:
    """
    --user with --passcode-env against --user-identity required: the right
    passcode passes, a wrong one or none is rejected; the passcode is never
    printed.
    """
    port = str(identityServer)
    done = runCommand(
        "-v", "127.0.0.1", port, "--user", "alice", "--passcode-env", "PING_PASSCODE",
        env={"PING_PASSCODE": PASSCODE},
    )
    assert done.returncode == 0, done.stderr
    assert PASSCODE not in done.stdout + done.stderr
    wrong = PASSCODE + "-wrong"
    done = runCommand(
        "127.0.0.1", port, "--user", "alice", "--passcode-env", "PING_PASSCODE",
        env={"PING_PASSCODE": wrong},
    )
    assert done.returncode == 1
    assert "association rejected" in oneLine(done.stderr)
    assert wrong not in done.stdout + done.stderr and PASSCODE not in done.stderr
    done = runCommand("127.0.0.1", port)
    assert done.returncode == 1, done.stderr


# --- DCMTK ---------------------------------------------------------------------------------


@pytest.mark.peer
def test_storescp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """
    DCMTK's storescp answers our C-ECHO: exit 0.
    """
    storescp = Path(requireEchoscu()).parent / "storescp"
    port = freePort()
    server = Server([str(storescp), "-aet", "ANY-SCP", "-od", str(tmp_path), str(port)])
    try:
        waitListening(port, server)
        assert run(capsys, "127.0.0.1", str(port), "-t", "5")[:3] == (0, "", "")
    finally:
        server.stop()
