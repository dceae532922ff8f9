# -*- test-case-name: tests.test_sourcelimits -*-
"""
A bound on connections not yet associated, over all sources: when it is
reached, the oldest such connection is closed to make room, rather than the
new one refused (a flood of silent connections then costs its own oldest
first, and a real SCU that connects now gets in). Sheds are counted in the
metrics and logged at most once per interval, with the number shed.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IReactorTime

from dicomecho.association.outcome import Outcome
from dicomecho.observability.events import emitConnectionsShed
from dicomecho.observability.stats import ServerStats

__all__ = ["DEFAULT_MAX_PENDING", "PendingConnections", "Sheddable"]

#: Connections not yet associated, over all sources, by default.
DEFAULT_MAX_PENDING = 1024

#: Seconds between two log lines about shed connections.
_LOG_INTERVAL = 10.0


class Sheddable(Protocol):
    """
    What shedding asks of a connection.
    """

    def noteOutcome(self, outcome: Outcome, reason: str) -> None: ...

    def forceClose(self) -> None: ...


class PendingConnections:
    """
    The connections not yet associated, oldest first.

    @ivar limit: how many may be held; 0 for no limit.
    """

    def __init__(self, limit: int, stats: ServerStats, clock: IReactorTime) -> None:
        self.limit = limit
        self._connections: dict[Sheddable, None] = {}
        self._stats = stats
        self._clock = clock
        self._loggedAt: float | None = None
        self._unlogged = 0

    def __len__(self) -> int:
        return len(self._connections)

    def add(self, connection: Sheddable) -> None:
        """
        C{connection} is pending now; if the limit is reached, the oldest
        pending one is closed first.
        """
        connections = self._connections
        if self.limit and len(connections) >= self.limit:
            oldest = next(iter(connections))
            del connections[oldest]
            self._shed(oldest)
        connections[connection] = None

    def discard(self, connection: Sheddable) -> None:
        """
        C{connection} is associated, or closed: no longer pending.
        """
        self._connections.pop(connection, None)

    def _shed(self, connection: Sheddable) -> None:
        connection.noteOutcome(
            Outcome.NO_ASSOCIATION,
            f"closed to make room: the server holds {self.limit} connections not yet "
            f"associated (--max-pending)",
        )
        connection.forceClose()
        self._stats.connectionShed()
        self._unlogged += 1
        now = self._clock.seconds()
        if self._loggedAt is None or now - self._loggedAt >= _LOG_INTERVAL:
            emitConnectionsShed(self._unlogged, self.limit)
            self._loggedAt, self._unlogged = now, 0
