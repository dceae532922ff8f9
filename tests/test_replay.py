"""
Tests for L{dicomecho.association.fastpaths} and its use by the protocol: a replayed
response is byte for byte the one the full path gives, for captured DCMTK
and pynetdicom requests and every MessageID, and the protocol replays only
where the full path would do nothing else.
"""

from __future__ import annotations

import struct
from typing import Any, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel

from dicomecho.association.commandset import CommandField, decodeCommandSet, encodeCommandSet, tag
from dicomecho.association.dimse import DIMSEMessage, fragment
from dicomecho.association.transitions import State
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.association.negotiation import AcceptedContext
from dicomecho.wire.pdu import PDataTF, PresentationDataValue, ReleaseRQ, encode
from dicomecho.server.factory import DICOMServerFactory
from dicomecho.association.fastpaths import ResponseReplayer, ResponseTemplate
from dicomecho.association.dimse import DIMSEResponse
from dicomecho.services.verification import VerificationResponder
from tests.support.harness import CountingResponder, pdata
from tests.support.helpers import fixtureBytes, logLevelSet, splitStream
from tests.support.harness import CT, IMPLICIT, VERIFICATION, Harness, echoCommand, rq

MESSAGE_ID = tag("MessageID")
RESPONDED = tag("MessageIDBeingRespondedTo")
EXPLICIT = "1.2.840.10008.1.2.1"


def capturedEchoBodies() -> list[tuple[str, bytes]]:
    """
    The P-DATA-TF body of the first C-ECHO-RQ of each captured session.
    """
    bodies = []
    for session in ("dcmtk_echoscu_default", "dcmtk_echoscu_maxpdu", "pynetdicom_echoscu_default", "pynetdicom_extended"):
        frames = splitStream(fixtureBytes(session, "c2s"))
        bodies.append((session, next(f.body for f in frames if f.pduType == 4)))
    return bodies


def fullPathResponse(body: bytes, abstractSyntax: str = VERIFICATION) -> bytes:
    """
    What the layers answer to a P-DATA-TF body of one whole-command PDV:
    decode, VerificationResponder, encode, fragment (unlimited peer maximum).
    """
    (length,) = struct.unpack_from(">I", body)
    contextID, command = body[4], decodeCommandSet(body[6 : 4 + length])

    context = AcceptedContext(contextID, abstractSyntax, IMPLICIT)
    response = VerificationResponder().handle(DIMSEMessage(contextID, command, None), context)
    assert response is not None
    (pdu,) = fragment(contextID, encodeCommandSet(response.command), None, 0)
    return pdu


def withMessageID(body: bytes, messageID: int) -> bytes:
    """
    C{body} with its MessageID value replaced (found by decoding, not by
    the template's own search).
    """
    command = decodeCommandSet(body[6:])
    command[MESSAGE_ID] = messageID
    encoded = encodeCommandSet(command)
    assert len(encoded) == len(body) - 6
    return body[:6] + encoded


@pytest.mark.parametrize("session,body", capturedEchoBodies(), ids=[s for s, _ in capturedEchoBodies()])
def test_templateMatchesFullPathForEveryMessageID(session: str, body: bytes) -> None:
    """
    For a captured C-ECHO-RQ, the template learned from it answers the same
    request with each of the 65,536 MessageIDs exactly as the full path does.
    """
    template = ResponseTemplate.learn(body, fullPathResponse(body))
    assert template is not None
    for messageID in range(0, 0x10000, 1):
        request = withMessageID(body, messageID)
        if messageID % 4096 == 0:
            # The full path is slow: compare it on a sample, and the
            # template's output with a decode of it on every ID.
            assert template.respond(request) == fullPathResponse(request)
        response = template.respond(request)
        assert response is not None
        assert response[:12] == fullPathResponse(body)[:12]
        assert decodeCommandSet(response[12:])[RESPONDED] == messageID


def test_templateRefusesOtherRequests() -> None:
    """
    A request differing anywhere but the MessageID value is not answered.
    """
    body = capturedEchoBodies()[0][1]
    template = ResponseTemplate.learn(body, fullPathResponse(body))
    assert template is not None
    offset = body.index(struct.pack("<HHI", 0, 0x0110, 2)) + 8
    for position in range(len(body)):
        if position in (offset, offset + 1):
            continue
        changed = bytearray(body)
        changed[position] ^= 0x01
        assert template.respond(bytes(changed)) is None, position
    assert template.respond(body + b"\0\0") is None
    assert template.respond(body[:-2]) is None


