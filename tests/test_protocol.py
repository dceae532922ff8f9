"""
Tests for L{dicomecho.server.protocol}: whole associations driven through
C{StringTransport} with a C{Clock}, replaying bytes captured from DCMTK and
pynetdicom, plus timers, limits and every abort path. No sockets, no sleeps,
no global reactor; every test ends with no DelayedCall left behind.
"""

from __future__ import annotations

import struct
from typing import Any, Iterator

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test import iosim

from dicomecho.association.commandset import CommandField, decodeCommandSet, encodeCommandSet, tag
from dicomecho.association.transitions import State
from dicomecho.wire.framer import PDUFramer
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.pdu import (
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    PresentationDataValue,
    ReleaseRP,
    ReleaseRQ,
    decodePDU,
    encode,
)
from dicomecho.server.factory import DICOMServerFactory
from dicomecho.association.dimse import DIMSEResponse
from dicomecho.services.verification import VerificationResponder
from tests.support.harness import (
    CT,
    IMPLICIT,
    VERIFICATION,
    Harness,
    TCPStringTransport,
    echo,
    echoCommand,
    responses,
    rq,
)
from tests.support.helpers import fixtureBytes, splitStream

@pytest.fixture
def make(clock: Clock) -> Iterator[Any]:
    harnesses: list[Harness] = []

    def build(**options: Any) -> Harness:
        factory = options.pop("factory", None) or DICOMServerFactory(clock=clock, **options)
        harness = Harness(factory, clock)
        harnesses.append(harness)
        return harness

    yield build
    for harness in harnesses:
        if harness.protocol.state is not State.STA1 or harness.transport.connected:
            harness.close()


def test_dcmtkSessionReplay(make: Any) -> None:
    """
    Replaying DCMTK echoscu's captured requests one PDU at a time gives an
    AC, a C-ECHO-RSP byte-identical to the one pynetdicom's echoscp sent in
    the same capture, and an A-RELEASE-RP; then the acceptor waits in Sta13
    for the peer to close, bounded by ARTIM (PS3.8 §9.1.5).
    """
    h = make()
    assert h.transport.noDelay
    requests = splitStream(fixtureBytes("dcmtk_echoscu_default", "c2s"))
    theirs = splitStream(fixtureBytes("dcmtk_echoscu_default", "s2c"))
    h.send(b"".join(struct.pack(">BBI", f.pduType, 0, len(f.body)) + f.body for f in requests[:1]))
    (ac,) = h.received()
    assert isinstance(ac, AssociateAC)
    assert (ac.calledAETitle, ac.callingAETitle) == ("ECHOSCP", "MYSCU")
    assert h.factory.activeAssociations == 1
    h.send(struct.pack(">BBI", 4, 0, len(requests[1].body)) + requests[1].body)
    assert h.transport.value() == struct.pack(">BBI", 4, 0, len(theirs[1].body)) + theirs[1].body
    h.transport.clear()
    h.send(ReleaseRQ())
    assert h.received() == [ReleaseRP()]
    assert h.protocol.state is State.STA13
    assert h.factory.activeAssociations == 0
    assert not h.transport.disconnecting
    h.clock.advance(29.9)
    assert not h.transport.disconnecting
    h.clock.advance(0.2)
    assert h.transport.disconnecting
    h.close()


@pytest.mark.parametrize(
    "session", ["dcmtk_echoscu_default", "dcmtk_echoscu_maxpdu", "pynetdicom_echoscu_default", "pynetdicom_extended", "dcmtk_echoscu_propose_pc", "dcmtk_echoscu_propose_ts"]
)
def test_capturedSessionsInOneRead(make: Any, session: str) -> None:
    """
    A whole captured session delivered in a single read (RQ, echoes and
    A-RELEASE-RQ pipelined) is answered in order: AC, one C-ECHO-RSP per
    request with its message ID, then A-RELEASE-RP.
    """
    h = make()
    requests = [decodePDU(*f) for f in splitStream(fixtureBytes(session, "c2s"))]
    h.send(fixtureBytes(session, "c2s"))
    out = h.received()
    assert isinstance(out[0], AssociateAC)
    assert out[-1] == ReleaseRP()
    ids = [decodeCommandSet(p.pdvs[0].data)[tag("MessageID")] for p in requests if isinstance(p, PDataTF)]
    rsps = responses(out)
    assert [r[tag("MessageIDBeingRespondedTo")] for r in rsps] == ids
    assert all(r[tag("Status")] == 0 and r[tag("CommandField")] == 0x8030 for r in rsps)
    h.close()


