"""
Tests for L{dicomecho.wire.framer}: splitting captured streams however they are
chunked, caps decided from the header (reference §3.3 items 1-4, 6), unknown
and foreign protocols (item 7, framer part), and bounded memory.
"""

from __future__ import annotations

import struct

import pytest

from dicomecho.wire.errors import (
    AbortReason,
    PDULengthError,
    RemoteProtocolError,
    UnrecognizedPDUError,
)
from dicomecho.wire.framer import (
    DEFAULT_MAX_ASSOCIATE_LENGTH,
    UNLIMITED_PDATA_CEILING,
    Frame,
    PDUFramer,
)
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.userinfo import UserInformation
from dicomecho.wire.pdu import AssociateRQ, PDUType, ReleaseRQ, encode
from tests.support.helpers import SESSIONS, fixtureBytes, splitStream


def header(pduType: int, length: int) -> bytes:
    return struct.pack(">BBI", pduType, 0, length)


def drain(framer: PDUFramer) -> list[Frame]:
    frames = []
    while (frame := framer.nextFrame()) is not None:
        frames.append(frame)
    return frames


@pytest.mark.parametrize("session", SESSIONS)
def test_byteAtATime(session: str) -> None:
    """
    §3.3 item 6: one byte per read gives the same frames as one read of the
    whole stream, and the framer holds at most one partial PDU in between.
    """
    for direction in ("c2s", "s2c"):
        data = fixtureBytes(session, direction)
        whole = splitStream(data)
        framer = PDUFramer()
        frames = []
        for i in range(len(data)):
            framer.receiveData(data[i : i + 1])
            frames.extend(drain(framer))
        assert frames == whole
        assert framer.bufferedLength == 0


def test_manyPDUsInOneRead() -> None:
    """
    §3.3 item 6: many PDUs in one read come out in order, and the buffer is
    empty afterwards.
    """
    data = b"".join(fixtureBytes(s, "c2s") for s in SESSIONS) * 20
    frames = splitStream(data)
    assert len(frames) == 20 * sum(len(splitStream(fixtureBytes(s, "c2s"))) for s in SESSIONS)
    assert [f.pduType for f in frames[:3]] == [
        PDUType.A_ASSOCIATE_RQ,
        PDUType.P_DATA_TF,
        PDUType.A_RELEASE_RQ,
    ]


@pytest.mark.parametrize("length", [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000])
@pytest.mark.parametrize("pduType", list(PDUType))
def test_hugeDeclaredLengths(pduType: PDUType, length: int) -> None:
    """
    §3.3 item 1: a 6-byte header declaring 2-4 GiB is refused as soon as the
    header is complete, with invalid-PDU-parameter-value, and nothing is
    kept buffered.
    """
    framer = PDUFramer()
    framer.receiveData(header(pduType, length)[:5])
    assert framer.nextFrame() is None
    framer.receiveData(header(pduType, length)[5:] + b"x" * 100)
    with pytest.raises(PDULengthError) as e:
        framer.nextFrame()
    assert e.value.abortReason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert (e.value.pduType, e.value.length) == (pduType, length)
    assert framer.bufferedLength == 0


def bigRequest(contexts: int, syntaxesEach: int) -> bytes:
    uid = "1.2.840.10008.1.2.4.100.1"
    return encode(
        AssociateRQ(
            "ECHOSCP",
            "SCU",
            presentationContexts=tuple(
                PresentationContextRQ(2 * i + 1, f"1.2.840.10008.5.1.4.1.1.{i}", (uid,) * syntaxesEach)
                for i in range(contexts)
            ),
            userInformation=UserInformation(maximumLength=16384),
        )
    )


def test_associateCap() -> None:
    """
    §3.3 item 2: a legitimate 64 KiB request with 128 presentation contexts
    passes the default cap; a request above a configured cap is refused
    from the header, before its body arrives.
    """
    data = bigRequest(128, 17)
    assert 64 * 1024 < len(data) < 70 * 1024
    (frame,) = splitStream(data)
    assert frame.pduType == PDUType.A_ASSOCIATE_RQ
    framer = PDUFramer(maxAssociateLength=len(data) - 7)
    framer.receiveData(data[:6])
    with pytest.raises(PDULengthError) as e:
        framer.nextFrame()
    assert e.value.abortReason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert splitStream(data, maxAssociateLength=len(data) - 6)
    refused = PDUFramer()
    refused.receiveData(header(PDUType.A_ASSOCIATE_RQ, DEFAULT_MAX_ASSOCIATE_LENGTH + 1))
    with pytest.raises(PDULengthError):
        refused.nextFrame()


def test_pdataCap() -> None:
    """
    §3.3 item 3: a P-DATA-TF longer than the maximum we advertise is refused
    from its header; one of exactly that length is accepted.
    """
    framer = PDUFramer(maxPDataLength=16382)
    framer.receiveData(header(PDUType.P_DATA_TF, 16382) + bytes(16382))
    assert framer.nextFrame() == Frame(PDUType.P_DATA_TF, bytes(16382))
    framer.receiveData(header(PDUType.P_DATA_TF, 16383))
    with pytest.raises(PDULengthError) as e:
        framer.nextFrame()
    assert "16383" in str(e.value) and "16382" in str(e.value)


