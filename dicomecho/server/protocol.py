# -*- test-case-name: tests.test_protocol -*-
"""
The Twisted layer: L{DICOMAssociationProtocol} runs one association on a
transport, and L{DICOMServerFactory} builds them and holds the policy and
the association count.

The protocol is thin. It feeds bytes to the L{PDUFramer}, decoded PDUs to
the L{AcceptorStateMachine}, and performs the effects the machine returns.
It runs three timers on an injected L{IReactorTime}:
 - ARTIM (the ACSE timeout), as the machine starts and stops it: from
   accept until the A-ASSOCIATE-RQ, and after an RJ, RP or A-ABORT until the
   peer closes (PS3.8 §9.1.5);
 - the network timeout: no bytes received for that long while associated;
 - the DIMSE timeout: a message whose fragments stop arriving.
Each runs on its own, so a half-received PDU cannot hold a connection open.
"""

from __future__ import annotations

from collections import deque
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from dicomecho.security.access import AccessList, peerAddress
from dicomecho.server.admission import AdmissionMixin, behindProxy, identityOf, isTLSTransport
from dicomecho.association.dimse import (
    CommandField,
    DIMSEError,
    DIMSEMessage,
    MessageAssembler,
    Status,
    encodeCommandSet,
    fragment,
    refusalResponse,
)
from dicomecho.wire.errors import AbortSource, RemoteProtocolError
from dicomecho.association.fsm import (
    TRANSITIONS,
    AbortIndication,
    AcceptorStateMachine,
    AssociateIndication,
    CloseTransport,
    DataIndication,
    Effect,
    Event,
    PDUIgnored,
    ReleaseConfirmation,
    ReleaseIndication,
    SendPDU,
    StartARTIM,
    State,
    StopARTIM,
)
from dicomecho.wire.framer import DEFAULT_MAX_ASSOCIATE_LENGTH, PDUFramer
from dicomecho.security.identity import (
    FailureThrottle,
    IUserIdentityChecker,
    UserIdentityMode,
    identityRejection,
)
from dicomecho.observability.logs import isEnabled, listeningAddress, log
from dicomecho.server.proxyheader import incompleteHeader
from dicomecho.association.negotiation import (
    DEFAULT_MAX_ASSOCIATIONS,
    Acceptance,
    AssociationPolicy,
    InvalidAssociateRequest,
    AcceptanceCache,
    Rejection,
    TransferSyntaxPreference,
    negotiate,
    transferSyntaxOrder,
)
from dicomecho.wire.pdu import Abort, AssociateRQ, PDUType, decodePDU
from dicomecho.association.replay import ResponseReplayer
from dicomecho.observability.stats import ServerStats
from dicomecho.services.verification import DIMSEResponse, IServiceResponder, VerificationResponder

__all__ = ["DICOMAssociationProtocol", "DICOMServerFactory"]

#: Seconds a closing connection may take to flush before it is dropped.
_CLOSE_GRACE = 1.0

#: A timer with less than this left is due.
_TIMER_RESOLUTION = 1e-3

_NO_CONTEXTS: Mapping[int, Any] = MappingProxyType({})

_P_DATA_TF = PDUType.P_DATA_TF.value
_A_ASSOCIATE_RQ = PDUType.A_ASSOCIATE_RQ.value


def _commandName(commandField: int) -> str:
    """
    echoscp's wording for a received message: "Echo Request" for a
    C-ECHO-RQ, else the PS3.7 name (e.g. "C-STORE-RQ").
    """
    if commandField == CommandField.C_ECHO_RQ:
        return "Echo Request"
    try:
        return CommandField(commandField).name.replace("_", "-")
    except ValueError:
        return f"command 0x{commandField:04X}"


def _peerAddress(transport: Any) -> tuple[str, int | None]:
    """
    The peer's host and port, for the log; UNIX sockets have no port.
    """
    address = transport.getPeer()
    host = getattr(address, "host", None) or getattr(address, "name", None)
    ip = peerAddress(host) if isinstance(host, str) else None
    if ip is not None and ip.version == 6 and "%" not in host:  # type: ignore[operator]
        # One spelling per address (a PROXY v2 header gives it expanded).
        host = ip.compressed
    return str(host or address), getattr(address, "port", None)


