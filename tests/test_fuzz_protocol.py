"""
Fuzzing the protocol (hypothesis, stateful): random sequences of valid and
invalid PDUs, cut at random points and delivered in random-size chunks, to
one to three L{DICOMAssociationProtocol}s of one factory on
C{StringTransport}s and a C{Clock}, interleaved with clock advances, peer
closes, slow closes, backpressure, late responder answers and a graceful
shutdown (C{factory.drain}).

After every step: no exception escaped the protocol; every byte the server
wrote decodes, with our own decoder, as whole PDUs in an order PS3.8
allows (and no A-ASSOCIATE-AC once draining); C{activeAssociations} counts
exactly the protocols in Sta6/Sta8 and never exceeds the limit, and
C{openConnections} the connections not yet lost; the framer holds at most its cap plus one
read; every log line rendered from the events is a single printable line.
At the end of each example the clock runs on until every connection has
closed, and then no C{DelayedCall} is left, every protocol is in Sta1, no
association is counted and a drain's L{Deferred} has fired.

The clock starts at values whose sums with the timeouts round (as real
clocks' values do) and can be advanced exactly to its next scheduled call.
L{BoundedClock} turns a call that keeps re-arming itself at the instant
being run, which would make C{Clock.advance} loop forever, into a failure.

L{ProtocolDriver} is shared with the long-run harness in
C{fuzz/fuzz_dicomecho.py}; the last test here runs a short slice of it.

The driver only uses the transport as a reactor would, so it holds both
for the current protocol and for one that closes after an
A-ASSOCIATE-RJ or registers itself as a streaming producer: close
completion is simulated once C{transport.disconnecting} is set (the
producer is stopped first, as Twisted's transports do), no data is
delivered to a closing or paused transport, a registered streaming
producer is paused from within the write that fills the (simulated) send
buffer and resumed when it drains, and C{drain} is only called if the
factory has it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure

from dicomecho.association.dimse import CommandField, CommandSetError, decodeCommandSet, encodeCommandSet, tag
from dicomecho.wire.errors import RemoteProtocolError
from dicomecho.association.fsm import State
from dicomecho.wire.framer import HEADER_LENGTH, UNLIMITED_PDATA_CEILING, PDUFramer
from dicomecho.wire.items import PresentationContextRQ, UserInformation
from dicomecho.observability.logs import jsonRecord, logLevel, renderEcho, setLogLevel
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
from dicomecho.server.protocol import DICOMServerFactory
from dicomecho.services.verification import VerificationResponder
from tests.test_properties import pdus as anyPDU

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG = "1.2.840.10008.1.2.2"

#: Executed examples and steps, for the long-run harness's counts.
STATS = {"examples": 0, "steps": 0}

# --- what the peer sends ------------------------------------------------------

byte = st.integers(0, 0xFF)


def command(
    field: int = CommandField.C_ECHO_RQ,
    messageID: int | None = 1,
    sopClass: str | None = VERIFICATION,
    dataSetType: int = 0x0101,
    **extra: object,
) -> bytes:
    """
    An encoded command set; C{None} leaves an element out.
    """
    elements: dict[int, object] = {
        tag("CommandField"): field,
        tag("CommandDataSetType"): dataSetType,
    }
    if messageID is not None:
        elements[tag("MessageID")] = messageID
    if sopClass is not None:
        elements[tag("AffectedSOPClassUID")] = sopClass
    for keyword, value in extra.items():
        elements[tag(keyword)] = value
    return encodeCommandSet(elements)


def pdata(*pdvs: PresentationDataValue) -> bytes:
    return encode(PDataTF(tuple(pdvs)))


transferSyntaxes = st.lists(
    st.sampled_from([IMPLICIT, IMPLICIT, EXPLICIT, BIG, "1.2.3.4", ""]), max_size=3
).map(tuple)
abstractSyntax = st.sampled_from([VERIFICATION] * 5 + [CT, "", None])
calledAETitle = st.sampled_from(["ECHOSCP", "ECHOSCP", "OTHER", "", "ECHO\nSCP"])
callingAETitle = st.sampled_from(["SCU", "SCU", "ALLOWED", "", "A\x1b[31mB", "x\\y\r"])
peerMaxLength = st.sampled_from([16384, 16384, 16382, 0, None, 8, 9, 21, 64, 256, 0xFFFFFFFF])

RQ_SPOILERS = [None] * 8 + [
    "evenID",
    "zeroID",
    "duplicateID",
    "version2",
    "version0",
    "version3",
    "noApplicationContext",
    "otherApplicationContext",
    "tinyMaximum",
    "noUserInformation",
    "noContexts",
    "noAbstractSyntax",
    "noTransferSyntax",
]


@st.composite
def associateRQs(draw: Any, spoil: bool = True) -> bytes:
    """
    A-ASSOCIATE-RQ: mostly acceptable, else spoiled in one of the ways
    negotiation answers with an A-ABORT or an A-ASSOCIATE-RJ.
    """
    return _associateRQ(draw, spoil)[0]


def _associateRQ(draw: Any, spoil: bool) -> tuple[bytes, int]:
    """
    An A-ASSOCIATE-RQ and its first presentation context ID.
    """
    count = draw(st.integers(1, 3))
    first = draw(st.sampled_from([1, 1, 1, 3, 127, 255]))
    contexts = [
        PresentationContextRQ(
            min(first + 2 * i, 255 - 2 * (count - 1 - i)),
            draw(abstractSyntax),
            draw(transferSyntaxes) or (IMPLICIT,),
        )
        for i in range(count)
    ]
    info: UserInformation | None = UserInformation(
        maximumLength=draw(peerMaxLength),
        implementationClassUID="1.2.826.0.1.3680043.9.3811.1",
        implementationVersionName=draw(st.sampled_from([None, "FUZZ", "\x00\xff"])),
    )
    version = 1
    applicationContext: str | None = "1.2.840.10008.3.1.1.1"
    how = draw(st.sampled_from(RQ_SPOILERS)) if spoil else None
    if how == "evenID":
        contexts[0] = PresentationContextRQ(draw(st.sampled_from([2, 4, 254])), VERIFICATION, (IMPLICIT,))
    elif how == "zeroID":
        contexts[0] = PresentationContextRQ(0, VERIFICATION, (IMPLICIT,))
    elif how == "duplicateID":
        contexts.append(contexts[0])
    elif how in ("version2", "version0", "version3"):
        version = int(how[-1])
    elif how == "noApplicationContext":
        applicationContext = None
    elif how == "otherApplicationContext":
        applicationContext = "1.2.3"
    elif how == "tinyMaximum":
        info = UserInformation(maximumLength=draw(st.integers(1, 7)))
    elif how == "noUserInformation":
        info = None
    elif how == "noContexts":
        contexts = []
    elif how == "noAbstractSyntax":
        contexts[0] = PresentationContextRQ(contexts[0].contextID, None, (IMPLICIT,))
    elif how == "noTransferSyntax":
        contexts[0] = PresentationContextRQ(contexts[0].contextID, VERIFICATION, ())
    rq = AssociateRQ(
        draw(calledAETitle),
        draw(callingAETitle),
        applicationContextName=applicationContext,
        userInformation=info,
        protocolVersion=version,
        presentationContexts=tuple(contexts),
    )
    return encode(rq), contexts[0].contextID if contexts else 1


dataContextID = st.sampled_from([1, 1, 1, 1, 3, 5, 255, 2, 0, 7])
messageID = st.integers(0, 0xFFFF)


def _fragments(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


PDATA_KINDS = [
    "echo",
    "echo",
    "echo",
    "echoFragmented",
    "echoFragmented",
    "severalEchoes",
    "echoWrongSOPClass",
    "echoNoMessageID",
    "echoNoSOPClass",
    "otherRequest",
    "response",
    "cancel",
    "unknownCommand",
    "storeWithDataSet",
    "dataSetFirst",
    "undecodable",
    "oversize",
    "noPDV",
]


@st.composite
def pdataSegments(draw: Any) -> bytes:
    """
    P-DATA-TF PDUs: C-ECHO-RQ whole or fragmented, on good or wrong
    contexts, other DIMSE messages, out-of-order fragments, undecodable
    command sets, a P-DATA-TF above any cap, one without a PDV.
    """
    kind = draw(st.sampled_from(PDATA_KINDS))
    ctx = draw(dataContextID)
    mid = draw(messageID)
    if kind == "echo":
        return pdata(PresentationDataValue(ctx, True, True, command(messageID=mid)))
    if kind == "echoFragmented":
        pieces = _fragments(command(messageID=mid), draw(st.integers(1, 40)))
        pdvs = [
            PresentationDataValue(ctx, True, i == len(pieces) - 1, piece)
            for i, piece in enumerate(pieces)
        ]
        if draw(st.booleans()):
            pdvs = pdvs[: draw(st.integers(1, len(pdvs)))]  # the rest never comes
        if draw(st.booleans()):
            return pdata(*pdvs)
        return b"".join(pdata(pdv) for pdv in pdvs)
    if kind == "severalEchoes":
        n = draw(st.integers(2, 5))
        return pdata(
            *(PresentationDataValue(ctx, True, True, command(messageID=(mid + i) & 0xFFFF)) for i in range(n))
        )
    if kind == "echoWrongSOPClass":
        return pdata(PresentationDataValue(ctx, True, True, command(messageID=mid, sopClass=CT)))
    if kind == "echoNoMessageID":
        return pdata(PresentationDataValue(ctx, True, True, command(messageID=None)))
    if kind == "echoNoSOPClass":
        return pdata(PresentationDataValue(ctx, True, True, command(messageID=mid, sopClass=None)))
    if kind == "otherRequest":
        field = draw(st.sampled_from([f for f in CommandField if not f & 0x8000]))
        extra = draw(
            st.sampled_from(
                [{}, {"AffectedSOPInstanceUID": "1.2.3.4"}, {"RequestedSOPInstanceUID": "1.2.3.5", "RequestedSOPClassUID": VERIFICATION}]
            )
        )
        return pdata(PresentationDataValue(ctx, True, True, command(field, mid, **extra)))  # type: ignore[arg-type]
    if kind == "response":
        return pdata(
            PresentationDataValue(
                ctx, True, True, command(CommandField.C_ECHO_RSP, None, MessageIDBeingRespondedTo=mid, Status=0)
            )
        )
    if kind == "cancel":
        return pdata(
            PresentationDataValue(
                ctx, True, True, command(CommandField.C_CANCEL_RQ, None, None, MessageIDBeingRespondedTo=mid)
            )
        )
    if kind == "unknownCommand":
        field = draw(st.integers(0, 0xFFFF))
        return pdata(PresentationDataValue(ctx, True, True, command(field, mid)))
    if kind == "storeWithDataSet":
        head = PresentationDataValue(
            ctx,
            True,
            True,
            command(CommandField.C_STORE_RQ, mid, dataSetType=0, AffectedSOPInstanceUID="1.2.3", Priority=0),
        )
        data = draw(st.binary(max_size=64))
        pieces = _fragments(data, draw(st.integers(1, 32)))
        complete = draw(st.booleans())
        pdvs = [
            PresentationDataValue(ctx, False, complete and i == len(pieces) - 1, piece)
            for i, piece in enumerate(pieces)
        ]
        return pdata(head, *pdvs)
    if kind == "dataSetFirst":
        return pdata(PresentationDataValue(ctx, False, draw(st.booleans()), draw(st.binary(max_size=16))))
    if kind == "undecodable":
        return pdata(
            PresentationDataValue(ctx, True, draw(st.booleans()), draw(st.binary(max_size=48)))
        )
    if kind == "oversize":
        size = draw(st.sampled_from([300, 16400, 17000]))
        return pdata(PresentationDataValue(ctx, True, True, bytes(size)))
    return struct.pack(">BBI", 4, 0, 0)


@st.composite
def controlSegments(draw: Any) -> bytes:
    """
    The other PDUs, as a requestor might (or should not) send them.
    """
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return encode(ReleaseRQ())
    if kind == 1:
        return encode(ReleaseRP())
    if kind == 2:
        return encode(Abort(draw(byte), draw(byte)))
    if kind == 3:
        return encode(AssociateAC("ECHOSCP", "SCU"))
    if kind == 4:
        return encode(AssociateRJ(draw(byte), draw(byte), draw(byte)))
    if kind == 5:
        return encode(ReleaseRQ())
    return encode(draw(anyPDU))


@st.composite
def sessions(draw: Any) -> bytes:
    """
    A well-behaved requestor's stream: an acceptable A-ASSOCIATE-RQ, some
    C-ECHO-RQs, maybe an A-RELEASE-RQ.
    """
    rq, contextID = _associateRQ(draw, spoil=False)
    parts = [rq]
    for i in range(draw(st.integers(0, 3))):
        parts.append(pdata(PresentationDataValue(contextID, True, True, command(messageID=i + 1))))
    if draw(st.booleans()):
        parts.append(encode(ReleaseRQ()))
    return b"".join(parts)


validSegments = st.one_of(associateRQs(), pdataSegments(), controlSegments())

FOREIGN = [
    bytes.fromhex("160301020001") + bytes(20),
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
]


@st.composite
def invalidSegments(draw: Any) -> bytes:
    """
    Bytes that are not a valid PDU: random, truncated, with a lying
    length, an unknown type, a foreign protocol, a huge declared length,
    or a valid PDU with bytes overwritten.
    """
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return draw(st.binary(min_size=1, max_size=64))
    if kind == 1:
        valid = draw(validSegments)
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if kind == 2:
        valid = bytearray(draw(validSegments))
        length = int.from_bytes(valid[2:6], "big")
        lie = draw(st.one_of(st.integers(-8, 8).map(lambda d: max(length + d, 0)), st.integers(0, 0xFFFFFFFF)))
        valid[2:6] = lie.to_bytes(4, "big")
        return bytes(valid)
    if kind == 3:
        pduType = draw(st.sampled_from([0, 8, 9, 0x10, 0x16, 0x7F, 0xFF]))
        body = draw(st.binary(max_size=16))
        return struct.pack(">BBI", pduType, 0, len(body)) + body
    if kind == 4:
        return draw(st.sampled_from(FOREIGN))
    if kind == 5:
        return struct.pack(">BBI", draw(st.integers(1, 7)), 0, draw(st.sampled_from([0xFFFFFFFF, 5, 3, 0])))
    valid = bytearray(draw(validSegments))
    for _ in range(draw(st.integers(1, 3))):
        valid[draw(st.integers(0, len(valid) - 1))] = draw(byte)
    return bytes(valid)


#: What a peer queues in one step: one to three pieces back to back.
segments = st.lists(
    st.one_of(sessions(), associateRQs(), pdataSegments(), pdataSegments(), controlSegments(), invalidSegments()),
    min_size=1,
    max_size=3,
).map(b"".join)

@st.composite
def echoes(draw: Any) -> bytes:
    """
    Conforming C-ECHO-RQs, most likely on an accepted context: whole, or
    fragmented into even-length pieces, one or several to a P-DATA-TF.
    """
    ctx = draw(st.sampled_from([1, 1, 1, 3]))
    pdvs = []
    for _ in range(draw(st.integers(1, 3))):
        cmd = command(messageID=draw(messageID))
        pieces = _fragments(cmd, draw(st.sampled_from([len(cmd), len(cmd), 2, 10, 32])))
        pdvs += [PresentationDataValue(ctx, True, i == len(pieces) - 1, p) for i, p in enumerate(pieces)]
    if draw(st.booleans()):
        return pdata(*pdvs)
    return b"".join(pdata(pdv) for pdv in pdvs)


#: What a peer sends once associated (or while releasing).
dataSegments = st.lists(
    st.one_of(echoes(), echoes(), pdataSegments(), pdataSegments(), controlSegments(), invalidSegments()),
    min_size=1,
    max_size=3,
).map(b"".join)

#: What a peer sends first: mostly an A-ASSOCIATE-RQ, maybe with more.
openingSegments = st.one_of(sessions(), associateRQs(), associateRQs(), segments)

openings = st.one_of(openingSegments, openingSegments, st.none())

chunkSizes = st.lists(
    st.one_of(st.integers(1, 8), st.integers(1, 300), st.integers(1, 70000)), min_size=1, max_size=5
)
delays = st.one_of(
    st.sampled_from([0, 0.001, 0.1, 0.3, 1 / 3, 0.5, 1, 2, 2.3, 2.9, 3, 4.9, 5, 5.1, 7.1, 10, 30]),
    st.floats(0, 40, allow_nan=False, allow_infinity=False),
)
nextCallExtras = st.sampled_from([0, 0, 0, 1e-9, 0.001])
budgets = st.sampled_from([0, 0, 10, 100, 1000])
openBudgets = st.sampled_from([None, None, None, 0, 100, 400])
#: Most draws are C{None} (no shutdown): one drain ends an example's story.
graces = st.sampled_from([None, None, None, None, 0, 1, 5, 30])
addresses = st.sampled_from(
    [
        IPv4Address("TCP", "127.0.0.1", 40000),
        IPv4Address("TCP", "10.0.0.5", 4000),
        IPv6Address("TCP", "::1", 40001),
        UNIXAddress(None),
    ]
)

# --- the system under test --------------------------------------------------------


@st.composite
def configs(draw: Any) -> dict[str, Any]:
    """
    A factory's options: small timeouts, a small association limit, small
    caps, sometimes a responder that answers through Deferreds.
    """
    acse, dimse, network = draw(st.sampled_from([(5, 5, 5)] * 5 + [(1, 2, 3), (3, 1, 2), (0, 0, 0)]))
    return dict(
        acseTimeout=acse,
        dimseTimeout=dimse,
        networkTimeout=network,
        maxAssociations=draw(st.sampled_from([2, 2, 1])),
        maxPDULength=draw(st.sampled_from([16382] * 5 + [256, 0, 8])),
        maxAssociateLength=draw(st.sampled_from([1024 * 1024, 4096, 512])),
        requireCalledAETitle=draw(st.booleans()),
        allowedCallingAETitles=draw(st.sampled_from([(), (), ("SCU", "ALLOWED")])),
        deferredResponses=draw(st.booleans()),
        # Where the clock starts: time.time()-like epochs and values whose
        # sums with the timeouts round, as real clocks' values do.
        clockStart=draw(st.sampled_from([0, 3.2, 2.3, 12.703278851713621, 1_700_000_000.123456])),
    )


class BoundedClock(Clock):
    """
    A C{Clock} that fails instead of hanging when something keeps
    scheduling itself at the instant being run: C{Clock.advance} runs
    every call due at or before the new time, so a call that re-arms with
    a delay too small to move a float time (or with 0) would loop forever.
    """

    LIMIT = 1000

    def __init__(self) -> None:
        super().__init__()
        self.sameInstant = 0

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        now = self.seconds()
        if now + delay <= now:
            self.sameInstant += 1
            assert self.sameInstant <= self.LIMIT, (
                f"{getattr(f, '__qualname__', f)} re-armed itself {self.LIMIT} times at "
                f"t={now!r} with delay {delay!r}: Clock.advance would never return"
            )
        return super().callLater(delay, f, *args, **kw)

    def advance(self, amount: float) -> None:
        self.sameInstant = 0
        super().advance(amount)


class DeferredVerification(VerificationResponder):
    """
    The Verification responder, answering requests with an even message
    ID through a L{Deferred} the driver fires later (or fails).
    """

    def __init__(self, pending: list[Deferred[Any]]) -> None:
        self.pending = pending

    def handle(self, request: Any, context: Any) -> Any:
        response = super().handle(request, context)
        if request.messageID is not None and request.messageID % 2 == 0:
            d: Deferred[Any] = Deferred()
            d.addCallback(lambda _: response)
            self.pending.append(d)
            return d
        return response


class ResponderCrash(Exception):
    """
    A failure injected into a responder's Deferred.
    """


VALID_RJ = {(1, 2, 2), (1, 1, 2), (1, 1, 3), (1, 1, 7), (2, 3, 2)}
PROVIDER_ABORT_REASONS = {0, 1, 2, 4, 5, 6}
COMMAND_FIELD = tag("CommandField")
RESPONDED_TO = tag("MessageIDBeingRespondedTo")


class ServerOutput:
    """
    Decodes everything one protocol wrote and checks it is whole, valid
    PDUs in an order PS3.8 allows an acceptor: AC, RJ or A-ABORT first;
    P-DATA-TF (responses, on accepted contexts, within the peer's maximum
    length) only after an AC; after an RJ, RP or A-ABORT only A-ABORT.
    """

    def __init__(self) -> None:
        self.framer = PDUFramer(maxAssociateLength=0xFFFFFFFF, maxPDataLength=0)
        self.phase = "start"
        self.accepted: set[int] = set()
        self.partial: dict[int, bytes] = {}
        self.pdus = 0
        #: The server is draining: it accepts no new association.
        self.draining = False

    def feed(self, data: bytes, peerMax: int | None) -> None:
        self.framer.receiveData(data)
        while True:
            try:
                frame = self.framer.nextFrame()
                if frame is None:
                    break
                pdu = decodePDU(*frame)
            except RemoteProtocolError as error:
                raise AssertionError(f"the server wrote an invalid PDU: {error}") from error
            self.pdus += 1
            self._check(pdu, len(frame.body), peerMax)
        assert self.framer.bufferedLength == 0, "the server wrote part of a PDU"

    def _check(self, pdu: Any, length: int, peerMax: int | None) -> None:
        name = type(pdu).__name__
        if isinstance(pdu, Abort):
            assert (pdu.source, pdu.reason) == (0, 0) or (
                pdu.source == 2 and pdu.reason in PROVIDER_ABORT_REASONS
            ), f"A-ABORT with source {pdu.source}, reason {pdu.reason}"
            self.phase = "ended"
        elif self.phase == "start" and isinstance(pdu, AssociateAC):
            assert not self.draining, "an association accepted while draining"
            self.phase = "associated"
            self.accepted = {c.contextID for c in pdu.presentationContexts if c.result == 0}
        elif self.phase == "start" and isinstance(pdu, AssociateRJ):
            assert (pdu.result, pdu.source, pdu.reason) in VALID_RJ, f"unexpected {pdu}"
            self.phase = "ended"
        elif self.phase == "associated" and isinstance(pdu, ReleaseRP):
            self.phase = "ended"
        elif self.phase == "associated" and isinstance(pdu, PDataTF):
            if peerMax:
                assert length <= peerMax, f"P-DATA-TF of {length} bytes above the peer's {peerMax}"
            for pdv in pdu.pdvs:
                assert pdv.contextID in self.accepted, f"response on context {pdv.contextID}"
                assert pdv.isCommand, "a data-set PDV in a response"
                assert len(pdv.data) % 2 == 0, "an odd-length fragment"
                data = self.partial.pop(pdv.contextID, b"") + pdv.data
                if pdv.isLastFragment:
                    rsp = decodeCommandSet(data)
                    assert rsp[COMMAND_FIELD] & 0x8000, "the server sent a request"  # type: ignore[operator]
                    assert RESPONDED_TO in rsp
                else:
                    self.partial[pdv.contextID] = data
        else:
            raise AssertionError(f"the server sent {name} in phase {self.phase}")


class LogChecker:
    """
    A log observer: renders every event as the console (with the debug
    blocks) and the JSON observers would, and records any exception, any
    rendered line that is not a single printable line, and any failure
    logged other than an injected responder crash.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            namespace = event.get("log_namespace") or ""
            if namespace.startswith("dicomecho"):
                for line in renderEcho(event):
                    if not line.isprintable():
                        self.errors.append(f"log line not a single printable line: {line!r}")
                record = jsonRecord(event)
                if record is not None:
                    json.dumps(record, allow_nan=False)
            failure = event.get("log_failure")
            if failure is not None and not (
                event.get("dicomEvent") == "responder-failed" and failure.check(ResponderCrash)
            ):
                self.errors.append("a failure was logged:\n" + failure.getTraceback())
        except Exception:
            self.errors.append("rendering a log event raised:\n" + traceback.format_exc())


