# -*- test-case-name: tests.test_protocol -*-
"""
How a connection ended, as its C{association-summary} event, the stats and
the metrics name it.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["NOTHING_SENT", "Outcome", "abnormalOutcome"]

#: The reason of a connection closed before any A-ASSOCIATE-RQ (a port
#: scan, a TCP health check), until something else is known.
NOTHING_SENT = "connection closed before an A-ASSOCIATE-RQ"


class Outcome(Enum):
    """
    A connection's outcome; the value is the word logs and JSON carry.
    """

    #: Closed (or timed out) before an A-ASSOCIATE-RQ.
    NO_ASSOCIATION = "no-association"
    #: Turned away before DICOM: source address, TLS handshake.
    REFUSED = "refused"
    #: Accepted and not yet ended.
    ESTABLISHED = "established"
    #: Answered with an A-ASSOCIATE-RJ (PS3.8 §9.3.4).
    REJECTED = "rejected"
    #: A-RELEASE completed (PS3.8 §7.2).
    RELEASED = "released"
    #: We sent an A-ABORT (PS3.8 §7.3).
    ABORTED = "aborted"
    #: The peer sent an A-ABORT.
    ABORTED_BY_PEER = "aborted-by-peer"
    #: The transport closed without A-RELEASE or A-ABORT (PS3.8 §7.4).
    CONNECTION_LOST = "connection-lost"

    __hash__ = object.__hash__


def abnormalOutcome(byPeer: bool, abortReason: int | None) -> Outcome:
    """
    How a connection that ended without A-RELEASE ended: C{byPeer} when the
    peer aborted or closed; C{abortReason} is C{None} when no A-ABORT was
    sent (a closed transport, PS3.8 §7.4; or, ours, ARTIM before any
    request, which sends none).
    """
    if not byPeer:
        return Outcome.ABORTED if abortReason is not None else Outcome.NO_ASSOCIATION
    return Outcome.ABORTED_BY_PEER if abortReason is not None else Outcome.CONNECTION_LOST