def test_pipelinedBurstBeforeRelease(make: Any) -> None:
    """
    Hundreds of C-ECHO-RQ and an A-RELEASE-RQ sent without reading are all
    answered, in order, before the A-RELEASE-RP (pynetdicom drops some).
    """
    h = make()
    h.send(b"".join([encode(rq())] + [encode(echo(i)) for i in range(1, 301)] + [encode(ReleaseRQ())]))
    out = h.received()
    rsps = responses(out)
    assert [r[tag("MessageIDBeingRespondedTo")] for r in rsps] == list(range(1, 301))
    assert out[-1] == ReleaseRP()
    h.close()


def test_severalMessagesInOnePDU(make: Any) -> None:
    """
    Two complete C-ECHO-RQ PDVs in one P-DATA-TF are both answered
    (pynetdicom answers only the first).
    """
    h = make()
    h.send(rq())
    h.received()
    pdvs = tuple(PresentationDataValue(1, True, True, echoCommand(i)) for i in (7, 8))
    h.send(PDataTF(pdvs))
    assert [r[tag("MessageIDBeingRespondedTo")] for r in responses(h.received())] == [7, 8]
    h.close()


def test_commandSplitAcrossPDUs(make: Any) -> None:
    """
    A command set sent as 2-byte fragments in separate PDUs is reassembled
    and answered once.
    """
    h = make()
    h.send(rq())
    h.received()
    command = echoCommand(5)
    for i in range(0, len(command), 2):
        last = i + 2 >= len(command)
        h.send(PDataTF((PresentationDataValue(1, True, last, command[i : i + 2]),)))
    assert [r[tag("MessageIDBeingRespondedTo")] for r in responses(h.received())] == [5]
    h.close()


@pytest.mark.parametrize("peerMax", [8, 20, 21, 64, 0])
def test_responseFragmentedToPeerMaximum(make: Any, peerMax: int) -> None:
    """
    The response is split to the peer's Maximum Length: no PDU variable
    field above it, even-length fragments, one PDV per PDU; 0 means one PDU.
    """
    h = make()
    h.send(rq(maxLength=peerMax))
    h.received()
    h.send(echo(1))
    out = h.received()
    data = b""
    for pdu in out:
        (pdv,) = pdu.pdvs
        assert len(pdv.data) % 2 == 0
        if peerMax:
            assert len(encode(pdu)) - 6 <= peerMax
        data += pdv.data
    assert out[-1].pdvs[0].isLastFragment
    assert decodeCommandSet(data)[tag("Status")] == 0
    if peerMax == 0:
        assert len(out) == 1
    h.close()


def test_artimWithoutRequest(make: Any) -> None:
    """
    A connection that sends nothing, or half an A-ASSOCIATE-RQ, is closed
    by ARTIM after the ACSE timeout, with no PDU sent (AA-2).
    """
    h1 = make(acseTimeout=5)
    h2 = make(acseTimeout=5)
    h2.send(encode(rq())[:30])
    h1.clock.advance(4.9)
    assert not h1.transport.disconnecting and not h2.transport.disconnecting
    h1.clock.advance(0.2)
    assert h1.transport.disconnecting and h2.transport.disconnecting
    assert h1.transport.value() == b"" and h2.transport.value() == b""
    h1.close()
    h2.close()


def test_networkTimeout(make: Any) -> None:
    """
    An association with no bytes received for the network timeout is
    aborted (A-ABORT 0, 0) and closed; any received bytes, even half a PDU,
    keep it alive.
    """
    h = make(networkTimeout=10)
    h.send(rq())
    h.received()
    h.clock.advance(8)
    h.send(encode(echo(1))[:5])
    h.clock.advance(8)
    assert not h.transport.disconnecting
    h.clock.advance(2.5)
    assert h.received() == [Abort(0, 0)]
    assert h.transport.disconnecting
    assert h.factory.activeAssociations == 0
    h.close()


