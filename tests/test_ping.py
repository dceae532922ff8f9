# -*- test-case-name: tests.test_ping -*-
"""
Tests for L{dicomecho.cli.ping}: the command line's usage errors, scripted
loopback peers (L{tests.support.peers.WireScript}) for timeouts, aborts and wrong
answers, and real peers: dicomecho itself (plain, access control, user
identity, mutual TLS) and DCMTK's storescp.

Every wait is bounded: servers are subprocesses stopped by PID (SIGTERM,
then SIGKILL), scripted peers are threads joined with a timeout, and the
pings themselves run with short deadlines.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from dicomecho.cli import ping as pingModule
from dicomecho.association.dimse import CommandField, decodeCommandSet, encodeCommandSet, tag
from dicomecho.wire.errors import AbortReason, AbortSource
from dicomecho.wire.items import PresentationContextAC, UserInformation
from dicomecho.association.negotiation import IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS
from dicomecho.wire.pdu import (
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    PresentationDataValue,
    ReleaseRP,
    ReleaseRQ,
)
from dicomecho.cli.ping import ExitCode, PingResult, describeAbort, describeRejection, main, ping
from tests.support.peers import Reply, WireScript, requireEchoscu
from tests.support.processes import ROOT, Server, freePort, waitListening
from tests.support.tlscerts import TestPKI, createPKI

#: Seconds any wait for a server may take.
WAIT = 15.0

PASSCODE = "s3cret-Passcode-42"


# --- helpers --------------------------------------------------------------------


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
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return createPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def plainServer() -> Iterator[int]:
    server, port = startDicomecho()
    yield port
    server.stop()


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


@pytest.fixture(scope="module")
def tlsServer(pki: TestPKI) -> Iterator[int]:
    server, port = startDicomecho(
        "--tls-key", str(pki.serverKey), "--tls-cert", str(pki.serverCert), "--tls-ca", str(pki.caCert)
    )
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


def test_pingArguments() -> None:
    """
    L{ping} refuses unusable arguments with C{ValueError} before it
    connects.
    """
    with pytest.raises(ValueError):
        ping("127.0.0.1", 104, callingAETitle="X" * 17)
    with pytest.raises(ValueError):
        ping("127.0.0.1", 0)
    with pytest.raises(ValueError):
        ping("127.0.0.1", 104, timeout=0)
    with pytest.raises(ValueError):
        ping("127.0.0.1", 104, passcode="secret")


def test_describe() -> None:
    """
    Rejections and aborts in words (PS3.8 Tables 9-21 and 9-26).
    """
    assert describeRejection(AssociateRJ(1, 1, 7)) == (
        "permanent, service-user: called AE title not recognized"
    )
    assert describeRejection(AssociateRJ(2, 3, 1)) == (
        "transient, service-provider (presentation): temporary congestion"
    )
    assert describeRejection(AssociateRJ(1, 1, 9)) == "permanent, service-user: reserved reason 9"
    assert describeAbort(Abort(2, 6)) == "service-provider: invalid PDU parameter value"
    assert describeAbort(Abort(0, 0)) == "service-user"


# --- scripted peers -------------------------------------------------------------


def accept(rq: AssociateRQ, result: int = 0, maximumLength: int = 16384) -> bytes:
    return AssociateAC(
        calledAETitle=rq.calledAETitle,
        callingAETitle=rq.callingAETitle,
        presentationContexts=(
            PresentationContextAC(
                1, result, IMPLICIT_VR_LITTLE_ENDIAN if result == 0 else None
            ),
        ),
        userInformation=UserInformation(maximumLength=maximumLength, implementationClassUID="1.2.3"),
    ).encode()


def echoResponse(status: int = 0, respondedTo: int = 1) -> bytes:
    command = encodeCommandSet(
        {
            tag("AffectedSOPClassUID"): VERIFICATION_SOP_CLASS,
            tag("CommandField"): CommandField.C_ECHO_RSP,
            tag("MessageIDBeingRespondedTo"): respondedTo,
            tag("CommandDataSetType"): 0x0101,
            tag("Status"): status,
        }
    )
    return PDataTF((PresentationDataValue(1, True, True, command),)).encode()


def scriptedPing(
    capsys: pytest.CaptureFixture[str], server: WireScript, *options: str
) -> tuple[int, str]:
    """
    Ping C{server}; return the exit status and the one line on stderr.
    """
    status, out, err = run(capsys, "127.0.0.1", str(server.port), *options)
    assert out == ""
    return status, oneLine(err) if status else err


def kinds(pdus: list[PDU]) -> list[type]:
    return [type(pdu) for pdu in pdus]


Script = Callable[[PDU], "Reply | list[bytes]"]


def verification(*, status: int = 0, respondedTo: int = 1, releaseRP: bool = True) -> Script:
    """
    A script that accepts, answers the echo, and releases (or not).
    """

    def respond(pdu: PDU) -> Reply | list[bytes]:
        if isinstance(pdu, AssociateRQ):
            return [accept(pdu)]
        if isinstance(pdu, PDataTF):
            return [echoResponse(status, respondedTo)] if pdu.pdvs[-1].isLastFragment else []
        if isinstance(pdu, ReleaseRQ) and releaseRP:
            return Reply([ReleaseRP().encode()], close=True)
        return []

    return respond


def test_scriptedSuccess(capsys: pytest.CaptureFixture[str]) -> None:
    """
    RQ with Verification in Implicit and Explicit VR LE, a C-ECHO-RQ with
    MessageID 1, a release: exit 0, nothing printed.
    """
    with WireScript(verification()) as server:
        assert scriptedPing(capsys, server) == (0, "")
    rq, echo, release = server.received
    assert isinstance(rq, AssociateRQ)
    assert (rq.callingAETitle, rq.calledAETitle) == ("ECHOSCU", "ANY-SCP")
    (pc,) = rq.presentationContexts
    assert (pc.contextID, pc.abstractSyntax) == (1, VERIFICATION_SOP_CLASS)
    assert pc.transferSyntaxes == ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
    assert rq.userInformation is not None and rq.userInformation.userIdentity is None
    assert isinstance(echo, PDataTF)
    command = decodeCommandSet(echo.pdvs[0].data)
    assert command[tag("CommandField")] == CommandField.C_ECHO_RQ
    assert command[tag("MessageID")] == 1
    assert command[tag("AffectedSOPClassUID")] == VERIFICATION_SOP_CLASS
    assert isinstance(release, ReleaseRQ)


@pytest.mark.parametrize("passcode", [None, PASSCODE])
def test_userIdentitySubItem(passcode: str | None) -> None:
    """
    C{user} alone sends User Identity type 1; with a passcode, type 2
    (PS3.7 D.3.3.7.1), both UTF-8, no positive response requested.
    """
    with WireScript(verification()) as server:
        result = ping("127.0.0.1", server.port, timeout=5, user="ålice", passcode=passcode)
    assert result.ok, result.message
    assert PASSCODE not in result.message
    rq = server.received[0]
    assert isinstance(rq, AssociateRQ) and rq.userInformation is not None
    identity = rq.userInformation.userIdentity
    assert identity is not None
    assert identity.primaryField == "ålice".encode("utf-8")
    assert identity.positiveResponseRequested == 0
    if passcode is None:
        assert (identity.identityType, identity.secondaryField) == (1, b"")
    else:
        assert (identity.identityType, identity.secondaryField) == (2, PASSCODE.encode())


def test_fragmentsToPeerMaximum(capsys: pytest.CaptureFixture[str]) -> None:
    """
    A peer whose Maximum Length is 16 gets the C-ECHO-RQ in P-DATA-TF PDUs
    of at most 16 bytes each (PS3.8 §9.3.5, D.1).
    """

    def respond(pdu: PDU) -> Reply | list[bytes]:
        if isinstance(pdu, AssociateRQ):
            return [accept(pdu, maximumLength=16)]
        return verification()(pdu)

    with WireScript(respond) as server:
        assert scriptedPing(capsys, server)[0] == 0
    echoes = [pdu for pdu in server.received if isinstance(pdu, PDataTF)]
    assert len(echoes) > 3
    assert all(len(pdu.encode()) - 6 <= 16 for pdu in echoes)


def test_timeoutAssociation(capsys: pytest.CaptureFixture[str]) -> None:
    """
    A peer that accepts the connection and never answers: exit 4 after the
    deadline, naming the association phase; an A-ABORT is sent.
    """
    with WireScript(lambda pdu: []) as server:
        started = time.monotonic()
        status, line = scriptedPing(capsys, server, "-t", "1")
        elapsed = time.monotonic() - started
    assert status == ExitCode.TIMEOUT
    assert re.search(r"timeout.*association", line), line
    assert 0.9 < elapsed < 3
    assert kinds(server.received) == [AssociateRQ, Abort]


def test_deadlineCoversEveryRead(capsys: pytest.CaptureFixture[str]) -> None:
    """
    A peer that trickles its A-ASSOCIATE-AC one byte every 0.1 s cannot
    stretch the deadline: -t 1 gives up after about a second.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(WAIT)
            rq = connection.recv(65536)
            ac = accept(AssociateRQ("ANY-SCP", "ECHOSCU")) if rq else b""
            for byte in ac:
                if stop.wait(0.1):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        status, _, err = run(capsys, "127.0.0.1", str(port), "-t", "1")
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        listener.close()
        thread.join(WAIT)
    assert status == 4
    assert re.search(r"timeout.*association", oneLine(err))
    assert elapsed < 2


