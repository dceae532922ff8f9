"""
Tests for L{dicomecho.wire.pdu}: round trips on bytes captured from DCMTK and
pynetdicom, the values decoded from them, and malformed PDU bodies.
"""

from __future__ import annotations

import struct

import pytest

from dicomecho.wire.errors import AbortReason, LocalProtocolError, PDUDecodeError
from dicomecho.wire.itemcodec import ItemType, iterItems
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.pdu import (
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
from tests.support.helpers import SESSIONS, fixtureBytes, splitStream

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
PYNETDICOM_UID = "1.2.826.0.1.3680043.9.3811.3.0.4"
DCMTK_UID = "1.2.276.0.7230010.3.0.3.6.7"


def frame(pduType: int, body: bytes) -> bytes:
    return struct.pack(">BBI", pduType, 0, len(body)) + body


def zeroContextReservedBytes(rqBody: bytes) -> bytes:
    """
    DCMTK sends 0xFF in the third reserved byte of each 0x20 item; we send 0
    as PS3.8 §9.3.2.2 asks. Return C{rqBody} with those bytes zeroed.
    """
    patched = bytearray(rqBody)
    for itemType, _, start, _ in iterItems(rqBody, 68, len(rqBody), "test"):
        if itemType == ItemType.PRESENTATION_CONTEXT_RQ:
            patched[start + 1 : start + 4] = b"\0\0\0"
    return bytes(patched)


def sortUserInformation(rqBody: bytes) -> bytes:
    """
    pynetdicom sends user-information sub-items out of type order; we send
    them ascending. Return C{rqBody} with its 0x50 sub-items sorted by type.
    """
    out = bytearray(rqBody[:68])
    for itemType, second, start, end in iterItems(rqBody, 68, len(rqBody), "test"):
        body = rqBody[start:end]
        if itemType == ItemType.USER_INFORMATION:
            subs = [
                rqBody[s - 4 : e]
                for _, _, s, e in iterItems(rqBody, start, end, "test")
            ]
            body = b"".join(sorted(subs, key=lambda sub: sub[0]))
        out += struct.pack(">BBH", itemType, second, len(body)) + body
    return bytes(out)


@pytest.mark.parametrize("session", SESSIONS)
@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_capturedStreamsRoundTrip(session: str, direction: str) -> None:
    """
    Every PDU captured from a real peer decodes; encoding the value and
    decoding again gives the same value; and the encoding is the captured
    bytes, except for two documented peer quirks (DCMTK's non-zero reserved
    byte, pynetdicom's sub-item order) which are normalised first.
    """
    frames = splitStream(fixtureBytes(session, direction))
    assert frames
    for f in frames:
        value = decodePDU(f.pduType, f.body)
        assert value.pduType == f.pduType
        encoded = encode(value)
        assert decode(encoded) == value
        expected = f.body
        if f.pduType == PDUType.A_ASSOCIATE_RQ and session.startswith("dcmtk"):
            expected = zeroContextReservedBytes(expected)
        if f.pduType == PDUType.A_ASSOCIATE_RQ and session == "pynetdicom_extended":
            expected = sortUserInformation(expected)
        assert encoded == frame(f.pduType, expected)


def test_dcmtkRequestValues() -> None:
    """
    DCMTK echoscu's default A-ASSOCIATE-RQ decodes to the values it sent.
    """
    rq, pdata, release = (
        decodePDU(*f) for f in splitStream(fixtureBytes("dcmtk_echoscu_default", "c2s"))
    )
    assert isinstance(rq, AssociateRQ)
    assert rq.calledAETitle == "ECHOSCP"
    assert rq.callingAETitle == "MYSCU"
    assert rq.protocolVersion == 1
    assert rq.applicationContextName == "1.2.840.10008.3.1.1.1"
    assert rq.presentationContexts == (
        PresentationContextRQ(1, VERIFICATION, (IMPLICIT_LE,)),
    )
    info = rq.userInformation
    assert info is not None
    assert info.maximumLength == 16384
    assert info.implementationClassUID == DCMTK_UID
    assert info.implementationVersionName == "OFFIS_DCMTK_367"
    assert rq.unknownItems == () and info.unknownSubItems == ()
    assert isinstance(pdata, PDataTF)
    (pdv,) = pdata.pdvs
    assert (pdv.contextID, pdv.isCommand, pdv.isLastFragment) == (1, True, True)
    assert len(pdv.data) == 68
    assert release == ReleaseRQ()


def test_pynetdicomAcceptValues() -> None:
    """
    pynetdicom echoscp's A-ASSOCIATE-AC (reference §3.2) decodes to the
    values the reference documents.
    """
    ac = decodePDU(*splitStream(fixtureBytes("dcmtk_echoscu_default", "s2c"))[0])
    assert isinstance(ac, AssociateAC)
    assert (ac.calledAETitle, ac.callingAETitle) == ("ECHOSCP", "MYSCU")
    (pc,) = ac.presentationContexts
    assert (pc.contextID, pc.result, pc.transferSyntax) == (1, 0, IMPLICIT_LE)
    assert ac.userInformation is not None
    assert ac.userInformation.maximumLength == 16382
    assert ac.userInformation.implementationClassUID == PYNETDICOM_UID
    assert ac.userInformation.implementationVersionName == "PYNETDICOM_304"


def test_largeRequestValues() -> None:
    """
    DCMTK's largest request, 128 contexts of 16 transfer syntaxes (55 KiB),
    decodes whole: odd IDs 1-255, each with its 16 syntaxes.
    """
    (rqFrame, _, _) = splitStream(fixtureBytes("dcmtk_echoscu_propose_pc", "c2s"))
    assert len(rqFrame.body) == 55707
    rq = decodePDU(*rqFrame)
    assert isinstance(rq, AssociateRQ)
    assert [pc.contextID for pc in rq.presentationContexts] == list(range(1, 256, 2))
    assert all(len(pc.transferSyntaxes) == 16 for pc in rq.presentationContexts)
    ac = decodePDU(*splitStream(fixtureBytes("dcmtk_echoscu_propose_pc", "s2c"))[0])
    assert isinstance(ac, AssociateAC)
    assert len(ac.presentationContexts) == 128


def test_manyTransferSyntaxes() -> None:
    """
    echoscu --propose-ts 38 sends one context with 38 transfer syntaxes.
    """
    rq = decodePDU(*splitStream(fixtureBytes("dcmtk_echoscu_propose_ts", "c2s"))[0])
    assert isinstance(rq, AssociateRQ)
    (pc,) = rq.presentationContexts
    assert len(pc.transferSyntaxes) == 38
    assert len(set(pc.transferSyntaxes)) == 38


def test_maxPDUAndRepeat() -> None:
    """
    --max-pdu 4096 --repeat 3: the maximum length sub-item carries 4096 and
    three P-DATA-TF follow.
    """
    frames = splitStream(fixtureBytes("dcmtk_echoscu_maxpdu", "c2s"))
    pdus = [decodePDU(*f) for f in frames]
    rq = pdus[0]
    assert isinstance(rq, AssociateRQ) and rq.userInformation is not None
    assert rq.userInformation.maximumLength == 4096
    assert [type(p) for p in pdus[1:]] == [PDataTF, PDataTF, PDataTF, ReleaseRQ]


def test_abortValues() -> None:
    """
    echoscu --abort ends with an A-ABORT from the service-user, reason 0.
    """
    last = decodePDU(*splitStream(fixtureBytes("dcmtk_echoscu_abort", "c2s"))[-1])
    assert last == Abort(0, 0)


def test_pynetdicomExtendedNegotiationValues() -> None:
    """
    pynetdicom's request with every extended negotiation sub-item decodes to
    what the SCU script asked for (tests/fixtures/pynetdicom_extended_scu.py).
    """
    rq = decodePDU(*splitStream(fixtureBytes("pynetdicom_extended", "c2s"))[0])
    assert isinstance(rq, AssociateRQ)
    info = rq.userInformation
    assert info is not None
    assert info.implementationClassUID == PYNETDICOM_UID
    assert info.asyncOperationsWindow is not None
    assert (
        info.asyncOperationsWindow.maxOperationsInvoked,
        info.asyncOperationsWindow.maxOperationsPerformed,
    ) == (5, 5)
    (role,) = info.roleSelections
    assert (role.sopClassUID, role.scuRole, role.scpRole) == (VERIFICATION, 1, 0)
    identity = info.userIdentity
    assert identity is not None
    assert (identity.identityType, identity.positiveResponseRequested) == (2, 1)
    assert (identity.primaryField, identity.secondaryField) == (b"alice", b"s3cret")
    (extended,) = info.sopClassExtendedNegotiations
    assert extended.sopClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert extended.applicationInformation
    (common,) = info.sopClassCommonExtendedNegotiations
    assert common.sopClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert common.serviceClassUID == "1.2.840.10008.4.2"
    assert len(common.relatedGeneralSOPClassUIDs) == 1


def test_userIdentityReprHidesFields() -> None:
    """
    The repr of a decoded user identity shows lengths, never the passcode.
    """
    rq = decodePDU(*splitStream(fixtureBytes("pynetdicom_extended", "c2s"))[0])
    assert isinstance(rq, AssociateRQ)
    text = repr(rq)
    assert "s3cret" not in text and "alice" not in text
    assert "secondaryField=<6 bytes>" in text


# --- malformed bodies -------------------------------------------------------


def rqBody(items: bytes = b"", version: int = 1) -> bytes:
    return struct.pack(">HH16s16s32x", version, 0, b"ECHOSCP".ljust(16), b"SCU".ljust(16)) + items


@pytest.mark.parametrize("length", [0, 1, 10, 67])
def test_associateShorterThanFixedPart(length: int) -> None:
    """
    §3.3 item 11: an A-ASSOCIATE-RQ/AC body shorter than its 68-byte fixed
    part is invalid-PDU-parameter-value.
    """
    for pduType in (PDUType.A_ASSOCIATE_RQ, PDUType.A_ASSOCIATE_AC):
        with pytest.raises(PDUDecodeError) as e:
            decodePDU(pduType, rqBody()[:length])
        assert e.value.abortReason == AbortReason.INVALID_PDU_PARAMETER_VALUE


@pytest.mark.parametrize("version", [0, 2, 3, 0xFFFF])
def test_protocolVersionIsData(version: int) -> None:
    """
    §3.3 item 11: the protocol version is decoded as sent; whether bit 0 is
    set (PS3.8 §9.3.2) is for negotiation to judge, with an A-ASSOCIATE-RJ.
    """
    rq = decodePDU(PDUType.A_ASSOCIATE_RQ, rqBody(version=version))
    assert isinstance(rq, AssociateRQ)
    assert rq.protocolVersion == version
    assert rq.applicationContextName is None
    assert rq.userInformation is None
    assert rq.presentationContexts == ()


def test_reservedFieldsNotTested() -> None:
    """
    Reserved fields are not tested on receipt (PS3.8 §9.3.2): non-zero
    reserved bytes in the header, fixed part and items are accepted.
    """
    body = bytearray(rqBody(b"\x10\x77\x00\x03abc"))
    body[2:4] = b"\xff\xff"
    body[36:68] = b"\xee" * 32
    rq = decode(bytes([1, 0x99]) + struct.pack(">I", len(body)) + bytes(body))
    assert isinstance(rq, AssociateRQ)
    assert rq.applicationContextName == "abc"
    # Kept as received: an AC carries the RQ's (PS3.8 Table 9-17).
    assert rq.reservedField == b"\xee" * 32


@pytest.mark.parametrize("cls", [AssociateRQ, AssociateAC])
def test_reservedFieldRoundTrip(cls: type) -> None:
    """
    Bytes 43-74 of an A-ASSOCIATE-RQ or -AC decode to C{reservedField}
    and encode as given, at that place; the default is 32 zero bytes.
    """
    reserved = bytes(range(1, 33))
    pdu = cls("ECHOSCP", "SCU", reservedField=reserved)
    data = encode(pdu)
    assert data[42:74] == reserved
    assert decode(data) == pdu and decode(data).reservedField == reserved
    assert encode(cls("ECHOSCP", "SCU"))[42:74] == bytes(32)
    assert decode(data) != cls("ECHOSCP", "SCU")


@pytest.mark.parametrize("value", [b"", bytes(31), bytes(33), bytearray(32), "x" * 32])
def test_reservedFieldMustBe32Bytes(value: object) -> None:
    """
    A reserved field of another length or type is refused on encoding,
    never padded or cut.
    """
    with pytest.raises(LocalProtocolError, match="reserved field"):
        encode(AssociateAC("ECHOSCP", "SCU", reservedField=value))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw, title",
    [
        (b"ECHOSCP         ", "ECHOSCP"),
        (b"  ECHO SCP      ", "ECHO SCP"),
        (b"ECHOSCP\0\0\0\0\0\0\0\0\0", "ECHOSCP"),
        (b"                ", ""),
        (b"\0" * 16, ""),
        (b"A\\B\x01\x7f\xe9../x      ", "A\\B\x01\x7f\xe9../x"),
        (b"AB\0CD           ", "AB\0CD"),
    ],
)
def test_aeTitlesAreData(raw: bytes, title: str) -> None:
    """
    §3.3 item 15 (decoder part): AE titles lose leading/trailing spaces and
    trailing NUL padding; control characters, backslashes, embedded NULs and
    bytes above 0x7F are kept as data, never a decode error.
    """
    body = struct.pack(">HH16s16s32x", 1, 0, raw, raw)
    rq = decodePDU(PDUType.A_ASSOCIATE_RQ, body)
    assert isinstance(rq, AssociateRQ)
    assert rq.calledAETitle == title and rq.callingAETitle == title


