# -*- test-case-name: tests.test_sourcelimits -*-
"""
The server's per-source limits (L{dicomecho.security.sourcelimits}) in
action: each connection is counted against its source when its address is
known (after the PROXY header, behind a balancer), closed at once when the
source is at its pending or rate limit, and an association beyond the
source's association limit is rejected (2, 3, 2). Each refusal is counted
in the metrics; the log gets one line per source and limit per interval.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IReactorTime

from dicomecho.association.outcome import Outcome
from dicomecho.observability.events import emitSourceLimited
from dicomecho.observability.history import AssociationRecord, Refusal
from dicomecho.observability.stats import ServerStats
from dicomecho.security.sourcelimits import (
    LIMIT_OPTIONS,
    SourceLimit,
    SourceLimitsPolicy,
    SourceTable,
    sourceKey,
)

__all__ = ["SourceGate"]

#: Prune the table of idle sources every this many connections.
_PRUNE_EVERY = 4096


class SourceGate:
    """
    One server's per-source counts, and what it does at a limit.
    """

    def __init__(self, policy: SourceLimitsPolicy, stats: ServerStats, clock: IReactorTime) -> None:
        self.table = SourceTable(policy)
        self._stats = stats
        self._clock = clock
        self._opened = 0
        #: Records each refusal as it is logged, for the live page (--web).
        self.recordRefusal: Callable[[AssociationRecord], None] | None = None

    @property
    def policy(self) -> SourceLimitsPolicy:
        return self.table.policy

    def admit(self, host: str, handshake: bool = False) -> tuple[str, SourceLimit | None]:
        """
        A connection from C{host}: its source, and the limit that refuses
        it (then it is not counted, and the caller closes it) or C{None}
        (it is counted as pending).
        """
        # IPv4 addresses are their own key: no parsing (per connection).
        key = sourceKey(host) if ":" in host else host
        now = self._clock.seconds()
        self._opened += 1
        if self._opened % _PRUNE_EVERY == 0:
            self.table.prune(now)
        limit = self.table.connectionOpened(key, now, handshake)
        if limit is not None:
            self.refused(key, limit, now)
        return key, limit

    def refuseAssociation(self, key: str) -> str | None:
        """
        Why C{key} may not hold one more association (counted and logged),
        or C{None}.
        """
        limit = self.table.associationRefusal(key)
        if limit is None:
            return None
        self.refused(key, limit, self._clock.seconds())
        return (
            f"source {key} holds {self.policy.maxAssociations} associations, "
            f"its limit ({LIMIT_OPTIONS[limit]})"
        )

    def refuseRequest(self, key: str, size: int) -> str | None:
        """
        Why C{key}'s A-ASSOCIATE-RQ of C{size} bytes may not be decoded now
        (counted and logged), or C{None}.
        """
        now = self._clock.seconds()
        limit = self.table.requestRefusal(key, size, now)
        if limit is None:
            return None
        self.refused(key, limit, now)
        return f"source {key} is at its limit of request bytes per second ({LIMIT_OPTIONS[limit]})"

    def refused(self, key: str, limit: SourceLimit, now: float) -> None:
        """
        Count a refusal of C{key} by C{limit}; log it unless one was logged
        for them within the interval.
        """
        self._stats.sourceRefused(limit)
        refusals = self.table.refusalToLog(key, limit, now)
        if refusals is not None:
            why = self._describe(limit)
            emitSourceLimited(key, limit.value, refusals, why)
            if self.recordRefusal is not None:
                self.recordRefusal(
                    AssociationRecord(
                        startedAt=now, peer=key, outcome=Outcome.REFUSED,
                        reason=f"{refusals} refused, {why}", refusal=Refusal.SOURCE_LIMIT,
                        sourceLimit=limit, connections=refusals,
                    )
                )

    def _describe(self, limit: SourceLimit) -> str:
        policy = self.policy
        if limit is SourceLimit.PENDING:
            what = f"{policy.maxPending} connections not yet associated"
        elif limit is SourceLimit.ASSOCIATIONS:
            what = f"{policy.maxAssociations} associations"
        elif limit is SourceLimit.HANDSHAKES:
            what = f"{policy.handshakeRate:g} TLS handshakes per second"
        elif limit is SourceLimit.REQUEST_BYTES:
            what = f"{policy.requestBytesPerSecond:g} A-ASSOCIATE-RQ bytes per second"
        else:
            what = f"{policy.connectionRate:g} new connections per second"
        return f"at its limit of {what}, {LIMIT_OPTIONS[limit]}"
