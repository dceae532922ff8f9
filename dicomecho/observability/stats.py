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

__all__ = [
    "DURATION_BUCKETS",
    "REJECT_REASONS",
    "ABORT_SOURCES",
    "TLS_FAILURE_KINDS",
    "ServerStats",
    "rejectReasonLabel",
    "tlsFailureKind",
]

#: Upper bounds (seconds) of the association duration histogram: a C-ECHO
#: association takes milliseconds, a held one up to the network timeout.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 300.0,
)

#: A-ASSOCIATE-RJ (result, source, reason) to label (PS3.8 Table 9-21).
REJECT_REASONS: dict[tuple[int, int, int], str] = {
    (1, 1, 2): "application-context",
    (1, 1, 3): "calling-ae-title",
    (1, 1, 7): "called-ae-title",
    (1, 2, 1): "user-identity",
    (1, 2, 2): "protocol-version",
    (2, 3, 2): "local-limit",
}

#: How an established association was aborted, by connection outcome.
ABORT_SOURCES: dict[str, str] = {
    "aborted": "local",
    "aborted-by-peer": "peer",
    "connection-lost": "transport",
}

#: TLS handshake failure kinds, by words of the failure's description.
TLS_FAILURE_KINDS: tuple[tuple[str, str], ...] = (
    ("plain DICOM", "plain-dicom"),
    ("HTTP", "http"),
    ("below 1.2", "old-version"),
    ("SSLv2", "old-version"),
    ("no client certificate", "no-client-certificate"),
    ("not trusted", "untrusted-certificate"),
    ("no cipher suite", "no-shared-cipher"),
    ("ACSE timeout", "timeout"),
    ("rejected our certificate", "server-certificate-rejected"),
    ("closed the connection", "closed"),
    ("aborted during", "closed"),
)


def rejectReasonLabel(result: int, source: int, reason: int) -> str:
    """
    The label for an A-ASSOCIATE-RJ, C{other} for an unlisted one.
    """
    return REJECT_REASONS.get((result, source, reason), "other")


def tlsFailureKind(description: str) -> str:
    """
    The kind of a TLS failure from its one-line description, C{other} if
    none matches.
    """
    for words, kind in TLS_FAILURE_KINDS:
        if words in description:
            return kind
    return "other"


class ServerStats:
    """
    Counters of one L{DICOMServerFactory}. Fields are read by collectors;
    only the methods change them.
    """

    def __init__(self) -> None:
        self.accepted = 0
        self.released = 0
        self.refusedConnections = 0
        #: Messages answered on connections already closed (live ones are
        #: the factory's to add).
        self.messagesOfClosed = 0
        self.rejected: dict[str, int] = {}
        self.aborted: dict[str, int] = {}
        self.tlsFailures: dict[str, int] = {}
        #: Histogram: counts per bucket of L{DURATION_BUCKETS}, plus one for
        #: +Inf; their sum and count.
        self.durationCounts = [0] * (len(DURATION_BUCKETS) + 1)
        self.durationSum = 0.0

    def associationAccepted(self) -> None:
        self.accepted += 1

    def associationRejected(self, result: int, source: int, reason: int) -> None:
        label = rejectReasonLabel(result, source, reason)
        self.rejected[label] = self.rejected.get(label, 0) + 1

    def connectionRefused(self) -> None:
        self.refusedConnections += 1

    def tlsFailed(self, description: str) -> None:
        kind = tlsFailureKind(description)
        self.tlsFailures[kind] = self.tlsFailures.get(kind, 0) + 1

    def connectionEnded(self, outcome: str, messages: int, duration: float | None) -> None:
        """
        A connection closed with C{outcome} (the association summary's)
        after C{messages} messages; C{duration} is how long its association
        lasted, C{None} if none was established.
        """
        self.messagesOfClosed += messages
        if duration is None:
            return
        if outcome == "released":
            self.released += 1
        else:
            source = ABORT_SOURCES.get(outcome, "local")
            self.aborted[source] = self.aborted.get(source, 0) + 1
        self.durationCounts[bisect_left(DURATION_BUCKETS, duration)] += 1
        self.durationSum += duration

    @property
    def durationCount(self) -> int:
        return sum(self.durationCounts)
