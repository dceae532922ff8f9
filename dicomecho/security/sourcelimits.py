# -*- test-case-name: tests.test_sourcelimits -*-
"""
Per-source limits, so that one source cannot lock every other SCU out: how
many connections it may hold before association (pending), how many
associations, and how many new connections per second. Pure policy: the
time is passed in, nothing here touches a socket or a clock.

A source is the client's address (the PROXY header's client where there is
one); an IPv6 client by its /64 by default, since one host may hold a
whole /64 (RFC 4291 §2.5.1 interface identifiers).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv6Network, ip_address

__all__ = [
    "LIMIT_OPTIONS",
    "SourceLimit",
    "SourceLimitsPolicy",
    "SourceTable",
    "sourceKey",
]


class SourceLimit(Enum):
    """
    Which per-source limit refused a connection or an association; the
    value is the word metrics and the JSON log carry.
    """

    PENDING = "pending"
    ASSOCIATIONS = "associations"
    RATE = "rate"
    REQUEST_BYTES = "request-bytes"
    HANDSHAKES = "handshakes"


#: The option that sets each limit: for the log, the rejection reason and
#: the hints (one table).
LIMIT_OPTIONS: dict[SourceLimit, str] = {
    SourceLimit.PENDING: "--max-pending-per-source",
    SourceLimit.ASSOCIATIONS: "--max-associations-per-source",
    SourceLimit.RATE: "--connection-rate-per-source",
    SourceLimit.REQUEST_BYTES: "--request-bytes-per-source",
    SourceLimit.HANDSHAKES: "--tls-handshakes-per-source",
}


def sourceKey(host: str, ipv6PrefixLength: int = 64) -> str:
    """
    The source C{host} counts against: an IPv4 address as it is, an IPv6
    address by its C{/ipv6PrefixLength} network, anything else (a UNIX
    socket's name) as it is.
    """
    if ":" not in host:
        return host
    try:
        address = ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:  # type: ignore[union-attr]
        return str(address.ipv4_mapped)  # type: ignore[union-attr]
    return str(IPv6Network((address, ipv6PrefixLength), strict=False))


# Read as a module constant: on Python 3.11 reading a member from its Enum
# class runs EnumType's attribute hook.
_ASSOCIATIONS = SourceLimit.ASSOCIATIONS


@dataclass(frozen=True)
class SourceLimitsPolicy:
    """
    The limits, each per source; 0 turns one off.

    @ivar maxPending: connections not yet associated (a TLS handshake
        counts; so does a connection that has sent nothing).
    @ivar maxAssociations: associations at once.
    @ivar connectionRate: new connections per second, on average.
    @ivar connectionBurst: new connections at once above that rate.
    @ivar requestBytesPerSecond: A-ASSOCIATE-RQ bytes per second a source
        may have decoded, on average (decoding is the work a peer can
        cause before it is accepted); C{requestBytesBurst} at once.
    @ivar handshakeRate: TLS handshakes a source may start per second, on
        average (each costs the server a key exchange and a signature as
        soon as the ClientHello arrives); C{handshakeBurst} at once.
    @ivar logInterval: seconds between two log lines for one source and
        one limit; the refusals between are counted in the next line.
    """

    maxPending: int = 64
    maxAssociations: int = 100
    connectionRate: float = 5000.0
    connectionBurst: int = 10000
    requestBytesPerSecond: float = 1024.0 * 1024
    requestBytesBurst: int = 4 * 1024 * 1024
    handshakeRate: float = 50.0
    handshakeBurst: int = 100
    logInterval: float = 10.0


def _refilled(level: float, since: float, now: float, rate: float, burst: int) -> float:
    """
    A token bucket's level at C{now}: C{level} at C{since}, plus C{rate}
    per second, at most C{burst}.
    """
    level += (now - since) * rate
    return level if level < burst else float(burst)


def _take(level: float, since: float, now: float, rate: float, burst: int) -> tuple[float, bool]:
    """
    Take one token from a bucket (see L{_refilled}): its new level, and
    whether there was one.
    """
    level = _refilled(level, since, now, rate, burst)
    return (level - 1.0, True) if level >= 1.0 else (level, False)


class _Source:
    """
    One source's counts and token buckets, full at first.
    """

    __slots__ = (
        "pending", "associations", "tokens", "stamp", "bytes", "bytesStamp", "shakes",
        "shakesStamp", "logged", "unlogged",
    )

    def __init__(self, policy: SourceLimitsPolicy, now: float) -> None:
        self.pending = 0
        self.associations = 0
        self.tokens = float(policy.connectionBurst)
        self.stamp = now
        self.bytes = float(policy.requestBytesBurst)
        self.bytesStamp = now
        self.shakes = float(policy.handshakeBurst)
        self.shakesStamp = now
        #: When each limit was last logged, and the refusals not yet logged
        #: (made at the first refusal: most sources never have one).
        self.logged: dict[SourceLimit, float] | None = None
        self.unlogged: dict[SourceLimit, int] | None = None


class SourceTable:
    """
    The live counts of every source with a connection, and the rate state
    of recent ones. L{prune} drops the sources that hold no connection and
    whose bucket is full again; called every few thousand connections, it
    bounds the table by the connections open plus the sources seen since.
    """

    def __init__(self, policy: SourceLimitsPolicy | None = None) -> None:
        self.policy = policy or SourceLimitsPolicy()
        self._sources: dict[str, _Source] = {}

    def __len__(self) -> int:
        return len(self._sources)

    def _entry(self, key: str, now: float) -> _Source:
        source = self._sources.get(key)
        if source is None:
            source = self._sources[key] = _Source(self.policy, now)
        return source

    def connectionOpened(
        self, key: str, now: float, handshake: bool = False
    ) -> SourceLimit | None:
        """
        A connection from C{key} arrived: the limit it breaks (it is then
        not counted, and must be closed), or C{None} (it is counted as
        pending). A source that owes request bytes is refused here, and
        with C{handshake} (a TLS connection) one beyond its handshake rate.
        """
        policy = self.policy
        source = self._entry(key, now)
        if policy.connectionRate:
            rate, burst = policy.connectionRate, policy.connectionBurst
            source.tokens, taken = _take(source.tokens, source.stamp, now, rate, burst)
            source.stamp = now
            if not taken:
                return SourceLimit.RATE
        if handshake and policy.handshakeRate:
            rate, burst = policy.handshakeRate, policy.handshakeBurst
            source.shakes, taken = _take(source.shakes, source.shakesStamp, now, rate, burst)
            source.shakesStamp = now
            if not taken:
                return SourceLimit.HANDSHAKES
        if source.bytes < 0 and policy.requestBytesPerSecond:
            owed = source.bytes + (now - source.bytesStamp) * policy.requestBytesPerSecond
            if owed < 0:
                return SourceLimit.REQUEST_BYTES
        if policy.maxPending and source.pending >= policy.maxPending:
            return SourceLimit.PENDING
        source.pending += 1
        return None

    def associationRefusal(self, key: str) -> SourceLimit | None:
        """
        Whether C{key} may hold one more association.
        """
        limit = self.policy.maxAssociations
        source = self._sources.get(key)
        if limit and source is not None and source.associations >= limit:
            return SourceLimit.ASSOCIATIONS
        return None

    def requestRefusal(self, key: str, size: int, now: float) -> SourceLimit | None:
        """
        Whether C{key} may have an A-ASSOCIATE-RQ of C{size} bytes decoded
        now (the bytes are then spent), or the limit that refuses it.
        """
        policy = self.policy
        rate = policy.requestBytesPerSecond
        source = self._sources.get(key)
        if not rate or source is None:
            return None
        available = _refilled(source.bytes, source.bytesStamp, now, rate, policy.requestBytesBurst)
        source.bytesStamp = now
        if available < size:
            # The refused request is charged too, down to a debt of one
            # burst: until it is paid back the source's new connections are
            # closed at once (L{connectionOpened}), before they can send.
            source.bytes = max(available - size, -float(policy.requestBytesBurst))
            return SourceLimit.REQUEST_BYTES
        source.bytes = available - size
        return None

    def associated(self, key: str) -> None:
        """
        A pending connection of C{key} holds an association now.
        """
        source = self._sources.get(key)
        if source is not None:
            source.pending -= 1
            source.associations += 1

    def uncount(self, key: str, count: SourceLimit) -> None:
        """
        A connection of C{key} no longer counts in C{count}
        (L{SourceLimit.PENDING} or L{SourceLimit.ASSOCIATIONS}): it closed,
        or its association ended. (The entry stays for L{prune}: a source
        that comes back finds its bucket.)
        """
        source = self._sources.get(key)
        if source is not None:
            if count is _ASSOCIATIONS:
                source.associations -= 1
            else:
                source.pending -= 1

    def refusalToLog(self, key: str, limit: SourceLimit, now: float) -> int | None:
        """
        A refusal of C{key} by C{limit}: the number of refusals to report
        in a log line now (this one and those not reported before), or
        C{None} if one was logged for this source and limit less than
        C{logInterval} ago.
        """
        source = self._entry(key, now)
        if source.logged is None or source.unlogged is None:
            source.logged, source.unlogged = {}, {}
        last = source.logged.get(limit)
        waiting = source.unlogged.get(limit, 0) + 1
        if last is not None and now - last < self.policy.logInterval:
            source.unlogged[limit] = waiting
            return None
        source.logged[limit] = now
        source.unlogged[limit] = 0
        return waiting

    def _forgetIfIdle(self, key: str, source: _Source, now: float) -> None:
        if source.pending or source.associations:
            return
        # Refusals held back for the next log line are kept for one interval
        # (the metrics count them all).
        if source.logged and now - max(source.logged.values()) < self.policy.logInterval:
            return
        # A bucket not yet full again still holds what the source spent.
        policy = self.policy
        buckets = (
            (source.tokens, source.stamp, policy.connectionRate, policy.connectionBurst),
            (source.bytes, source.bytesStamp, policy.requestBytesPerSecond, policy.requestBytesBurst),
            (source.shakes, source.shakesStamp, policy.handshakeRate, policy.handshakeBurst),
        )
        for level, since, rate, burst in buckets:
            if rate and _refilled(level, since, now, rate, burst) < burst:
                return
        del self._sources[key]

    def prune(self, now: float) -> None:
        """
        Forget the sources that hold nothing and whose bucket is full again
        (called now and then, so that sources seen once do not stay).
        """
        for key, source in list(self._sources.items()):
            self._forgetIfIdle(key, source, now)
