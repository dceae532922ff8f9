# -*- test-case-name: tests.test_ping -*-
"""
A DICOM health check: one association, one C-ECHO, one release.

C{python -m dicomecho.ping HOST PORT [options]} proposes the Verification
SOP Class, sends a C-ECHO-RQ and releases the association (PS3.7 §9.1.5,
PS3.8 §7.1-7.2). It prints nothing when the echo succeeds (one line with
C{-v}) and one line on standard error saying why when it does not, so it
serves as a Kubernetes exec readiness probe or an HAProxy external check
on hosts without DCMTK.

Exit status:

  - 0: the C-ECHO-RSP carried status 0x0000 (Success).
  - 1: the association was rejected (A-ASSOCIATE-RJ, PS3.8 §9.3.4); the
    line gives result, source and reason in words.
  - 2: usage error.
  - 3: cannot connect: DNS failure, connection refused, unreachable, or
    the TLS handshake failed (including a client certificate the server
    refused).
  - 4: the overall deadline (C{-t}) passed; the line names the phase:
    connect, TLS handshake, association, C-ECHO or release. Once the
    association request has been sent, an A-ABORT is sent before closing.
  - 5: protocol failure: the peer aborted (A-ABORT source and reason in
    words) or closed the connection, no presentation context was accepted
    for Verification, a PDU was unexpected or malformed, or the
    C-ECHO-RSP is wrong or carries a non-zero status (PS3.7 §9.1.5.1.4).
    Also used, with C{internal error} in the line, if the probe itself
    fails unexpectedly: never 1, which would read as a rejection.

C{--proxy-header} starts the connection with a PROXY protocol v2 LOCAL
header, for a server that listens behind a load balancer (C{haproxy:}
endpoints), as the balancer's own health checks do.

L{ping} runs the same exchange in-process and returns a L{PingResult}. It
uses a blocking socket with timeouts taken from one deadline and
dicomecho's pure wire layers only: no reactor, no Twisted, no pynetdicom.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import NoReturn, Sequence

from dicomecho import __version__
from dicomecho.association.dimse import (
    NO_DATA_SET,
    CommandField,
    DIMSEMessage,
    MessageAssembler,
    encodeCommandSet,
    fragment,
    tag,
)
from dicomecho.wire.errors import AbortReason, AbortSource, DICOMProtocolError, RemoteProtocolError
from dicomecho.wire.framer import PDUFramer
from dicomecho.wire.items import (
    PresentationContextRQ,
    PresentationResult,
    UserIdentityRQ,
    UserInformation,
)
from dicomecho.observability.logblocks import escape
from dicomecho.association.negotiation import (
    DEFAULT_MAX_PDU_LENGTH,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LITTLE_ENDIAN,
    VERIFICATION_SOP_CLASS,
)
from dicomecho.wire.pdu import (
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    decodePDU,
    validateAETitle,
)

__all__ = [
    "ExitCode",
    "PingResult",
    "DEFAULT_CALLING_AET",
    "DEFAULT_CALLED_AET",
    "DEFAULT_TIMEOUT",
    "PROXY_V2_LOCAL_HEADER",
    "ping",
    "makeSSLContext",
    "describeRejection",
    "describeAbort",
    "main",
]

PROG = "python -m dicomecho.ping"

#: Our AE title unless told otherwise (as DCMTK's echoscu).
DEFAULT_CALLING_AET = "ECHOSCU"

#: The called AE title unless told otherwise (as DCMTK's echoscu).
DEFAULT_CALLED_AET = "ANY-SCP"

#: Seconds for the whole exchange, from DNS lookup to A-RELEASE-RP.
DEFAULT_TIMEOUT = 10.0

#: A PROXY protocol version 2 header with the LOCAL command and no
#: addresses: what a load balancer sends on its own health checks, telling
#: a server behind C{haproxy:} to use the connection's real endpoints.
PROXY_V2_LOCAL_HEADER = b"\r\n\r\n\x00\r\nQUIT\n" + b"\x20\x00\x00\x00"

_CONTEXT_ID = 1
_MESSAGE_ID = 1
_READ_SIZE = 65536

_COMMAND_FIELD = tag("CommandField")
_MESSAGE_ID_RESPONDED = tag("MessageIDBeingRespondedTo")
_STATUS = tag("Status")


class ExitCode(IntEnum):
    """
    The exit status of C{python -m dicomecho.ping} and L{PingResult.exitCode}.
    """

    OK = 0
    REJECTED = 1
    USAGE = 2
    UNREACHABLE = 3
    TIMEOUT = 4
    PROTOCOL = 5


@dataclass(frozen=True)
class PingResult:
    """
    The outcome of one L{ping}.

    @ivar ok: whether the C-ECHO succeeded (status 0x0000).
    @ivar exitCode: an L{ExitCode}.
    @ivar message: one line saying what happened; never contains the
        passcode.
    @ivar elapsed: seconds from the start of the DNS lookup to the end.
    @ivar tlsVersion: the negotiated TLS version (e.g. C{"TLSv1.3"}), or
        C{None} without TLS or before the handshake completed.
    @ivar status: the C-ECHO-RSP Status, or C{None} if none arrived.
    """

    ok: bool
    exitCode: ExitCode
    message: str
    elapsed: float
    tlsVersion: str | None = None
    status: int | None = None


# --- words for the numbers of PS3.8 Tables 9-21 and 9-26 and PS3.7 Annex C ---

_REJECT_RESULTS = {1: "permanent", 2: "transient"}
_REJECT_SOURCES = {
    1: "service-user",
    2: "service-provider (ACSE)",
    3: "service-provider (presentation)",
}
_REJECT_REASONS = {
    1: {
        1: "no reason given",
        2: "application context name not supported",
        3: "calling AE title not recognized",
        7: "called AE title not recognized",
    },
    2: {1: "no reason given", 2: "protocol version not supported"},
    3: {1: "temporary congestion", 2: "local limit exceeded"},
}
_ABORT_SOURCES = {0: "service-user", 1: "reserved source", 2: "service-provider"}
_ABORT_REASONS = {
    0: "reason not specified",
    1: "unrecognized PDU",
    2: "unexpected PDU",
    4: "unrecognized PDU parameter",
    5: "unexpected PDU parameter",
    6: "invalid PDU parameter value",
}
_STATUS_NAMES = {
    0x0110: "processing failure",
    0x0122: "SOP class not supported",
    0x0210: "duplicate invocation",
    0x0211: "unrecognized operation",
    0x0212: "mistyped argument",
    0x0213: "resource limitation",
}
_CONTEXT_RESULTS = {
    PresentationResult.USER_REJECTION: "user rejection",
    PresentationResult.NO_REASON: "provider rejection, no reason",
    PresentationResult.ABSTRACT_SYNTAX_NOT_SUPPORTED: "abstract syntax not supported",
    PresentationResult.TRANSFER_SYNTAXES_NOT_SUPPORTED: "transfer syntaxes not supported",
}


def describeRejection(rj: AssociateRJ) -> str:
    """
    An A-ASSOCIATE-RJ in words (PS3.8 Table 9-21), e.g. C{"permanent,
    service-user: called AE title not recognized"}.
    """
    result = _REJECT_RESULTS.get(rj.result, f"result {rj.result}")
    source = _REJECT_SOURCES.get(rj.source, f"source {rj.source}")
    reason = _REJECT_REASONS.get(rj.source, {}).get(rj.reason, f"reserved reason {rj.reason}")
    return f"{result}, {source}: {reason}"


def describeAbort(abort: Abort) -> str:
    """
    An A-ABORT in words (PS3.8 Table 9-26). The reason is only significant
    when the source is the service-provider.
    """
    source = _ABORT_SOURCES.get(abort.source, f"source {abort.source}")
    if abort.source != AbortSource.SERVICE_PROVIDER:
        return source
    return f"{source}: {_ABORT_REASONS.get(abort.reason, f'reason {abort.reason}')}"


def _describeStatus(status: int) -> str:
    name = _STATUS_NAMES.get(status)
    return f"0x{status:04X}" + (f" ({name})" if name else "")


# --- failures -------------------------------------------------------------------


class _Failure(Exception):
    """
    Why the ping failed.

    @ivar exitCode: an L{ExitCode}.
    @ivar message: the line to report.
    @ivar abort: C{(source, reason)} of the A-ABORT to send before closing,
        or C{None} to just close.
    @ivar soft: the association is still up: release it, then report.
    """

    def __init__(
        self,
        exitCode: ExitCode,
        message: str,
        abort: tuple[int, int] | None = None,
        soft: bool = False,
    ) -> None:
        super().__init__(message)
        self.exitCode = exitCode
        self.message = message
        self.abort = abort
        self.soft = soft


_USER_ABORT = (AbortSource.SERVICE_USER, AbortReason.REASON_NOT_SPECIFIED)

# OpenSSL reasons of an alert a server sends when it refuses (or misses)
# our certificate.
_CERTIFICATE_ALERTS = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
)


def _sslReason(e: ssl.SSLError) -> str:
    reason = e.reason or ""
    text = reason.lower().replace("_", " ") if reason else str(e)
    return escape(text, backslash=False)


def _refusedCertificate(e: ssl.SSLError) -> bool:
    reason = (e.reason or "").upper()
    return "ALERT" in reason and any(a in reason for a in _CERTIFICATE_ALERTS)


class _Deadline:
    """
    One deadline for the whole exchange.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self, phase: str, abort: bool = False) -> float:
        """
        Seconds left.

        @param abort: whether a timeout should send an A-ABORT.
        @raise _Failure: a timeout in C{phase} if none are.
        """
        left = self._end - time.monotonic()
        if left <= 0:
            raise self.expired(phase, abort)
        return left

    def expired(self, phase: str, abort: bool = False) -> _Failure:
        """
        The timeout failure for C{phase}.
        """
        return _Failure(
            ExitCode.TIMEOUT,
            f"timeout after {self.seconds:g}s during {phase}",
            _USER_ABORT if abort else None,
        )


