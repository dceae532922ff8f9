# -*- test-case-name: tests.test_ping_association -*-
"""
Tests for L{dicomecho.cli.pingassociation} (and the L{dicomecho.cli.pinglink}
it reads PDUs with): L{ping}'s arguments, rejections and aborts in words,
and scripted loopback peers (L{tests.support.peers.WireScript}) for the
exchange itself, its timeouts, aborts and wrong answers.

Every wait is bounded: scripted peers are threads joined with a timeout,
and the pings themselves run with short deadlines.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from typing import Callable

import pytest

from dicomecho.association.commandset import CommandField, decodeCommandSet, encodeCommandSet, tag
from dicomecho.association.negotiation import IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS
from dicomecho.cli.pingassociation import describeAbort, describeRejection, ping
from dicomecho.cli.pingresult import ExitCode
from dicomecho.wire.errors import AbortReason, AbortSource
from dicomecho.wire.items import PresentationContextAC
from dicomecho.wire.userinfo import UserInformation
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
from tests.support.peers import Reply, WireScript
from tests.support.ping import PASSCODE, WAIT, oneLine, run


# --- arguments and words ------------------------------------------------------------


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
