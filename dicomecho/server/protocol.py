# -*- test-case-name: tests.test_protocol -*-
"""
L{DICOMAssociationProtocol}: one association over one transport.

The protocol moves bytes. It hands what it receives to its
L{Association} (which does no I/O) and performs the effects that returns:
writes, closes, identity checks (L{Admission}), responders that answer
later; it keeps one DelayedCall at the association's deadline; and it
renders the events through L{dicomecho.observability.events}. Each effect
type has one handler in L{_HANDLERS}; an unknown one is an error.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol as TypingProtocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.tcp import Server
from twisted.python.failure import Failure
from zope.interface import implementer

from dicomecho.association.association import Association
from dicomecho.association.establishment import AssociationHost
from dicomecho.association.effects import (
    AssociateRequested,
    AssociationAborted,
    AssociationAccepted,
    AssociationEffect,
    AssociationEnded,
    AssociationRejected,
    AssociationReleased,
    AwaitResponse,
    CheckIdentity,
    InvalidPDU,
    MessageReceived,
    RequestNeverCame,
    ResponderFailed,
    TimedOut,
)
from dicomecho.association.fsm import AbortIndication, CloseTransport, SendPDU
from dicomecho.association.transitions import State
from dicomecho.association.negotiation import Acceptance, Rejection
from dicomecho.association.outcome import Outcome
from dicomecho.observability import events
from dicomecho.observability.history import AssociationHistory, Refusal
from dicomecho.observability.logs import listeningAddress
from dicomecho.security.access import peerAddress
from dicomecho.security.sourcelimits import SourceLimit
from dicomecho.server.admission import (
    NO_TLS_INFO,
    Admission,
    AdmissionPolicy,
    TLSState,
    behindProxy,
    isTLSTransport,
)
from dicomecho.server.proxyheader import incompleteHeader
from dicomecho.server.pending import PendingConnections
from dicomecho.server.recording import reportConnection
from dicomecho.server.sourcegate import SourceGate
from dicomecho.security.tls import tlsSessionInfo
from dicomecho.wire.errors import RemoteProtocolError

__all__ = ["DICOMAssociationProtocol", "ServerHost"]

#: Seconds a closing connection may take to flush before it is dropped.
_CLOSE_GRACE = 1.0



class ServerHost(AssociationHost, AdmissionPolicy, TypingProtocol):
    """
    What a protocol needs of its factory (L{DICOMServerFactory}).
    """

    clock: IReactorTime
    sources: SourceGate
    pending: PendingConnections
    history: AssociationHistory | None

    def connectionOpened(self, protocol: DICOMAssociationProtocol) -> None: ...

    def connectionClosed(self, protocol: DICOMAssociationProtocol) -> None: ...


def _peerAddress(transport: Any) -> tuple[str, int | None]:
    """
    The peer's host and port, for the log; UNIX sockets have no port.
    """
    if type(transport) is Server and len(transport.client) == 2:
        # A TCP connection over IPv4, as accepted (no PROXY layer): its
        # (host, port), without the address object getPeer() builds.
        return transport.client  # type: ignore[no-any-return]
    address = transport.getPeer()
    host = getattr(address, "host", None) or getattr(address, "name", None)
    # Only an IPv6 address has other spellings: an IPv4 one is not parsed.
    ip = peerAddress(host) if isinstance(host, str) and ":" in host else None
    if ip is not None and ip.version == 6 and "%" not in host:  # type: ignore[operator]
        # One spelling per address (a PROXY v2 header gives it expanded).
        host = ip.compressed
    return str(host or address), getattr(address, "port", None)


@implementer(IPushProducer, IHandshakeListener)
class DICOMAssociationProtocol(Protocol):
    """
    One DICOM association, acceptor side, over one transport.

    The protocol is its transport's streaming producer: when the transport's
    send buffer fills (a peer that pipelines requests and does not read the
    responses) it is paused, stops reading from the peer and stops handling
    buffered requests, so memory stays bounded; it resumes when the buffer
    drains.

    @ivar association: the I/O-free L{Association} it drives.
    """

    # Attributes most connections never change are class defaults, so they
    # cost an idle association no memory (benchmarks.run's idle mode).
    _admission: Admission | None = None
    _closing: IDelayedCall | None = None
    _paused = False
    #: The one DelayedCall for the association's timers, and the deadline
    #: it is set for.
    _timerCall: IDelayedCall | None = None
    _armedFor: float | None = None
    _counted = False
    #: The source counted against (per-source limits), and in which count:
    #: pending until associated, then associations, None once neither.
    _source: str | None = None
    _sourceCount: SourceLimit | None = None
    #: The host the connection came from, as the factory was told, until a
    #: PROXY header names the client instead.
    _connectedFrom: str | None = None
    #: The peer's address for the log, read from the transport when first
    #: needed (most associations log nothing at the default level).
    _peerAddress: tuple[str, int | None] | None = None
    #: What the summary and the history tell (ConnectionFacts).
    abortIndication: AbortIndication | None = None
    expiredTimer: str | None = None
    invalidPDU: RemoteProtocolError | None = None

    def __init__(self, server: ServerHost, connectedFrom: str | None = None) -> None:
        self._server = server
        if connectedFrom is not None:
            self._connectedFrom = connectedFrom
        self._clock = server.clock
        self.association = Association(server, self)
        self.startedAt = 0.0

    # --- what others read ---------------------------------------------------------

    @property
    def state(self) -> State:
        """The PS3.8 state of this association."""
        return self.association.state

    @property
    def messages(self) -> int:
        """DIMSE requests answered on this connection."""
        return self.association.messages

    def peerHostPort(self) -> tuple[str, int | None]:
        if self._peerAddress is None:
            self._peerAddress = (
                _peerAddress(self.transport) if self.transport is not None else ("unknown", None)
            )
        return self._peerAddress

    def peerHost(self) -> str:
        return self.peerHostPort()[0]

    def peerText(self) -> str:
        """The peer as C{host:port}, C{[host]:port} (IPv6) or a socket name."""
        return listeningAddress(*self.peerHostPort())

    def forgetPeerAddress(self) -> None:
        self._peerAddress = self._connectedFrom = None

    def firstBytes(self) -> bytes:
        return getattr(self.transport, "firstBytes", b"") or b""

    def tlsSessionInfo(self) -> Mapping[str, str | None]:
        return tlsSessionInfo(self.transport)

    def noteOutcome(self, outcome: Outcome, reason: str) -> None:
        self.association.noteOutcome(outcome, reason)

    def awaitingAnswer(self) -> bool:
        return self.association.state is State.STA3

    def answerRequest(self, outcome: Acceptance | Rejection) -> None:
        self._perform(self.association.answerRequest(outcome, self._clock.seconds()))

    def sourceKey(self) -> str | None:
        """The source this connection counts against (per-source limits)."""
        return self._source

    def judgeSource(self) -> bool:
        """Judge the peer by the access list and the per-source limits."""
        if not self._server.policy.access.empty and not self._admissionFor().checkAccessList():
            return False
        if self._sourceCount is None:  # else judged as accepted (TLS listener)
            host = self._connectedFrom or getattr(self.transport.getPeer(), "host", None)  # type: ignore[union-attr]
            if not isinstance(host, str):
                return True
            key, limit = self._server.sources.admit(host, isTLSTransport(self.transport))
            if limit is not None:
                self._admissionFor().refuseQuietly(
                    f"source {key} at its {limit.value} limit", Refusal.SOURCE_LIMIT
                )
                return False
            self.countAsPending(key)
        self._server.pending.add(self)
        return True

    def countAsPending(self, key: str) -> None:
        """This connection counts as pending against source C{key}."""
        self._source, self._sourceCount = key, SourceLimit.PENDING

    def _admissionFor(self) -> Admission:
        if self._admission is None:
            self._admission = Admission(self, self._server, self._clock)
        return self._admission

    # --- transport events -----------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        if ITCPTransport.providedBy(transport):
            # Responses are small; do not let Nagle hold one back.
            transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self.startedAt = self._clock.seconds()
        self._server.connectionOpened(self)
        if type(transport) is not Server and behindProxy(transport):
            # The PROXY header names the client, and it has been read by the
            # time the first byte after it reaches us: judge it then.
            self._admissionFor().waitingForProxy = True
        elif not self.judgeSource():
            return
        if isTLSTransport(transport):
            self._admissionFor().tlsState = TLSState.HANDSHAKE
        transport.registerProducer(self, True)  # type: ignore[union-attr]
        self._perform(self.association.connected(self.startedAt))
        if self._server.draining:
            self._close()

    def dataReceived(self, data: bytes) -> None:
        admission = self._admission
        if admission is not None and admission.waitingForProxy:
            admission.proxyHeaderRead()
            if not self.judgeSource():
                return
        now = self._clock.seconds()
        association = self.association
        if self._paused:
            association.bufferData(data, now)
            return
        effects = association.receiveData(data, now)
        # Handle the complete PDUs received, until more bytes are needed, the
        # association is over, or the transport paused us.
        while effects is not None:
            self._perform(effects)
            if self._paused or not association.framer.bufferedLength:
                return
            effects = association.nextEffects(now)

    def _handleFrames(self, now: float) -> None:
        """
        Handle the PDUs left in the buffer when the transport paused us.
        """
        association = self.association
        while not self._paused:
            effects = association.nextEffects(now)
            if effects is None:
                return
            self._perform(effects)

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake completed (L{IHandshakeListener}).
        """
        self._admissionFor().handshakeCompleted()

    # --- IPushProducer: backpressure from the transport's send buffer --------

    def pauseProducing(self) -> None:
        self._paused = True
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        self._paused = False
        self.transport.resumeProducing()  # type: ignore[union-attr]
        self._handleFrames(self._clock.seconds())

    def stopProducing(self) -> None:
        self._paused = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        admission = self._admission
        if admission is not None and admission.tlsState is TLSState.HANDSHAKE:
            admission.connectionLostInHandshake(reason)
        now = self._clock.seconds()
        self._perform(self.association.connectionLost(now))
        call, self._timerCall = self._timerCall, None
        if call is not None:
            call.cancel()
        closing, self._closing = self._closing, None
        if closing is not None and closing.active():
            closing.cancel()
        if admission is not None:
            admission.cancelTimers()
        self._uncount()
        self._server.connectionClosed(self)
        association = self.association
        acceptedAt = association.acceptedAt
        self._server.stats.connectionEnded(
            association.outcome,
            association.messages,
            None if acceptedAt is None else now - acceptedAt,
        )
        server = self._server
        summaries = server.reportsProgress()
        if summaries or server.history is not None:
            reportConnection(
                self, association, admission, server.policy, server.history, now, summaries
            )

    def _tlsInfo(self) -> Mapping[str, str | None]:
        admission = self._admission
        return admission.tlsInfo if admission is not None else NO_TLS_INFO

    # --- shutdown, for the factory -------------------------------------------------

    def shutdownStarted(self) -> None:
        """
        The server is shutting down: a connection without an association
        (awaiting its request, or already over) is closed now.
        """
        if not self.association.established:
            self._close()

    def abortForShutdown(self) -> None:
        """
        The grace period is over: A-ABORT and close.
        """
        self._perform(self.association.abort("server shutting down", self._clock.seconds()))
        self._close()

    def forceClose(self) -> None:
        """
        Drop the connection now, without waiting for a flush.
        """
        closing, self._closing = self._closing, None
        if closing is not None and closing.active():
            closing.cancel()
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _close(self) -> None:
        """
        Close once what was written is flushed; if a peer that does not read
        keeps it from flushing, drop the connection a second later.
        """
        self.transport.loseConnection()  # type: ignore[union-attr]
        if self._closing is None:
            self._closing = self._clock.callLater(_CLOSE_GRACE, self.forceClose)

    def _timerFired(self) -> None:
        self._timerCall = None
        self._armedFor = None
        self._perform(self.association.timerExpired(self._clock.seconds()))

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._server.activeAssociations -= 1
        count, self._sourceCount = self._sourceCount, None
        if count is not None:
            self._server.sources.table.uncount(self._source, count)  # type: ignore[arg-type]

    # --- effects -------------------------------------------------------------------

    def _perform(self, effects: list[AssociationEffect]) -> None:
        for effect in effects:
            if type(effect) is SendPDU:
                self.transport.write(effect.data)  # type: ignore[union-attr]
                continue
            handler = _HANDLERS.get(type(effect))
            if handler is None:
                raise TypeError(f"no handler for the association's effect {effect!r}")
            handler(self, effect)
        deadline = self.association.timers.deadline
        if deadline is not None and deadline != self._armedFor:
            self._armTimer(deadline)

    def _armTimer(self, deadline: float) -> None:
        """
        Have L{_timerFired} called at C{deadline}. The pending call is moved
        later with C{reset()} rather than re-created: a connection makes one
        DelayedCall, not one per timer (about 7% of an association's
        instructions, benchmarks/instructions.py). A call due later than
        wanted is replaced instead, as the reactor moves a call sooner by a
        linear search of its queue. When the deadline goes away the call is
        left pending; if it fires, the association does nothing.
        """
        self._armedFor = deadline
        delay = deadline - self._clock.seconds()
        if delay < 0.0:
            delay = 0.0
        call = self._timerCall
        if call is not None:
            if call.getTime() <= deadline:
                call.reset(delay)
                return
            call.cancel()
        self._timerCall = self._clock.callLater(delay, self._timerFired)

    def _closeTransport(self, effect: CloseTransport) -> None:
        self._close()

    def _checkIdentity(self, effect: CheckIdentity) -> None:
        self._admissionFor().checkIdentity(effect.acceptance, effect.identity)

    def _awaitResponse(self, effect: AwaitResponse) -> None:
        pending, slot, request = effect.pending, effect.slot, effect.request
        association = self.association
        if not isinstance(pending, Deferred):
            error = TypeError(f"a responder returned {pending!r}, not a response or a Deferred")
            self._perform(association.responseFailed(slot, error, self._clock.seconds()))
            return

        def ready(response: object) -> None:
            self._perform(association.responseReady(slot, response, request, self._clock.seconds()))

        def failed(failure: Failure) -> None:
            now = self._clock.seconds()
            self._perform(association.responseFailed(slot, failure.value, now, failure))

        pending.addCallbacks(ready, failed)

    def _accepted(self, effect: AssociationAccepted) -> None:
        server = self._server
        server.activeAssociations += 1
        self._counted = True
        server.pending.discard(self)
        if self._sourceCount is not None:
            server.sources.table.associated(self._source)  # type: ignore[arg-type]
            self._sourceCount = SourceLimit.ASSOCIATIONS
        server.stats.associationAccepted()
        if server.reportsProgress():
            admission = self._admission
            user = admission.user if admission is not None else None
            events.emitAccepted(self, effect.acceptance, user, self._tlsInfo())

    def _rejected(self, effect: AssociationRejected) -> None:
        rj = effect.rejection.rj
        events.emitRejected(self, effect.rejection, self._tlsInfo())
        self._server.stats.associationRejected(rj.result, rj.source, rj.reason)

    def _ended(self, effect: AssociationEnded) -> None:
        self._uncount()

    def _requestNeverCame(self, effect: RequestNeverCame) -> None:
        """
        ARTIM expired before any A-ASSOCIATE-RQ: say why better if we can.
        """
        self.expiredTimer = "ARTIM"
        detail = incompleteHeader(self.transport)
        admission = self._admission
        if detail is not None:
            # Its PROXY header never completed: no TLS handshake began.
            if admission is not None:
                admission.tlsState = None
            self.association.noteOutcome(Outcome.NO_ASSOCIATION, detail)
        elif admission is not None and admission.tlsState is TLSState.HANDSHAKE:
            admission.handshakeTimedOut()
            return
        else:
            detail = effect.detail
        events.emitConnectionClosed(self, detail)


