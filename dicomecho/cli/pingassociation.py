# -*- test-case-name: tests.test_ping_association -*-
"""
One health check over a blocking socket: A-ASSOCIATE-RQ, one C-ECHO-RQ,
A-RELEASE-RQ (PS3.7 §9.1.5, PS3.8 §7.1-7.2) over a
L{dicomecho.cli.pinglink.PDULink}, every failure a L{PingFailure} with its
exit code.

L{ping} runs the exchange and returns a L{PingResult}. It uses dicomecho's
pure wire layers only: no reactor, no Twisted, no pynetdicom.
"""

from __future__ import annotations

import socket
import ssl
import time

from dicomecho.association.commandset import NO_DATA_SET, CommandField, encodeCommandSet, tag
from dicomecho.association.dimse import DIMSEMessage, MessageAssembler, fragment
from dicomecho.association.negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LITTLE_ENDIAN,
    VERIFICATION_SOP_CLASS,
)
from dicomecho.cli.pingconnection import Deadline, openConnection
from dicomecho.cli.pinglink import PDULink
from dicomecho.cli.pingresult import ExitCode, PingFailure, PingResult
from dicomecho.observability.logblocks import escape
from dicomecho.wire.errors import AbortReason, AbortSource, DICOMProtocolError
from dicomecho.wire.items import PresentationContextRQ, PresentationResult
from dicomecho.wire.userinfo import UserIdentityRQ, UserInformation
from dicomecho.wire.pdu import (
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    validateAETitle,
)
from dicomecho.wire.vocabulary import (
    abortReasonText,
    abortSourceText,
    contextResultText,
    rejectReasonText,
    rejectResultText,
    rejectSourceText,
    statusText,
)

__all__ = [
    "DEFAULT_CALLING_AET",
    "DEFAULT_CALLED_AET",
    "DEFAULT_TIMEOUT",
    "ping",
    "makeUserIdentity",
    "describeRejection",
    "describeAbort",
]

#: Our AE title unless told otherwise (as DCMTK's echoscu).
DEFAULT_CALLING_AET = "ECHOSCU"

#: The called AE title unless told otherwise (as DCMTK's echoscu).
DEFAULT_CALLED_AET = "ANY-SCP"

#: Seconds for the whole exchange, from DNS lookup to A-RELEASE-RP.
DEFAULT_TIMEOUT = 10.0

_CONTEXT_ID = 1
_MESSAGE_ID = 1

_COMMAND_FIELD = tag("CommandField")
_MESSAGE_ID_RESPONDED = tag("MessageIDBeingRespondedTo")
_STATUS = tag("Status")


def describeRejection(rj: AssociateRJ) -> str:
    """
    An A-ASSOCIATE-RJ in words (PS3.8 Table 9-21), e.g. C{"permanent,
    service-user: called AE title not recognized"}.
    """
    result = rejectResultText(rj.result)
    source = rejectSourceText(rj.source)
    return f"{result}, {source}: {rejectReasonText(rj.source, rj.reason)}"


def describeAbort(abort: Abort) -> str:
    """
    An A-ABORT in words (PS3.8 Table 9-26). The reason is only significant
    when the source is the service-provider.
    """
    source = abortSourceText(abort.source)
    if abort.source != AbortSource.SERVICE_PROVIDER:
        return source
    return f"{source}: {abortReasonText(abort.reason)}"


def _unexpected(pdu: PDU, phase: str) -> PingFailure:
    name = pdu.pduType.name.replace("_", "-")
    return PingFailure(
        ExitCode.PROTOCOL,
        f"unexpected {name} PDU during {phase}",
        (AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU),
    )


def _peerAborted(abort: Abort, phase: str) -> PingFailure:
    return PingFailure(
        ExitCode.PROTOCOL,
        f"association aborted by the peer during {phase} ({describeAbort(abort)})",
    )


