# -*- test-case-name: tests.test_association -*-
"""
What an association needs of its server, and how it decides about an
A-ASSOCIATE-RQ (PS3.8 §9.3.2): from the acceptance cache, by negotiation,
or after a user identity check (PS3.7 D.3.3.7). Pure: the decision is a
value; L{dicomecho.association.association} carries it out.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Protocol

from dicomecho.association.dimse import DIMSEMessage
from dicomecho.association.fastpaths import AcceptanceCache
from dicomecho.association.negotiation import (
    Acceptance,
    AssociationPolicy,
    InvalidAssociateRequest,
    Rejection,
    identityRejection,
    localLimitRejection,
    negotiate,
)
from dicomecho.wire.pdu import AssociateRQ
from dicomecho.wire.userinfo import UserIdentityRQ

__all__ = [
    "ServiceResponder",
    "AssociationHost",
    "PeerAddress",
    "Decision",
    "readRequest",
    "decideRequest",
    "identityOf",
]


class ServiceResponder(Protocol):
    """
    What the association needs of a responder (the services layer's
    C{IServiceResponder} provides it).
    """

    def handle(self, request: DIMSEMessage, context: Any) -> object: ...


class AssociationHost(Protocol):
    """
    What an association reads from its server (the factory provides it).
    """

    policy: AssociationPolicy
    acceptances: AcceptanceCache
    responders: Mapping[str, ServiceResponder]
    acseTimeout: float
    networkTimeout: float
    dimseTimeout: float
    maxAssociateLength: int
    draining: bool
    #: Whether repeated requests may be answered by replaying (off only to
    #: compare the two paths).
    replaysResponses: bool
    #: Whether a User Identity sub-item is checked, and whether one is required.
    checksIdentity: bool
    requiresIdentity: bool

    def refuseRequest(self, peer: PeerAddress, size: int) -> str | None:
        """
        Why an A-ASSOCIATE-RQ of C{size} bytes from C{peer} is not to be
        decoded now (a per-source limit), or C{None}.
        """

    def refuseAssociation(self, peer: PeerAddress) -> str | None:
        """
        Why a new association from C{peer} would exceed a local limit now
        (the association limit, shutting down, a per-source limit), or
        C{None}: it may be accepted.
        """

    def reportsProgress(self) -> bool:
        """
        Whether each DIMSE message and the release are reported
        (L{MessageReceived}, L{AssociationReleased}); the replay fast path
        is off then.
        """

    def reportsRequests(self) -> bool:
        """
        Whether each A-ASSOCIATE-RQ is reported whole (L{AssociateRequested}).
        """


class PeerAddress(Protocol):
    """
    Where the peer is, read only when an access list needs it.
    """

    def peerHost(self) -> str: ...

    def sourceKey(self) -> str | None:
        """
        The source it counts against for per-source limits, if counted.
        """


def identityOf(rq: AssociateRQ) -> UserIdentityRQ | None:
    """
    The request's User Identity sub-item (PS3.7 D.3.3.7), if any.
    """
    info = rq.userInformation
    return info.userIdentity if info is not None else None


class Decision(NamedTuple):
    """
    How to answer a request: C{outcome}, sent at once; or after checking
    C{identity}; or with the cached AC bytes and replayer C{cached}; or,
    for a request that cannot be negotiated, C{invalid} (an A-ABORT).
    """

    outcome: Acceptance | Rejection | None
    identity: UserIdentityRQ | None = None
    cached: tuple[bytes, object] | None = None
    invalid: InvalidAssociateRequest | None = None


def readRequest(
    body: bytes, host: AssociationHost, peer: PeerAddress
) -> tuple[AssociateRQ, tuple[Acceptance, bytes, object] | Rejection | None]:
    """
    Read an A-ASSOCIATE-RQ body: the request, and what decides it early,
    if anything (for L{decideRequest}): the acceptance cache's entry for
    these bytes, or a rejection (2, 3, 2) when the host will not have it
    decoded now, in which case only its fixed part is read.

    @raise RemoteProtocolError: if the body does not decode.
    """
    refusal = host.refuseRequest(peer, len(body))
    if refusal is not None:
        rq = AssociateRQ.decodeFixedPart(body)
        return rq, localLimitRejection(rq, refusal)
    known = host.acceptances.get(body, host.policy)
    if known is not None:
        # A known request's decoded PDU is the one decoding gives.
        return known[0].rq, known
    return AssociateRQ.decode(body), None


def decideRequest(
    rq: AssociateRQ,
    host: AssociationHost,
    peer: PeerAddress,
    known: tuple[Acceptance, bytes, object] | Rejection | None,
) -> Decision:
    """
    Decide about C{rq}; C{known} is what L{readRequest} found.
    """
    if isinstance(known, Rejection):
        return Decision(known)
    access = host.policy.access
    localLimit = host.refuseAssociation(peer)
    info = rq.userInformation
    # A known request's acceptance holds for any source only without an
    # access list, and never stands in for an identity check.
    if (
        known is not None
        and localLimit is None
        and (access.empty or access.admits(rq.callingAETitle, peer.peerHost()))
        and (info is None or info.userIdentity is None or not host.checksIdentity)
    ):
        acceptance, acBytes, replayer = known
        return Decision(acceptance, cached=(acBytes, replayer))
    try:
        peerHost = None if access.empty else peer.peerHost()
        outcome = negotiate(rq, host.policy, peerHost=peerHost, localLimit=localLimit)
    except InvalidAssociateRequest as error:
        return Decision(None, invalid=error)
    if isinstance(outcome, Acceptance) and host.checksIdentity:
        identity = identityOf(rq)
        if identity is not None:
            return Decision(outcome, identity=identity)
        if host.requiresIdentity:
            outcome = identityRejection(outcome, "no user identity was sent (one is required)")
    return Decision(outcome)
