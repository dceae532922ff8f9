"""
What a fuzzed peer sends: hypothesis strategies for whole sessions, valid
and spoiled A-ASSOCIATE-RQs, P-DATA segments, control PDUs and foreign
bytes (used by tests/test_fuzz_protocol.py and fuzz/).
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from dicomecho.association.commandset import CommandField, encodeCommandSet, tag
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.userinfo import UserInformation
from dicomecho.wire.pdu import Abort, AssociateAC, AssociateRJ, AssociateRQ, PDataTF, PresentationDataValue, ReleaseRP, ReleaseRQ, encode
from tests.support.strategies import pdus as anyPDU

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