class ReactorTransport(StringTransport):
    """
    A C{StringTransport} as lenient as Twisted's TCP transport about
    producers: unregistering with none registered, pausing or resuming
    after the connection closed, registering after it was lost (the
    producer is stopped at once) are not errors.
    """

    lost = False
    #: Bytes the send buffer takes before it is full; C{None}: never full.
    writeBudget: int | None = None
    producerPaused = False

    def write(self, data: bytes) -> None:
        """
        Like a real transport, pause a streaming producer from within the
        write that fills the send buffer.
        """
        super().write(data)
        if self.writeBudget is not None and self.producer is not None and self.streaming:
            self.writeBudget -= len(data)
            if self.writeBudget < 0:
                self.writeBudget = None
                self.producerPaused = True
                self.producer.pauseProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError("Cannot register two producers")
        if self.lost:
            producer.stopProducing()
        else:
            super().registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None

    def pauseProducing(self) -> None:
        if self.producerState != "stopped":
            self.producerState = "paused"

    def resumeProducing(self) -> None:
        if self.producerState != "stopped":
            self.producerState = "producing"


class Peer:
    """
    One connection: the protocol, its transport and what the peer has
    queued but not yet delivered.
    """

    def __init__(self, protocol: Any, transport: ReactorTransport, lazyClose: bool) -> None:
        self.protocol = protocol
        self.transport = transport
        self.lazyClose = lazyClose
        self.pending = bytearray()
        self.lost = False
        self.lastChunk = 0
        self.output = ServerOutput()

    @property
    def canReceive(self) -> bool:
        # A reactor stops reading a transport that is closing, and does not
        # read one paused (by the protocol, for backpressure).
        t = self.transport
        return not self.lost and not t.disconnecting and t.producerState == "producing"