def test_dimseTimeout(make: Any) -> None:
    """
    A command whose last fragment never arrives is aborted after the DIMSE
    timeout even while other bytes keep the network timer happy.
    """
    h = make(dimseTimeout=5, networkTimeout=60)
    h.send(rq())
    h.received()
    h.send(PDataTF((PresentationDataValue(1, True, False, echoCommand(1)[:10]),)))
    h.clock.advance(5.1)
    assert h.received() == [Abort(0, 0)]
    assert h.transport.disconnecting
    h.close()


def test_associationLimit(make: Any, clock: Clock) -> None:
    """
    Beyond the limit a request is rejected (transient, presentation
    provider, local-limit-exceeded); a slot comes back as soon as an
    association ends, and connections that never associated do not count.
    """
    factory = DICOMServerFactory(clock=clock, maxAssociations=1)
    idle = make(factory=factory)
    first = make(factory=factory)
    first.send(rq())
    assert isinstance(first.received()[0], AssociateAC)
    second = make(factory=factory)
    second.send(rq())
    assert second.received() == [AssociateRJ(2, 3, 2)]
    assert second.protocol.state is State.STA13
    first.close()
    assert factory.activeAssociations == 0
    third = make(factory=factory)
    third.send(rq())
    assert isinstance(third.received()[0], AssociateAC)
    assert idle.transport.value() == b""
    for h in (idle, second, third):
        h.close()


@pytest.mark.parametrize(
    "data, abort",
    [
        (bytes.fromhex("160301020001") + bytes(20), Abort(2, 1)),
        (b"GET / HTTP/1.1\r\n\r\n", Abort(2, 1)),
        (encode(echo(1)), Abort(2, 2)),
        (encode(ReleaseRQ()), Abort(2, 2)),
        (encode(AssociateAC("A", "B")), Abort(2, 2)),
        (bytes.fromhex("0500000000050000000000"), Abort(2, 6)),
        (struct.pack(">BBI", 1, 0, 0xFFFFFFFF), Abort(2, 6)),
        (struct.pack(">BBI", 1, 0, 10) + bytes(10), Abort(2, 6)),
    ],
)
def test_badFirstPDU(make: Any, data: bytes, abort: Abort) -> None:
    """
    A first PDU that is not a valid A-ASSOCIATE-RQ gets an A-ABORT naming
    the fault (AA-1), then ARTIM bounds the wait for the peer to close.
    """
    h = make()
    h.send(data)
    assert h.received() == [abort]
    assert h.protocol.state is State.STA13
    h.clock.advance(30)
    assert h.transport.disconnecting
    h.close()


@pytest.mark.parametrize(
    "request_, abort",
    [
        (rq(PresentationContextRQ(2, VERIFICATION, (IMPLICIT,))), Abort(2, 6)),
        (rq(PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)), PresentationContextRQ(1, CT, (IMPLICIT,))), Abort(2, 6)),
        (rq(maxLength=4), Abort(2, 6)),
    ],
)
def test_invalidRequestsAborted(make: Any, request_: AssociateRQ, abort: Abort) -> None:
    """
    Requests PS3.8 makes invalid (even or duplicate context IDs, a maximum
    length too small to carry a PDV) are answered with A-ABORT
    (service-provider, invalid-PDU-parameter-value), not a crash or a hang.
    """
    h = make()
    h.send(request_)
    assert h.received() == [abort]
    assert h.factory.activeAssociations == 0
    h.close()


def test_rejectedProtocolVersion(make: Any) -> None:
    """
    A request without bit 0 of the protocol version is rejected (1, 2, 2).
    """
    h = make()
    h.send(rq(protocolVersion=2))
    assert h.received() == [AssociateRJ(1, 2, 2)]
    h.close()


def test_unexpectedPDUsWhileAssociated(make: Any) -> None:
    """
    A second A-ASSOCIATE-RQ, an A-RELEASE-RP or garbage in Sta6 is answered
    with A-ABORT (2, reason) by AA-8 and frees the association slot.
    """
    for bad, abort in [
        (encode(rq()), Abort(2, 2)),
        (encode(ReleaseRP()), Abort(2, 2)),
        (b"\x09\x00\x00\x00\x00\x00", Abort(2, 1)),
    ]:
        h = make()
        h.send(rq())
        h.received()
        h.send(bad)
        assert h.received() == [abort]
        assert h.factory.activeAssociations == 0
        h.close()


