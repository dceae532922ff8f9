"""
Property tests (hypothesis) for the wire layer: decode(encode(x)) == x over
generated PDUs; any bytes fed to the decoder or the framer give PDUs or
typed errors, never another exception; any split of a stream gives the same
PDUs; and the framer's memory stays bounded by its caps.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dicomecho.wire.errors import RemoteProtocolError
from dicomecho.wire.framer import HEADER_LENGTH, PDUFramer
from dicomecho.wire.items import (
    AsyncOperationsWindow,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UnknownItem,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomecho.wire.pdu import (
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    PDUType,
    PresentationDataValue,
    ReleaseRP,
    ReleaseRQ,
    decode,
    decodePDU,
    encode,
)
from tests.support.helpers import SESSIONS, fixtureBytes

byte = st.integers(0, 0xFF)
latin1 = st.characters(min_codepoint=0, max_codepoint=0xFF)
# Canonical forms: what the decoder produces after removing padding.
uid = st.text(latin1, max_size=40).map(lambda s: s.rstrip("\0 "))
aeTitle = st.text(latin1, max_size=16).map(lambda s: s.rstrip("\0 ").lstrip(" "))
blob = st.binary(max_size=60)

KNOWN_SUB_ITEMS = set(range(0x51, 0x5A))
KNOWN_ITEMS = {0x10, 0x20, 0x21, 0x50}


def unknownItems(known: set[int]) -> st.SearchStrategy[tuple[UnknownItem, ...]]:
    return st.lists(
        st.builds(
            UnknownItem,
            byte.filter(lambda t: t not in known),
            blob,
            byte,
        ),
        max_size=2,
    ).map(tuple)


userInformation = st.builds(
    UserInformation,
    maximumLength=st.none() | st.integers(0, 0xFFFFFFFF),
    implementationClassUID=st.none() | uid,
    implementationVersionName=st.none() | uid,
    asyncOperationsWindow=st.none()
    | st.builds(AsyncOperationsWindow, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    roleSelections=st.lists(st.builds(RoleSelection, uid, byte, byte), max_size=3).map(tuple),
    sopClassExtendedNegotiations=st.lists(
        st.builds(SOPClassExtendedNegotiation, uid, blob), max_size=2
    ).map(tuple),
    sopClassCommonExtendedNegotiations=st.lists(
        st.builds(
            SOPClassCommonExtendedNegotiation,
            uid,
            uid,
            st.lists(uid, max_size=3).map(tuple),
            byte,
        ),
        max_size=2,
    ).map(tuple),
    userIdentity=st.none() | st.builds(UserIdentityRQ, byte, byte, blob, blob),
    userIdentityResponse=st.none() | st.builds(UserIdentityAC, blob),
    unknownSubItems=unknownItems(KNOWN_SUB_ITEMS),
)

associateCommon = dict(
    calledAETitle=aeTitle,
    callingAETitle=aeTitle,
    applicationContextName=st.none() | uid,
    userInformation=st.none() | userInformation,
    protocolVersion=st.integers(0, 0xFFFF),
    unknownItems=unknownItems(KNOWN_ITEMS),
    reservedField=st.binary(min_size=32, max_size=32),
)

pdus: st.SearchStrategy[PDU] = st.one_of(
    st.builds(
        AssociateRQ,
        presentationContexts=st.lists(
            st.builds(
                PresentationContextRQ,
                byte,
                st.none() | uid,
                st.lists(uid, max_size=4).map(tuple),
            ),
            max_size=4,
        ).map(tuple),
        **associateCommon,
    ),
    st.builds(
        AssociateAC,
        presentationContexts=st.lists(
            st.builds(PresentationContextAC, byte, byte, st.none() | uid), max_size=4
        ).map(tuple),
        **associateCommon,
    ),
    st.builds(AssociateRJ, byte, byte, byte),
    st.deferred(lambda: pdatas),
    st.just(ReleaseRQ()),
    st.just(ReleaseRP()),
    st.builds(Abort, byte, byte),
)


@given(pdus)
def test_decodeEncodeIsIdentity(pdu: PDU) -> None:
    """
    decode(encode(x)) == x for every PDU value the decoder can produce.
    """
    assert decode(encode(pdu)) == pdu


@given(st.sampled_from(list(PDUType)), st.binary(max_size=300))
def test_anyBodyDecodesOrRaisesTypedError(pduType: PDUType, body: bytes) -> None:
    """
    Arbitrary bytes as a PDU body give a PDU or a L{RemoteProtocolError}.
    """
    try:
        decodePDU(pduType, body)
    except RemoteProtocolError:
        pass


@given(pdus, st.data())
def test_mutatedEncodingsDecodeOrRaiseTypedError(pdu: PDU, data: st.DataObject) -> None:
    """
    Valid encodings with bytes overwritten, removed or appended (so that
    lengths lie in every way) give a PDU or a L{RemoteProtocolError}. A
    P-DATA-TF that still decodes accounts for every byte: no PDV was cut
    short or run past.
    """
    encoded = bytearray(encode(pdu))
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(encoded)))
        action = data.draw(st.sampled_from(["set", "cut", "add"]))
        if action == "set" and where < len(encoded):
            encoded[where] = data.draw(byte)
        elif action == "cut":
            del encoded[where : where + data.draw(st.integers(1, 8))]
        else:
            encoded[where:where] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        value = decode(bytes(encoded))
    except RemoteProtocolError:
        return
    if isinstance(value, PDataTF):
        assert len(encode(value)) == len(encoded)


pdatas = st.builds(
    PDataTF,
    st.lists(
        st.builds(PresentationDataValue, byte, st.booleans(), st.booleans(), blob),
        min_size=1,
        max_size=4,
    ).map(tuple),
)


@given(pdatas, st.integers(-5, 8).filter(bool))
def test_lastPDVLengthOffByAFewIsRefused(pdata: PDataTF, delta: int) -> None:
    """
    If the last PDV item's length is off by 1-5 bytes short or 1-8 bytes
    long, the PDV items no longer fill the PDU exactly, and decoding must
    raise L{RemoteProtocolError} rather than cut or pad a fragment.
    """
    encoded = bytearray(encode(pdata))
    last = len(encoded) - len(pdata.pdvs[-1].data) - 6
    length = int.from_bytes(encoded[last : last + 4], "big") + delta
    if length < 0:
        return
    encoded[last : last + 4] = length.to_bytes(4, "big")
    try:
        decode(bytes(encoded))
    except RemoteProtocolError:
        return
    raise AssertionError(f"PDV length off by {delta} was accepted")


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@given(st.lists(pdus, min_size=1, max_size=5), st.lists(st.integers(0, 10**6), max_size=20))
def test_anySplitGivesSamePDUs(values: list[PDU], cuts: list[int]) -> None:
    """
    A stream of encoded PDUs cut at arbitrary points gives back the same
    PDUs, in order.
    """
    stream = b"".join(encode(v) for v in values)
    framer = PDUFramer(maxPDataLength=0)
    out = []
    for piece in chunks(stream, cuts):
        framer.receiveData(piece)
        while (frame := framer.nextFrame()) is not None:
            out.append(decodePDU(*frame))
    assert out == values
    assert framer.bufferedLength == 0


@given(st.sampled_from(SESSIONS), st.lists(st.integers(0, 10**6), max_size=30))
def test_anySplitOfCapturedStreams(session: str, cuts: list[int]) -> None:
    """
    Captured real-peer streams cut at arbitrary points give the same frames
    as the uncut stream.
    """
    stream = fixtureBytes(session, "c2s")
    whole = PDUFramer()
    whole.receiveData(stream)
    expected = []
    while (frame := whole.nextFrame()) is not None:
        expected.append(frame)
    framer = PDUFramer()
    out = []
    for piece in chunks(stream, cuts):
        framer.receiveData(piece)
        while (frame := framer.nextFrame()) is not None:
            out.append(frame)
    assert out == expected


ASSOCIATE_CAP = 300
PDATA_CAP = 120


@given(st.lists(st.binary(max_size=400), max_size=12), st.booleans())
def test_framerOnArbitraryBytes(reads: list[bytes], validStart: bool) -> None:
    """
    Any sequence of reads gives frames or a L{RemoteProtocolError}, never
    another exception; frames honour the caps; and after each drain the
    framer holds less than one header plus the largest cap, so memory is
    bounded by the cap plus one read whatever the declared lengths.
    """
    framer = PDUFramer(maxAssociateLength=ASSOCIATE_CAP, maxPDataLength=PDATA_CAP)
    if validStart:
        reads = [encode(ReleaseRQ())] + reads
    failed = False
    for data in reads:
        framer.receiveData(data)
        assert framer.bufferedLength < HEADER_LENGTH + ASSOCIATE_CAP + len(data)
        try:
            while (frame := framer.nextFrame()) is not None:
                limit = PDATA_CAP if frame.pduType == PDUType.P_DATA_TF else ASSOCIATE_CAP
                assert len(frame.body) <= limit
                try:
                    decodePDU(*frame)
                except RemoteProtocolError:
                    pass
        except RemoteProtocolError:
            failed = True
        assert framer.bufferedLength < HEADER_LENGTH + ASSOCIATE_CAP
        if failed:
            assert framer.bufferedLength == 0
