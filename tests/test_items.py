"""
Tests for L{dicomecho.wire.items}: every item and sub-item with lengths that lie
(reference §3.3 items 12 and 13), unknown and repeated items, and encoding
limits. Items are decoded through a whole A-ASSOCIATE-RQ so the container
checks are exercised too.
"""

from __future__ import annotations

import struct

import pytest

from dicomecho.wire.errors import AbortReason, LocalProtocolError, PDUDecodeError
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
    encodeItem,
)
from dicomecho.wire.pdu import AssociateAC, AssociateRQ, PDUType, decodePDU

INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER


def item(itemType: int, body: bytes, declared: int | None = None) -> bytes:
    """
    An item header and body; C{declared} overrides the length field.
    """
    length = len(body) if declared is None else declared
    return struct.pack(">BBH", itemType, 0, length) + body


def rq(*items: bytes) -> AssociateRQ:
    body = struct.pack(">HH16s16s32x", 1, 0, b"ECHOSCP".ljust(16), b"SCU".ljust(16))
    value = decodePDU(PDUType.A_ASSOCIATE_RQ, body + b"".join(items))
    assert isinstance(value, AssociateRQ)
    return value


def userInfo(*subItems: bytes) -> bytes:
    return item(0x50, b"".join(subItems))


def u16(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


GOOD_PC = item(0x20, b"\x01\0\0\0" + item(0x30, b"1.2.3") + item(0x40, b"1.2"))

MALFORMED = {
    # item lengths longer than their container
    "app context longer than PDU": item(0x10, b"1.2", declared=4),
    "user info longer than PDU": item(0x50, item(0x51, b"\0\0\0\1"), declared=9),
    "pc longer than PDU": item(0x20, b"\x01\0\0\0", declared=5),
    "abstract syntax longer than pc": item(
        0x20, b"\x01\0\0\0" + item(0x30, b"1.2", declared=10)
    ),
    "transfer syntax longer than pc": item(
        0x20, b"\x01\0\0\0" + item(0x30, b"1.2") + item(0x40, b"1", declared=2)
    ),
    # presentation context shorter than its 4-byte fixed part
    "pc length 0": item(0x20, b""),
    "pc length 1": item(0x20, b"\x01"),
    "pc length 2": item(0x20, b"\x01\0"),
    "pc length 3": item(0x20, b"\x01\0\0"),
    # trailing bytes too short for an item header
    "1 trailing byte": GOOD_PC + b"\x10",
    "3 trailing bytes": GOOD_PC + b"\x10\0\0",
    "trailing bytes in pc": item(0x20, b"\x01\0\0\0" + item(0x30, b"1") + b"\x40\0"),
    "trailing bytes in user info": userInfo(item(0x51, b"\0\0\0\1"), b"\x52"),
    # maximum length must be exactly 4
    "max length 0 bytes": userInfo(item(0x51, b"")),
    "max length 2 bytes": userInfo(item(0x51, b"\0\1")),
    "max length 3 bytes": userInfo(item(0x51, b"\0\0\1")),
    "max length 5 bytes": userInfo(item(0x51, b"\0\0\0\0\1")),
    "impl UID longer than user info": userInfo(item(0x52, b"1.2", declared=8)),
    "async window 3 bytes": userInfo(item(0x53, b"\0\1\0")),
    "async window 5 bytes": userInfo(item(0x53, b"\0\1\0\1\0")),
    "role selection empty": userInfo(item(0x54, b"")),
    "role selection 1 byte": userInfo(item(0x54, b"\0")),
    "role UID longer than item": userInfo(item(0x54, b"\0\x20" + b"1.2\1\0")),
    "role bytes missing": userInfo(item(0x54, u16(b"1.2"))),
    "role byte short": userInfo(item(0x54, u16(b"1.2") + b"\1")),
    "role extra byte": userInfo(item(0x54, u16(b"1.2") + b"\1\0\0")),
    "version name longer than user info": userInfo(item(0x55, b"X", declared=3)),
    "ext neg empty": userInfo(item(0x56, b"")),
    "ext neg UID longer than item": userInfo(item(0x56, b"\0\x09" + b"1.2")),
    "common ext truncated": userInfo(item(0x57, u16(b"1.2"))),
    "common ext service UID too long": userInfo(
        item(0x57, u16(b"1.2") + b"\0\x40" + b"1.2")
    ),
    "common ext related field too long": userInfo(
        item(0x57, u16(b"1.2") + u16(b"1.3") + b"\0\x10" + u16(b"1.4"))
    ),
    "common ext related UID too long": userInfo(
        item(0x57, u16(b"1.2") + u16(b"1.3") + u16(b"\0\x09" + b"1.4"))
    ),
    "common ext trailing bytes": userInfo(
        item(0x57, u16(b"1.2") + u16(b"1.3") + u16(b"") + b"\0")
    ),
    "identity shorter than fixed part": userInfo(item(0x58, b"\x02\x01\0\0\0")),
    "identity primary longer than item": userInfo(
        item(0x58, b"\x02\x01" + b"\xff\xff" + b"alice" + u16(b""))
    ),
    "identity secondary longer than item": userInfo(
        item(0x58, b"\x02\x01" + u16(b"alice") + b"\0\x20" + b"s3cret")
    ),
    "identity trailing bytes": userInfo(
        item(0x58, b"\x01\x00" + u16(b"alice") + u16(b"") + b"\0")
    ),
    "identity response empty": userInfo(item(0x59, b"")),
    "identity response too long": userInfo(item(0x59, b"\0\x05ab")),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformedItems(name: str) -> None:
    """
    A length that runs past its container, or that is shorter or longer
    than the item's fixed part, is invalid-PDU-parameter-value.
    """
    with pytest.raises(PDUDecodeError) as e:
        rq(MALFORMED[name])
    assert e.value.abortReason == INVALID


REPEATED = {
    "application context": item(0x10, b"1.2") + item(0x10, b"1.2"),
    "user information": userInfo() + userInfo(),
    "maximum length": userInfo(item(0x51, b"\0\0\0\1"), item(0x51, b"\0\0\0\2")),
    "implementation UID": userInfo(item(0x52, b"1"), item(0x52, b"2")),
    "version name": userInfo(item(0x55, b"A"), item(0x55, b"B")),
    "async window": userInfo(item(0x53, b"\0\1\0\1"), item(0x53, b"\0\1\0\1")),
    "user identity": userInfo(
        *[item(0x58, b"\x01\x00" + u16(b"a") + u16(b""))] * 2
    ),
    "abstract syntax": item(
        0x20, b"\x01\0\0\0" + item(0x30, b"1.2") + item(0x30, b"1.3")
    ),
    "AC context in RQ": item(0x21, b"\x01\0\0\0"),
}


@pytest.mark.parametrize("name", sorted(REPEATED))
def test_repeatedOrMisplacedItems(name: str) -> None:
    """
    A second instance of a single-valued item, or an item that belongs to
    the other A-ASSOCIATE PDU, is unexpected-PDU-parameter.
    """
    with pytest.raises(PDUDecodeError) as e:
        rq(REPEATED[name])
    assert e.value.abortReason == UNEXPECTED


def test_unknownItemsSkipped() -> None:
    """
    §3.3 item 13: items and sub-items of unrecognized types are skipped
    (PS3.8 §9.3.1, Annex D) and kept for the log; the rest still decodes.
    """
    value = rq(
        item(0x10, b"1.2.840.10008.3.1.1.1"),
        item(0x00, b""),
        GOOD_PC,
        item(0x20, b"\x03\0\0\0" + item(0x99, b"junk") + item(0x30, b"9")),
        userInfo(item(0x5A, b"future"), item(0x51, b"\0\0\x40\0"), item(0xFF, b"")),
        item(0x60, b"later"),
    )
    assert [pc.contextID for pc in value.presentationContexts] == [1, 3]
    assert value.presentationContexts[1].abstractSyntax == "9"
    assert value.unknownItems == (UnknownItem(0x00, b""), UnknownItem(0x60, b"later"))
    info = value.userInformation
    assert info is not None and info.maximumLength == 0x4000
    assert info.unknownSubItems == (
        UnknownItem(0x5A, b"future"),
        UnknownItem(0xFF, b""),
    )


def test_missingItemsDecodeAsAbsent() -> None:
    """
    §3.3 items 13-14: missing sub-items are not decode errors; the
    negotiation layer answers them. No abstract syntax gives C{None}, no
    transfer syntax an empty tuple, no maximum length C{None}, and a
    maximum length of 0 stays 0 ("unlimited", PS3.8 D.1).
    """
    value = rq(
        item(0x20, b"\x01\0\0\0" + item(0x40, b"1.2")),
        item(0x20, b"\x02\0\0\0" + item(0x30, b"1.2")),
        item(0x20, b"\x00\0\0\0"),
        userInfo(item(0x52, b"1.2.3")),
    )
    assert value.presentationContexts == (
        PresentationContextRQ(1, None, ("1.2",)),
        PresentationContextRQ(2, "1.2", ()),
        PresentationContextRQ(0, None, ()),
    )
    assert value.userInformation is not None
    assert value.userInformation.maximumLength is None
    zero = rq(userInfo(item(0x51, b"\0\0\0\0")))
    assert zero.userInformation is not None
    assert zero.userInformation.maximumLength == 0


def test_zeroLengthItems() -> None:
    """
    Zero-length UID items decode as empty strings and empty user
    information as all-absent; none is a decode error.
    """
    value = rq(item(0x10, b""), item(0x20, b"\x01\0\0\0" + item(0x30, b"") + item(0x40, b"")), userInfo())
    assert value.applicationContextName == ""
    assert value.presentationContexts == (PresentationContextRQ(1, "", ("",)),)
    assert value.userInformation == UserInformation()


def test_uidPadding() -> None:
    """
    A UID padded with a trailing NUL (PS3.5 style) or spaces loses the
    padding; an embedded NUL is kept as data.
    """
    value = rq(
        item(0x10, b"1.2.840.10008.3.1.1.1\0"),
        item(0x20, b"\x01\0\0\0" + item(0x30, b"1.2.840.10008.1.1\0") + item(0x40, b"1.2 ")),
        userInfo(item(0x52, b"1.2\x003")),
    )
    assert value.applicationContextName == "1.2.840.10008.3.1.1.1"
    assert value.presentationContexts[0].abstractSyntax == "1.2.840.10008.1.1"
    assert value.presentationContexts[0].transferSyntaxes == ("1.2",)
    assert value.userInformation is not None
    assert value.userInformation.implementationClassUID == "1.2\x003"


def test_largeUserIdentity() -> None:
    """
    §3.3 item 16 (decoder part): the largest primary field a 0x58 sub-item
    can hold inside its 0x50 item (65,535 minus the 4-byte sub-item header
    minus 6 bytes of fixed fields) and unknown identity
    types (0, 6, 255) decode, since judging them is the policy's job. A
    primary field that declares 65,535 bytes cannot fit its item and is
    refused.
    """
    primary = b"u" * (0xFFFF - 4 - 6)
    for identityType in (0, 6, 0xFF):
        body = bytes((identityType, 1)) + u16(primary) + u16(b"")
        assert len(userInfo(item(0x58, body))) == 4 + 0xFFFF
        value = rq(userInfo(item(0x58, body)))
        assert value.userInformation is not None
        identity = value.userInformation.userIdentity
        assert identity == UserIdentityRQ(identityType, 1, primary, b"")
    overlong = b"\x02\x01\xff\xff" + primary + b"\0\0"
    with pytest.raises(PDUDecodeError) as e:
        rq(userInfo(item(0x58, overlong[: 0xFFFF - 4])))
    assert e.value.abortReason == INVALID


def test_acceptItems() -> None:
    """
    A-ASSOCIATE-AC items: 0x21 contexts (a rejected one may omit the
    transfer syntax) and the 0x59 user identity response.
    """
    body = struct.pack(">HH16s16s32x", 1, 0, b"A".ljust(16), b"B".ljust(16))
    items = (
        item(0x21, b"\x01\0\0\0" + item(0x40, b"1.2.840.10008.1.2"))
        + item(0x21, b"\x03\0\x03\0")
        + userInfo(item(0x51, b"\0\0\x40\0"), item(0x59, u16(b"token")))
    )
    ac = decodePDU(PDUType.A_ASSOCIATE_AC, body + items)
    assert isinstance(ac, AssociateAC)
    assert ac.presentationContexts == (
        PresentationContextAC(1, 0, "1.2.840.10008.1.2"),
        PresentationContextAC(3, 3, None),
    )
    assert ac.userInformation is not None
    assert ac.userInformation.userIdentityResponse == UserIdentityAC(b"token")
    with pytest.raises(PDUDecodeError) as e:
        decodePDU(PDUType.A_ASSOCIATE_AC, body + item(0x20, b"\x01\0\0\0"))
    assert e.value.abortReason == UNEXPECTED
    with pytest.raises(PDUDecodeError) as e:
        decodePDU(
            PDUType.A_ASSOCIATE_AC,
            body + item(0x21, b"\x01\0\0\0" + item(0x40, b"1") + item(0x40, b"2")),
        )
    assert e.value.abortReason == UNEXPECTED


@pytest.mark.parametrize(
    "value",
    [
        PresentationContextRQ(256, "1.2", ("1.2",)),
        PresentationContextAC(1, 256, "1.2"),
        PresentationContextRQ(1, "1.2" * 30000, ()),
        AsyncOperationsWindow(0x10000, 1),
        RoleSelection("1.2", 256, 0),
        SOPClassCommonExtendedNegotiation("1.2", "1.3", (), 256),
        UserIdentityRQ(256, 0, b""),
        UserIdentityRQ(1, 0, b"x" * 0x10000),
        UserInformation(maximumLength=2**32),
        UserInformation(implementationClassUID="1.2€"),
        SOPClassExtendedNegotiation("1.2", b"x" * 0xFFFF),
    ],
)
def test_encodeRefusesUnrepresentableValues(value: object) -> None:
    """
    Values that do not fit their PS3.8 field raise L{LocalProtocolError}
    instead of being truncated or wrapped.
    """
    with pytest.raises(LocalProtocolError):
        value.encode()  # type: ignore[attr-defined]


def test_encodeItemLimit() -> None:
    """
    An item body of 65,535 bytes fits; one more does not.
    """
    assert len(encodeItem(0x10, b"x" * 0xFFFF)) == 0xFFFF + 4
    with pytest.raises(LocalProtocolError):
        encodeItem(0x10, b"x" * 0x10000)


def test_unknownItemsKeptUpToALimit() -> None:
    """
    Only the first few unknown items and sub-items are kept; the rest are
    counted, so a request made of thousands of them costs no memory.
    """
    from dicomecho.wire.items import MAX_KEPT_UNKNOWN_ITEMS

    value = rq(*[item(0x60, b"")] * 5000, userInfo(*[item(0x70, b"x")] * 3000))
    assert len(value.unknownItems) == MAX_KEPT_UNKNOWN_ITEMS
    assert value.droppedUnknownItems == 5000 - MAX_KEPT_UNKNOWN_ITEMS
    assert value.userInformation is not None
    assert len(value.userInformation.unknownSubItems) == MAX_KEPT_UNKNOWN_ITEMS
    assert value.userInformation.droppedUnknownSubItems == 3000 - MAX_KEPT_UNKNOWN_ITEMS