def test_timeoutEcho(capsys: pytest.CaptureFixture[str]) -> None:
    """
    An AC, then no C-ECHO-RSP: exit 4 in the C-ECHO phase, then A-ABORT.
    """

    def respond(pdu: PDU) -> list[bytes]:
        return [accept(pdu)] if isinstance(pdu, AssociateRQ) else []

    with WireScript(respond) as server:
        status, line = scriptedPing(capsys, server, "-t", "0.5")
    assert status == 4
    assert re.search(r"timeout.*C-ECHO", line), line
    assert kinds(server.received) == [AssociateRQ, PDataTF, Abort]


def test_timeoutRelease(capsys: pytest.CaptureFixture[str]) -> None:
    """
    No A-RELEASE-RP: exit 4 in the release phase, after an A-ABORT.
    """
    with WireScript(verification(releaseRP=False)) as server:
        status, line = scriptedPing(capsys, server, "-t", "0.5")
    assert status == 4
    assert re.search(r"timeout.*release", line), line
    assert kinds(server.received) == [AssociateRQ, PDataTF, ReleaseRQ, Abort]
    assert server.received[-1] == Abort(AbortSource.SERVICE_USER, 0)


def test_peerAborts(capsys: pytest.CaptureFixture[str]) -> None:
    """
    An A-ABORT instead of an AC: exit 5, the source and reason in words.
    """
    abort = Abort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU_PARAMETER)
    with WireScript(lambda pdu: Reply([abort.encode()], close=True)) as server:
        status, line = scriptedPing(capsys, server)
    assert status == ExitCode.PROTOCOL
    assert "aborted by the peer" in line
    assert "service-provider: unexpected PDU parameter" in line
    assert kinds(server.received) == [AssociateRQ]