def _associateRQ(
    callingAETitle: str, calledAETitle: str, identity: UserIdentityRQ | None
) -> AssociateRQ:
    """
    Verification with Implicit and Explicit VR Little Endian (PS3.4
    Annex A; Implicit VR LE is the default every AE supports, PS3.5
    §10.1), our Maximum Length and implementation identification
    (PS3.7 D.3.3.1-D.3.3.2), and the user identity, if any (PS3.7 D.3.3.7).
    """
    return AssociateRQ(
        calledAETitle=calledAETitle,
        callingAETitle=callingAETitle,
        presentationContexts=(
            PresentationContextRQ(
                _CONTEXT_ID,
                VERIFICATION_SOP_CLASS,
                (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN),
            ),
        ),
        userInformation=UserInformation(
            maximumLength=DEFAULT_MAX_PDU_LENGTH,
            implementationClassUID=IMPLEMENTATION_CLASS_UID,
            implementationVersionName=IMPLEMENTATION_VERSION_NAME,
            userIdentity=identity,
        ),
    )


def _echoRQ() -> bytes:
    """
    The C-ECHO-RQ command set (PS3.7 §9.3.5.1).
    """
    return encodeCommandSet(
        {
            tag("AffectedSOPClassUID"): VERIFICATION_SOP_CLASS,
            tag("CommandField"): CommandField.C_ECHO_RQ,
            tag("MessageID"): _MESSAGE_ID,
            tag("CommandDataSetType"): NO_DATA_SET,
        }
    )


def _associate(link: PDULink, rq: AssociateRQ, sentIdentity: bool) -> AssociateAC:
    """
    Send the A-ASSOCIATE-RQ and wait for the answer (PS3.8 §7.1).
    """
    link.phase = "association"
    link.send(rq.encode())
    answer = link.receive()
    if isinstance(answer, AssociateAC):
        return answer
    if isinstance(answer, AssociateRJ):
        message = f"association rejected ({describeRejection(answer)})"
        if sentIdentity and answer.source == 2 and answer.reason == 1:
            # PS3.7 D.3.3.7: how an acceptor refuses a user identity.
            message += "; the user identity may have been refused"
        raise PingFailure(ExitCode.REJECTED, message)
    if isinstance(answer, Abort):
        raise _peerAborted(answer, link.phase)
    raise _unexpected(answer, link.phase)


def _checkContext(ac: AssociateAC) -> PingFailure | None:
    """
    C{None} if our Verification context was accepted (PS3.8 §9.3.3.2), else
    the failure to report after releasing.
    """
    for pc in ac.presentationContexts:
        if pc.contextID != _CONTEXT_ID:
            continue
        if pc.result == PresentationResult.ACCEPTANCE:
            return None
        return PingFailure(
            ExitCode.PROTOCOL,
            f"no presentation context accepted for Verification ({contextResultText(pc.result)})",
            soft=True,
        )
    return PingFailure(
        ExitCode.PROTOCOL,
        "no presentation context accepted for Verification (the A-ASSOCIATE-AC does not answer it)",
        soft=True,
    )


def _sendEcho(link: PDULink, peerMaxPDULength: int) -> None:
    """
    Send the C-ECHO-RQ in P-DATA-TF PDUs no longer than the peer takes
    (PS3.8 §9.3.5).
    """
    link.phase = "C-ECHO"
    try:
        pdus = fragment(_CONTEXT_ID, _echoRQ(), None, peerMaxPDULength)
    except ValueError:
        raise PingFailure(
            ExitCode.PROTOCOL,
            f"the peer's maximum PDU length {peerMaxPDULength} is too small for a C-ECHO-RQ",
            (AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE),
        ) from None
    for pdu in pdus:
        link.send(pdu)