AWAITING_REQUEST = frozenset({State.STA2})
ASSOCIATED = frozenset({State.STA6, State.STA8})


class ProtocolDriver:
    """
    Drives one factory's protocols the way a reactor would; see the module
    docstring. Every public method is one fuzzing step and leaves the
    invariants checkable with L{check}; L{finish} runs the clock until
    everything is closed and checks the end state.
    """

    MAX_LIVE = 3
    MAX_OPENED = 5

    def __init__(self, config: dict[str, Any]) -> None:
        config = dict(config)
        self.clock = BoundedClock()
        self.clock.advance(config.pop("clockStart", 0))
        self.responses: list[Deferred[Any]] = []
        responders = [DeferredVerification(self.responses)] if config.pop("deferredResponses") else None
        self.factory = DICOMServerFactory(
            "ECHOSCP", clock=self.clock, responders=responders, **config
        )
        self.peers: list[Peer] = []
        self.drained: Deferred[None] | None = None
        self.logs = LogChecker()
        self.previousLevel = logLevel()
        self.finished = False
        setLogLevel(LogLevel.debug)
        globalLogPublisher.addObserver(self.logs)

    # --- steps --------------------------------------------------------------

    def live(self) -> list[Peer]:
        return [p for p in self.peers if not p.lost]

    def pick(self, index: int) -> Peer | None:
        live = self.live()
        return live[index % len(live)] if live else None

    def pickIn(self, index: int, states: frozenset[State]) -> int | None:
        """
        The index (for L{pick}) of a live protocol in one of C{states}.
        """
        live = self.live()
        candidates = [i for i, p in enumerate(live) if p.protocol.state in states and p.canReceive]
        return candidates[index % len(candidates)] if candidates else None

    def open(
        self,
        address: Any,
        lazyClose: bool,
        opening: bytes | None = None,
        sizes: list[int] = [1 << 20],
        budget: int | None = None,
    ) -> None:
        """
        A peer connects, and perhaps sends C{opening} at once. If
        C{budget} is not C{None}, the peer does not read: the send buffer
        is full after that many bytes (see L{backpressure}).
        """
        if len(self.live()) >= self.MAX_LIVE or len(self.peers) >= self.MAX_OPENED:
            return
        transport = ReactorTransport(peerAddress=address)
        transport.writeBudget = budget
        protocol = self.factory.buildProtocol(address)
        peer = Peer(protocol, transport, lazyClose)
        peer.output.draining = self.drained is not None
        self.peers.append(peer)
        protocol.makeConnection(transport)
        self.settle()
        if opening is not None:
            self.send(len(self.live()) - 1, opening, sizes)

    def queue(self, index: int, data: bytes) -> None:
        peer = self.pick(index)
        if peer is not None:
            peer.pending += data

    def deliver(self, index: int, sizes: list[int], everything: bool = False) -> None:
        peer = self.pick(index)
        if peer is None:
            return
        chunks = 0
        while peer.pending and peer.canReceive and chunks < 64:
            size = sizes[chunks % len(sizes)] if everything or chunks < len(sizes) else 0
            if not size:
                break
            chunk = bytes(peer.pending[:size])
            del peer.pending[:size]
            chunks += 1
            peer.lastChunk = len(chunk)
            peer.protocol.dataReceived(chunk)
            self._checkFramer(peer)
            self.settle()
        if everything and peer.pending and peer.canReceive:
            chunk = bytes(peer.pending)
            peer.pending.clear()
            peer.lastChunk = len(chunk)
            peer.protocol.dataReceived(chunk)
            self._checkFramer(peer)
            self.settle()

    def send(self, index: int, data: bytes, sizes: list[int]) -> None:
        self.queue(index, data)
        self.deliver(index, sizes, everything=True)

    def sendFirst(self, index: int, data: bytes, sizes: list[int]) -> None:
        """
        L{send} to a connection still waiting for its A-ASSOCIATE-RQ.
        """
        found = self.pickIn(index, AWAITING_REQUEST)
        if found is not None:
            self.send(found, data, sizes)

    def sendAssociated(self, index: int, data: bytes, sizes: list[int]) -> None:
        """
        L{send} to an established association.
        """
        found = self.pickIn(index, ASSOCIATED)
        if found is not None:
            self.send(found, data, sizes)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.settle()

    def advanceToNextCall(self, extra: float) -> None:
        """
        Advance exactly to the next scheduled call (plus C{extra}), where
        timer edge cases live.
        """
        calls = self.clock.getDelayedCalls()
        if calls:
            due = min(call.getTime() for call in calls)
            self.clock.advance(max(due - self.clock.seconds(), 0) + extra)
            self.settle()

    def peerClose(self, index: int) -> None:
        peer = self.pick(index)
        if peer is not None:
            self._lose(peer)
            self.settle()

    def completeClose(self, index: int) -> None:
        peer = self.pick(index)
        if peer is not None and peer.transport.disconnecting:
            self._lose(peer)
            self.settle()

    def backpressure(self, index: int, budget: int) -> None:
        """
        The peer stops reading: the send buffer will be full after
        C{budget} more bytes, and the write that fills it pauses a
        registered streaming producer. If it is paused already, the buffer
        drains instead and the producer is resumed, as a reactor does
        (no-ops while the protocol registers no producer).
        """
        peer = self.pick(index)
        if peer is None:
            return
        t = peer.transport
        if t.producerPaused:
            t.producerPaused = False
            if t.producer is not None:
                t.producer.resumeProducing()
        else:
            t.writeBudget = budget
        self.settle()

    def drain(self, grace: float | None) -> None:
        """
        Shut the server down gracefully (when the factory can), unless
        C{grace} is C{None}.
        """
        drain = getattr(self.factory, "drain", None)
        if grace is not None and drain is not None and self.drained is None:
            self.drained = drain(grace)
            for peer in self.peers:
                peer.output.draining = True
            self.settle()

    def fireResponses(self, count: int, outcome: str) -> None:
        for _ in range(min(count, len(self.responses))):
            d = self.responses.pop(0)
            if outcome == "ok":
                d.callback(None)
            elif outcome == "commandSetError":
                d.errback(Failure(CommandSetError("injected")))
            else:
                d.errback(Failure(ResponderCrash("injected")))
            result = getattr(d, "result", None)
            if isinstance(result, Failure):
                d.addErrback(lambda _: None)
                raise AssertionError(
                    "a responder's Deferred ended in an unhandled failure:\n" + result.getTraceback()
                )
        self.settle()

    # --- the reactor's part -------------------------------------------------------

    def _lose(self, peer: Peer) -> None:
        """
        The connection is gone: stop a registered producer and forget it,
        then tell the protocol, as Twisted's TCP transport does.
        """
        self._readOutput(peer)
        t = peer.transport
        t.connected = False
        t.disconnecting = True
        t.lost = True
        peer.lost = True
        producer = t.producer
        if producer is not None:
            producer.stopProducing()
            t.producer = None
        peer.protocol.connectionLost(Failure(ConnectionDone()))

    def settle(self, force: bool = False) -> None:
        """
        Read what every protocol wrote, and complete the closes a reactor
        would complete now (all of them if C{force}).
        """
        changed = True
        while changed:
            changed = False
            for peer in self.peers:
                self._readOutput(peer)
                if not peer.lost and peer.transport.disconnecting and (force or not peer.lazyClose):
                    self._lose(peer)
                    changed = True

    def _readOutput(self, peer: Peer) -> None:
        data = peer.transport.value()
        if peer.lost:
            assert data == b"", f"the server wrote {data[:40]!r} during or after connectionLost"
            return
        peer.transport.clear()
        acceptance = getattr(peer.protocol, "_acceptance", None)
        peer.output.feed(data, getattr(acceptance, "peerMaxPDULength", None))

    # --- invariants -----------------------------------------------------------------

    def _checkFramer(self, peer: Peer) -> None:
        framer = getattr(peer.protocol, "_framer", None)
        if framer is None:
            return
        config = self.factory
        pdataCap = config.policy.maxPDULength or UNLIMITED_PDATA_CEILING
        cap = max(config.maxAssociateLength, pdataCap)
        assert framer.bufferedLength <= HEADER_LENGTH + cap + peer.lastChunk, (
            f"the framer holds {framer.bufferedLength} bytes (cap {cap}, last read {peer.lastChunk})"
        )

    def check(self) -> None:
        assert not self.logs.errors, self.logs.errors[0]
        associated = 0
        for peer in self.peers:
            state = peer.protocol.state
            if peer.lost:
                assert state is State.STA1, f"{state} after connectionLost"
            elif state in (State.STA6, State.STA8):
                associated += 1
            self._checkFramer(peer)
        active = self.factory.activeAssociations
        assert active == associated, f"activeAssociations {active}, {associated} associated"
        connections = getattr(self.factory, "openConnections", None)
        if connections is not None:
            live = len(self.live())
            assert connections == live, f"openConnections {connections}, {live} open"
        assert 0 <= active <= self.factory.maxAssociations

    def finish(self) -> None:
        """
        Answer every pending response, run the clock until every connection
        has closed, and check nothing is left: no DelayedCall, no
        association, every protocol in Sta1.
        """
        self.finished = True
        try:
            self.fireResponses(len(self.responses), "ok")
            for _ in range(10):
                self.settle(force=True)
                if not self.live():
                    break
                self.clock.advance(1000)
            stuck = [(p.protocol.state, p.transport.producerState) for p in self.live()]
            assert not stuck, f"connections never closed: {stuck}"
            assert self.clock.getDelayedCalls() == [], (
                f"DelayedCalls left behind: {self.clock.getDelayedCalls()}"
            )
            assert all(p.protocol.state is State.STA1 for p in self.peers)
            assert self.factory.activeAssociations == 0
            if self.drained is not None:
                assert self.drained.called, "drain() never fired once everything closed"
            self.check()
        finally:
            self.close()

    def close(self) -> None:
        """
        Remove the log observer and restore the log level.
        """
        globalLogPublisher.removeObserver(self.logs)
        setLogLevel(self.previousLevel)


