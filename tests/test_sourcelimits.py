"""
Tests for per-source limits (issue 15): L{dicomecho.security.sourcelimits}
(pure: counts, buckets and log intervals with numbers for "now") and
L{dicomecho.server.sourcegate} in a protocol on in-memory transports.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock

from dicomecho.security.sourcelimits import (
    SourceLimit,
    SourceLimitsPolicy,
    SourceTable,
    sourceKey,
)
from dicomecho.server.factory import DICOMServerFactory
from dicomecho.wire.pdu import AssociateAC, AssociateRJ, ReleaseRQ
from tests.support.harness import Harness, rq


@pytest.mark.parametrize(
    "host, key",
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("/run/dicomecho.sock", "/run/dicomecho.sock"),
    ],
)
def test_sourceKey(host: str, key: str) -> None:
    assert sourceKey(host) == key


def test_pendingLimit() -> None:
    table = SourceTable(SourceLimitsPolicy(maxPending=2, connectionRate=0))
    assert table.connectionOpened("a", 0.0) is None
    assert table.connectionOpened("a", 0.0) is None
    assert table.connectionOpened("a", 0.0) is SourceLimit.PENDING
    assert table.connectionOpened("b", 0.0) is None  # another source is not affected
    table.uncount("a", SourceLimit.PENDING)
    assert table.connectionOpened("a", 1.0) is None


def test_associationLimitAndMoves() -> None:
    """
    A pending connection that associates moves to the association count;
    at the limit a further association is refused; one ending frees it.
    """
    table = SourceTable(SourceLimitsPolicy(maxPending=1, maxAssociations=1, connectionRate=0))
    assert table.connectionOpened("a", 0.0) is None
    assert table.associationRefusal("a") is None
    table.associated("a")
    assert table.connectionOpened("a", 0.0) is None  # the pending slot is free again
    assert table.associationRefusal("a") is SourceLimit.ASSOCIATIONS
    table.uncount("a", SourceLimit.ASSOCIATIONS)
    assert table.associationRefusal("a") is None


def test_rateLimitRefills() -> None:
    table = SourceTable(SourceLimitsPolicy(maxPending=0, connectionRate=10, connectionBurst=3))
    assert [table.connectionOpened("a", 0.0) for _ in range(4)] == [None, None, None, SourceLimit.RATE]
    assert table.connectionOpened("a", 0.05) is SourceLimit.RATE  # half a token
    assert table.connectionOpened("a", 0.1) is None
    assert table.connectionOpened("b", 0.1) is None


def test_idleSourcesAreForgotten() -> None:
    """
    A source that holds nothing and whose bucket is full again takes no
    room: the table stays bounded by live connections and recent sources.
    """
    table = SourceTable(SourceLimitsPolicy(connectionRate=100, connectionBurst=10))
    for n in range(1000):
        table.connectionOpened(f"10.0.{n // 256}.{n % 256}", 0.0)
        table.uncount(f"10.0.{n // 256}.{n % 256}", SourceLimit.PENDING)
    table.prune(0.0)
    assert len(table) == 1000  # buckets not yet full
    table.prune(1.0)
    assert len(table) == 0


def test_oneLogLinePerInterval() -> None:
    table = SourceTable(SourceLimitsPolicy(logInterval=10.0))
    assert table.refusalToLog("a", SourceLimit.RATE, 0.0) == 1
    assert [table.refusalToLog("a", SourceLimit.RATE, t) for t in (1.0, 2.0, 9.0)] == [None] * 3
    assert table.refusalToLog("a", SourceLimit.PENDING, 9.0) == 1  # another limit: its own line
    assert table.refusalToLog("a", SourceLimit.RATE, 10.5) == 4  # the three held back, and this one


def harness(factory: DICOMServerFactory, clock: Clock, host: str, port: int = 40000) -> Harness:
    address = IPv6Address("TCP", host, port) if ":" in host else IPv4Address("TCP", host, port)
    return Harness(factory, clock, address)


def test_pendingBeyondTheLimitIsClosed(events: list[dict[str, Any]]) -> None:
    """
    Silent connections from one source beyond its pending limit are closed
    at once, with one log line for the source; another source is served.
    """
    clock = Clock()
    factory = DICOMServerFactory(clock=clock, sourceLimits=SourceLimitsPolicy(maxPending=3))
    silent = [harness(factory, clock, "192.0.2.1", 1000 + n) for n in range(5)]
    assert [h.transport.disconnecting for h in silent] == [False] * 3 + [True] * 2
    other = harness(factory, clock, "192.0.2.2")
    other.send(rq())
    assert isinstance(other.received()[0], AssociateAC)
    limited = [e for e in events if e.get("dicomEvent") == "source-limited"]
    assert len(limited) == 1 and limited[0]["source"] == "192.0.2.1"
    assert limited[0]["limit"] == "pending" and "--max-pending-per-source" in limited[0]["detail"]
    assert factory.stats.sourceRefusals == {"pending": 2}
    for h in silent + [other]:
        h.close()
    clock.advance(10)
    factory.sources.table.prune(clock.seconds())
    assert len(factory.sources.table) == 0


def test_associationsBeyondTheLimitAreRejected() -> None:
    """
    An association beyond the source's limit is rejected (2, 3, 2) with the
    limit named; a release frees the slot; other sources are served.
    """
    clock = Clock()
    factory = DICOMServerFactory(clock=clock, sourceLimits=SourceLimitsPolicy(maxAssociations=2))
    held = [harness(factory, clock, "2001:db8::1", 1000 + n) for n in range(2)]
    for h in held:
        h.send(rq())
        assert isinstance(h.received()[0], AssociateAC)
    # Another address in the same /64 is the same source.
    third = harness(factory, clock, "2001:db8::2")
    third.send(rq())
    (rj,) = third.received()
    assert isinstance(rj, AssociateRJ) and (rj.result, rj.source, rj.reason) == (2, 3, 2)
    assert "--max-associations-per-source" in third.protocol.association.reason
    assert isinstance(_associate(factory, clock, "2001:db9::1"), AssociateAC)
    held[0].send(ReleaseRQ())
    held[0].received()
    assert isinstance(_associate(factory, clock, "2001:db8::3"), AssociateAC)
    assert factory.stats.sourceRefusals == {"associations": 1}


def _associate(factory: DICOMServerFactory, clock: Clock, host: str) -> Any:
    h = harness(factory, clock, host)
    h.send(rq())
    return h.received()[0]


def test_connectionRateBeyondTheBurstIsClosed() -> None:
    clock = Clock()
    policy = SourceLimitsPolicy(maxPending=0, connectionRate=2, connectionBurst=2)
    factory = DICOMServerFactory(clock=clock, sourceLimits=policy)
    first = [harness(factory, clock, "192.0.2.9", 1000 + n) for n in range(3)]
    assert [h.transport.disconnecting for h in first] == [False, False, True]
    clock.advance(0.5)
    assert not harness(factory, clock, "192.0.2.9", 2000).transport.disconnecting
    assert factory.stats.sourceRefusals == {"rate": 1}


def test_countsReturnToZero() -> None:
    """
    Whatever way connections end (release, abort, close before a request),
    the source's counts return to zero and its entry goes.
    """
    clock = Clock()
    factory = DICOMServerFactory(clock=clock, sourceLimits=SourceLimitsPolicy(connectionRate=0))
    released = harness(factory, clock, "192.0.2.5", 1)
    released.send(rq())
    released.send(ReleaseRQ())
    released.close()
    silent = harness(factory, clock, "192.0.2.5", 2)
    silent.close()
    aborted = harness(factory, clock, "192.0.2.5", 3)
    aborted.send(rq())
    aborted.close()
    clock.advance(10)
    factory.sources.table.prune(clock.seconds())
    assert len(factory.sources.table) == 0


class FakeLimits:
    """
    C{resource}'s getrlimit/setrlimit for RLIMIT_NOFILE, in memory.
    """

    def __init__(self, soft: int, hard: int) -> None:
        self.limits = (soft, hard)

    def getrlimit(self, which: int) -> tuple[int, int]:
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        if limits[0] > self.limits[1]:
            raise ValueError("not allowed to raise maximum limit")
        self.limits = limits


@pytest.mark.parametrize(
    "soft, hard, inEffect, warned",
    [
        (1024, 4096, 4096, False),  # raised to the hard limit
        (1024, 1024, 1024, True),  # cannot be raised: 500 + 1024 do not fit
        (65536, 65536, 65536, False),
    ],
)
def test_descriptorLimit(
    monkeypatch: Any, events: list[dict[str, Any]], soft: int, hard: int, inEffect: int, warned: bool
) -> None:
    """
    At start-up the soft descriptor limit is raised to the hard one and
    logged; a limit that cannot hold the associations allowed plus room for
    pending connections is a warning shown at any level but quiet.
    """
    from dicomecho.server import filelimit

    fake = FakeLimits(soft, hard)
    monkeypatch.setattr(filelimit.resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(filelimit.resource, "setrlimit", fake.setrlimit)
    assert filelimit.noteDescriptorLimit(500, 1024) == inEffect
    assert fake.limits == (inEffect, hard)
    lines = [e for e in events if e.get("dicomEvent") == "descriptor-limit"]
    assert lines[0]["soft"] == inEffect
    warnings = [e for e in lines if e.get("dicomAlways")]
    assert bool(warnings) == warned
    if warned:
        assert warnings[0]["needed"] > 500 + 1024


def test_oldestPendingIsShed(events: list[dict[str, Any]]) -> None:
    """
    At the bound on connections not yet associated, the oldest is closed
    to make room for the new one, which is served; one log line counts the
    connections shed, and the metrics count every one.
    """
    clock = Clock()
    factory = DICOMServerFactory(clock=clock, maxPending=3)
    silent = [harness(factory, clock, f"192.0.2.{n}") for n in range(1, 6)]
    assert [h.transport.disconnecting for h in silent] == [True, True, False, False, False]
    assert silent[0].protocol.association.reason.startswith("closed to make room")
    newest = harness(factory, clock, "198.51.100.1")
    assert silent[2].transport.disconnecting
    newest.send(rq())
    assert isinstance(newest.received()[0], AssociateAC)
    # Associated: no longer pending, so never shed.
    for n in range(3):
        harness(factory, clock, f"203.0.113.{n}")
    assert not newest.transport.disconnecting
    assert factory.stats.shedConnections == 5
    shed = [e for e in events if e.get("dicomEvent") == "connections-shed"]
    assert len(shed) == 1 and shed[0]["shed"] == 1 and shed[0]["limit"] == 3
    clock.advance(11)
    harness(factory, clock, "203.0.113.9")
    shed = [e for e in events if e.get("dicomEvent") == "connections-shed"]
    assert [e["shed"] for e in shed] == [1, 5]


def test_requestBytesBucket() -> None:
    table = SourceTable(SourceLimitsPolicy(requestBytesPerSecond=1000, requestBytesBurst=3000))
    table.connectionOpened("a", 0.0)
    assert table.requestRefusal("a", 2000, 0.0) is None
    assert table.requestRefusal("a", 2000, 0.0) is SourceLimit.REQUEST_BYTES
    # The refused 2000 were charged: 1000 - 2000, owed until paid back.
    assert table.connectionOpened("a", 0.5) is SourceLimit.REQUEST_BYTES
    assert table.requestRefusal("a", 2000, 4.0) is None
    assert table.requestRefusal("unknown", 10**9, 1.0) is None  # not a counted source


def test_requestsBeyondTheByteBudgetAreRejectedUndecoded() -> None:
    """
    Once a source has spent its A-ASSOCIATE-RQ bytes, its next request is
    rejected (2, 3, 2) from its fixed part: items that would not even
    decode are not read (else it would be an A-ABORT). Another source is
    served; the budget refills.
    """
    clock = Clock()
    policy = SourceLimitsPolicy(requestBytesPerSecond=1000, requestBytesBurst=1000)
    factory = DICOMServerFactory(clock=clock, sourceLimits=policy)
    first = harness(factory, clock, "192.0.2.20", 1)
    first.send(rq())
    assert isinstance(first.received()[0], AssociateAC)
    # 800 bytes of empty unknown items, then one that declares more bytes
    # than there are: over the 800 left, and invalid if decoded.
    body = rq().encode()[6:] + b"\x60\x00\x00\x00" * 200 + b"\x99\x00\xff\xff"
    garbage = struct.pack(">BBI", 1, 0, len(body)) + body
    second = harness(factory, clock, "192.0.2.20", 2)
    second.send(garbage)
    (rj,) = second.received()
    assert isinstance(rj, AssociateRJ) and (rj.result, rj.source, rj.reason) == (2, 3, 2)
    assert "--request-bytes-per-source" in second.protocol.association.reason
    assert factory.stats.sourceRefusals == {"request-bytes": 1}
    # The refused request was charged: until it is paid back, the source's
    # new connections are closed before they can send.
    assert harness(factory, clock, "192.0.2.20", 4).transport.disconnecting
    other = harness(factory, clock, "192.0.2.21")
    other.send(garbage)
    assert other.received()[0].pduType.value == 0x07  # decoded, and invalid: A-ABORT
    clock.advance(2)
    third = harness(factory, clock, "192.0.2.20", 3)
    third.send(rq())
    assert isinstance(third.received()[0], AssociateAC)


def test_handshakeRate() -> None:
    """
    TLS connections spend the source's handshake bucket too; plain ones
    do not.
    """
    policy = SourceLimitsPolicy(maxPending=0, handshakeRate=10, handshakeBurst=2)
    table = SourceTable(policy)
    assert [table.connectionOpened("a", 0.0, handshake=True) for _ in range(3)] == [
        None, None, SourceLimit.HANDSHAKES,
    ]
    assert table.connectionOpened("a", 0.0) is None
    assert table.connectionOpened("a", 0.1, handshake=True) is None
