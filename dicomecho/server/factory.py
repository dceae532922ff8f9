# -*- test-case-name: tests.test_protocol -*-
"""
L{DICOMServerFactory}: builds a L{DICOMAssociationProtocol} per connection
and holds what they share: the policy, the responders, the acceptance
cache, the counts and the stats; and drains them at shutdown.
"""

from __future__ import annotations

from functools import partial
from typing import Iterable, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import LogLevel

from dicomecho.association.fastpaths import AcceptanceCache
from dicomecho.association.establishment import PeerAddress
from dicomecho.association.negotiation import (
    CAPACITY_REACHED,
    DEFAULT_MAX_ASSOCIATIONS,
    AssociationPolicy,
    TransferSyntaxPreference,
    transferSyntaxOrder,
)
from dicomecho.observability.events import emitShutdown, emitShutdownAbort
from dicomecho.observability.levels import enabledCheck
from dicomecho.observability.hints import hintFor
from dicomecho.observability.history import AssociationHistory
from dicomecho.observability.stats import ServerStats
from dicomecho.security.access import AccessList
from dicomecho.security.identity import (
    FailureThrottle,
    IUserIdentityChecker,
    UserIdentityMode,
)
from dicomecho.security.sourcelimits import SourceLimitsPolicy
from dicomecho.server.protocol import DICOMAssociationProtocol
from dicomecho.server.pending import DEFAULT_MAX_PENDING, PendingConnections
from dicomecho.server.sourcegate import SourceGate
from dicomecho.services.verification import IServiceResponder, VerificationResponder
from dicomecho.wire.framer import DEFAULT_MAX_ASSOCIATE_LENGTH

__all__ = ["DICOMServerFactory"]


def _globalReactor() -> IReactorTime:
    from twisted.internet import reactor

    return reactor  # type: ignore[return-value]