# --- the stateful test --------------------------------------------------------------


def _step(method: Callable[..., None]) -> Callable[..., None]:
    """
    Count a step; remember a failure so teardown only cleans up.
    """

    @functools.wraps(method)
    def wrapper(self: ProtocolMachine, *args: Any, **kwargs: Any) -> None:
        STATS["steps"] += 1
        try:
            method(self, *args, **kwargs)
        except BaseException:
            self.broken = True
            raise

    return wrapper


indices = st.integers(0, 4)


class ProtocolMachine(RuleBasedStateMachine):
    """
    The rules are L{ProtocolDriver}'s steps.
    """

    def __init__(self) -> None:
        super().__init__()
        STATS["examples"] += 1
        self.driver: ProtocolDriver | None = None
        self.broken = False

    @initialize(
        config=configs(), address=addresses, lazy=st.booleans(), opening=openings, sizes=chunkSizes, budget=openBudgets
    )
    @_step
    def start(
        self, config: dict[str, Any], address: Any, lazy: bool, opening: bytes | None, sizes: list[int], budget: int | None
    ) -> None:
        self.driver = ProtocolDriver(config)
        self.driver.open(address, lazy, opening, sizes, budget)

    @rule(address=addresses, lazy=st.booleans(), opening=openings, sizes=chunkSizes, budget=openBudgets)
    @_step
    def openConnection(
        self, address: Any, lazy: bool, opening: bytes | None, sizes: list[int], budget: int | None
    ) -> None:
        self.driver.open(address, lazy, opening, sizes, budget)  # type: ignore[union-attr]

    @rule(index=indices, data=segments, sizes=chunkSizes)
    @_step
    def send(self, index: int, data: bytes, sizes: list[int]) -> None:
        self.driver.send(index, data, sizes)  # type: ignore[union-attr]

    @precondition(lambda self: self.driver.pickIn(0, AWAITING_REQUEST) is not None)
    @rule(index=indices, data=openingSegments, sizes=chunkSizes)
    @_step
    def sendFirst(self, index: int, data: bytes, sizes: list[int]) -> None:
        self.driver.sendFirst(index, data, sizes)  # type: ignore[union-attr]

    @precondition(lambda self: self.driver.pickIn(0, ASSOCIATED) is not None)
    @rule(index=indices, data=dataSegments, sizes=chunkSizes)
    @_step
    def sendAssociated(self, index: int, data: bytes, sizes: list[int]) -> None:
        self.driver.sendAssociated(index, data, sizes)  # type: ignore[union-attr]

    @rule(index=indices, data=segments)
    @_step
    def queue(self, index: int, data: bytes) -> None:
        self.driver.queue(index, data)  # type: ignore[union-attr]

    @rule(index=indices, sizes=chunkSizes)
    @_step
    def deliver(self, index: int, sizes: list[int]) -> None:
        self.driver.deliver(index, sizes)  # type: ignore[union-attr]

    @rule(seconds=delays)
    @_step
    def advance(self, seconds: float) -> None:
        self.driver.advance(seconds)  # type: ignore[union-attr]

    @rule(extra=nextCallExtras)
    @_step
    def advanceToNextCall(self, extra: float) -> None:
        self.driver.advanceToNextCall(extra)  # type: ignore[union-attr]

    @rule(index=indices)
    @_step
    def peerClose(self, index: int) -> None:
        self.driver.peerClose(index)  # type: ignore[union-attr]

    @rule(index=indices)
    @_step
    def completeClose(self, index: int) -> None:
        self.driver.completeClose(index)  # type: ignore[union-attr]

    @rule(index=indices, budget=budgets)
    @_step
    def backpressure(self, index: int, budget: int) -> None:
        self.driver.backpressure(index, budget)  # type: ignore[union-attr]

    @rule(grace=graces)
    @_step
    def drain(self, grace: float | None) -> None:
        self.driver.drain(grace)  # type: ignore[union-attr]

    @rule(count=st.integers(1, 3), outcome=st.sampled_from(["ok", "ok", "commandSetError", "crash"]))
    @_step
    def fireResponses(self, count: int, outcome: str) -> None:
        self.driver.fireResponses(count, outcome)  # type: ignore[union-attr]

    @invariant()
    def invariants(self) -> None:
        if self.driver is not None and not self.broken:
            try:
                self.driver.check()
            except BaseException:
                self.broken = True
                raise

    def teardown(self) -> None:
        driver = self.driver
        if driver is None or driver.finished:
            return
        if self.broken:
            driver.close()
        else:
            driver.finish()


