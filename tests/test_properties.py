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
from dicomecho.wire.pdu import (
    PDU,
    PDataTF,
    PDUType,
    ReleaseRQ,
    decode,
    decodePDU,
    encode,
)
from tests.support.helpers import SESSIONS, fixtureBytes
from tests.support.strategies import byte, pdatas, pdus



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