def test_otherServiceOnVerificationContext(make: Any) -> None:
    """
    A C-STORE-RQ on the Verification context gets a C-STORE-RSP with status
    0x0211 (unrecognized operation); the association stays up and the next
    echo succeeds. Dispatch is by context, not by the UID in the message.
    """
    h = make()
    h.send(rq())
    h.received()
    store = encodeCommandSet(
        {
            tag("AffectedSOPClassUID"): VERIFICATION,
            tag("CommandField"): CommandField.C_STORE_RQ,
            tag("MessageID"): 3,
            tag("Priority"): 0,
            tag("CommandDataSetType"): 0x0101,
            tag("AffectedSOPInstanceUID"): "1.2.3.4",
        }
    )
    h.send(PDataTF((PresentationDataValue(1, True, True, store),)))
    (rsp,) = responses(h.received())
    assert rsp[tag("CommandField")] == 0x8001
    assert rsp[tag("Status")] == 0x0211
    h.send(echo(4))
    assert responses(h.received())[0][tag("Status")] == 0
    h.close()


def test_messageOnRejectedContext(make: Any) -> None:
    """
    A message on a context that was not accepted is aborted with A-ABORT
    (2, 6); so is a command set that cannot be decoded.
    """
    h = make()
    h.send(rq(PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)), PresentationContextRQ(3, CT, (IMPLICIT,))))
    h.received()
    h.send(echo(1, contextID=3))
    assert h.received() == [Abort(2, 6)]
    h.close()
    h = make()
    h.send(rq())
    h.received()
    h.send(PDataTF((PresentationDataValue(1, True, True, b"\x01\x02\x03\x04"),)))
    (abort,) = h.received()
    assert isinstance(abort, Abort)
    h.close()


def test_peerAbortAndConnectionLoss(make: Any) -> None:
    """
    A peer A-ABORT or a dropped connection ends the association and frees
    its slot; nothing is sent back.
    """
    h = make()
    h.send(rq())
    h.received()
    h.send(Abort(0, 0))
    assert h.transport.disconnecting and h.transport.value() == b""
    assert h.factory.activeAssociations == 0
    h.close()
    h = make()
    h.send(rq())
    h.received()
    h.close()
    assert h.protocol.state is State.STA1
    assert h.factory.activeAssociations == 0


class SlowResponder(VerificationResponder):
    """
    Answers C-ECHO with MessageID 1 through a Deferred fired later.
    """

    def __init__(self) -> None:
        self.waiting: list[Deferred[DIMSEResponse]] = []

    def handle(self, request: Any, context: Any) -> Any:
        response = super().handle(request, context)
        if request.messageID == 1:
            d: Deferred[DIMSEResponse] = Deferred()
            self.waiting.append(d)
            d.addCallback(lambda _: response)
            return d
        return response


def test_asynchronousResponderKeepsOrder(make: Any, clock: Clock) -> None:
    """
    A responder may answer through a Deferred: later responses wait for it,
    so responses leave in request order, and the A-RELEASE-RP waits for all.
    """
    responder = SlowResponder()
    h = make(factory=DICOMServerFactory(clock=clock, responders=[responder]))
    h.send(rq())
    h.received()
    h.send(echo(1), echo(2), ReleaseRQ())
    assert h.received() == []
    responder.waiting[0].callback(None)
    out = h.received()
    assert [r[tag("MessageIDBeingRespondedTo")] for r in responses(out)] == [1, 2]
    assert out[-1] == ReleaseRP()
    h.close()


def test_logEvents(make: Any) -> None:
    """
    A normal session emits, once each, the structured events the echoscp
    -v lines are rendered from: accepting, one received echo with its
    message ID, released; each names the peer.
    """
    from twisted.logger import capturedLogs, formatEvent

    h = make()
    with capturedLogs() as events:
        h.send(fixtureBytes("dcmtk_echoscu_default", "c2s"))
    infos = [e for e in events if e.get("dicomEvent") and e["log_level"].name == "info"]
    assert [formatEvent(e) for e in infos] == [
        "Accepting Association",
        "Received Echo Request (MsgID 1)",
        "Association Released",
    ]
    assert all(e["peer"] == "127.0.0.1:40000" for e in infos)
    h.close()