# --- connecting -------------------------------------------------------------------


def _resolve(host: str, port: int, deadline: _Deadline) -> list[tuple]:
    """
    C{getaddrinfo} in a daemon thread, so a stuck resolver cannot outlive
    the deadline.
    """
    outcome: list[object] = []

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=lookup, name="dicomecho.cli.ping resolver", daemon=True)
    thread.start()
    thread.join(deadline.remaining("connect (resolving the host name)"))
    if not outcome:
        raise deadline.expired("connect (resolving the host name)")
    (found,) = outcome
    if isinstance(found, socket.gaierror):
        raise _Failure(
            ExitCode.UNREACHABLE,
            f"cannot resolve host {escape(host)!r}: {found.strerror or found}",
        )
    if isinstance(found, BaseException):
        raise _Failure(ExitCode.UNREACHABLE, f"cannot resolve host {escape(host)!r}: {found}")
    return found  # type: ignore[return-value]


def _connect(host: str, port: int, deadline: _Deadline) -> socket.socket:
    """
    Connect to the first address of C{host} that answers.
    """
    lastError: OSError | None = None
    for family, kind, proto, _, address in _resolve(host, port, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.remaining("connect"))
            sock.connect(address)
        except TimeoutError:
            sock.close()
            raise deadline.expired("connect") from None
        except OSError as e:
            sock.close()
            lastError = e
            continue
        except BaseException:
            sock.close()
            raise
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return sock
    if isinstance(lastError, ConnectionRefusedError):
        raise _Failure(ExitCode.UNREACHABLE, "cannot connect: connection refused")
    if lastError is None:
        raise _Failure(ExitCode.UNREACHABLE, f"cannot connect: no address for {escape(host)!r}")
    raise _Failure(
        ExitCode.UNREACHABLE,
        f"cannot connect: {lastError.strerror or lastError}",
    )