class DICOMServerFactory(ServerFactory):
    """
    Builds a L{DICOMAssociationProtocol} per connection; holds the policy,
    the responders and the number of live associations.

    @ivar activeAssociations: associations accepted and not yet ended.
    """

    # Our own "listening" event says where we listen; skip Twisted's
    # per-port "Starting factory" lines.
    noisy = False

    def __init__(
        self,
        aeTitle: str = "ECHOSCP",
        *,
        requireCalledAETitle: bool = False,
        allowedCallingAETitles: Iterable[str] = (),
        maxPDULength: int = 16382,
        transferSyntaxes: TransferSyntaxPreference | Sequence[str] = (
            TransferSyntaxPreference.DEFAULT
        ),
        acseTimeout: float = 30.0,
        dimseTimeout: float = 30.0,
        networkTimeout: float = 30.0,
        maxAssociations: int = DEFAULT_MAX_ASSOCIATIONS,
        maxAssociateLength: int = DEFAULT_MAX_ASSOCIATE_LENGTH,
        responders: Sequence[IServiceResponder] | None = None,
        access: AccessList = AccessList(),
        userIdentity: UserIdentityMode = UserIdentityMode.IGNORE,
        identityChecker: IUserIdentityChecker | None = None,
        maxIdentityChecks: int = 32,
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param aeTitle: our AE title; compared with the called AE title only
            when C{requireCalledAETitle} is set.
        @param allowedCallingAETitles: if not empty, only these calling AE
            titles may associate.
        @param maxPDULength: the Maximum Length we advertise and enforce on
            P-DATA-TF; 0 means no limit (bounded by the framer's ceiling).
        @param transferSyntaxes: a preference, or our own ordered list.
        @param maxAssociations: live associations beyond which a request is
            rejected (transient, local-limit-exceeded).
        @param responders: the services offered, by abstract syntax;
            defaults to Verification alone.
        @param access: source networks and calling-AE@network pairs that
            may connect and associate; empty allows everyone.
        @param userIdentity: what to do with a User Identity sub-item.
        @param identityChecker: decides about user identities; needed
            unless C{userIdentity} is C{IGNORE}.
        @param maxIdentityChecks: identity checks in progress at once
            beyond which a request is rejected (transient,
            local-limit-exceeded).
        @param clock: the L{IReactorTime} for every timer; defaults to the
            global reactor.
        """
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        if userIdentity is not UserIdentityMode.IGNORE and identityChecker is None:
            raise ValueError(f"user identity mode {userIdentity.value!r} needs an identity checker")
        self.userIdentity = userIdentity
        self.identityChecker = identityChecker
        self.identityThrottle = FailureThrottle(self.clock)
        self.maxIdentityChecks = maxIdentityChecks
        self.identityChecksInProgress = 0
        if isinstance(transferSyntaxes, TransferSyntaxPreference):
            transferSyntaxes = transferSyntaxOrder(transferSyntaxes)
        self.responders: dict[str, IServiceResponder] = {}
        for responder in responders if responders is not None else [VerificationResponder()]:
            for abstractSyntax in responder.abstractSyntaxes:
                self.responders[abstractSyntax] = responder
        self.policy = AssociationPolicy(
            aeTitle=aeTitle,
            requireCalledAETitle=requireCalledAETitle,
            allowedCallingAETitles=frozenset(allowedCallingAETitles),
            maxPDULength=maxPDULength,
            transferSyntaxes=tuple(transferSyntaxes),
            abstractSyntaxes=tuple(self.responders),
            access=access,
        )
        self.acseTimeout = acseTimeout
        self.dimseTimeout = dimseTimeout
        self.networkTimeout = networkTimeout
        self.maxAssociations = maxAssociations
        self.maxAssociateLength = maxAssociateLength
        self.activeAssociations = 0
        self.draining = False
        self.acceptances = AcceptanceCache()
        self.stats = ServerStats()
        self._protocols: set[DICOMAssociationProtocol] = set()
        self._drained: Deferred[None] | None = None
        self._drainCalls: list[IDelayedCall] = []

    def buildProtocol(self, addr: Any) -> DICOMAssociationProtocol:
        protocol = DICOMAssociationProtocol(self)
        protocol.factory = self
        return protocol

    @property
    def openConnections(self) -> int:
        """
        Connections currently open, associated or not.
        """
        return len(self._protocols)

    @property
    def atCapacity(self) -> bool:
        """
        Whether a new association would be rejected (local-limit-exceeded):
        the limit is reached, or the server is shutting down.
        """
        return self.draining or self.activeAssociations >= self.maxAssociations

    def messagesAnswered(self) -> int:
        """
        DIMSE requests handled so far, on closed and open connections.
        """
        return self.stats.messagesOfClosed + sum(p._messages for p in self._protocols)

    def drain(self, grace: float) -> Deferred[None]:
        """
        Shut down gracefully: close connections that hold no association
        at once, let established associations finish for C{grace} seconds,
        then A-ABORT the rest. New requests are rejected meanwhile
        (transient, local-limit-exceeded).

        @return: a L{Deferred} that fires when every connection is closed,
            at the latest about one second after C{grace}.
        """
        if self._drained is not None:
            return self._drained
        self.draining = True
        log.info(
            "Shutting down: {associations} association(s) may finish within {grace} s",
            dicomEvent="shutdown",
            peer="",
            associations=self.activeAssociations,
            connections=len(self._protocols),
            grace=grace,
        )
        for protocol in list(self._protocols):
            protocol._shutdownStarted()
        if not self._protocols:
            self._drained = succeed(None)
            return self._drained
        self._drained = Deferred()
        later = self.clock.callLater
        self._drainCalls = [
            later(grace, self._abortRemaining),
            later(grace + 0.5, self._closeRemaining),
            later(grace + 0.9, self._drainFinished),
        ]
        return self._drained

    def _abortRemaining(self) -> None:
        if self._protocols:
            log.info(
                "Aborting {count} association(s) still open after the grace period",
                dicomEvent="shutdown-abort",
                peer="",
                count=len(self._protocols),
            )
        for protocol in list(self._protocols):
            protocol._abortForShutdown()

    def _closeRemaining(self) -> None:
        # Peers that do not read keep our A-ABORT in the send buffer: drop
        # those connections without waiting for the flush.
        for protocol in list(self._protocols):
            protocol._forceClose()

    def _drainFinished(self) -> None:
        self._drainCalls = [c for c in self._drainCalls if c.active()]
        for call in self._drainCalls:
            call.cancel()
        self._drainCalls = []
        drained, self._drained = self._drained, succeed(None)
        if drained is not None and not drained.called:
            drained.callback(None)

    def _protocolStarted(self, protocol: DICOMAssociationProtocol) -> None:
        self._protocols.add(protocol)

    def _protocolEnded(self, protocol: DICOMAssociationProtocol) -> None:
        self._protocols.discard(protocol)
        if self.draining and not self._protocols and self._drainCalls:
            self._drainFinished()


@implementer(IPushProducer, IHandshakeListener)
class DICOMAssociationProtocol(AdmissionMixin, Protocol):
    """
    One DICOM association, acceptor side, over one transport.

    The protocol is its transport's streaming producer: when the transport's
    send buffer fills (a peer that pipelines requests and does not read the
    responses) it is paused, stops reading from the peer and stops handling
    buffered requests, so memory stays bounded; it resumes when the buffer
    drains.
    """

    # Attributes most connections never change are class defaults, so they
    # cost an idle association no memory (benchmarks.run's idle mode).
    #: Set when the connection was refused and that was logged: its one log
    #: line, so no summary follows.
    _refused = False
    #: TLS: "handshake" until it completes ("done") or fails ("failed");
    #: None on a plain transport. The session's fields for log events.
    _tlsState: str | None = None
    _tlsInfo: Mapping[str, str | None] = MappingProxyType({})
    #: The user identity accepted (PS3.7 D.3.3.7), for the log, and the call
    #: that sends a rejection held back by the failure throttle.
    _user: str | None = None
    _identityCall: IDelayedCall | None = None
    #: When the association was accepted, for its duration.
    _acceptedAt: float | None = None

    def __init__(self, factory: DICOMServerFactory) -> None:
        self._config = factory
        self._clock = factory.clock
        self._machine = AcceptorStateMachine()
        self._framer = PDUFramer(
            maxAssociateLength=factory.maxAssociateLength,
            maxPDataLength=factory.policy.maxPDULength,
        )
        # ARTIM (Sta2, Sta13) and the network timer (Sta6, Sta8) never run
        # at once: they share one DelayedCall, the phase timer, which says
        # which of them it is.
        self._phaseCall: IDelayedCall | None = None
        self._phase: str | None = None
        self._dimse: IDelayedCall | None = None
        self._closing: IDelayedCall | None = None
        self._lastReceived = 0.0
        # What the association needs of its negotiation; the decoded request
        # itself is not kept (a 1 MiB request decodes to many objects).
        self._contexts: Mapping[int, Any] = _NO_CONTEXTS
        self._peerMaxPDULength = 0
        self._assembler: MessageAssembler | None = None
        # Set when the association is accepted.
        self._replayer: ResponseReplayer | None = None
        # The body of the PDU the full path is handling, for the caches
        # (replayed responses, known acceptances), and for an
        # A-ASSOCIATE-RQ the cache's entry for that body, if any.
        self._requestBody: bytes | None = None
        self._knownRequest: tuple[Acceptance, bytes, object] | None = None
        self._counted = False
        self._releasing = False
        self._paused = False
        # Responses not yet sent, in request order: each entry is a list
        # holding the encoded PDUs once they are ready. A deque is made only
        # when a responder answers later (it is some 600 bytes, and most
        # associations never need one).
        self._pending: deque[list[list[bytes] | None]] | tuple[()] = ()
        # The peer's address for the log, read from the transport when first
        # needed (most associations log nothing at the default level).
        self._peerAddress: tuple[str, int | None] | None = None
        # For the association-summary event.
        self._started = 0.0
        self._titles: tuple[str, str] | None = None
        self._outcome = "no-association"
        self._reason = "connection closed before an A-ASSOCIATE-RQ"
        self._messages = 0

    @property
    def _peer(self) -> str:
        """
        The peer as C{host:port}, C{[host]:port} for IPv6 (just the name for
        a UNIX socket).
        """
        host, port = self._peerHostPort()
        return listeningAddress(host, port)

    def _peerHostPort(self) -> tuple[str, int | None]:
        if self._peerAddress is None:
            self._peerAddress = (
                _peerAddress(self.transport) if self.transport is not None else ("unknown", None)
            )
        return self._peerAddress

    @property
    def state(self) -> State:
        """
        The PS3.8 state of this association.
        """
        return self._machine.state

    # --- transport events -----------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        if ITCPTransport.providedBy(transport):
            # Responses are small; do not let Nagle hold one back.
            transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self._started = self._clock.seconds()
        self._config._protocolStarted(self)
        access = self._config.policy.access
        if not access.empty:
            if behindProxy(transport):
                # The PROXY header names the client, and it has been read by
                # the time the first byte after it reaches us: check then.
                self.dataReceived = self._firstDataBehindProxy  # type: ignore[method-assign]
            elif not self._admitSource():
                return
        if isTLSTransport(transport):
            self._tlsState = "handshake"
        transport.registerProducer(self, True)  # type: ignore[union-attr]
        self._perform(self._machine.transportConnected())
        if self._config.draining:
            self._close()

    def dataReceived(self, data: bytes) -> None:
        self._lastReceived = self._clock.seconds()
        self._framer.receiveData(data)
        self._handleFrames()

    def _handleFrames(self) -> None:
        """
        Handle the complete PDUs buffered in the framer, until it needs more
        bytes, the association is over, or the transport paused us.
        """
        framer = self._framer
        if framer.failed:
            # Its one error was answered already; what follows is discarded.
            return
        while self._machine.state is not State.STA1 and not self._paused:
            try:
                frame = framer.nextFrame()
                if frame is None:
                    return
                pduType, body = frame
                if pduType == _P_DATA_TF and self._replayable():
                    response = self._replayer.respond(body)  # type: ignore[union-attr]
                    if response is not None:
                        self._messages += 1
                        self.transport.write(response)  # type: ignore[union-attr]
                        continue
                known = (
                    self._config.acceptances.get(body, self._config.policy)
                    if pduType == _A_ASSOCIATE_RQ
                    else None
                )
                # A known request's decoded PDU is the one decoding gives.
                pdu = known[0].rq if known is not None else decodePDU(pduType, body)
            except RemoteProtocolError as error:
                self._logInvalid(error)
                self._perform(self._machine.invalidPDUReceived(error))
                if framer.failed or framer.bufferedLength == 0:
                    return
                continue
            self._requestBody, self._knownRequest = body, known
            self._perform(self._machine.pduReceived(pdu))
            self._requestBody = self._knownRequest = None

    def _replayable(self) -> bool:
        """
        Whether a P-DATA-TF received now may be answered by replaying a
        response (L{dicomecho.association.replay}): only where the full path would do
        nothing but send that response. That is Sta6 (Evt10 then Evt9 leave
        it there), no response pending before it, no message half received
        (its DIMSE timer is off and stays off), and no C{dimse-received}
        event to emit at the current level.
        """
        return (
            self._machine.state is State.STA6
            and not self._pending
            and not self._assembler.inProgress  # type: ignore[union-attr]
            and not isEnabled(LogLevel.info)
        )

    # --- IPushProducer: backpressure from the transport's send buffer --------

    def pauseProducing(self) -> None:
        self._paused = True
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        self._paused = False
        self.transport.resumeProducing()  # type: ignore[union-attr]
        self._handleFrames()

    def stopProducing(self) -> None:
        self._paused = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._tlsState == "handshake":
            self._tlsFailed(reason)
        if self._machine.state is not State.STA1:
            self._perform(self._machine.transportClosed())
        self._cancelTimers()
        self._uncount()
        self._config._protocolEnded(self)
        acceptedAt = self._acceptedAt
        self._config.stats.connectionEnded(
            self._outcome,
            self._messages,
            None if acceptedAt is None else self._clock.seconds() - acceptedAt,
        )
        self._logSummary()

    def _logSummary(self) -> None:
        """
        Emit the one association-summary event of this connection: a JSON
        record, and at C{-v}/C{-d} the console's last line for a connection
        that sent an A-ASSOCIATE-RQ (L{dicomecho.observability.logs}). Built only when
        info is enabled: the default level (errors) pays nothing for it.
        """
        if self._refused or not isEnabled(LogLevel.info):
            return
        titles = self._titles
        host, port = self._peerHostPort()
        contexts = [
            f"{c.contextID}:{c.abstractSyntax}/{c.transferSyntax}"
            for c in self._contexts.values()
        ]
        log.info(
            "Association from {peer}: {outcome} ({reason})",
            dicomEvent="association-summary",
            peer=self._peer,
            peerHost=host,
            peerPort=port,
            callingAETitle=titles[0] if titles is not None else None,
            calledAETitle=titles[1] if titles is not None else None,
            contexts=contexts,
            outcome=self._outcome,
            reason=self._reason,
            durationSeconds=round(self._clock.seconds() - self._started, 6),
            messages=self._messages,
            user=self._user,
            **self._tlsInfo,
        )

    def _setOutcome(self, outcome: str, reason: str) -> None:
        self._outcome = outcome
        self._reason = reason

    # --- effects --------------------------------------------------------------

    def _perform(self, effects: list[Effect]) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is SendPDU:
                self.transport.write(effect.data)  # type: ignore[union-attr]
            elif kind is DataIndication:
                self._dataIndication(effect)  # type: ignore[arg-type]
            elif kind is StartARTIM:
                self._startARTIM()
            elif kind is StopARTIM:
                self._stopARTIM()
            elif kind is CloseTransport:
                self._close()
            elif kind is AssociateIndication:
                self._associateIndication(effect.rq)  # type: ignore[union-attr]
            elif kind is ReleaseIndication:
                self._releasing = True
                self._releaseIfIdle()
            elif kind is AbortIndication:
                self._abortIndication(effect)  # type: ignore[arg-type]
            elif kind is PDUIgnored or kind is ReleaseConfirmation:
                pass

    # --- association establishment -------------------------------------------

    def _associateIndication(self, rq: AssociateRQ) -> None:
        config = self._config
        self._titles = (rq.callingAETitle, rq.calledAETitle)
        if isEnabled(LogLevel.debug):
            log.debug(
                "A-ASSOCIATE-RQ from {peer}",
                dicomEvent="associate-rq",
                peer=self._peer,
                rq=rq,
            )
        policy = config.policy
        access = policy.access
        checkIdentity = config.userIdentity is not UserIdentityMode.IGNORE
        atCapacity = config.atCapacity
        known = self._knownRequest
        # A known request's acceptance holds for any source only without an
        # access list, and never stands in for an identity check.
        if (
            known is not None
            and not atCapacity
            and (access.empty or access.admits(rq.callingAETitle, self._peerHostPort()[0]))
            and (not checkIdentity or identityOf(rq) is None)
        ):
            outcome, acBytes, replayer = known
            self._respond(outcome, acBytes, replayer)
            return
        try:
            peerHost = None if access.empty else self._peerHostPort()[0]
            outcome = negotiate(rq, policy, atCapacity=atCapacity, peerHost=peerHost)
        except InvalidAssociateRequest as error:
            self._logInvalid(error)
            self._setOutcome("aborted", str(error))
            self._perform(
                self._machine.abortRequest(
                    Abort(AbortSource.SERVICE_PROVIDER, error.abortReason), str(error)
                )
            )
            return
        if isinstance(outcome, Acceptance) and checkIdentity:
            identity = identityOf(rq)
            if identity is not None:
                self._checkIdentity(outcome, identity)
                return
            if config.userIdentity is UserIdentityMode.REQUIRED:
                outcome = identityRejection(outcome, "no user identity was sent (one is required)")
        self._respond(outcome, body=self._requestBody)

    def _respond(
        self,
        outcome: Acceptance | Rejection,
        acBytes: bytes | None = None,
        replayer: object = None,
        body: bytes | None = None,
    ) -> None:
        """
        Send the A-ASSOCIATE response for C{outcome}.

        @param acBytes: the encoded AC and C{replayer} its shared replayer,
            when the acceptance came from the cache.
        @param body: the request's body, to remember a new acceptance by.
        """
        config = self._config
        if isinstance(outcome, Acceptance):
            # Read only, and shared with associations accepted alike.
            self._contexts = outcome.contexts
            self._peerMaxPDULength = outcome.peerMaxPDULength
            self._assembler = MessageAssembler(outcome.contexts.keys())
            config.activeAssociations += 1
            self._counted = True
            config.stats.associationAccepted()
            self._acceptedAt = self._clock.seconds()
            if isEnabled(LogLevel.info):
                log.info(
                    "Accepting Association",
                    dicomEvent="association-accepted",
                    peer=self._peer,
                    rq=outcome.rq,
                    ac=outcome.ac,
                    contexts=outcome.contexts,
                    user=self._user,
                    **self._tlsInfo,
                )
            self._setOutcome("established", "association not yet ended")
            if acBytes is None:
                acBytes = outcome.ac.encode()
                replayer = ResponseReplayer()
                if body is not None:
                    config.acceptances.remember(body, config.policy, outcome, acBytes, replayer)
            # Associations accepted alike answer alike: they share what the
            # replayer learns, so an SCU's first echo can be replayed too.
            assert isinstance(replayer, ResponseReplayer)
            self._replayer = replayer
            self._perform(self._machine.associateResponse(outcome.ac, acBytes))
            self._armIdleTimer()
        else:
            # echoscp reports a protocol version it cannot serve as an error
            # (reference §3.1); every other rejection is information.
            rj = outcome.rj
            level = (
                LogLevel.error
                if (rj.result, rj.source, rj.reason) == (1, 2, 2)
                else LogLevel.info
            )
            log.emit(
                level,
                "Rejecting Association",
                dicomEvent="association-rejected",
                peer=self._peer,
                rq=outcome.rq,
                rj=rj,
                result=rj.result,
                source=rj.source,
                diagnostic=rj.reason,
                reason=outcome.reason,
                **self._tlsInfo,
            )
            self._setOutcome("rejected", outcome.reason)
            config.stats.associationRejected(rj.result, rj.source, rj.reason)
            self._perform(self._machine.associateResponse(rj))
            # Nothing can follow a rejection: close once the RJ is flushed
            # (Sta13 still runs ARTIM until the close completes).
            self._close()

    # --- data transfer ----------------------------------------------------------

    def _dataIndication(self, indication: DataIndication) -> None:
        assembler = self._assembler
        assert assembler is not None
        pdvs = indication.pdata.pdvs
        # A response may be recorded for replay only for a P-DATA-TF of a
        # single PDV, received where it could have been replayed.
        requestBody = (
            self._requestBody if len(pdvs) == 1 and self._replayable() else None
        )
        for pdv in pdvs:
            try:
                message = assembler.receive(pdv)
            except DIMSEError as error:
                self._abortFor(error)
                return
            if message is not None:
                self._dispatch(message, requestBody)
                if self._machine.state not in (State.STA6, State.STA8):
                    return
        self._armDIMSETimer()

    def _dispatch(self, message: DIMSEMessage, requestBody: bytes | None = None) -> None:
        """
        Hand C{message} to its context's responder and queue the response.

        @param requestBody: the P-DATA-TF body that carried the whole
            message, if its response may be recorded for replay.
        """
        context = self._contexts[message.contextID]
        self._messages += 1
        # On the per-echo path: build the event only if it will be emitted
        # (the default level, as echoscp's, is errors only).
        if isEnabled(LogLevel.info):
            log.info(
                "Received {commandName} (MsgID {messageID})",
                dicomEvent="dimse-received",
                peer=self._peer,
                commandName=_commandName(message.commandField),
                commandField=message.commandField,
                messageID=message.messageID,
                contextID=message.contextID,
                message=message,
            )
        responder = self._config.responders.get(context.abstractSyntax)
        try:
            result = responder.handle(message, context) if responder else None
            if not isinstance(result, Deferred):
                pdus = self._encodeResponse(result, message)
                if (
                    requestBody is not None
                    and len(pdus) == 1
                    and getattr(responder, "repeatable", False)
                ):
                    self._replayer.record(requestBody, pdus[0])  # type: ignore[union-attr]
                self._queueResponse(pdus)
                return
        except Exception:
            self._responseFailed(Failure(), None)
            return
        slot: list[list[bytes] | None] = [None]
        if not self._pending:
            self._pending = deque()
        self._pending.append(slot)  # type: ignore[union-attr]
        result.addCallback(self._encodeResponse, message)
        result.addCallbacks(
            self._queueResponse, self._responseFailed, (slot,), None, (slot,)
        )

    def _encodeResponse(
        self, response: DIMSEResponse | None, request: DIMSEMessage
    ) -> list[bytes]:
        if response is None:
            command = refusalResponse(request, Status.UNRECOGNIZED_OPERATION)
            if command is None:
                return []
            response = DIMSEResponse(command)
        return fragment(
            request.contextID,
            encodeCommandSet(response.command),
            response.dataSet,
            self._peerMaxPDULength,
        )

    def _queueResponse(
        self, pdus: list[bytes], slot: list[list[bytes] | None] | None = None
    ) -> None:
        """
        Send a response's PDUs once every earlier response has been sent.

        @param slot: the place this response took in the pending queue when
            its responder returned a L{Deferred}; C{None} for a response
            produced synchronously.
        """
        if slot is None:
            if not self._pending:
                if pdus:
                    self._perform(self._machine.dataRequest(pdus))
                return
            self._pending.append([pdus])  # type: ignore[union-attr]
        else:
            slot[0] = pdus
        while self._pending and self._pending[0][0] is not None:
            ready = self._pending.popleft()[0]  # type: ignore[union-attr]
            if ready and self._machine.state in (State.STA6, State.STA8):
                self._perform(self._machine.dataRequest(ready))
        self._releaseIfIdle()

    def _responseFailed(
        self, failure: Failure, slot: list[list[bytes] | None] | None
    ) -> None:
        if failure.check(DIMSEError):
            self._abortFor(failure.value)
            return
        log.failure(
            "Service responder failed; aborting the association",
            failure,
            dicomEvent="responder-failed",
            peer=self._peer,
        )
        self._localAbort(Abort(), "the service responder failed")

    def _releaseIfIdle(self) -> None:
        if self._releasing and not self._pending and self._machine.state is State.STA8:
            self._releasing = False
            self._perform(self._machine.releaseResponse())
            if isEnabled(LogLevel.info):
                log.info(
                    "Association Released",
                    dicomEvent="association-released",
                    peer=self._peer,
                )
            self._setOutcome("released", "A-RELEASE completed")
            if self._config.draining:
                # Shutting down: do not wait in Sta13 for the peer to close.
                self._close()
            self._endAssociation()

    # --- aborts and timers -------------------------------------------------------

    def _abortFor(self, error: DIMSEError) -> None:
        self._localAbort(Abort(error.abortSource, error.abortReason), str(error))

    def _shutdownStarted(self) -> None:
        """
        The server is shutting down: a connection without an association
        (awaiting its request, or already over) is closed now.
        """
        if self._machine.state not in (State.STA3, State.STA6, State.STA8):
            self._close()

    def _abortForShutdown(self) -> None:
        self._localAbort(Abort(), "server shutting down")
        self._close()

    def _close(self) -> None:
        """
        Close once what was written is flushed; if a peer that does not read
        keeps it from flushing, drop the connection a second later.
        """
        self.transport.loseConnection()  # type: ignore[union-attr]
        if self._closing is None:
            self._closing = self._clock.callLater(_CLOSE_GRACE, self._forceClose)

    def _forceClose(self) -> None:
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        self._closing = None
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _localAbort(self, abort: Abort, why: str) -> None:
        """
        Send C{abort} (Evt15, AA-1) for a fault we detected after the
        association was established.
        """
        if (self._machine.state, Event.EVT15) not in TRANSITIONS:
            # No association to abort (Sta1, Sta2, Sta13): closing is all.
            return
        self._pending = ()
        self._perform(self._machine.abortRequest(abort, why))

    def _abortIndication(self, indication: AbortIndication) -> None:
        self._endAssociation()
        if indication.reason is None and not indication.byPeer:
            # ARTIM expired before any A-ASSOCIATE-RQ: closed, no PDU sent.
            detail = incompleteHeader(self.transport)
            if detail is not None:
                # Its PROXY header never completed: no TLS handshake began.
                self._tlsState = None
            elif self._tlsState == "handshake":
                self._tlsFailed(
                    None,
                    f"handshake not completed within {self._config.acseTimeout:g} s "
                    f"(ACSE timeout)",
                )
                return
            else:
                detail = indication.detail
            self._setOutcome("no-association", detail)
            log.debug(
                "Connection from {peer} closed: {detail}",
                dicomEvent="connection-closed",
                peer=self._peer,
                detail=detail,
            )
            return
        if indication.byPeer:
            self._setOutcome(
                "aborted-by-peer" if indication.reason is not None else "connection-lost",
                indication.detail,
            )
        else:
            self._setOutcome("aborted", indication.detail)
        log.info(
            "Association Aborted" if indication.byPeer else "Aborting Association",
            dicomEvent="association-aborted" if indication.byPeer else "association-aborting",
            peer=self._peer,
            source=indication.source,
            reason=indication.reason,
            detail=indication.detail,
        )

    def _timedOut(self, what: str) -> None:
        log.error(
            "{what} timeout reached",
            what=what,
            dicomEvent="timeout",
            peer=self._peer,
        )
        self._localAbort(Abort(), f"{what} timeout")
        # Nothing more is expected from a peer that went quiet: close now
        # rather than wait out ARTIM in Sta13.
        self._close()

    def _setPhaseTimer(self, phase: str, delay: float) -> None:
        """
        Make the phase timer C{phase}, due in C{delay} seconds.

        A pending call is moved later with C{reset()} rather than cancelled
        and re-created: a connection then makes one DelayedCall, not three
        (about 7% of an association's instructions, benchmarks/instructions.py).
        A call due later than wanted is replaced instead, as the reactor
        moves a call sooner by a linear search of its queue.
        """
        self._phase = phase
        call = self._phaseCall
        if call is not None and call.active():
            if call.getTime() <= self._clock.seconds() + delay:
                call.reset(delay)
                return
            call.cancel()
        self._phaseCall = self._clock.callLater(delay, self._phaseTimerFired)

    def _phaseTimerFired(self) -> None:
        self._phaseCall = None
        phase, self._phase = self._phase, None
        if phase == "artim":
            self._perform(self._machine.artimExpired())
        elif phase == "network":
            self._networkCheck()

    def _startARTIM(self) -> None:
        self._setPhaseTimer("artim", self._config.acseTimeout)

    def _stopARTIM(self) -> None:
        # The call stays pending for the next phase to move; if none comes,
        # it fires and does nothing, or connectionLost cancels it.
        if self._phase == "artim":
            self._phase = None

    def _armIdleTimer(self) -> None:
        if self._phase != "network":
            self._lastReceived = self._clock.seconds()
            self._setPhaseTimer("network", self._config.networkTimeout)

    def _networkCheck(self) -> None:
        # Re-arm from the last byte received rather than resetting the call
        # on every read: one timer event per timeout period, not per PDU.
        if self._machine.state not in (State.STA6, State.STA8):
            return
        quiet = self._clock.seconds() - self._lastReceived
        remaining = self._config.networkTimeout - quiet
        # Compare with a margin: float rounding can leave a remainder so small
        # that adding it to the time changes nothing, and re-arming for it
        # would fire again at once, forever (found by fuzz/fuzz_dicomecho.py).
        if remaining > _TIMER_RESOLUTION:
            self._setPhaseTimer("network", remaining)
        else:
            self._timedOut("Network")

    def _armDIMSETimer(self) -> None:
        inProgress = self._assembler is not None and self._assembler.inProgress
        if inProgress and self._dimse is None:
            self._dimse = self._clock.callLater(self._config.dimseTimeout, self._dimseExpired)
        elif not inProgress and self._dimse is not None:
            self._dimse.cancel()
            self._dimse = None

    def _dimseExpired(self) -> None:
        self._dimse = None
        self._timedOut("DIMSE")

    def _cancelTimers(self) -> None:
        self._stopAssociationTimers()
        for call in (self._phaseCall, self._closing, self._identityCall):
            if call is not None and call.active():
                call.cancel()
        self._phaseCall = self._closing = None
        if self._identityCall is not None:
            self._identityCall = None
        self._phase = None

    def _endAssociation(self) -> None:
        """
        The association is over (released or aborted): free its slot and
        stop the timers that only apply to an established association.
        """
        self._uncount()
        self._stopAssociationTimers()

    def _stopAssociationTimers(self) -> None:
        if self._phase == "network":
            # As for ARTIM: the call stays for the next phase (Sta13's ARTIM).
            self._phase = None
        if self._dimse is not None and self._dimse.active():
            self._dimse.cancel()
        self._dimse = None

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._config.activeAssociations -= 1

    def _logInvalid(self, error: RemoteProtocolError) -> None:
        log.error(
            "Invalid PDU from {peer}: {error}",
            dicomEvent="invalid-pdu",
            peer=self._peer,
            error=str(error),
            abortReason=int(error.abortReason),
            looksLike=getattr(error, "looksLike", None),
        )