def _receiveMessage(link: PDULink) -> DIMSEMessage:
    """
    The next DIMSE message on our context, reassembled from P-DATA-TF PDUs.
    """
    assembler = MessageAssembler({_CONTEXT_ID})
    while True:
        answer = link.receive()
        if isinstance(answer, Abort):
            raise _peerAborted(answer, link.phase)
        if not isinstance(answer, PDataTF):
            raise _unexpected(answer, link.phase)
        for pdv in answer.pdvs:
            try:
                message = assembler.receive(pdv)
            except DICOMProtocolError as e:
                raise PingFailure(
                    ExitCode.PROTOCOL,
                    f"bad C-ECHO response: {escape(str(e), backslash=False)}",
                    (AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU_PARAMETER),
                ) from None
            if message is not None:
                return message


def _echo(link: PDULink, peerMaxPDULength: int) -> int:
    """
    Send the C-ECHO-RQ and return the Status of a C-ECHO-RSP that answers
    it (PS3.7 §9.3.5).
    """
    _sendEcho(link, peerMaxPDULength)
    command = _receiveMessage(link).command
    field = command.get(_COMMAND_FIELD)
    if field != CommandField.C_ECHO_RSP:
        shown = f"0x{field:04X}" if isinstance(field, int) else repr(field)
        raise PingFailure(
            ExitCode.PROTOCOL,
            f"expected a C-ECHO-RSP, received CommandField {escape(shown, backslash=False)}",
            soft=True,
        )
    respondedTo = command.get(_MESSAGE_ID_RESPONDED)
    if respondedTo != _MESSAGE_ID:
        raise PingFailure(
            ExitCode.PROTOCOL,
            f"C-ECHO-RSP answers MessageID {escape(str(respondedTo), backslash=False)}, "
            f"not {_MESSAGE_ID}",
            soft=True,
        )
    status = command.get(_STATUS)
    if not isinstance(status, int):
        raise PingFailure(ExitCode.PROTOCOL, "C-ECHO-RSP has no Status", soft=True)
    return status


def _release(link: PDULink) -> None:
    """
    A-RELEASE-RQ, then wait for the A-RELEASE-RP (PS3.8 §7.2, §9.3.6-9.3.7).
    P-DATA received meanwhile is ignored; a release request from the peer
    (a collision, PS3.8 §7.2) is answered and the wait goes on.
    """
    link.phase = "release"
    link.send(ReleaseRQ().encode())
    while True:
        answer = link.receive()
        if isinstance(answer, ReleaseRP):
            return
        if isinstance(answer, Abort):
            raise _peerAborted(answer, link.phase)
        if isinstance(answer, ReleaseRQ):
            link.send(ReleaseRP().encode())
            continue
        if not isinstance(answer, PDataTF):
            raise _unexpected(answer, link.phase)


class _Progress:
    """
    What one ping has learned so far, for its result however it ends.

    @ivar link: the association's link, once connected.
    @ivar tlsVersion: the negotiated TLS version, once the handshake is done.
    @ivar status: the C-ECHO-RSP Status, once one arrived.
    """

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.link: PDULink | None = None
        self.tlsVersion: str | None = None
        self.status: int | None = None

    def result(self, failure: PingFailure | None = None) -> PingResult:
        """
        The L{PingResult}: success without C{failure}, else what it says.
        """
        elapsed = time.monotonic() - self.start
        if failure is None:
            message = "C-ECHO succeeded (status 0x0000)"
            return PingResult(True, ExitCode.OK, message, elapsed, self.tlsVersion, self.status)
        return PingResult(
            False, failure.exitCode, failure.message, elapsed, self.tlsVersion, self.status
        )