def test_pdataUnlimitedHasCeiling() -> None:
    """
    §3.3 item 3: a maximum length of 0 ("unlimited", PS3.8 D.1) still caps
    P-DATA-TF at L{UNLIMITED_PDATA_CEILING}.
    """
    framer = PDUFramer(maxPDataLength=0)
    framer.receiveData(header(PDUType.P_DATA_TF, UNLIMITED_PDATA_CEILING))
    assert framer.nextFrame() is None
    framer = PDUFramer(maxPDataLength=0)
    framer.receiveData(header(PDUType.P_DATA_TF, UNLIMITED_PDATA_CEILING + 1))
    with pytest.raises(PDULengthError):
        framer.nextFrame()


def test_capReadWhenHeaderExamined() -> None:
    """
    A cap changed between frames applies to the next header even when it
    arrived in the same read, as after sending an A-ASSOCIATE-AC.
    """
    framer = PDUFramer(maxPDataLength=100)
    framer.receiveData(
        encode(ReleaseRQ()) + header(PDUType.P_DATA_TF, 50) + bytes(50)
    )
    assert framer.nextFrame() == Frame(PDUType.A_RELEASE_RQ, bytes(4))
    framer.maxPDataLength = 40
    with pytest.raises(PDULengthError):
        framer.nextFrame()


@pytest.mark.parametrize("pduType", [3, 5, 6, 7])
@pytest.mark.parametrize("length", [0, 1, 3, 5, 6, 1000])
def test_fixedSizeAtHeader(pduType: int, length: int) -> None:
    """
    §3.3 item 4: RJ, RELEASE-RQ/RP and ABORT headers that declare a length
    other than 4 are refused at the header.
    """
    framer = PDUFramer()
    framer.receiveData(header(pduType, length))
    with pytest.raises(PDULengthError) as e:
        framer.nextFrame()
    assert e.value.abortReason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert "always 4 bytes" in str(e.value)


@pytest.mark.parametrize("pduType", [0x00, *range(0x08, 0x100)])
def test_unknownTypes(pduType: int) -> None:
    """
    §3.3 item 7: every PDU type outside 1-7 is unrecognized-PDU.
    """
    framer = PDUFramer()
    framer.receiveData(header(pduType, 4) + bytes(4))
    with pytest.raises(UnrecognizedPDUError) as e:
        framer.nextFrame()
    assert e.value.abortReason == AbortReason.UNRECOGNIZED_PDU
    assert e.value.pduType == pduType


CLIENT_HELLO = bytes.fromhex("160301020001") + bytes(20)


@pytest.mark.parametrize(
    "data, looksLike",
    [
        (CLIENT_HELLO, "a TLS handshake"),
        (bytes.fromhex("160303007a02") + bytes(10), "a TLS handshake"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "an HTTP request"),
        (b"POST /wado HTTP/1.1\r\n", "an HTTP request"),
        (b"PRI * HTTP/2.0\r\n", "an HTTP request"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "SSH"),
        (b"\x08\x00\x00\x00\x00\x04abcd", None),
        (b"\x16\x01\x00\x00\x00\x00", None),
    ],
)
def test_foreignProtocolsNamed(data: bytes, looksLike: str | None) -> None:
    """
    §3.3 item 7: a TLS handshake, an HTTP request or an SSH banner on the
    plain port is unrecognized-PDU and is named so the log can say so.
    """
    framer = PDUFramer()
    framer.receiveData(data)
    with pytest.raises(UnrecognizedPDUError) as e:
        framer.nextFrame()
    assert e.value.looksLike == looksLike
    if looksLike is not None:
        assert looksLike in str(e.value)


def test_failureIsSticky() -> None:
    """
    After an error the framer keeps nothing: later data is discarded and
    every later call raises the same error.
    """
    framer = PDUFramer()
    framer.receiveData(b"GET / HTTP/1.1\r\n")
    with pytest.raises(UnrecognizedPDUError) as first:
        framer.nextFrame()
    framer.receiveData(b"x" * 100_000)
    assert framer.bufferedLength == 0
    with pytest.raises(UnrecognizedPDUError) as second:
        framer.nextFrame()
    assert second.value is first.value


def test_goodFramesBeforeGarbage() -> None:
    """
    PDUs that precede a bad header in the same read are delivered first;
    the error comes where the bad header is.
    """
    framer = PDUFramer()
    framer.receiveData(encode(ReleaseRQ()) * 2 + b"\xff" * 6)
    assert framer.nextFrame() == Frame(PDUType.A_RELEASE_RQ, bytes(4))
    assert framer.nextFrame() == Frame(PDUType.A_RELEASE_RQ, bytes(4))
    with pytest.raises(RemoteProtocolError):
        framer.nextFrame()


def test_partialPDUHeldUntilComplete() -> None:
    """
    §3.3 item 5 (framer part): a truncated PDU is held, not delivered, and
    what is held is exactly the received bytes of that PDU.
    """
    data = fixtureBytes("dcmtk_echoscu_default", "c2s")
    framer = PDUFramer()
    framer.receiveData(data[:100])
    assert framer.nextFrame() is None
    assert framer.bufferedLength == 100
    framer.receiveData(data[100:])
    assert len(drain(framer)) == 3


def test_failureDoesNotGrowItsTraceback() -> None:
    """
    Raising the stored error again does not chain tracebacks: a peer that
    keeps sending after a bad header cannot grow memory through the error.
    """
    import traceback

    framer = PDUFramer()
    framer.receiveData(header(0x01, 0xFFFFFFFF))
    depths = []
    for _ in range(50):
        framer.receiveData(b"x" * 1000)
        try:
            framer.nextFrame()
        except PDULengthError as e:
            depths.append(len(traceback.extract_tb(e.__traceback__)))
    assert framer.failed
    assert max(depths) == depths[0] <= 4
