# -*- test-case-name: tests.test_security -*-
"""
Who gets served, for L{DICOMAssociationProtocol}: the source address
check (at connect, or after a PROXY header), the TLS handshake's outcome,
and the user identity check that holds an association in Sta3.

L{AdmissionMixin} is part of the protocol class, split out to keep each
module small; it relies on the protocol's state (C{_config}, C{_machine},
C{_respond}, C{_peerHostPort} ...). The helpers below it are pure.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import INegotiated, ISSLTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from dicomecho.association.fsm import State
from dicomecho.security.identity import (
    IdentityRefused,
    identityRejection,
    usernameText,
    withIdentityResponse,
)
from dicomecho.wire.items import UserIdentityRQ
from dicomecho.observability.logs import isEnabled, log
from dicomecho.association.negotiation import Acceptance, Rejection, localLimitRejection
from dicomecho.wire.pdu import AssociateRQ
from dicomecho.server.proxyheader import proxyLayerUnder

__all__ = ["AdmissionMixin", "isTLSTransport", "behindProxy", "identityOf"]


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
    Whether a PROXY-protocol layer is somewhere under C{transport} (see
    L{dicomecho.server.proxyheader.proxyLayerUnder}).
    """
    return proxyLayerUnder(transport) is not None


def identityOf(rq: AssociateRQ) -> UserIdentityRQ | None:
    info = rq.userInformation
    return info.userIdentity if info is not None else None

class AdmissionMixin:
    """
    The protocol's admission steps (see the module docstring).
    """

    _config: Any
    _machine: Any
    _clock: Any
    transport: Any

    def _firstDataBehindProxy(self, data: bytes) -> None:
        """
        The first bytes of a connection behind a PROXY-protocol listener:
        the client's address is known now; admit it or refuse it.
        """
        if self._admitProxiedSource():
            self.dataReceived(data)

    def _admitProxiedSource(self) -> bool:
        """
        The PROXY header has been read: restore the protocol's own
        C{dataReceived}, forget the balancer's address, and judge the
        client's (L{_admitSource}).
        """
        del self.dataReceived
        self._peerAddress = None
        return self._admitSource()

    def _admitSource(self) -> bool:
        """
        Whether the peer's address is admitted by the access list; if not,
        refuse the connection.
        """
        access = self._config.policy.access
        if access.admitsSource(self._peerHostPort()[0]):
            return True
        self._refuse(f"source address not allowed (allowed: {access.describe()})")
        return False

    def _refuse(self, why: str) -> None:
        """
        Close a connection we will not serve at all, with one log line.
        """
        self._refused = True
        self._setOutcome("refused", why)
        self._config.stats.connectionRefused()
        log.warn(
            "Refused connection from {peer}: {why}",
            dicomEvent="connection-refused",
            peer=self._peer,
            why=why,
        )
        self._forceClose()

    # --- TLS ------------------------------------------------------------------

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake completed (L{IHandshakeListener}): note the
        session (version, cipher, client certificate) for the log.
        """
        from dicomecho.security.tls import tlsSessionInfo

        self._tlsState = "done"
        self._tlsInfo = tlsSessionInfo(self.transport)
        if "dataReceived" in self.__dict__ and not self._admitProxiedSource():
            # TLS behind a PROXY-protocol listener: the header was read
            # before the handshake, so the client is judged now, before any
            # DICOM byte.
            return
        if isEnabled(LogLevel.info):
            log.info(
                "TLS {tlsVersion} from {peer} ({tlsCipher}), client certificate: {subject}",
                dicomEvent="tls-established",
                peer=self._peer,
                subject=self._tlsInfo.get("tlsSubject") or "none",
                **self._tlsInfo,
            )

    def _tlsFailed(self, reason: Failure | None, why: str | None = None) -> None:
        """
        The connection ends before its TLS handshake completed: one error
        line, unless the peer merely connected and closed without a byte
        (a TCP health check).
        """
        from dicomecho.security.tls import describeHandshakeFailure, tlsSessionInfo

        self._tlsState = "failed"
        firstBytes = getattr(self.transport, "firstBytes", b"") or b""
        if why is None:
            from OpenSSL.SSL import Error

            if not firstBytes and (reason is None or not reason.check(Error)):
                log.debug(
                    "Connection from {peer} closed before a TLS handshake",
                    dicomEvent="connection-closed",
                    peer=self._peer,
                    detail="closed before a TLS handshake",
                )
                self._setOutcome("no-association", "closed before a TLS handshake")
                return
            why = describeHandshakeFailure(reason, firstBytes)  # type: ignore[arg-type]
        self._refused = True
        self._setOutcome("refused", why)
        self._config.stats.tlsFailed(why)
        # Who was turned away: the refused client certificate, if any.
        self._tlsInfo = tlsSessionInfo(self.transport)
        log.error(
            "TLS handshake with {peer} failed: {why}",
            dicomEvent="tls-refused",
            peer=self._peer,
            why=why,
            **self._tlsInfo,
        )

    # --- user identity (PS3.7 D.3.3.7) ------------------------------------------

    def _checkIdentity(self, acceptance: Acceptance, identity: UserIdentityRQ) -> None:
        """
        Ask the identity checker about C{identity}; answer the request when
        it has decided (the association waits in Sta3, PS3.8 §9.2).
        """
        config = self._config
        if config.identityChecksInProgress >= config.maxIdentityChecks:
            self._respond(
                localLimitRejection(acceptance.rq, "too many user identity checks in progress")
            )
            return
        config.identityChecksInProgress += 1
        host = self._peerHostPort()[0]
        checked = maybeDeferred(config.identityChecker.checkIdentity, identity, host)  # type: ignore[union-attr]
        checked.addBoth(self._identityChecked, acceptance, identity, host)

    def _identityChecked(
        self,
        result: bytes | Failure,
        acceptance: Acceptance,
        identity: UserIdentityRQ,
        host: str,
    ) -> None:
        config = self._config
        config.identityChecksInProgress -= 1
        if self._machine.state is not State.STA3:
            # The peer aborted or went away meanwhile.
            return None
        throttle = config.identityThrottle
        if isinstance(result, Failure):
            if result.check(IdentityRefused):
                why = str(result.value)
            else:
                log.failure(
                    "User identity check failed; rejecting the association",
                    result,
                    dicomEvent="identity-check-failed",
                    peer=self._peer,
                )
                why = "the user identity could not be checked"
            delay = throttle.failed(host)
            rejection = identityRejection(acceptance, why)
            if delay <= 0:
                self._respond(rejection)
                return None
            log.warn(
                "{failures} failed user identity checks from {host}: answering in {delay} s",
                dicomEvent="identity-throttled",
                peer=self._peer,
                host=host,
                failures=throttle.failures(host),
                delay=delay,
            )
            self._identityCall = self._clock.callLater(delay, self._delayedRejection, rejection)
            return None
        throttle.succeeded(host)
        self._user = usernameText(identity)
        if config.atCapacity:
            self._respond(localLimitRejection(acceptance.rq))
            return None
        if identity.positiveResponseRequested:
            acceptance = withIdentityResponse(acceptance, result)
        self._respond(acceptance)
        return None

    def _delayedRejection(self, rejection: Rejection) -> None:
        self._identityCall = None
        if self._machine.state is State.STA3:
            self._respond(rejection)