def _sendProxyHeader(sock: socket.socket, deadline: _Deadline) -> None:
    """
    Send L{PROXY_V2_LOCAL_HEADER}, before TLS if any.
    """
    try:
        sock.settimeout(deadline.remaining("connect"))
        sock.sendall(PROXY_V2_LOCAL_HEADER)
    except TimeoutError:
        raise deadline.expired("connect") from None
    except OSError as e:
        raise _Failure(
            ExitCode.UNREACHABLE,
            f"cannot send the PROXY header: {e.strerror or e.__class__.__name__}",
        ) from None


def _handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    serverHostname: str,
    deadline: _Deadline,
) -> ssl.SSLSocket:
    """
    Wrap C{sock} in TLS and complete the handshake. C{sock} is owned by the
    returned socket from then on; on failure the caller closes whichever it
    holds.
    """
    phase = "TLS handshake"
    tls = context.wrap_socket(sock, server_hostname=serverHostname, do_handshake_on_connect=False)
    try:
        tls.settimeout(deadline.remaining(phase))
        tls.do_handshake()
    except TimeoutError:
        tls.close()
        raise deadline.expired(phase) from None
    except ssl.SSLCertVerificationError as e:
        tls.close()
        why = escape(e.verify_message or _sslReason(e), backslash=False)
        raise _Failure(
            ExitCode.UNREACHABLE, f"TLS handshake failed: server certificate not trusted: {why}"
        ) from None
    except ssl.SSLError as e:
        tls.close()
        if _refusedCertificate(e):
            raise _Failure(
                ExitCode.UNREACHABLE,
                f"TLS handshake failed: the server refused our client certificate ({_sslReason(e)})",
            ) from None
        raise _Failure(ExitCode.UNREACHABLE, f"TLS handshake failed: {_sslReason(e)}") from None
    except OSError as e:
        tls.close()
        raise _Failure(
            ExitCode.UNREACHABLE,
            f"TLS handshake failed: {e.strerror or e.__class__.__name__}",
        ) from None
    return tls


