"""
Tests for L{dicomecho.wire.items} and L{dicomecho.wire.itemcodec}: items with
lengths that lie, unknown and repeated items, presentation context items,
and encoding limits. Items are decoded through a whole A-ASSOCIATE-RQ so the
container checks are exercised too. The User Information sub-items have
their own tests in C{tests.test_userinfo}.
"""

from __future__ import annotations

import struct

import pytest

from dicomecho.wire.errors import AbortReason, LocalProtocolError, PDUDecodeError
from dicomecho.wire.itemcodec import MAX_KEPT_UNKNOWN_ITEMS, UnknownItem, encodeItem
from dicomecho.wire.items import PresentationContextAC, PresentationContextRQ
from dicomecho.wire.userinfo import UserIdentityAC, UserInformation
from dicomecho.wire.pdu import AssociateAC, PDUType, decodePDU
from tests.support.malformed import GOOD_PC, MALFORMED, REPEATED, item, rq, u16, userInfo

INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformedItems(name: str) -> None:
    """
    A length that runs past its container, or that is shorter or longer
    than the item's fixed part, is invalid-PDU-parameter-value.
    """
    with pytest.raises(PDUDecodeError) as e:
        rq(MALFORMED[name])
    assert e.value.abortReason == INVALID


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
    Items and sub-items of unrecognized types are skipped
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
    Missing sub-items are not decode errors; the
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
    ],
)
def test_encodeRefusesUnrepresentableValues(value: object) -> None:
    """
    Values that do not fit their PS3.8 field raise L{LocalProtocolError}
    instead of being truncated or wrapped (for the sub-items, see
    C{tests.test_userinfo}).
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
    value = rq(*[item(0x60, b"")] * 5000, userInfo(*[item(0x70, b"x")] * 3000))
    assert len(value.unknownItems) == MAX_KEPT_UNKNOWN_ITEMS
    assert value.droppedUnknownItems == 5000 - MAX_KEPT_UNKNOWN_ITEMS
    assert value.userInformation is not None
    assert len(value.userInformation.unknownSubItems) == MAX_KEPT_UNKNOWN_ITEMS
    assert value.userInformation.droppedUnknownSubItems == 3000 - MAX_KEPT_UNKNOWN_ITEMS