def test_learnRefusesOtherShapes() -> None:
    """
    No template unless the request is one whole-command PDV with a 2-byte
    MessageID and the response one whole-command PDV copying it.
    """
    body = capturedEchoBodies()[0][1]
    response = fullPathResponse(body)
    pdv = PresentationDataValue(1, True, True, body[6:])
    twoPDVs = encode(PDataTF((pdv, pdv)))[6:]
    notLast = encode(PDataTF((PresentationDataValue(1, True, False, body[6:]),)))[6:]
    dataSet = encode(PDataTF((PresentationDataValue(1, False, True, body[6:]),)))[6:]
    wrongID = fullPathResponse(withMessageID(body, 999))
    noID = encode(PDataTF((PresentationDataValue(1, True, True, encodeCommandSet({tag("CommandField"): 0x30, tag("CommandDataSetType"): 0x0101})),)))[6:]
    assert ResponseTemplate.learn(body, response) is not None
    assert ResponseTemplate.learn(twoPDVs, response) is None
    assert ResponseTemplate.learn(notLast, response) is None
    assert ResponseTemplate.learn(dataSet, response) is None
    assert ResponseTemplate.learn(noID, response) is None
    assert ResponseTemplate.learn(body, wrongID) is None
    assert ResponseTemplate.learn(body, response[:-2]) is None
    assert ResponseTemplate.learn(body, b"\x05" + response[1:]) is None
    assert ResponseTemplate.learn(body, encode(PDataTF((PresentationDataValue(1, True, True, response[12:]),) * 2))) is None
    assert ResponseTemplate.learn(b"", response) is None


def test_replayerLearnsOnTheSecondRequest() -> None:
    """
    The replayer answers nothing until a recorded request is followed by
    one of the same length; a request of another shape leaves the learned
    template in place.
    """
    body = capturedEchoBodies()[0][1]
    replayer = ResponseReplayer()
    assert replayer.respond(body) is None
    replayer.record(body, fullPathResponse(body))
    other = withMessageID(body, 4242)
    assert replayer.respond(other) == fullPathResponse(other)
    assert replayer.respond(body + b"\0\0") is None
    assert replayer.respond(body) == fullPathResponse(body)
    unlearnable = ResponseReplayer()
    unlearnable.record(withMessageID(body, 998), fullPathResponse(withMessageID(body, 999)))
    assert unlearnable.respond(other) is None


# --- the protocol -------------------------------------------------------------------


@pytest.fixture
def quiet() -> Iterator[None]:
    """
    The command line's default level (errors only), at which the protocol
    replays.
    """
    with logLevelSet(LogLevel.error):
        yield


def associated(clock: Clock, replay: bool, **options: Any) -> Harness:
    factory = DICOMServerFactory(clock=clock, **options)
    harness = Harness(factory, clock)
    if not replay:
        harness.factory.replaysResponses = False
    harness.send(
        rq(
            PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),
            PresentationContextRQ(3, VERIFICATION, (EXPLICIT,)),
            PresentationContextRQ(5, CT, (IMPLICIT,)),
            maxLength=0,
        )
    )
    harness.transport.clear()
    return harness


def test_repeatableResponderIsCalledOnce(quiet: None) -> None:
    """
    A thousand echoes on a context reach a repeatable responder twice (the
    second request teaches the template), and are all answered in order;
    a responder that is not repeatable sees every one.
    """
    for repeatable, calls in ((True, 1), (False, 1000)):
        clock = Clock()
        responder = CountingResponder(repeatable)
        h = associated(clock, True, responders=[responder])
        h.send(b"".join(pdata((1, echoCommand(i))) for i in range(1, 1001)))
        rsps = [decodeCommandSet(f.body[6:]) for f in splitStream(h.transport.value())]
        assert [r[RESPONDED] for r in rsps] == list(range(1, 1001))
        assert responder.calls == calls
        assert h.protocol.messages == 1000
        h.send(ReleaseRQ())
        h.close()
        assert clock.getDelayedCalls() == []


def test_noReplayWhenInfoIsLogged() -> None:
    """
    At info level each echo is a C{dimse-received} event: nothing replayed.
    """
    with logLevelSet(LogLevel.info):
        clock = Clock()
        responder = CountingResponder(True)
        h = associated(clock, True, responders=[responder])
        h.send(b"".join(pdata((1, echoCommand(i))) for i in range(1, 11)))
        assert responder.calls == 10
        h.close()


