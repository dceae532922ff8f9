"""
Tests for L{dicomecho.server.recording}: what a closed connection leaves in
the history (C{--web}) and in its summary event, through a real protocol
and factory on in-memory transports; the hint is the same in both.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.logger import LogLevel

from dicomecho.association.outcome import Outcome
from dicomecho.observability.history import MAX_KEPT_CONTEXTS, AssociationHistory, Refusal
from dicomecho.security.access import AccessList
from dicomecho.security.sourcelimits import SourceLimit, SourceLimitsPolicy
from dicomecho.server.factory import DICOMServerFactory
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.pdu import AssociateRQ, ReleaseRQ
from tests.support.harness import Harness, echo, rq
from tests.support.helpers import logLevelSet

CLIENT_HELLO = bytes.fromhex("16030100a5010000a10303") + bytes(160)


def recorded(**arguments: Any) -> tuple[DICOMServerFactory, Clock, AssociationHistory]:
    clock = Clock()
    history = AssociationHistory(10)
    return DICOMServerFactory(clock=clock, history=history, **arguments), clock, history


def connect(factory: DICOMServerFactory, clock: Clock, host: str = "192.0.2.5", port: int = 1) -> Harness:
    return Harness(factory, clock, IPv4Address("TCP", host, port))


def summaries(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("dicomEvent") == "association-summary"]


def test_releasedAssociation(events: list[dict[str, Any]]) -> None:
    factory, clock, history = recorded()
    harness = connect(factory, clock)
    request = rq()
    harness.send(request, echo(1), echo(2), ReleaseRQ())
    harness.close()
    (record,) = history.newestFirst()
    assert (record.outcome, record.messages, record.hint) == (Outcome.RELEASED, 2, None)
    assert record.peer == "192.0.2.5:1" and record.callingAETitle == "SCU"
    assert record.request == request and record.answer is not None
    assert summaries(events)[0]["hint"] is None


def test_rejectionHintInBothPlaces(events: list[dict[str, Any]]) -> None:
    factory, clock, history = recorded(requireCalledAETitle=True)
    harness = connect(factory, clock)
    harness.send(AssociateRQ("PACS1", "CT1", presentationContexts=rq().presentationContexts))
    harness.close()
    (record,) = history.newestFirst()
    assert record.outcome is Outcome.REJECTED and record.rejection == (1, 1, 7)
    assert record.hint is not None and "PACS1" in record.hint
    assert summaries(events)[0]["hint"] == record.hint


def test_silentConnectionsAreNotKept() -> None:
    """A port scan or TCP health check (connect, close) leaves no record."""
    factory, clock, history = recorded()
    connect(factory, clock).close()
    assert len(history) == 0


def test_artimOnASilentConnection() -> None:
    factory, clock, history = recorded()
    harness = connect(factory, clock)
    clock.advance(factory.acseTimeout + 1)
    harness.close()
    (record,) = history.newestFirst()
    assert record.outcome is Outcome.NO_ASSOCIATION and record.timer == "ARTIM"
    assert record.hint


def test_tlsOnThePlainPort() -> None:
    factory, clock, history = recorded()
    harness = connect(factory, clock)
    harness.send(CLIENT_HELLO)
    harness.close()
    (record,) = history.newestFirst()
    assert record.foreign == "a TLS handshake"
    assert record.hint is not None and "TLS" in record.hint


def test_accessListRefusal() -> None:
    factory, clock, history = recorded(access=AccessList.build(["198.51.100.0/24"], []))
    connect(factory, clock).close()
    (record,) = history.newestFirst()
    assert record.outcome is Outcome.REFUSED and record.refusal is Refusal.ACCESS_LIST
    assert record.hint


def test_sourceLimitRefusalsAreOneRecordPerInterval() -> None:
    """
    Refusals by a per-source limit are recorded as they are logged: one
    record per source and limit per interval, with the number refused.
    """
    factory, clock, history = recorded(sourceLimits=SourceLimitsPolicy(maxPending=1, connectionRate=0))
    connect(factory, clock, port=1)
    for port in range(2, 12):
        connect(factory, clock, port=port).close()
    records = list(history.newestFirst())
    assert len(records) == 1
    assert (records[0].refusal, records[0].sourceLimit, records[0].connections) == (
        Refusal.SOURCE_LIMIT, SourceLimit.PENDING, 1,
    )
    assert records[0].hint and "--max-pending-per-source" in records[0].hint
    clock.advance(11)
    connect(factory, clock, port=20).close()
    assert [r.connections for r in history.newestFirst()][0] == 10


def test_largeRequestKeepsTextAndItsHint() -> None:
    """
    A request with many contexts keeps its -d text, not its objects; its
    hint is made before, from the whole answer.
    """
    factory, clock, history = recorded()
    contexts = tuple(
        PresentationContextRQ(2 * n + 1, "1.2.840.10008.5.1.4.1.1.2", ("1.2.840.10008.1.2",))
        for n in range(MAX_KEPT_CONTEXTS + 1)
    )
    harness = connect(factory, clock)
    harness.send(rq(*contexts))
    harness.close()
    (record,) = history.newestFirst()
    assert record.request is None and record.answer is None
    assert any("Context ID" in line for line in record.detailLines)
    assert record.hint is not None  # no context was accepted


def test_nothingBuiltByDefault(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --web, at the default level, a connection's end records nothing."""
    from dicomecho.server import protocol

    monkeypatch.setattr(protocol, "reportConnection", lambda *a: pytest.fail("recorded"))
    clock = Clock()
    factory = DICOMServerFactory(clock=clock)
    with logLevelSet(LogLevel.warn):
        harness = connect(factory, clock)
        harness.send(rq(), echo(1), ReleaseRQ())
        harness.close()
    assert harness.protocol.association.outcome is Outcome.RELEASED


def test_aFloodOfSilentConnectionsIsOneRow() -> None:
    """
    Silent connections from one source that ARTIM closes are one row with
    their number; an SCU's association from elsewhere keeps its own.
    """
    factory, clock, history = recorded()
    silent = [connect(factory, clock, port=n) for n in range(20)]
    clock.advance(factory.acseTimeout + 1)
    for harness in silent:
        harness.close()
    scu = connect(factory, clock, host="192.0.2.9")
    scu.send(rq(), ReleaseRQ())
    scu.close()
    rows = [(r.peer.split(":")[0], r.outcome, r.connections) for r in history.newestFirst()]
    assert rows == [("192.0.2.9", Outcome.RELEASED, 1), ("192.0.2.5", Outcome.NO_ASSOCIATION, 20)]