# --- effects that are only rendered -------------------------------------------------


def _renderAssociateRequested(
    protocol: DICOMAssociationProtocol, effect: AssociateRequested
) -> None:
    events.emitAssociateRQ(protocol, effect.rq)


def _renderMessageReceived(protocol: DICOMAssociationProtocol, effect: MessageReceived) -> None:
    events.emitDIMSEReceived(protocol, effect.message)


def _renderReleased(protocol: DICOMAssociationProtocol, effect: AssociationReleased) -> None:
    events.emitReleased(protocol)


def _renderAborted(protocol: DICOMAssociationProtocol, effect: AssociationAborted) -> None:
    protocol.abortIndication = effect.indication
    events.emitAborted(protocol, effect.indication)


def _renderInvalidPDU(protocol: DICOMAssociationProtocol, effect: InvalidPDU) -> None:
    protocol.invalidPDU = effect.error
    events.emitInvalidPDU(protocol, effect.error)


def _renderTimedOut(protocol: DICOMAssociationProtocol, effect: TimedOut) -> None:
    protocol.expiredTimer = effect.timer.value
    events.emitTimeout(protocol, effect.timer.value)


def _renderResponderFailed(protocol: DICOMAssociationProtocol, effect: ResponderFailed) -> None:
    failure = effect.record
    if not isinstance(failure, Failure):
        error = effect.error
        failure = Failure(error, type(error), error.__traceback__)
    events.emitResponderFailed(protocol, failure)


#: The handler of each effect type but L{SendPDU}, which L{_perform}
#: writes itself (the one effect of a replayed echo).
_HANDLERS: dict[type, Callable[[DICOMAssociationProtocol, Any], None]] = {
    CloseTransport: DICOMAssociationProtocol._closeTransport,
    CheckIdentity: DICOMAssociationProtocol._checkIdentity,
    AwaitResponse: DICOMAssociationProtocol._awaitResponse,
    AssociateRequested: _renderAssociateRequested,
    AssociationAccepted: DICOMAssociationProtocol._accepted,
    AssociationRejected: DICOMAssociationProtocol._rejected,
    MessageReceived: _renderMessageReceived,
    AssociationReleased: _renderReleased,
    AssociationAborted: _renderAborted,
    AssociationEnded: DICOMAssociationProtocol._ended,
    RequestNeverCame: DICOMAssociationProtocol._requestNeverCame,
    InvalidPDU: _renderInvalidPDU,
    TimedOut: _renderTimedOut,
    ResponderFailed: _renderResponderFailed,
}