#: One driver run as a plain @given test, for coverage-guided engines
#: (atheris through C{protocolScenario.hypothesis.fuzz_one_input}).
STEP_STRATEGIES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "open": dict(address=addresses, lazyClose=st.booleans(), opening=openings, sizes=chunkSizes, budget=openBudgets),
    "send": dict(index=indices, data=segments, sizes=chunkSizes),
    "sendFirst": dict(index=indices, data=openingSegments, sizes=chunkSizes),
    "sendAssociated": dict(index=indices, data=dataSegments, sizes=chunkSizes),
    "queue": dict(index=indices, data=segments),
    "deliver": dict(index=indices, sizes=chunkSizes),
    "advance": dict(seconds=delays),
    "advanceToNextCall": dict(extra=nextCallExtras),
    "peerClose": dict(index=indices),
    "completeClose": dict(index=indices),
    "backpressure": dict(index=indices, budget=budgets),
    "drain": dict(grace=graces),
    "fireResponses": dict(count=st.integers(1, 3), outcome=st.sampled_from(["ok", "commandSetError", "crash"])),
}


@settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def protocolScenario(data: st.DataObject) -> None:
    """
    One example: a driver and up to 40 steps, invariants after each.
    """
    STATS["examples"] += 1
    driver = ProtocolDriver(data.draw(configs()))
    try:
        driver.open(
            data.draw(addresses), data.draw(st.booleans()), data.draw(openings), data.draw(chunkSizes), data.draw(openBudgets)
        )
        for _ in range(data.draw(st.integers(1, 40))):
            name = data.draw(st.sampled_from(sorted(STEP_STRATEGIES)))
            kwargs = {k: data.draw(s) for k, s in STEP_STRATEGIES[name].items()}
            STATS["steps"] += 1
            getattr(driver, name)(**kwargs)
            driver.check()
        driver.finish()
    finally:
        if not driver.finished:
            driver.close()