def _converse(link: PDULink, rq: AssociateRQ, sentIdentity: bool, progress: _Progress) -> None:
    """
    Associate, echo and release, keeping the Status in C{progress}. A
    refused presentation context or a wrong C-ECHO-RSP is reported after a
    normal release.

    @raise PingFailure: unless the C-ECHO-RSP said Success and the
        association was released.
    """
    ac = _associate(link, rq, sentIdentity)
    refused = _checkContext(ac)
    if refused is None:
        info = ac.userInformation
        peerMax = info.maximumLength if info is not None and info.maximumLength else 0
        try:
            progress.status = _echo(link, peerMax)
        except PingFailure as f:
            if not f.soft:
                raise
            # A wrong answer, not a broken association: still release.
            refused = f
    try:
        _release(link)
    except PingFailure as f:
        if refused is None:
            raise
        # The first failure is the one to report.
        if f.abort is not None:
            link.abort(*f.abort)
    if refused is not None:
        raise refused
    if progress.status != 0:
        assert progress.status is not None
        raise PingFailure(ExitCode.PROTOCOL, f"C-ECHO-RSP status {statusText(progress.status)}")


def makeUserIdentity(user: str | None, passcode: str | None) -> UserIdentityRQ | None:
    """
    User Identity sub-item (PS3.7 D.3.3.7.1): type 1 for a username, type 2
    with a passcode; both UTF-8. No positive response is requested.

    @return: C{None} without C{user}.
    @raise ValueError: if C{user} or C{passcode} is unusable.
    """
    if user is None:
        if passcode is not None:
            raise ValueError("a passcode needs a user name")
        return None
    if not user:
        raise ValueError("the user name is empty")
    primary = user.encode("utf-8")
    if len(primary) > 0xFFFF:
        raise ValueError("the user name is longer than 65535 bytes")
    if passcode is None:
        return UserIdentityRQ(1, 0, primary)
    secondary = passcode.encode("utf-8")
    if not secondary:
        raise ValueError("the passcode is empty")
    if len(secondary) > 0xFFFF:
        raise ValueError("the passcode is longer than 65535 bytes")
    return UserIdentityRQ(2, 0, primary, secondary)


def ping(
    host: str,
    port: int,
    *,
    callingAETitle: str = DEFAULT_CALLING_AET,
    calledAETitle: str = DEFAULT_CALLED_AET,
    timeout: float = DEFAULT_TIMEOUT,
    sslContext: ssl.SSLContext | None = None,
    serverHostname: str | None = None,
    user: str | None = None,
    passcode: str | None = None,
    proxyHeader: bool = False,
) -> PingResult:
    """
    Associate with C{host}:C{port}, send one C-ECHO-RQ, release, and say
    how it went. Blocks for at most about C{timeout} seconds; the socket is
    closed on every path.

    @param sslContext: speak DICOM over TLS with this client context (see
        L{dicomecho.cli.pingconnection.makeSSLContext}); C{None} for plain TCP.
    @param serverHostname: the name to send (SNI) and check the server
        certificate against; defaults to C{host}.
    @param user: send a User Identity sub-item with this username: type 1,
        or type 2 with C{passcode} (PS3.7 D.3.3.7).
    @param proxyHeader: start with a PROXY protocol v2 LOCAL header, for a
        server that listens behind a load balancer (C{haproxy:} endpoints).
    @raise ValueError: if an argument is unusable (an AE title, the port,
        the timeout, a passcode without a user).
    """
    callingAETitle = validateAETitle(callingAETitle, "calling AE title")
    calledAETitle = validateAETitle(calledAETitle, "called AE title")
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not between 1 and 65535")
    if not timeout > 0:
        raise ValueError(f"timeout {timeout!r} is not positive")
    identity = makeUserIdentity(user, passcode)
    rq = _associateRQ(callingAETitle, calledAETitle, identity)
    progress = _Progress()
    deadline = Deadline(timeout)
    sock: socket.socket | None = None
    try:
        sock = openConnection(host, port, deadline, sslContext, serverHostname, proxyHeader)
        if isinstance(sock, ssl.SSLSocket):
            progress.tlsVersion = sock.version()
        progress.link = PDULink(sock, deadline, sslContext is not None)
        _converse(progress.link, rq, identity is not None, progress)
    except PingFailure as f:
        if f.abort is not None and progress.link is not None:
            progress.link.abort(*f.abort)
        return progress.result(f)
    finally:
        if sock is not None:
            sock.close()
    return progress.result()