def test_noContextAccepted(capsys: pytest.CaptureFixture[str]) -> None:
    """
    An AC that rejects the Verification context: exit 5, and the
    association is released, not aborted.
    """

    def respond(pdu: PDU) -> Reply | list[bytes]:
        if isinstance(pdu, AssociateRQ):
            return [accept(pdu, result=3)]
        if isinstance(pdu, ReleaseRQ):
            return Reply([ReleaseRP().encode()], close=True)
        return []

    with WireScript(respond) as server:
        status, line = scriptedPing(capsys, server)
    assert status == 5
    assert "no presentation context accepted" in line
    assert "abstract syntax not supported" in line
    assert kinds(server.received) == [AssociateRQ, ReleaseRQ]


@pytest.mark.parametrize(
    "script, expected",
    [
        (verification(status=0x0110), "C-ECHO-RSP status 0x0110 (processing failure)"),
        (verification(status=0xC123), "C-ECHO-RSP status 0xC123"),
        (verification(respondedTo=2), "answers MessageID 2, not 1"),
    ],
)
def test_wrongResponse(capsys: pytest.CaptureFixture[str], script: Script, expected: str) -> None:
    """
    A C-ECHO-RSP with a non-zero status or for another message: exit 5,
    after a normal release.
    """
    with WireScript(script) as server:
        status, line = scriptedPing(capsys, server)
    assert status == 5
    assert expected in line
    assert kinds(server.received) == [AssociateRQ, PDataTF, ReleaseRQ]


