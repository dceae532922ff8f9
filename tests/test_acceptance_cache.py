"""
Tests for L{dicomecho.association.fastpaths.AcceptanceCache} and its use by the
protocol: a known request is answered with the same AC bytes, states and
events as the full path gives, and never when the policy changed, the
server is at capacity, or the request was rejected or invalid.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import LogLevel

from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.userinfo import UserInformation
from dicomecho.association.fastpaths import AcceptanceCache
from dicomecho.association.negotiation import AssociationPolicy, negotiate
from dicomecho.wire.pdu import AssociateAC, AssociateRQ, ReleaseRQ, encode
from dicomecho.server.factory import DICOMServerFactory
from tests.support.helpers import fixtureBytes, logLevelSet, splitStream
from tests.support.harness import CT, IMPLICIT, VERIFICATION, Harness, echoCommand, rq
from tests.support.harness import CountingResponder, pdata


def body(pdu: Any) -> bytes:
    return encode(pdu)[6:]


def accepted(request: AssociateRQ, policy: AssociationPolicy) -> Any:
    outcome = negotiate(request, policy)
    return outcome, outcome.ac.encode()


def test_cacheKeysOnBodyAndPolicy() -> None:
    """
    An entry is found by the same body under the same policy object only;
    another policy empties the cache.
    """
    cache = AcceptanceCache()
    policy, other = AssociationPolicy(), AssociationPolicy()
    request = rq()
    entry = accepted(request, policy)
    shared = object()
    cache.remember(body(request), policy, *entry, shared)
    assert cache.get(body(request), policy) == (*entry, shared)
    assert cache.get(body(request) + b"\0", policy) is None
    assert cache.get(body(request), other) is None
    cache.remember(body(rq(maxLength=0)), other, *accepted(rq(maxLength=0), other))
    assert cache.get(body(request), policy) is None
    assert cache.get(body(request), other) is None


def test_cacheIsBounded() -> None:
    """
    At most C{maxEntries} entries, the oldest dropped first; bodies over
    C{maxBodyLength} are not kept; 0 entries disables it.
    """
    policy = AssociationPolicy()
    cache = AcceptanceCache(maxEntries=3, maxBodyLength=400)
    requests = [rq(maxLength=1000 + i) for i in range(5)]
    for request in requests:
        cache.remember(body(request), policy, *accepted(request, policy))
    assert [cache.get(body(r), policy) is not None for r in requests] == [False, False, True, True, True]
    big = rq(*(PresentationContextRQ(i, VERIFICATION, (IMPLICIT,)) for i in range(1, 40, 2)))
    assert len(body(big)) > 400
    cache.remember(body(big), policy, *accepted(big, policy))
    assert cache.get(body(big), policy) is None
    off = AcceptanceCache(maxEntries=0)
    off.remember(body(requests[0]), policy, *accepted(requests[0], policy))
    assert off.get(body(requests[0]), policy) is None


def associate(factory: DICOMServerFactory, clock: Clock, data: bytes) -> Harness:
    harness = Harness(factory, clock)
    harness.send(data)
    return harness


def test_knownRequestGetsTheSameAC() -> None:
    """
    DCMTK's and pynetdicom's captured requests, sent on two connections,
    get the same AC bytes; the second is answered from the cache.
    """
    clock = Clock()
    factory = DICOMServerFactory(clock=clock)
    for session in ("dcmtk_echoscu_default", "pynetdicom_echoscu_default", "pynetdicom_extended"):
        first = splitStream(fixtureBytes(session, "c2s"))[0]
        data = struct.pack(">BxI", 1, len(first.body)) + first.body
        one = associate(factory, clock, data)
        assert factory.acceptances.get(first.body, factory.policy) is not None
        two = associate(factory, clock, data)
        assert one.transport.value() == two.transport.value()
        assert one.transport.value()[0] == 2
        assert factory.activeAssociations == 2
        for harness in (one, two):
            harness.close()
    assert clock.getDelayedCalls() == []


def test_reservedFieldIsEachRequestorsOwn(monkeypatch: Any) -> None:
    """
    PS3.8 Table 9-17: the AC's bytes 43-74 are its request's. Two requests
    that differ only there each get their own bytes back, first from the
    full path, then from the cache (whose key is the whole body), with the
    same AC bytes both ways; never the other's.
    """
    import dicomecho.association.establishment

    negotiated: list[bytes] = []
    real = dicomecho.association.establishment.negotiate

    def spy(request: AssociateRQ, *args: Any, **kw: Any) -> Any:
        negotiated.append(request.reservedField)
        return real(request, *args, **kw)

    monkeypatch.setattr(dicomecho.association.establishment, "negotiate", spy)
    clock = Clock()
    factory = DICOMServerFactory(clock=clock)
    one = dataclasses.replace(rq(), reservedField=b"\x01" * 32)
    two = dataclasses.replace(rq(), reservedField=bytes(range(32)))
    assert body(one)[:36] == body(two)[:36] and body(one)[68:] == body(two)[68:]
    acs: dict[bytes, bytes] = {}
    for request, fullPath in [(one, True), (two, True), (one, False), (two, False)]:
        before = len(negotiated)
        harness = associate(factory, clock, encode(request))
        (ac,) = harness.received()
        assert isinstance(ac, AssociateAC)
        assert ac.reservedField == request.reservedField
        assert negotiated[before:] == ([request.reservedField] if fullPath else [])
        assert acs.setdefault(request.reservedField, encode(ac)) == encode(ac)
        harness.close()
    assert len(acs) == 2
    clock.advance(60)
    assert clock.getDelayedCalls() == []


def test_firstEchoReplayedAcrossAssociations() -> None:
    """
    Associations accepted from the same cached acceptance share their
    replayer: from the third association on, the first echo is answered
    without the responder, with the bytes the full path gives.
    """
    with logLevelSet(LogLevel.error):
        clock = Clock()
        responder = CountingResponder(True)
        factory = DICOMServerFactory(clock=clock, responders=[responder])
        outputs = []
        for messageID in range(1, 6):
            harness = associate(factory, clock, encode(rq()))
            harness.transport.clear()
            harness.send(pdata((1, echoCommand(messageID))), ReleaseRQ())
            outputs.append(harness.transport.value())
            harness.close()
        assert responder.calls == 1
        reference = DICOMServerFactory(clock=clock)
        for messageID, output in zip(range(1, 6), outputs):
            harness = associate(reference, clock, encode(rq()))
            harness.factory.replaysResponses = False
            harness.transport.clear()
            harness.send(pdata((1, echoCommand(messageID))), ReleaseRQ())
            assert harness.transport.value() == output
            harness.close()
        clock.advance(60)


def test_capacityAndPolicyStillApply() -> None:
    """
    A known request is rejected when the server is at its limit, and is
    negotiated again (here: rejected) after the policy changes.
    """
    clock = Clock()
    factory = DICOMServerFactory(clock=clock, maxAssociations=1)
    data = encode(rq())
    first = associate(factory, clock, data)
    second = associate(factory, clock, data)
    assert second.transport.value()[0] == 3  # A-ASSOCIATE-RJ
    second.close()
    first.send(ReleaseRQ())
    first.close()
    factory.policy = dataclasses.replace(factory.policy, allowedCallingAETitles=frozenset({"OTHER"}))
    third = associate(factory, clock, data)
    assert third.transport.value()[0] == 3
    third.close()
    clock.advance(60)
    assert clock.getDelayedCalls() == []


_REQUESTS = [
    rq(),
    rq(maxLength=0),
    rq(PresentationContextRQ(1, CT, (IMPLICIT,)), PresentationContextRQ(3, VERIFICATION, ("1.2.840.10008.1.2.1",))),
    AssociateRQ("WRONG", "SCU", presentationContexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),)),
    AssociateRQ("ECHOSCP", "DENIED", presentationContexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),), userInformation=UserInformation(maximumLength=16384)),
    rq(PresentationContextRQ(2, VERIFICATION, (IMPLICIT,))),  # even ID: A-ABORT
    dataclasses.replace(rq(), protocolVersion=2),  # bit 0 clear: rejected
]


@given(st.lists(st.tuples(st.integers(0, len(_REQUESTS) - 1), st.booleans()), max_size=25))
def test_cacheChangesNothingObservable(steps: list[tuple[int, bool]]) -> None:
    """
    Any sequence of requests on new connections (some left open, so the
    limit of 3 is reached) gives the same bytes, states and counts with
    the cache as without.
    """
    outcomes = []
    for cached in (True, False):
        clock = Clock()
        factory = DICOMServerFactory(
            clock=clock,
            maxAssociations=3,
            requireCalledAETitle=True,
            allowedCallingAETitles=["SCU"],
        )
        if not cached:
            factory.acceptances = AcceptanceCache(maxEntries=0)
        seen = []
        open_ = []
        for index, release in steps:
            harness = associate(factory, clock, encode(_REQUESTS[index]))
            if release:
                harness.send(ReleaseRQ())
            seen.append((harness.transport.value(), harness.protocol.state, factory.activeAssociations))
            open_.append(harness)
        outcomes.append(seen)
        for harness in open_:
            harness.close()
    assert outcomes[0] == outcomes[1]
