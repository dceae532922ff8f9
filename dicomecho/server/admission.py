# -*- test-case-name: tests.test_security -*-
"""
Who gets served: the source address check (at connect, or once a PROXY
header named the client), the TLS handshake's outcome, and the user
identity check that holds an association in Sta3 (PS3.8 §9.2).

L{Admission} is made only for a connection that needs it (an access list,
TLS, a user identity to check), and talks to its protocol through
L{AdmittedConnection} alone.
"""

from __future__ import annotations

from enum import Enum
from types import MappingProxyType
from typing import Mapping, Protocol

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IDelayedCall, INegotiated, IReactorTime, ISSLTransport
from twisted.python.failure import Failure

from dicomecho.association.negotiation import (
    Acceptance,
    AssociationPolicy,
    Rejection,
    identityRejection,
    localLimitRejection,
    withIdentityResponse,
)
from dicomecho.association.outcome import Outcome
from dicomecho.observability.events import (
    emitConnectionClosed,
    emitConnectionRefused,
    emitIdentityCheckFailed,
    emitIdentityThrottled,
    emitTLSEstablished,
    emitTLSRefused,
)
from dicomecho.observability.history import Refusal
from dicomecho.observability.stats import ServerStats
from dicomecho.security.identity import (
    FailureThrottle,
    IdentityRefused,
    IUserIdentityChecker,
    usernameText,
)
from dicomecho.security.tlsfailures import (
    HandshakeFailure,
    TLSFailureKind,
    classifyHandshakeFailure,
    handshakeTimeout,
)
from dicomecho.server.proxyheader import proxyLayerUnder
from dicomecho.wire.userinfo import UserIdentityRQ

__all__ = [
    "Admission",
    "NO_TLS_INFO",
    "AdmissionPolicy",
    "AdmittedConnection",
    "TLSState",
    "isTLSTransport",
    "behindProxy",
]

#: The TLS fields of a connection without TLS (for log events).
NO_TLS_INFO: Mapping[str, str | None] = MappingProxyType({})

#: Whether a transport type is a TLS connection, by type: asking zope per
#: connection cost 5% of an association (benchmarks/instructions.py).
_TLS_TYPES: dict[type, bool] = {}


def isTLSTransport(transport: object) -> bool:
    """
    Whether C{transport}'s class is a TLS layer (L{ISSLTransport}, or
    L{INegotiated} as Twisted's TLSMemoryBIOProtocol declares). Per class:
    an instance that starts TLS later is not seen here, but its
    C{handshakeCompleted} still is.
    """
    kind = type(transport)
    known = _TLS_TYPES.get(kind)
    if known is None:
        known = _TLS_TYPES[kind] = bool(
            ISSLTransport.implementedBy(kind) or INegotiated.implementedBy(kind)
        )
    return known


def behindProxy(transport: object) -> bool:
    """
    Whether a PROXY-protocol layer is somewhere under C{transport}.
    """
    return proxyLayerUnder(transport) is not None


class TLSState(Enum):
    """
    Where a TLS connection's handshake is.
    """

    HANDSHAKE = "handshake"
    DONE = "done"
    FAILED = "failed"


class AdmissionPolicy(Protocol):
    """
    What admission reads from the server (the factory provides it).
    """

    policy: AssociationPolicy
    stats: ServerStats
    identityChecker: IUserIdentityChecker | None
    identityThrottle: FailureThrottle
    maxIdentityChecks: int
    identityChecksInProgress: int
    acseTimeout: float

    def refuseAssociation(self, peer: AdmittedConnection) -> str | None: ...


class AdmittedConnection(Protocol):
    """
    What admission asks of its protocol.
    """

    def peerHost(self) -> str: ...

    def sourceKey(self) -> str | None: ...

    def judgeSource(self) -> bool: ...

    def peerText(self) -> str: ...

    def forgetPeerAddress(self) -> None: ...

    def firstBytes(self) -> bytes: ...

    def tlsSessionInfo(self) -> Mapping[str, str | None]: ...

    def noteOutcome(self, outcome: Outcome, reason: str) -> None: ...

    def forceClose(self) -> None: ...

    def awaitingAnswer(self) -> bool: ...

    def answerRequest(self, outcome: Acceptance | Rejection) -> None: ...