def test_aeTitleEncodingLimits() -> None:
    """
    Encoding refuses AE titles longer than 16 bytes or outside ISO 8859-1,
    and pads shorter ones with spaces.
    """
    with pytest.raises(LocalProtocolError):
        AssociateRQ("A" * 17, "SCU").encode()
    with pytest.raises(LocalProtocolError):
        AssociateRQ("ÉCHO€", "SCU").encode()
    assert AssociateRQ("ECHO", "SCU").encode()[10:26] == b"ECHO" + b" " * 12


@pytest.mark.parametrize("pduType", [3, 5, 6, 7])
@pytest.mark.parametrize("length", [0, 3, 5, 100])
def test_fixedSizePDUsWrongLength(pduType: int, length: int) -> None:
    """
    §3.3 item 4: A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT bodies of
    other than 4 bytes are invalid-PDU-parameter-value.
    """
    with pytest.raises(PDUDecodeError) as e:
        decodePDU(pduType, bytes(length))
    assert e.value.abortReason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_fixedSizePDUValues() -> None:
    """
    The reference's captured RJ and A-ABORT bytes (reference §3.3) decode
    and re-encode exactly.
    """
    cases = {
        "03000000000400010202": AssociateRJ(1, 2, 2),
        "03000000000400020302": AssociateRJ(2, 3, 2),
        "07000000000400000000": Abort(0, 0),
        "07000000000400000200": Abort(2, 0),
        "06000000000400000000": ReleaseRP(),
        "05000000000400000000": ReleaseRQ(),
    }
    for hexBytes, value in cases.items():
        assert decode(bytes.fromhex(hexBytes)) == value
        assert encode(value).hex() == hexBytes


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "no PDV"),
        (b"\x00\x00\x00\x01\x01", "trailing"),
        (b"\x00\x00\x00\x01\x01\x03", "shorter than 2"),
        (b"\x00\x00\x00\x00\x01\x03", "shorter than 2"),
        (b"\x00\x00\x00\x05\x01\x03ab", "only 4 remain"),
        (b"\xff\xff\xff\xff\x01\x03ab", "remain"),
        (b"\x00\x00\x00\x04\x01\x03ab\x00", "trailing"),
        (b"\x00\x00\x00\x04\x01\x03ab\x00\x00\x00\x04\x01", "trailing"),
    ],
)
def test_malformedPDVs(body: bytes, message: str) -> None:
    """
    §3.3 item 17: a PDV item length below 2, above what remains, or PDV
    items that do not exactly fill the PDU are invalid-PDU-parameter-value.
    """
    with pytest.raises(PDUDecodeError, match=message) as e:
        decodePDU(PDUType.P_DATA_TF, body)
    assert e.value.abortReason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_pdvControlHeader() -> None:
    """
    The message control header's bit 0 is command/data and bit 1 is last
    fragment (PS3.8 E.2); the reserved bits are not tested on receipt.
    """
    body = b"".join(
        struct.pack(">IBB", 3, 1, control) + b"x" for control in (0, 1, 2, 3, 0xFC)
    )
    pdata = decodePDU(PDUType.P_DATA_TF, body)
    assert isinstance(pdata, PDataTF)
    assert [(p.isCommand, p.isLastFragment) for p in pdata.pdvs] == [
        (False, False),
        (True, False),
        (False, True),
        (True, True),
        (False, False),
    ]
    assert PresentationDataValue(7, True, False, b"ab").encode() == bytes.fromhex(
        "00000004070161 62".replace(" ", "")
    )


def test_decodeWholePDULength() -> None:
    """
    L{decode} insists the header's length matches the bytes given.
    """
    good = encode(ReleaseRQ())
    with pytest.raises(PDUDecodeError):
        decode(good[:-1])
    with pytest.raises(PDUDecodeError):
        decode(good + b"\0")
    with pytest.raises(PDUDecodeError):
        decode(good[:5])


def test_decodeUnknownType() -> None:
    """
    L{decodePDU} refuses a type that is not one of the seven with
    unrecognized-PDU.
    """
    from dicomecho.wire.errors import UnrecognizedPDUError

    with pytest.raises(UnrecognizedPDUError) as e:
        decodePDU(0x08, b"")
    assert e.value.abortReason == AbortReason.UNRECOGNIZED_PDU