def makeSSLContext(
    caFile: str | None = None,
    certFile: str | None = None,
    keyFile: str | None = None,
    checkHostname: bool = True,
) -> ssl.SSLContext:
    """
    A TLS client context for DICOM TLS (PS3.15 B.12): TLS 1.2 or later,
    the server certificate verified against C{caFile} (or the system's
    trust store), its host name checked unless C{checkHostname} is false.

    @param certFile: our certificate (PEM, then any chain), for mutual TLS.
    @param keyFile: its private key; defaults to C{certFile}.
    @raise OSError: if a file cannot be read.
    @raise ssl.SSLError: if a file is not what it should be.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = checkHostname
    context.verify_mode = ssl.CERT_REQUIRED
    if caFile is not None:
        context.load_verify_locations(cafile=caFile)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if certFile is not None:
        context.load_cert_chain(certFile, keyFile)
    return context


# --- the association -------------------------------------------------------------


class _Link:
    """
    PDUs over one connected socket, every operation bounded by the deadline.

    @ivar phase: what is going on, for messages: C{"association"},
        C{"C-ECHO"}, C{"release"}.
    """

    def __init__(self, sock: socket.socket, deadline: _Deadline, tls: bool) -> None:
        self._sock = sock
        self._deadline = deadline
        self._tls = tls
        # Our advertised Maximum Length caps P-DATA-TF; the framer's default
        # caps an A-ASSOCIATE-AC.
        self._framer = PDUFramer(maxPDataLength=DEFAULT_MAX_PDU_LENGTH)
        self._receivedAny = False
        self.phase = "association"

    def send(self, data: bytes) -> None:
        """
        Send C{data} before the deadline.
        """
        try:
            self._sock.settimeout(self._deadline.remaining(self.phase, abort=True))
            self._sock.sendall(data)
        except TimeoutError:
            raise self._deadline.expired(self.phase, abort=True) from None
        except ssl.SSLError as e:
            raise self._tlsFailure(e) from None
        except OSError as e:
            raise _Failure(
                ExitCode.PROTOCOL,
                f"connection lost while sending during {self.phase}: "
                f"{e.strerror or e.__class__.__name__}",
            ) from None

    def receive(self) -> PDU:
        """
        The next PDU, decoded.

        @raise _Failure: on a timeout, a closed connection, or a PDU that
            breaks PS3.8 (then with the A-ABORT it calls for).
        """
        while True:
            try:
                frame = self._framer.nextFrame()
                if frame is not None:
                    return decodePDU(frame.pduType, frame.body)
            except RemoteProtocolError as e:
                raise _Failure(
                    ExitCode.PROTOCOL,
                    f"protocol error during {self.phase}: {escape(str(e), backslash=False)}",
                    (e.abortSource, e.abortReason),
                ) from None
            self._framer.receiveData(self._read())

    def _read(self) -> bytes:
        try:
            self._sock.settimeout(self._deadline.remaining(self.phase, abort=True))
            data = self._sock.recv(_READ_SIZE)
        except TimeoutError:
            raise self._deadline.expired(self.phase, abort=True) from None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            data = b""
        except ssl.SSLError as e:
            raise self._tlsFailure(e) from None
        except ConnectionResetError:
            raise _Failure(
                ExitCode.PROTOCOL, f"connection reset by the peer during {self.phase}"
            ) from None
        except OSError as e:
            raise _Failure(
                ExitCode.PROTOCOL,
                f"read failed during {self.phase}: {e.strerror or e.__class__.__name__}",
            ) from None
        if not data:
            message = f"the peer closed the connection during {self.phase}"
            if self._receivedAny:
                pass
            elif self._tls:
                # TLS 1.3 finishes the client's handshake before the server
                # has judged our certificate; a refusal shows up here.
                message += " (right after the TLS handshake: did the server refuse our client certificate?)"
            else:
                message += " without answering (does the port expect TLS, or a PROXY header?)"
            raise _Failure(ExitCode.PROTOCOL, message)
        self._receivedAny = True
        return data

    def _tlsFailure(self, e: ssl.SSLError) -> _Failure:
        if _refusedCertificate(e):
            return _Failure(
                ExitCode.UNREACHABLE,
                f"TLS: the server refused our client certificate ({_sslReason(e)})",
            )
        return _Failure(ExitCode.PROTOCOL, f"TLS error during {self.phase}: {_sslReason(e)}")

    def abort(self, source: int, reason: int) -> None:
        """
        Send an A-ABORT (PS3.8 §9.3.8) if the socket takes it at once; never
        waits.
        """
        try:
            self._sock.settimeout(0.0)
            self._sock.send(Abort(source, reason).encode())
        except (OSError, ValueError):
            pass


def _unexpected(pdu: PDU, phase: str) -> _Failure:
    name = pdu.pduType.name.replace("_", "-")
    return _Failure(
        ExitCode.PROTOCOL,
        f"unexpected {name} PDU during {phase}",
        (AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU),
    )


def _peerAborted(abort: Abort, phase: str) -> _Failure:
    return _Failure(
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


def _associate(link: _Link, rq: AssociateRQ, sentIdentity: bool) -> AssociateAC:
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
        raise _Failure(ExitCode.REJECTED, message)
    if isinstance(answer, Abort):
        raise _peerAborted(answer, link.phase)
    raise _unexpected(answer, link.phase)


def _checkContext(ac: AssociateAC) -> _Failure | None:
    """
    C{None} if our Verification context was accepted (PS3.8 §9.3.3.2), else
    the failure to report after releasing.
    """
    for pc in ac.presentationContexts:
        if pc.contextID != _CONTEXT_ID:
            continue
        if pc.result == PresentationResult.ACCEPTANCE:
            return None
        why = _CONTEXT_RESULTS.get(pc.result, f"result {pc.result}")
        return _Failure(
            ExitCode.PROTOCOL,
            f"no presentation context accepted for Verification ({why})",
            soft=True,
        )
    return _Failure(
        ExitCode.PROTOCOL,
        "no presentation context accepted for Verification (the A-ASSOCIATE-AC does not answer it)",
        soft=True,
    )


def _echo(link: _Link, peerMaxPDULength: int) -> int:
    """
    Send the C-ECHO-RQ and return the Status of a C-ECHO-RSP that answers
    it (PS3.7 §9.3.5).
    """
    link.phase = "C-ECHO"
    try:
        pdus = fragment(_CONTEXT_ID, _echoRQ(), None, peerMaxPDULength)
    except ValueError:
        raise _Failure(
            ExitCode.PROTOCOL,
            f"the peer's maximum PDU length {peerMaxPDULength} is too small for a C-ECHO-RQ",
            (AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER_VALUE),
        ) from None
    for pdu in pdus:
        link.send(pdu)
    assembler = MessageAssembler({_CONTEXT_ID})
    message: DIMSEMessage | None = None
    while message is None:
        answer = link.receive()
        if isinstance(answer, Abort):
            raise _peerAborted(answer, link.phase)
        if not isinstance(answer, PDataTF):
            raise _unexpected(answer, link.phase)
        for pdv in answer.pdvs:
            try:
                message = assembler.receive(pdv)
            except DICOMProtocolError as e:
                raise _Failure(
                    ExitCode.PROTOCOL,
                    f"bad C-ECHO response: {escape(str(e), backslash=False)}",
                    (AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU_PARAMETER),
                ) from None
            if message is not None:
                break
    command = message.command
    field = command.get(_COMMAND_FIELD)
    if field != CommandField.C_ECHO_RSP:
        shown = f"0x{field:04X}" if isinstance(field, int) else repr(field)
        raise _Failure(
            ExitCode.PROTOCOL,
            f"expected a C-ECHO-RSP, received CommandField {escape(shown, backslash=False)}",
            soft=True,
        )
    respondedTo = command.get(_MESSAGE_ID_RESPONDED)
    if respondedTo != _MESSAGE_ID:
        raise _Failure(
            ExitCode.PROTOCOL,
            f"C-ECHO-RSP answers MessageID {escape(str(respondedTo), backslash=False)}, "
            f"not {_MESSAGE_ID}",
            soft=True,
        )
    status = command.get(_STATUS)
    if not isinstance(status, int):
        raise _Failure(ExitCode.PROTOCOL, "C-ECHO-RSP has no Status", soft=True)
    return status


def _release(link: _Link) -> None:
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


def _identity(user: str | None, passcode: str | None) -> UserIdentityRQ | None:
    """
    User Identity sub-item (PS3.7 D.3.3.7.1): type 1 for a username, type 2
    with a passcode; both UTF-8. No positive response is requested.
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
        L{makeSSLContext}); C{None} for plain TCP.
    @param serverHostname: the name to send (SNI) and check the server
        certificate against; defaults to C{host}.
    @param user: send a User Identity sub-item with this username: type 1,
        or type 2 with C{passcode} (PS3.7 D.3.3.7).
    @param proxyHeader: start with L{PROXY_V2_LOCAL_HEADER}, for a server
        that listens behind a load balancer (C{haproxy:} endpoints).
    @raise ValueError: if an argument is unusable (an AE title, the port,
        the timeout, a passcode without a user).
    """
    callingAETitle = validateAETitle(callingAETitle, "calling AE title")
    calledAETitle = validateAETitle(calledAETitle, "called AE title")
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not between 1 and 65535")
    if not timeout > 0:
        raise ValueError(f"timeout {timeout!r} is not positive")
    identity = _identity(user, passcode)
    rq = _associateRQ(callingAETitle, calledAETitle, identity)

    start = time.monotonic()
    deadline = _Deadline(timeout)
    sock: socket.socket | None = None
    link: _Link | None = None
    tlsVersion: str | None = None
    status: int | None = None
    try:
        sock = _connect(host, port, deadline)
        if proxyHeader:
            _sendProxyHeader(sock, deadline)
        if sslContext is not None:
            raw = sock
            sock = None
            try:
                sock = _handshake(raw, sslContext, serverHostname or host, deadline)
            finally:
                if sock is None:
                    raw.close()
            tlsVersion = sock.version()
        link = _Link(sock, deadline, sslContext is not None)
        ac = _associate(link, rq, identity is not None)
        refused = _checkContext(ac)
        if refused is None:
            info = ac.userInformation
            peerMax = info.maximumLength if info is not None and info.maximumLength else 0
            try:
                status = _echo(link, peerMax)
            except _Failure as f:
                if not f.soft:
                    raise
                # A wrong answer, not a broken association: still release.
                refused = f
        try:
            _release(link)
        except _Failure as f:
            if refused is None:
                raise
            # The first failure is the one to report.
            if f.abort is not None:
                link.abort(*f.abort)
        if refused is not None:
            raise refused
        if status != 0:
            assert status is not None
            raise _Failure(ExitCode.PROTOCOL, f"C-ECHO-RSP status {_describeStatus(status)}")
    except _Failure as f:
        if f.abort is not None and link is not None:
            link.abort(*f.abort)
        return PingResult(
            False, f.exitCode, f.message, time.monotonic() - start, tlsVersion, status
        )
    finally:
        if sock is not None:
            sock.close()
    return PingResult(
        True,
        ExitCode.OK,
        "C-ECHO succeeded (status 0x0000)",
        time.monotonic() - start,
        tlsVersion,
        status,
    )


# --- command line ---------------------------------------------------------------------

_EPILOG = """\
exit status:
  0  C-ECHO succeeded (status 0x0000)
  1  association rejected (result, source and reason in words)
  2  usage error
  3  cannot connect: DNS failure, connection refused, TLS handshake failed,
     client certificate refused
  4  timeout (-t covers everything; the message names the phase: connect,
     TLS handshake, association, C-ECHO, release)
  5  protocol failure: aborted by the peer, connection closed, no presentation
     context accepted, unexpected or malformed PDU, C-ECHO-RSP with a
     non-zero status or for another message