def test_peerCloses(capsys: pytest.CaptureFixture[str]) -> None:
    """
    A peer that closes after the RQ: exit 5, "closed".
    """
    with WireScript(lambda pdu: Reply([], close=True)) as server:
        status, line = scriptedPing(capsys, server)
    assert status == 5
    assert "closed the connection during association" in line


def test_unrecognizedPDU(capsys: pytest.CaptureFixture[str]) -> None:
    """
    An unknown PDU type: exit 5, and an A-ABORT from the service-provider
    with reason unrecognized-PDU (PS3.8 Table 9-26).
    """
    with WireScript(lambda pdu: [b"\x09\x00\x00\x00\x00\x04abcd"]) as server:
        status, line = scriptedPing(capsys, server)
    assert status == 5
    assert "unrecognized PDU type 0x09" in line
    assert server.received[-1] == Abort(AbortSource.SERVICE_PROVIDER, AbortReason.UNRECOGNIZED_PDU)


def test_unexpectedPDU(capsys: pytest.CaptureFixture[str]) -> None:
    """
    An A-RELEASE-RP instead of an AC: exit 5, A-ABORT unexpected-PDU.
    """
    with WireScript(lambda pdu: [ReleaseRP().encode()] if isinstance(pdu, AssociateRQ) else []) as server:
        status, line = scriptedPing(capsys, server)
    assert status == 5
    assert "unexpected A-RELEASE-RP PDU during association" in line
    assert server.received[-1] == Abort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU)


def test_connectionRefused(capsys: pytest.CaptureFixture[str]) -> None:
    """
    Nothing listening: exit 3, "connection refused".
    """
    status, out, err = run(capsys, "127.0.0.1", str(freePort()), "-t", "2")
    assert (status, out) == (3, "")
    assert "connection refused" in oneLine(err)


def test_unknownHost(capsys: pytest.CaptureFixture[str]) -> None:
    """
    A name that does not resolve (RFC 6761 reserves .invalid): exit 3.
    """
    status, _, err = run(capsys, "no-such-host.invalid", "104", "-t", "5")
    assert status == 3
    assert "cannot resolve host" in oneLine(err)


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
def test_dicomechoTLSPortPlain(tlsServer: int, capsys: pytest.CaptureFixture[str]) -> None:
    """
    Plain DICOM to a TLS port: exit 5, the line asks whether it expects TLS.
    """
    status, _, err = run(capsys, "127.0.0.1", str(tlsServer), "-t", "5")
    assert status == 5
    assert "expect TLS" in oneLine(err)