class DICOMServerFactory(ServerFactory):
    """
    Builds a L{DICOMAssociationProtocol} per connection; holds the policy,
    the responders and the number of live associations.

    @ivar activeAssociations: associations accepted and not yet ended.

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
    @param history: where each connection is recorded for the live page
        (C{--web}); C{None}, the default, records nothing.
    """

    # Our own "listening" event says where we listen; skip Twisted's
    # per-port "Starting factory" lines.
    noisy = False

    #: Answer a repeated echo by replaying the previous response
    #: (L{dicomecho.association.fastpaths}); off only to compare the paths.
    replaysResponses = True

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
        sourceLimits: SourceLimitsPolicy | None = None,
        maxPending: int = DEFAULT_MAX_PENDING,
        clock: IReactorTime | None = None,
        history: AssociationHistory | None = None,
    ) -> None:
        self.clock: IReactorTime = clock if clock is not None else _globalReactor()
        self._setIdentity(userIdentity, identityChecker, maxIdentityChecks)
        if isinstance(transferSyntaxes, TransferSyntaxPreference):
            transferSyntaxes = transferSyntaxOrder(transferSyntaxes)
        self.responders: dict[str, IServiceResponder] = {
            abstractSyntax: responder
            for responder in (responders if responders is not None else [VerificationResponder()])
            for abstractSyntax in responder.abstractSyntaxes
        }
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
        self.sources = SourceGate(sourceLimits or SourceLimitsPolicy(), self.stats, self.clock)
        self.pending = PendingConnections(maxPending, self.stats, self.clock)
        self._keepHistory(history)
        self._protocols: set[DICOMAssociationProtocol] = set()
        self._drained: Deferred[None] | None = None
        self._drainCalls: list[IDelayedCall] = []

    def _keepHistory(self, history: AssociationHistory | None) -> None:
        """Record connections in C{history} (the live page's), if given."""
        #: The recent connections, for the live page (--web), or None.
        self.history = history
        self.sources.recordRefusal = history.add if history is not None else None
        if history is not None:
            history.hinter = partial(hintFor, policy=self.policy)

    def _setIdentity(
        self,
        mode: UserIdentityMode,
        checker: IUserIdentityChecker | None,
        maxChecks: int,
    ) -> None:
        if mode is not UserIdentityMode.IGNORE and checker is None:
            raise ValueError(f"user identity mode {mode.value!r} needs an identity checker")
        self.userIdentity = mode
        self.identityChecker = checker
        self.identityThrottle = FailureThrottle(self.clock)
        self.maxIdentityChecks = maxChecks
        self.identityChecksInProgress = 0

    def buildProtocol(self, addr: IAddress) -> DICOMAssociationProtocol:
        # The address Twisted gives here is the one the connection came
        # from: judging the source by it spares a getPeer() per connection.
        protocol = DICOMAssociationProtocol(self, getattr(addr, "host", None))
        protocol.factory = self
        return protocol

    def buildTLSProtocol(self, addr: IAddress) -> DICOMAssociationProtocol | None:
        """
        L{buildProtocol} for a TLS listener without a PROXY layer: the
        source is judged as the connection is accepted, before its TLS
        layer costs anything (a refused ClientHello flood would otherwise
        pay for an OpenSSL connection each); C{None}, which closes the
        socket, when it is at a limit.
        """
        host = getattr(addr, "host", None)
        if not isinstance(host, str):
            return self.buildProtocol(addr)
        key, limit = self.sources.admit(host, True)
        if limit is not None:
            return None
        protocol = self.buildProtocol(addr)
        protocol.countAsPending(key)
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

    def refuseRequest(self, peer: PeerAddress, size: int) -> str | None:
        """
        Why an A-ASSOCIATE-RQ of C{size} bytes from C{peer} is not to be
        decoded now: its source's request bytes are spent (L{SourceGate}).
        """
        key = peer.sourceKey()
        return None if key is None else self.sources.refuseRequest(key, size)

    def refuseAssociation(self, peer: PeerAddress) -> str | None:
        """
        Why a new association from C{peer} would exceed a local limit now:
        shutting down, the association limit, or its source's (counted and
        logged by L{SourceGate}); C{None} if it may be accepted.
        """
        if self.atCapacity:
            return CAPACITY_REACHED
        key = peer.sourceKey()
        if key is None or self.sources.table.associationRefusal(key) is None:
            return None
        return self.sources.refuseAssociation(key)

    @property
    def checksIdentity(self) -> bool:
        """
        Whether a User Identity sub-item is checked (PS3.7 D.3.3.7).
        """
        return self.userIdentity is not UserIdentityMode.IGNORE

    @property
    def requiresIdentity(self) -> bool:
        """
        Whether a request without a user identity is rejected.
        """
        return self.userIdentity is UserIdentityMode.REQUIRED

    #: Whether each DIMSE message and the release are logged (info), and
    #: each request whole (debug); the per-echo check is one C call.
    reportsProgress = staticmethod(enabledCheck(LogLevel.info))
    reportsRequests = staticmethod(enabledCheck(LogLevel.debug))

    def messagesAnswered(self) -> int:
        """
        DIMSE requests handled so far, on closed and open connections.
        """
        return self.stats.messagesOfClosed + sum(p.messages for p in self._protocols)

    # --- connections --------------------------------------------------------------

    def connectionOpened(self, protocol: DICOMAssociationProtocol) -> None:
        """
        C{protocol}'s connection is open.
        """
        self._protocols.add(protocol)

    def connectionClosed(self, protocol: DICOMAssociationProtocol) -> None:
        """
        C{protocol}'s connection is closed.
        """
        self._protocols.discard(protocol)
        self.pending.discard(protocol)
        if self.draining and not self._protocols and self._drainCalls:
            self._drainFinished()

    # --- shutdown -----------------------------------------------------------------

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
        emitShutdown(self.activeAssociations, len(self._protocols), grace)
        for protocol in list(self._protocols):
            protocol.shutdownStarted()
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
            emitShutdownAbort(len(self._protocols))
        for protocol in list(self._protocols):
            protocol.abortForShutdown()

    def _closeRemaining(self) -> None:
        # Peers that do not read keep our A-ABORT in the send buffer: drop
        # those connections without waiting for the flush.
        for protocol in list(self._protocols):
            protocol.forceClose()

    def _drainFinished(self) -> None:
        self._drainCalls = [c for c in self._drainCalls if c.active()]
        for call in self._drainCalls:
            call.cancel()
        self._drainCalls = []
        drained, self._drained = self._drained, succeed(None)
        if drained is not None and not drained.called:
            drained.callback(None)