On failure one line on standard error says why; on success nothing is
printed (one line on standard output with -v). The passcode of --user is
read from the environment variable named by --passcode-env, never from the
command line.
"""


class _Parser(argparse.ArgumentParser):
    """
    argparse, with a usage error on one line.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _port(value: str) -> int:
    try:
        port = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} is not between 1 and 65535")
    return port


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {value!r}") from None
    if not 0 < seconds < 86400:
        raise argparse.ArgumentTypeError(f"timeout {value} must be above 0 (and below a day)")
    return seconds


def _aeTitleArgument(value: str) -> str:
    try:
        return validateAETitle(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _makeParser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Check a DICOM service: associate, send one C-ECHO (Verification),\n"
            "release. Silent on success."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("host", help="host name or address of the peer")
    parser.add_argument("port", type=_port, help="TCP port of the peer")
    parser.add_argument(
        "-aet", "--calling-aet", type=_aeTitleArgument, default=DEFAULT_CALLING_AET,
        metavar="AET", help=f"our AE title (default: {DEFAULT_CALLING_AET})",
    )
    parser.add_argument(
        "-aec", "--called-aet", type=_aeTitleArgument, default=DEFAULT_CALLED_AET,
        metavar="AET", help=f"the peer's AE title (default: {DEFAULT_CALLED_AET})",
    )
    parser.add_argument(
        "-t", "--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help=(
            "deadline for everything: DNS, connect, TLS handshake, association, "
            f"C-ECHO and release (default: {DEFAULT_TIMEOUT:g})"
        ),
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print one line on success too"
    )
    parser.add_argument(
        "--proxy-header", action="store_true",
        help=(
            "start with a PROXY protocol v2 LOCAL header, as a load balancer's "
            "own health check does (for a server listening on haproxy:)"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    tls = parser.add_argument_group("TLS (DICOM TLS, PS3.15 B.12; TLS 1.2 or later)")
    tls.add_argument(
        "--tls", action="store_true",
        help="use TLS; the server is verified against the system's CAs or --tls-ca",
    )
    tls.add_argument(
        "--tls-ca", metavar="FILE", help="PEM file of the CAs to verify the server with (implies --tls)"
    )
    tls.add_argument(
        "--tls-cert", metavar="FILE",
        help="PEM certificate (then any chain) to present, for mutual TLS; needs --tls-key (implies --tls)",
    )
    tls.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    tls.add_argument(
        "--tls-server-name", metavar="NAME",
        help="the name to send (SNI) and check the server certificate against (default: HOST)",
    )
    tls.add_argument(
        "--tls-no-verify-host", action="store_true",
        help="do not check the server certificate's name (it is still verified against the CAs)",
    )
    identity = parser.add_argument_group("user identity (PS3.7 D.3.3.7)")
    identity.add_argument(
        "--user", metavar="NAME",
        help="send this username: type 1 alone, type 2 with --passcode-env",
    )
    identity.add_argument(
        "--passcode-env", metavar="VAR",
        help="read the passcode for --user from environment variable VAR",
    )
    return parser


def _contextFromArguments(parser: _Parser, args: argparse.Namespace) -> ssl.SSLContext | None:
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    useTLS = args.tls or args.tls_ca is not None or args.tls_cert is not None
    if not useTLS:
        if args.tls_server_name is not None or args.tls_no_verify_host:
            parser.error("--tls-server-name and --tls-no-verify-host need --tls")
        return None
    try:
        return makeSSLContext(
            args.tls_ca, args.tls_cert, args.tls_key, checkHostname=not args.tls_no_verify_host
        )
    except (OSError, ssl.SSLError) as e:
        what = getattr(e, "strerror", None) or getattr(e, "reason", None) or str(e)
        parser.error(f"cannot load the TLS files: {what}")


def _passcodeFromArguments(parser: _Parser, args: argparse.Namespace) -> str | None:
    if args.passcode_env is None:
        return None
    if args.user is None:
        parser.error("--passcode-env needs --user")
    passcode = os.environ.get(args.passcode_env)
    if passcode is None:
        parser.error(f"environment variable {args.passcode_env} (--passcode-env) is not set")
    if not passcode:
        parser.error(f"environment variable {args.passcode_env} (--passcode-env) is empty")
    return passcode


def _target(host: str, port: int) -> str:
    shown = escape(host)
    return f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    """
    The command line: parse C{argv} (default: C{sys.argv[1:]}), ping, report.

    @return: the exit status, an L{ExitCode}.
    """
    parser = _makeParser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
        sslContext = _contextFromArguments(parser, args)
        passcode = _passcodeFromArguments(parser, args)
        if args.user is not None:
            try:
                _identity(args.user, passcode)
            except ValueError as e:
                parser.error(str(e))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else ExitCode.USAGE
    target = _target(args.host, args.port)
    try:
        result = ping(
            args.host,
            args.port,
            callingAETitle=args.calling_aet,
            calledAETitle=args.called_aet,
            timeout=args.timeout,
            sslContext=sslContext,
            serverHostname=args.tls_server_name,
            user=args.user,
            passcode=passcode,
            proxyHeader=args.proxy_header,
        )
    except Exception as e:  # a bug: still one line, and not "rejected"
        print(f"{target}: internal error: {e.__class__.__name__}: {e}", file=sys.stderr)
        return ExitCode.PROTOCOL
    if result.ok:
        if args.verbose:
            over = f" over {result.tlsVersion}" if result.tlsVersion else ""
            print(
                f"{target}: C-ECHO to {args.called_aet} succeeded{over} in "
                f"{result.elapsed * 1000:.1f} ms"
            )
        return ExitCode.OK
    print(f"{target}: {result.message}", file=sys.stderr)
    return result.exitCode


if __name__ == "__main__":
    sys.exit(main())