def test_logRejectAndAbort(make: Any) -> None:
    """
    A rejection and a peer abort each emit their event with the reason.
    """
    from twisted.logger import capturedLogs

    h = make(requireCalledAETitle=True, aeTitle="OTHER")
    with capturedLogs() as events:
        h.send(rq())
    (rejected,) = [e for e in events if e.get("dicomEvent") == "association-rejected"]
    assert rejected["rj"] == AssociateRJ(1, 1, 7)
    assert (rejected["result"], rejected["source"], rejected["diagnostic"]) == (1, 1, 7)
    assert "ECHOSCP" in rejected["reason"]
    h.close()
    h = make()
    h.send(rq())
    with capturedLogs() as events:
        h.send(Abort(0, 0))
    (aborted,) = [e for e in events if e.get("dicomEvent") == "association-aborted"]
    assert (aborted["source"], aborted["reason"]) == (0, 0)
    h.close()


def test_localAbortLoggedOnce(make: Any) -> None:
    """
    A local abort (here the network timeout) emits the timeout error and
    exactly one association-aborting event naming the cause and the
    A-ABORT sent.
    """
    from twisted.logger import capturedLogs

    h = make(networkTimeout=3)
    h.send(rq())
    with capturedLogs() as events:
        h.clock.advance(3)
    kinds = [e["dicomEvent"] for e in events if "dicomEvent" in e]
    assert kinds == ["timeout", "association-aborting"]
    aborting = events[-1]
    assert (aborting["source"], aborting["reason"], aborting["detail"]) == (0, 0, "Network timeout")
    h.close()


class ScriptedSCU(Protocol):
    """
    A minimal association-requestor for iosim: sends a request, echoes and
    a release, collects every PDU, and closes on A-RELEASE-RP as PS3.8
    §9.1.4 asks of the requestor.
    """

    def __init__(self, messages: int) -> None:
        self.messages = messages
        self.framer = PDUFramer(maxPDataLength=0)
        self.pdus: list[Any] = []

    def connectionMade(self) -> None:
        self.transport.write(encode(rq()))  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.framer.receiveData(data)
        while (frame := self.framer.nextFrame()) is not None:
            pdu = decodePDU(*frame)
            self.pdus.append(pdu)
            if isinstance(pdu, AssociateAC):
                for i in range(1, self.messages + 1):
                    self.transport.write(encode(echo(i)))  # type: ignore[union-attr]
                self.transport.write(encode(ReleaseRQ()))  # type: ignore[union-attr]
            elif isinstance(pdu, ReleaseRP):
                self.transport.loseConnection()  # type: ignore[union-attr]


def test_iosimAssociation(clock: Clock) -> None:
    """
    Over an iosim connection pair the acceptor serves a whole association,
    reaches Sta1 when the requestor closes after the RP, frees its slot and
    leaves no timer behind.
    """
    factory = DICOMServerFactory(clock=clock)
    client, server, pump = iosim.connectedServerAndClient(
        lambda: factory.buildProtocol(None), lambda: ScriptedSCU(5), clock=clock
    )
    pump.flush()
    assert isinstance(client.pdus[0], AssociateAC)
    assert [r[tag("MessageIDBeingRespondedTo")] for r in responses(client.pdus)] == [1, 2, 3, 4, 5]
    assert client.pdus[-1] == ReleaseRP()
    assert server.state is State.STA1
    assert factory.activeAssociations == 0


def summaries(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("dicomEvent") == "association-summary"]


def test_summaryEvent(make: Any) -> None:
    """
    Each connection yields exactly one association-summary event with the
    peer, AE titles, accepted contexts, outcome, reason, duration and
    message count.
    """
    from twisted.logger import capturedLogs

    h = make()
    with capturedLogs() as events:
        h.send(fixtureBytes("dcmtk_echoscu_default", "c2s"))
        h.clock.advance(1.5)
        h.close()
    (summary,) = summaries(events)
    assert summary["peerHost"] == "127.0.0.1" and summary["peerPort"] == 40000
    assert (summary["callingAETitle"], summary["calledAETitle"]) == ("MYSCU", "ECHOSCP")
    assert summary["contexts"] == ["1:1.2.840.10008.1.1/1.2.840.10008.1.2"]
    assert (summary["outcome"], summary["messages"]) == ("released", 1)
    assert summary["durationSeconds"] == 1.5