# --- tests ----------------------------------------------------------------------------


def test_protocolStateMachine() -> None:
    """
    Random interleavings of valid and invalid PDUs cut at random points,
    clock advances, peer closes, slow closes, backpressure and late
    responses never raise out of the protocol, keep the association count
    and the framer's buffer within bounds, only ever put whole valid PDUs
    in a PS3.8 order on the wire, and end, once the clock has run on, with
    every connection closed, no DelayedCall left and no association
    counted.
    """
    run_state_machine_as_test(
        ProtocolMachine,
        settings=settings(
            max_examples=150,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        ),
    )


def test_driverSeesAWholeSession() -> None:
    """
    The driver itself works: a clean session through it gets an AC, the
    echo responses and an RP, the peer's close after the RP ends in Sta1,
    and nothing is left behind.
    """
    driver = ProtocolDriver(
        dict(
            acseTimeout=5,
            dimseTimeout=5,
            networkTimeout=5,
            maxAssociations=2,
            maxPDULength=16382,
            maxAssociateLength=4096,
            requireCalledAETitle=False,
            allowedCallingAETitles=(),
            deferredResponses=False,
            clockStart=1_700_000_000.5,
        )
    )
    try:
        driver.open(IPv4Address("TCP", "127.0.0.1", 40000), lazyClose=False)
        rq = AssociateRQ(
            "ECHOSCP",
            "SCU",
            presentationContexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),),
            userInformation=UserInformation(maximumLength=16384),
        )
        stream = encode(rq) + pdata(PresentationDataValue(1, True, True, command(messageID=7))) + encode(ReleaseRQ())
        driver.send(0, stream, [5, 100])
        (peer,) = driver.peers
        assert peer.output.phase == "ended" and peer.output.pdus == 3
        assert peer.protocol.state is State.STA13
        driver.check()
        driver.peerClose(0)
        driver.finish()
    finally:
        if not driver.finished:
            driver.close()


def _loadHarness() -> Any:
    path = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_dicomecho.py"
    spec = importlib.util.spec_from_file_location("fuzz_dicomecho", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_fuzzHarnessShortSlice(tmp_path: Path) -> None:
    """
    A 10-second slice of the long-run harness (decoder, framer and
    protocol targets, hypothesis engine) executes inputs for every target
    and finds no failure. Under CI=true the slice is seeded, so a CI run
    is reproducible.
    """
    harness = _loadHarness()
    seed = 0 if os.environ.get("CI") == "true" else None
    started = time.monotonic()
    report = harness.run(seconds=10, targets=["decoder", "framer", "protocol"], seed=seed, crashDir=tmp_path)
    assert time.monotonic() - started < 60
    assert all(report.inputs[target] > 0 for target in ("decoder", "framer", "protocol")), report.inputs
    assert report.failures == {}, harness.describe(report)
