# -*- test-case-name: tests.test_metrics -*-
"""
What a server has done, as plain counters: associations accepted,
rejected (by reason), aborted (by source), released; connections refused;
TLS handshakes refused (by kind); association durations.

L{ServerStats} is pure and cheap: the protocol calls it once or twice per
connection, never per message. Every label takes values from a fixed set,
so a peer cannot grow it; AE titles and addresses never become labels.
L{dicomecho.observability.metrics} turns it into Prometheus metrics.
"""

from __future__ import annotations

from bisect import bisect_left

from dicomecho.association.outcome import Outcome
from dicomecho.security.sourcelimits import SourceLimit
from dicomecho.security.tlsfailures import TLSFailureKind
from dicomecho.wire.vocabulary import rejectLabel

__all__ = [
    "DURATION_BUCKETS",
    "ABORT_SOURCES",
    "ServerStats",
]

#: Upper bounds (seconds) of the association duration histogram: a C-ECHO
#: association takes milliseconds, a held one up to the network timeout.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 300.0,
)

#: How an established association was aborted (the label), by connection
#: outcome; any other outcome but release counts as C{local}.
ABORT_SOURCES: dict[Outcome, str] = {
    Outcome.ABORTED: "local",
    Outcome.ABORTED_BY_PEER: "peer",
    Outcome.CONNECTION_LOST: "transport",
}
_LOCAL = ABORT_SOURCES[Outcome.ABORTED]


class ServerStats:
    """
    Counters of one L{DICOMServerFactory}. Fields are read by collectors;
    only the methods change them.
    """

    def __init__(self) -> None:
        self.accepted = 0
        self.released = 0
        self.refusedConnections = 0
        #: Connections not yet associated closed to make room for newer ones.
        self.shedConnections = 0
        #: Messages answered on connections already closed (live ones are
        #: the factory's to add).
        self.messagesOfClosed = 0
        #: By metric label (L{dicomecho.wire.vocabulary.rejectLabel}).
        self.rejected: dict[str, int] = {}
        #: By label of L{ABORT_SOURCES}.
        self.aborted: dict[str, int] = {}
        self.tlsFailures: dict[TLSFailureKind, int] = {}
        #: Refusals by per-source limit (L{SourceLimit} values).
        self.sourceRefusals: dict[str, int] = {}
        #: Histogram: counts per bucket of L{DURATION_BUCKETS}, plus one for
        #: +Inf; their sum and count.
        self.durationCounts = [0] * (len(DURATION_BUCKETS) + 1)
        self.durationSum = 0.0

    def associationAccepted(self) -> None:
        self.accepted += 1

    def associationRejected(self, result: int, source: int, reason: int) -> None:
        label = rejectLabel(result, source, reason)
        self.rejected[label] = self.rejected.get(label, 0) + 1

    def connectionRefused(self) -> None:
        self.refusedConnections += 1

    def connectionShed(self) -> None:
        self.shedConnections += 1

    def sourceRefused(self, limit: SourceLimit) -> None:
        self.sourceRefusals[limit.value] = self.sourceRefusals.get(limit.value, 0) + 1

    def tlsFailed(self, kind: TLSFailureKind) -> None:
        """
        A TLS handshake failed; C{kind} is its
        L{HandshakeFailure.kind <dicomecho.security.tlsfailures.HandshakeFailure>}.
        """
        self.tlsFailures[kind] = self.tlsFailures.get(kind, 0) + 1

    def connectionEnded(self, outcome: Outcome, messages: int, duration: float | None) -> None:
        """
        A connection closed with C{outcome} (the association summary's)
        after C{messages} messages; C{duration} is how long its association
        lasted, C{None} if none was established.
        """
        self.messagesOfClosed += messages
        if duration is None:
            return
        if outcome is Outcome.RELEASED:
            self.released += 1
        else:
            source = ABORT_SOURCES.get(outcome, _LOCAL)
            self.aborted[source] = self.aborted.get(source, 0) + 1
        self.durationCounts[bisect_left(DURATION_BUCKETS, duration)] += 1
        self.durationSum += duration

    @property
    def durationCount(self) -> int:
        return sum(self.durationCounts)