@pytest.mark.peer
def test_proxyHeader(capsys: pytest.CaptureFixture[str]) -> None:
    """
    A server listening behind a load balancer (haproxy:) is reached with
    --proxy-header (PROXY v2, LOCAL); without it, it closes: exit 5.
    """
    port = freePort()
    server = Server(
        [sys.executable, "-m", "dicomecho", "-v", "--listen", f"haproxy:tcp:{port}:interface=127.0.0.1"]
    )
    try:
        server.waitFor("Listening on")
        assert run(capsys, "--proxy-header", "127.0.0.1", str(port), "-t", "5")[:3] == (0, "", "")
        status, _, err = run(capsys, "127.0.0.1", str(port), "-t", "5")
        assert status == 5
        assert "PROXY header" in oneLine(err)
    finally:
        server.stop()


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


# --- TLS --------------------------------------------------------------------------------


def tlsArguments(pki: TestPKI, certificate: bool = True) -> list[str]:
    arguments = ["--tls", "--tls-ca", str(pki.caCert)]
    if certificate:
        arguments += ["--tls-cert", str(pki.clientCert), "--tls-key", str(pki.clientKey)]
    return arguments


@pytest.mark.peer
def test_mutualTLS(tlsServer: int, pki: TestPKI, capsys: pytest.CaptureFixture[str]) -> None:
    """
    With the CA and a client certificate: exit 0; L{ping} reports the TLS
    version.
    """
    assert run(capsys, "127.0.0.1", str(tlsServer), *tlsArguments(pki))[:3] == (0, "", "")
    context = pingModule.makeSSLContext(str(pki.caCert), str(pki.clientCert), str(pki.clientKey))
    result = ping("127.0.0.1", tlsServer, timeout=5, sslContext=context)
    assert result.ok, result.message
    assert result.tlsVersion in ("TLSv1.2", "TLSv1.3")


@pytest.mark.peer
def test_tlsWithoutClientCertificate(
    tlsServer: int, pki: TestPKI, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    No client certificate for a server that requires one: exit 3, and the
    line says the certificate was refused (TLS 1.3 reports it on the first
    read, after the client's handshake has completed).
    """
    status, _, err = run(capsys, "127.0.0.1", str(tlsServer), "-t", "5", *tlsArguments(pki, False))
    assert status == 3
    assert "refused our client certificate" in oneLine(err)


@pytest.mark.peer
def test_tlsServerNotTrusted(tlsServer: int, capsys: pytest.CaptureFixture[str]) -> None:
    """
    --tls with the system's CAs only: the test server is not trusted, exit 3.
    """
    status, _, err = run(capsys, "127.0.0.1", str(tlsServer), "-t", "5", "--tls")
    assert status == 3
    assert "TLS handshake failed: server certificate not trusted" in oneLine(err)


@pytest.mark.peer
def test_tlsHostName(tlsServer: int, pki: TestPKI, capsys: pytest.CaptureFixture[str]) -> None:
    """
    The server certificate is checked against --tls-server-name (default:
    HOST) unless --tls-no-verify-host.
    """
    arguments = ["127.0.0.1", str(tlsServer), "-t", "5", *tlsArguments(pki)]
    status, _, err = run(capsys, *arguments, "--tls-server-name", "elsewhere.example")
    assert status == 3
    assert "elsewhere.example" in oneLine(err)
    assert run(capsys, *arguments, "--tls-server-name", "localhost")[0] == 0
    assert run(capsys, *arguments, "--tls-server-name", "elsewhere.example", "--tls-no-verify-host")[0] == 0


@pytest.mark.peer
def test_tlsToPlainServer(plainServer: int, pki: TestPKI, capsys: pytest.CaptureFixture[str]) -> None:
    """
    TLS to a plain DICOM port: exit 3, "TLS handshake failed".
    """
    status, _, err = run(capsys, "127.0.0.1", str(plainServer), "-t", "5", *tlsArguments(pki))
    assert status == 3
    assert "TLS handshake failed" in oneLine(err)


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