@pytest.mark.parametrize(
    "drive, outcome",
    [
        (lambda h: h.clock.advance(30), "no-association"),
        (lambda h: h.send(rq(protocolVersion=2)), "rejected"),
        (lambda h: (h.send(rq()), h.send(Abort(0, 0))), "aborted-by-peer"),
        (lambda h: h.send(rq()), "connection-lost"),
        (lambda h: (h.send(rq()), h.clock.advance(30)), "aborted"),
        (lambda h: h.send(b"GET / HTTP/1.1\r\n"), "aborted"),
    ],
)
def test_summaryOutcomes(make: Any, drive: Any, outcome: str) -> None:
    """
    The summary's outcome names how the connection ended: no association
    (ARTIM), rejected, aborted by the peer, connection lost, aborted by us.
    """
    from twisted.logger import capturedLogs

    h = make()
    with capturedLogs() as events:
        drive(h)
        h.close()
    (summary,) = summaries(events)
    assert summary["outcome"] == outcome
    assert summary["reason"]


def test_artimExpiryLoggedAtDebug(make: Any) -> None:
    """
    A connection closed by ARTIM before any request logs connection-closed
    at debug level only, so -v output stays as echoscp's (silent).
    """
    from twisted.logger import LogLevel, capturedLogs

    from dicomecho.observability.levels import logLevel, setLogLevel

    h = make(acseTimeout=2)
    previous = logLevel()
    setLogLevel(LogLevel.debug)
    try:
        with capturedLogs() as events:
            h.clock.advance(2)
    finally:
        setLogLevel(previous)
    (closed,) = [e for e in events if e.get("dicomEvent") == "connection-closed"]
    assert closed["log_level"].name == "debug"
    h.close()


def test_rejectionClosesAfterFlush(make: Any) -> None:
    """
    After an A-ASSOCIATE-RJ the connection is closed as soon as the RJ is
    written; ARTIM (Sta13) stops when the close completes.
    """
    h = make(maxAssociations=1)
    other = make(factory=h.factory)
    h.send(rq())
    other.send(rq())
    assert other.received() == [AssociateRJ(2, 3, 2)]
    assert other.transport.disconnecting
    other.close()
    assert other.protocol.state is State.STA1
    h.close()


def test_backpressurePausesReading(make: Any) -> None:
    """
    When the transport's send buffer is full it pauses the protocol, which
    stops reading from the peer and leaves further requests unhandled in the
    framer; resuming handles them, in order.
    """
    h = make()
    assert h.transport.producer is h.protocol and h.transport.streaming
    h.send(rq())
    h.received()
    h.protocol.pauseProducing()
    assert h.transport.producerState == "paused"
    h.send(b"".join(encode(echo(i)) for i in range(1, 101)))
    assert h.received() == []
    h.protocol.resumeProducing()
    assert h.transport.producerState == "producing"
    out = responses(h.received())
    assert [r[tag("MessageIDBeingRespondedTo")] for r in out] == list(range(1, 101))
    h.close()


class PausingTransport(TCPStringTransport):
    """
    Pauses its producer once more than C{limit} bytes are waiting, as a TCP
    transport does when its send buffer fills.
    """

    limit = 1000

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) > self.limit and self.producer is not None:
            self.producer.pauseProducing()


def test_peerThatNeverReads(clock: Clock) -> None:
    """
    A peer that pipelines thousands of requests and reads nothing gets only
    as many responses as fit the send buffer; the rest stay unread in the
    framer (bounded by what was received) until the peer reads.
    """
    factory = DICOMServerFactory(clock=clock)
    protocol = factory.buildProtocol(None)
    transport = PausingTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(encode(rq()))
    burst = b"".join(encode(echo(i)) for i in range(1, 2001))
    protocol.dataReceived(burst)
    assert transport.producerState == "paused"
    written = splitStream(transport.value(), maxPDataLength=0)
    assert len(written) < 20
    transport.clear()
    handled = len(written) - 1
    while transport.producerState == "paused":
        protocol.resumeProducing()
        handled += len(splitStream(transport.value(), maxPDataLength=0))
        transport.clear()
    assert handled == 2000
    protocol.connectionLost()


def test_drainLetsAssociationsFinish(make: Any, clock: Clock) -> None:
    """
    drain() closes connections without an association at once, lets an
    established one finish within the grace period, and fires when the last
    connection has closed; new requests meanwhile are rejected.
    """
    factory = DICOMServerFactory(clock=clock)
    idle = make(factory=factory)
    busy = make(factory=factory)
    busy.send(rq())
    busy.received()
    drained = factory.drain(5)
    assert idle.transport.disconnecting and not busy.transport.disconnecting
    idle.close()
    assert not drained.called
    busy.send(echo(1), ReleaseRQ())
    out = busy.received()
    assert out[-1] == ReleaseRP()
    assert busy.transport.disconnecting
    busy.close()
    assert drained.called
    late = make(factory=factory)
    assert late.transport.disconnecting
    late.close()