# The requests a property run mixes: echoes on three contexts with several
# SOP classes, a C-STORE-RQ (answered with a refusal), a command split in
# two PDVs or two PDUs, two messages in one PDU, a C-CANCEL-RQ (no answer),
# and a P-DATA-TF on an unaccepted context (an A-ABORT).
def _variant(kind: str, messageID: int) -> bytes:
    command = echoCommand(messageID)
    if kind == "echo":
        return pdata((1, command))
    if kind == "echo3":
        return pdata((3, command))
    if kind == "wrongClass":
        return pdata((1, echoCommand(messageID, sopClass=CT)))
    if kind == "ctEcho":
        return pdata((5, command))
    if kind == "store":
        return pdata((1, echoCommand(messageID, field=CommandField.C_STORE_RQ)))
    if kind == "cancel":
        return pdata((1, echoCommand(messageID, field=CommandField.C_CANCEL_RQ)))
    if kind == "twoPDVs":
        return encode(PDataTF((PresentationDataValue(1, True, False, command[:10]), PresentationDataValue(1, True, True, command[10:]))))
    if kind == "twoPDUs":
        return encode(PDataTF((PresentationDataValue(1, True, False, command[:10]),))) + encode(PDataTF((PresentationDataValue(1, True, True, command[10:]),)))
    if kind == "twoMessages":
        return pdata((1, command), (3, echoCommand(messageID + 1)))
    if kind == "unaccepted":
        return pdata((7, command))
    if kind == "release":
        return encode(ReleaseRQ())
    raise AssertionError(kind)


_KINDS = ["echo"] * 6 + ["echo3", "wrongClass", "ctEcho", "store", "cancel", "twoPDVs", "twoPDUs", "twoMessages", "unaccepted", "release"]


@given(
    st.lists(st.tuples(st.sampled_from(_KINDS), st.integers(0, 0xFFFE)), max_size=40),
    st.lists(st.integers(1, 400), max_size=6),
)
def test_replayChangesNothingObservable(requests: list[tuple[str, int]], cuts: list[int]) -> None:
    """
    Any mix of requests, cut into reads anywhere, gives the same bytes,
    states, message count and timers with replay as without.
    """
    with logLevelSet(LogLevel.error):
        stream = b"".join(_variant(kind, messageID) for kind, messageID in requests)
        outcomes = []
        for replay in (True, False):
            clock = Clock()
            h = associated(clock, replay)
            position = 0
            for cut in cuts + [len(stream)]:
                h.protocol.dataReceived(stream[position : position + cut])
                position += cut
            outcomes.append(
                (
                    h.transport.value(),
                    h.transport.disconnecting,
                    h.protocol.state,
                    h.protocol.messages,
                    sorted(call.getTime() for call in clock.getDelayedCalls()),
                )
            )
            h.close()
        assert outcomes[0] == outcomes[1]


def test_replayWithCapturedPeerSessions(quiet: None) -> None:
    """
    DCMTK's and pynetdicom's captured echoes, repeated with new MessageIDs
    on one association, are answered as the full path answers them.
    """
    for session in ("dcmtk_echoscu_default", "pynetdicom_echoscu_default"):
        frames = splitStream(fixtureBytes(session, "c2s"))
        rqBytes = struct.pack(">BxI", 1, len(frames[0].body)) + frames[0].body
        echoBody = frames[1].body
        outputs = []
        for replay in (True, False):
            clock = Clock()
            h = Harness(DICOMServerFactory(clock=clock), clock)
            if not replay:
                h.factory.replaysResponses = False
            h.send(rqBytes)
            for messageID in (1, 2, 3, 65535, 0, 17):
                body = withMessageID(echoBody, messageID)
                h.send(struct.pack(">BxI", 4, len(body)) + body)
            outputs.append(h.transport.value())
            assert h.protocol.state is State.STA6
            h.close()
        assert outputs[0] == outputs[1]


class DeferredResponder:
    """
    Serves CT (as if), answering each request when the test says so.
    """

    abstractSyntaxes = (CT,)

    def __init__(self) -> None:
        self.waiting: list[Any] = []

    def handle(self, request: Any, context: Any) -> Any:
        d: Deferred[DIMSEResponse] = Deferred()
        self.waiting.append((d, request))
        return d


def test_noReplayPastAPendingResponse(quiet: None) -> None:
    """
    Echoes that arrive while an earlier request's response is pending are
    answered after it, in order, replayed or not.
    """
    clock = Clock()
    slow = DeferredResponder()
    h = associated(clock, True, responders=[VerificationResponder(), slow])
    h.send(pdata((1, echoCommand(1))), pdata((1, echoCommand(2))), pdata((1, echoCommand(3))))
    h.send(pdata((5, echoCommand(4, sopClass=CT))))
    h.send(*(pdata((1, echoCommand(i))) for i in range(5, 9)))
    before = [decodeCommandSet(f.body[6:])[RESPONDED] for f in splitStream(h.transport.value())]
    assert before == [1, 2, 3]
    (d, request), = slow.waiting
    d.callback(DIMSEResponse({tag("CommandField"): 0x8030, RESPONDED: 4, tag("CommandDataSetType"): 0x0101, tag("Status"): 0}))
    h.send(pdata((1, echoCommand(9))))
    after = [decodeCommandSet(f.body[6:])[RESPONDED] for f in splitStream(h.transport.value())]
    assert after == list(range(1, 10))
    h.close()