class Admission:
    """
    One connection's admission state.

    @ivar refused: set when the connection was turned away and that was
        logged: its one log line, so no summary follows.
    @ivar tlsState: a L{TLSState}, C{None} on a plain transport.
    @ivar tlsInfo: the TLS session's fields for log events.
    @ivar user: the user identity accepted (PS3.7 D.3.3.7), for the log.
    @ivar waitingForProxy: the source is judged once the PROXY header
        has been read, on the first byte after it.
    """

    __slots__ = (
        "_connection", "_server", "_clock", "refusal", "tlsFailure", "tlsState", "tlsInfo",
        "user", "waitingForProxy", "_identityCall",
    )

    def __init__(
        self, connection: AdmittedConnection, server: AdmissionPolicy, clock: IReactorTime
    ) -> None:
        self._connection = connection
        self._server = server
        self._clock = clock
        #: Why the connection was turned away, if it was.
        self.refusal: Refusal | None = None
        self.tlsFailure: TLSFailureKind | None = None
        self.tlsState: TLSState | None = None
        self.tlsInfo: Mapping[str, str | None] = NO_TLS_INFO
        self.user: str | None = None
        self.waitingForProxy = False
        self._identityCall: IDelayedCall | None = None

    # --- source address ---------------------------------------------------------

    def checkAccessList(self) -> bool:
        """
        Whether the peer's address is admitted by the access list; if not,
        refuse the connection.
        """
        access = self._server.policy.access
        if access.admitsSource(self._connection.peerHost()):
            return True
        self.refuse(f"source address not allowed (allowed: {access.describe()})", Refusal.ACCESS_LIST)
        return False

    def proxyHeaderRead(self) -> None:
        """
        The PROXY header has been read: forget the balancer's address, so
        that the client's is judged.
        """
        self.waitingForProxy = False
        self._connection.forgetPeerAddress()

    def refuse(self, why: str, refusal: Refusal) -> None:
        """
        Close a connection we will not serve at all, with one log line.
        """
        self.refuseQuietly(why, refusal)
        self._server.stats.connectionRefused()
        emitConnectionRefused(self._connection, why)

    def refuseQuietly(self, why: str, refusal: Refusal) -> None:
        """
        Close a connection we will not serve at all, leaving the log to the
        caller (a per-source limit logs once per interval).
        """
        self.refusal = refusal
        self._connection.noteOutcome(Outcome.REFUSED, why)
        self._connection.forceClose()

    # --- TLS ------------------------------------------------------------------

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake completed: note the session (version, cipher,
        client certificate) for the log. Behind a PROXY listener the
        header was read before the handshake: the client is judged now,
        before any DICOM byte.
        """
        self.tlsState = TLSState.DONE
        self.tlsInfo = self._connection.tlsSessionInfo()
        if self.waitingForProxy:
            self.proxyHeaderRead()
            if not self._connection.judgeSource():
                return
        emitTLSEstablished(self._connection, self.tlsInfo)

    def connectionLostInHandshake(self, reason: Failure) -> None:
        """
        The connection ended before its TLS handshake completed: one error
        line, unless the peer merely connected and closed without a byte
        (a TCP health check).
        """
        from OpenSSL.SSL import Error

        firstBytes = self._connection.firstBytes()
        if not firstBytes and not reason.check(Error):
            self.tlsState = TLSState.FAILED
            detail = "closed before a TLS handshake"
            emitConnectionClosed(self._connection, detail)
            self._connection.noteOutcome(Outcome.NO_ASSOCIATION, detail)
            return
        self.tlsFailed(classifyHandshakeFailure(reason, firstBytes))

    def handshakeTimedOut(self) -> None:
        """
        ARTIM expired with the TLS handshake unfinished.
        """
        self.tlsFailed(handshakeTimeout(self._server.acseTimeout))

    def tlsFailed(self, failure: HandshakeFailure) -> None:
        self.tlsState = TLSState.FAILED
        self.refusal, self.tlsFailure = Refusal.TLS_HANDSHAKE, failure.kind
        self._connection.noteOutcome(Outcome.REFUSED, failure.sentence)
        self._server.stats.tlsFailed(failure.kind)
        # Who was turned away: the refused client certificate, if any.
        self.tlsInfo = self._connection.tlsSessionInfo()
        emitTLSRefused(self._connection, failure.sentence, self.tlsInfo)

    # --- user identity (PS3.7 D.3.3.7) ------------------------------------------

    def checkIdentity(self, acceptance: Acceptance, identity: UserIdentityRQ) -> None:
        """
        Ask the identity checker about C{identity}; answer the request when
        it has decided (the association waits in Sta3, PS3.8 §9.2).
        """
        server = self._server
        if server.identityChecksInProgress >= server.maxIdentityChecks:
            self._connection.answerRequest(
                localLimitRejection(acceptance.rq, "too many user identity checks in progress")
            )
            return
        server.identityChecksInProgress += 1
        host = self._connection.peerHost()
        checker = server.identityChecker
        assert checker is not None
        checked = maybeDeferred(checker.checkIdentity, identity, host)
        checked.addBoth(self._identityChecked, acceptance, identity, host)

    def _identityChecked(
        self,
        result: bytes | Failure,
        acceptance: Acceptance,
        identity: UserIdentityRQ,
        host: str,
    ) -> None:
        server = self._server
        server.identityChecksInProgress -= 1
        if not self._connection.awaitingAnswer():
            # The peer aborted or went away meanwhile.
            return None
        if isinstance(result, Failure):
            self._identityRefused(result, acceptance, host)
            return None
        server.identityThrottle.succeeded(host)
        self.user = usernameText(identity)
        limit = server.refuseAssociation(self._connection)
        if limit is not None:
            self._connection.answerRequest(localLimitRejection(acceptance.rq, limit))
            return None
        if identity.positiveResponseRequested:
            acceptance = withIdentityResponse(acceptance, result)
        self._connection.answerRequest(acceptance)
        return None

    def _identityRefused(self, failure: Failure, acceptance: Acceptance, host: str) -> None:
        """
        Reject, at once or, after repeated failures from C{host}, later.
        """
        if failure.check(IdentityRefused):
            why = str(failure.value)
        else:
            emitIdentityCheckFailed(self._connection, failure)
            why = "the user identity could not be checked"
        throttle = self._server.identityThrottle
        delay = throttle.failed(host)
        rejection = identityRejection(acceptance, why)
        if delay <= 0:
            self._connection.answerRequest(rejection)
            return
        emitIdentityThrottled(self._connection, host, throttle.failures(host), delay)
        self._identityCall = self._clock.callLater(delay, self._delayedRejection, rejection)

    def _delayedRejection(self, rejection: Rejection) -> None:
        self._identityCall = None
        if self._connection.awaitingAnswer():
            self._connection.answerRequest(rejection)

    def cancelTimers(self) -> None:
        """
        The connection is gone: a held rejection is not sent.
        """
        call, self._identityCall = self._identityCall, None
        if call is not None and call.active():
            call.cancel()