def test_drainAbortsAfterGrace(make: Any, clock: Clock) -> None:
    """
    An association still open when the grace period ends gets A-ABORT (0, 0)
    and is closed; drain() fires within grace + 1 s even if the peer never
    lets the close complete.
    """
    factory = DICOMServerFactory(clock=clock)
    h = make(factory=factory)
    h.send(rq())
    h.received()
    drained = factory.drain(3)
    clock.advance(2.9)
    assert h.received() == []
    clock.advance(0.2)
    assert h.received() == [Abort(0, 0)]
    assert h.transport.disconnecting
    clock.advance(0.8)
    assert drained.called
    h.close()


def test_closeThatCannotFlushIsForced(make: Any) -> None:
    """
    When a close started by a timer cannot complete (a peer that does not
    read), the connection is dropped one second later; no timer is left.
    """
    h = make(networkTimeout=2)
    h.send(rq())
    h.received()
    h.clock.advance(2)
    assert h.received() == [Abort(0, 0)]
    assert h.transport.disconnecting and not h.transport.disconnected
    h.clock.advance(1)
    assert h.transport.disconnected
    h.close()


def test_failedFramerAnswersOnce(make: Any) -> None:
    """
    After a header is refused, whatever else the peer sends is discarded
    without another A-ABORT or log event (one answer per connection).
    """
    from twisted.logger import capturedLogs

    h = make()
    with capturedLogs() as events:
        h.send(struct.pack(">BBI", 1, 0, 0xFFFFFFFF))
        for _ in range(20):
            h.send(b"junk" * 16384)
    assert h.received() == [Abort(2, 6)]
    assert [e["dicomEvent"] for e in events if "dicomEvent" in e] == [
        "invalid-pdu",
        "association-aborting",
    ]
    h.close()


def test_invalidRequestReasonLogged(make: Any) -> None:
    """
    An invalid request's abort and summary name the fault, not just
    "local abort".
    """
    from twisted.logger import capturedLogs

    h = make()
    with capturedLogs() as events:
        h.send(rq(PresentationContextRQ(2, VERIFICATION, (IMPLICIT,))))
        h.close()
    (aborting,) = [e for e in events if e.get("dicomEvent") == "association-aborting"]
    (summary,) = summaries(events)
    assert "2" in aborting["detail"] and aborting["detail"] != "local abort"
    assert summary["reason"] == aborting["detail"]


def test_networkTimerFloatRemainder() -> None:
    """
    Regression (found by fuzzing): when rounding leaves a remainder of the
    network timeout too small to move the clock, the timer times out
    instead of re-arming itself at the same instant forever.
    """

    class BoundedClock(Clock):
        armed = 0

        def callLater(self, delay: float, f: Any, *a: Any, **kw: Any) -> Any:
            self.armed += 1
            assert self.armed < 1000, "a timer keeps re-arming itself"
            return super().callLater(delay, f, *a, **kw)

    clock = BoundedClock()
    clock.advance(3.2)
    h = Harness(DICOMServerFactory(clock=clock, networkTimeout=5), clock)
    h.send(rq())
    h.received()
    clock.advance(5.0)
    assert h.received() == [Abort(0, 0)]
    h.close()
    assert clock.getDelayedCalls() == []


def test_drainWithConnectionStillInSta2(make: Any, clock: Clock) -> None:
    """
    Regression (found by fuzzing): a connection still awaiting its request
    when the grace period ends is closed, not sent a local A-ABORT (Evt15
    has no cell in Sta2), and nothing raises.
    """
    factory = DICOMServerFactory(clock=clock)
    h = make(factory=factory)
    drained = factory.drain(0)
    assert h.transport.disconnecting
    clock.advance(0)
    clock.advance(1)
    assert drained.called
    assert h.transport.value() == b""
    h.close()


def test_unknownEffectIsAnError(make: Any) -> None:
    """
    Every effect kind has a handler; one without is an error, never a
    silent no-op.
    """
    h = make()
    with pytest.raises(TypeError, match="no handler"):
        h.protocol._perform([object()])
