# -*- test-case-name: tests.test_association -*-
"""
What an L{Association} asks its server to do, and what it reports.

An input to the association (bytes, a timer, an answer) returns a list of
these. The server performs the I{effects} (send bytes, close, check an
identity, wait for a responder) and renders the
I{events} for the operator; each type has one handler there, and a type it
does not know is an error, not a silent no-op.

L{SendPDU} and L{CloseTransport} are the state machine's own effects,
passed through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from dicomecho.association.dimse import DIMSEMessage
from dicomecho.association.fsm import AbortIndication, CloseTransport, SendPDU
from dicomecho.association.negotiation import Acceptance, Rejection
from dicomecho.association.timers import Timer
from dicomecho.wire.errors import RemoteProtocolError
from dicomecho.wire.userinfo import UserIdentityRQ
from dicomecho.wire.pdu import AssociateRQ

__all__ = [
    "CheckIdentity",
    "AwaitResponse",
    "AssociateRequested",
    "AssociationAccepted",
    "AssociationRejected",
    "MessageReceived",
    "AssociationReleased",
    "AssociationAborted",
    "AssociationEnded",
    "RequestNeverCame",
    "InvalidPDU",
    "TimedOut",
    "ResponderFailed",
    "AssociationEffect",
]


@dataclass(slots=True)
class CheckIdentity:
    """
    The request carries a user identity (PS3.7 D.3.3.7) to check before
    answering; the association waits in Sta3 for
    L{Association.answerRequest}.
    """

    acceptance: Acceptance
    identity: UserIdentityRQ


@dataclass(slots=True)
class AwaitResponse:
    """
    A responder answered later (C{pending}, e.g. a Deferred): hand its
    result to L{Association.responseReady} or L{Association.responseFailed}
    with C{slot}.
    """

    slot: list[list[bytes] | None]
    pending: object
    request: DIMSEMessage


# --- events: what happened, for the operator ------------------------------


@dataclass(slots=True)
class AssociateRequested:
    """
    An A-ASSOCIATE-RQ arrived (Evt6).
    """

    rq: AssociateRQ


@dataclass(slots=True)
class AssociationAccepted:
    """
    We sent an A-ASSOCIATE-AC: the association holds a slot until
    L{AssociationEnded}.
    """

    acceptance: Acceptance


@dataclass(slots=True)
class AssociationRejected:
    """
    We sent an A-ASSOCIATE-RJ (PS3.8 §9.3.4).
    """

    rejection: Rejection


@dataclass(slots=True)
class MessageReceived:
    """
    A whole DIMSE request arrived (reported only when asked for).
    """

    message: DIMSEMessage


@dataclass(slots=True)
class AssociationReleased:
    """
    We answered an A-RELEASE-RQ with an A-RELEASE-RP.
    """


@dataclass(slots=True)
class AssociationAborted:
    """
    The association ended abnormally, by the peer or by us.
    """

    indication: AbortIndication


@dataclass(slots=True)
class AssociationEnded:
    """
    An accepted association is over (released or aborted): its slot is
    free. Reported at most once per association.
    """


@dataclass(slots=True)
class RequestNeverCame:
    """
    ARTIM expired before any A-ASSOCIATE-RQ (PS3.8 §9.1.5): the
    connection was closed without a PDU. The server may know why better
    (an incomplete PROXY header, a TLS handshake that never finished).
    """

    detail: str


@dataclass(slots=True)
class InvalidPDU:
    """
    The peer sent bytes PS3.8 does not allow; an A-ABORT follows.
    """

    error: RemoteProtocolError


@dataclass(slots=True)
class TimedOut:
    """
    C{timer} expired (the network or DIMSE timer); an A-ABORT follows.
    """

    timer: Timer


@dataclass(slots=True)
class ResponderFailed:
    """
    A service responder raised C{error}; the association is aborted.
    C{record} is what the server gave with it (e.g. a Twisted Failure
    holding the traceback), passed back untouched.
    """

    error: BaseException
    record: object = None


AssociationEffect = Union[
    SendPDU,
    CloseTransport,
    CheckIdentity,
    AwaitResponse,
    AssociateRequested,
    AssociationAccepted,
    AssociationRejected,
    MessageReceived,
    AssociationReleased,
    AssociationAborted,
    AssociationEnded,
    RequestNeverCame,
    InvalidPDU,
    TimedOut,
    ResponderFailed,
]
