"""
Malformed and repeated A-ASSOCIATE-RQ items, and the encoders that build
them: the decoder's cases (C{tests.test_items}) and the ones hostile peers
send over the wire (C{tests.test_hostile_*}).

L{MALFORMED} holds items whose lengths lie (longer than their container,
or shorter or longer than their fixed part): each is
invalid-PDU-parameter-value. L{REPEATED} holds a second instance of a
single-valued item, or an item of the other A-ASSOCIATE PDU: each is
unexpected-PDU-parameter.
"""

from __future__ import annotations

import struct

from dicomecho.wire.pdu import AssociateRQ, PDUType, decodePDU

__all__ = ["item", "rq", "userInfo", "u16", "GOOD_PC", "MALFORMED", "REPEATED"]


def item(itemType: int, body: bytes, declared: int | None = None) -> bytes:
    """
    An item header and body; C{declared} overrides the length field.
    """
    length = len(body) if declared is None else declared
    return struct.pack(">BBH", itemType, 0, length) + body


def rq(*items: bytes) -> AssociateRQ:
    """
    Decode an A-ASSOCIATE-RQ whose variable field is C{items}.
    """
    body = struct.pack(">HH16s16s32x", 1, 0, b"ECHOSCP".ljust(16), b"SCU".ljust(16))
    value = decodePDU(PDUType.A_ASSOCIATE_RQ, body + b"".join(items))
    assert isinstance(value, AssociateRQ)
    return value


def userInfo(*subItems: bytes) -> bytes:
    """
    A User Information item (0x50) holding C{subItems}.
    """
    return item(0x50, b"".join(subItems))


def u16(data: bytes) -> bytes:
    """
    C{data} after its 2-byte big-endian length.
    """
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
