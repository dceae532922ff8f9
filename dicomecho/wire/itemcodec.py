# -*- test-case-name: tests.test_items -*-
"""
The framing every item and sub-item of the A-ASSOCIATE-RQ/AC variable field
shares (PS3.8 §9.3.2, §9.3.3 and Annex D): item-type bytes, the item header,
length-prefixed fields, text fields, and the unknown item.

Every item is C{type (1) | reserved or version (1) | length (2, big endian) |
body}. Decoding walks a byte range and checks every length against what is
left of its container before reading, so a lying length can only produce a
L{PDUDecodeError}, never an over-read or a large allocation.

Strings are decoded as ISO 8859-1 so that any byte survives as one
character: control characters and bytes above 0x7F are data for the policy
layer to judge, not decoder failures. UIDs lose trailing NUL/space padding
(PS3.5 §9.1 pads to even length with a NUL; PS3.8 items should not, but some
peers do).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator, Sized, TypeVar

from dicomecho.wire.errors import AbortReason, LocalProtocolError, PDUDecodeError

__all__ = [
    "ItemType",
    "UnknownItem",
    "MAX_KEPT_UNKNOWN_ITEMS",
    "MAX_ITEMS",
    "MAX_PRESENTATION_CONTEXTS",
    "ItemBudget",
    "checkRoom",
    "iterItems",
    "encodeItem",
    "decodeText",
    "encodeText",
    "lengthPrefixed",
    "readLengthPrefixed",
    "expectEnd",
    "needLength",
    "singleValued",
]

_HEADER = struct.Struct(">BBH")
_U16 = struct.Struct(">H")

_INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
_UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER


#: Unknown items kept per container for the log; beyond this they are
#: only counted, so a request made of 260,000 empty items costs no memory.
MAX_KEPT_UNKNOWN_ITEMS = 8


#: Items and sub-items one A-ASSOCIATE-RQ/AC may hold in all. Each costs
#: the decoder a few hundred nanoseconds whatever its size, so a request
#: of tiny items is dear per byte; this bounds it (benchmarks/requestcost.py).
#: DCMTK's largest request (128 contexts x 38 transfer syntaxes) holds 5,125.
MAX_ITEMS = 8192


#: Presentation context items one A-ASSOCIATE-RQ/AC may hold: their IDs
#: are odd numbers from 1 to 255 (PS3.8 §9.3.2.2, §7.1.1.13). The
#: sub-items that come one per SOP class of those contexts (role
#: selection, SOP class extended and common extended negotiation, PS3.7
#: D.3.3.4 to D.3.3.6) are held to the same number.
MAX_PRESENTATION_CONTEXTS = 128


class ItemBudget:
    """
    How many more items and sub-items the PDU being decoded may hold; every
    container of that PDU spends from the same budget.
    """

    __slots__ = ("left", "limit")

    def __init__(self, limit: int = MAX_ITEMS) -> None:
        self.limit = limit
        self.left = limit


def checkRoom(kept: Sized, limit: int, what: str) -> None:
    """
    @raise PDUDecodeError: if C{kept} already holds C{limit} items, so the
        one being read is one too many (C{what} names them, and why).
    """
    if len(kept) >= limit:
        raise PDUDecodeError(f"more than {limit} {what}", _INVALID)


class ItemType:
    """
    Item-type bytes (PS3.8 §9.3.2, Annex D; PS3.7 D.3.3).
    """

    APPLICATION_CONTEXT = 0x10
    PRESENTATION_CONTEXT_RQ = 0x20
    PRESENTATION_CONTEXT_AC = 0x21
    ABSTRACT_SYNTAX = 0x30
    TRANSFER_SYNTAX = 0x40
    USER_INFORMATION = 0x50
    MAXIMUM_LENGTH = 0x51
    IMPLEMENTATION_CLASS_UID = 0x52
    ASYNC_OPERATIONS_WINDOW = 0x53
    ROLE_SELECTION = 0x54
    IMPLEMENTATION_VERSION_NAME = 0x55
    SOP_CLASS_EXTENDED = 0x56
    SOP_CLASS_COMMON_EXTENDED = 0x57
    USER_IDENTITY_RQ = 0x58
    USER_IDENTITY_AC = 0x59


def decodeText(data: bytes) -> str:
    """
    Decode a UID or name field: ISO 8859-1 (every byte survives), trailing
    NUL and space padding removed.
    """
    return data.decode("latin-1").rstrip("\0 ")


def encodeText(text: str, what: str) -> bytes:
    """
    Encode a UID or name field, unpadded (PS3.8 Annex F).

    @raise LocalProtocolError: if C{text} is not ISO 8859-1.
    """
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} {text!r} is not encodable") from None


def encodeItem(itemType: int, body: bytes, second: int = 0) -> bytes:
    """
    Prefix C{body} with an item header.

    @param second: the byte after the item type (reserved, or the sub-item
        version of item 0x57).
    @raise LocalProtocolError: if the body does not fit a 16-bit length.
    """
    if len(body) > 0xFFFF:
        raise LocalProtocolError(
            f"item 0x{itemType:02X} body of {len(body)} bytes exceeds 65535"
        )
    return _HEADER.pack(itemType, second, len(body)) + body


def lengthPrefixed(value: bytes, what: str) -> bytes:
    """
    C{value} after its 2-byte big-endian length, as the fields of sub-items
    0x54 and 0x56 to 0x59 are written (PS3.7 D.3.3).

    @raise LocalProtocolError: if C{value} does not fit a 16-bit length.
    """
    if len(value) > 0xFFFF:
        raise LocalProtocolError(f"{what} of {len(value)} bytes exceeds 65535")
    return _U16.pack(len(value)) + value


def iterItems(
    data: bytes, start: int, end: int, container: str, budget: ItemBudget | None = None
) -> Iterator[tuple[int, int, int, int]]:
    """
    Walk the items in C{data[start:end]}, each spent from C{budget}.

    @return: an iterator of C{(itemType, secondByte, bodyStart, bodyEnd)}.
    @raise PDUDecodeError: if a header or a body runs past C{end}, or the
        budget is spent.
    """
    pos = start
    while pos < end:
        if budget is not None:
            budget.left -= 1
            if budget.left < 0:
                raise PDUDecodeError(
                    f"{container}: more than {budget.limit} items and sub-items in "
                    f"one PDU (a limit of this server)",
                    _INVALID,
                )
        if end - pos < 4:
            raise PDUDecodeError(
                f"{container}: {end - pos} trailing byte(s), too short for an "
                f"item header",
                _INVALID,
            )
        itemType, second, length = _HEADER.unpack_from(data, pos)
        bodyStart = pos + 4
        if length > end - bodyStart:
            raise PDUDecodeError(
                f"{container}: item 0x{itemType:02X} declares {length} bytes "
                f"but only {end - bodyStart} remain",
                _INVALID,
            )
        yield itemType, second, bodyStart, bodyStart + length
        pos = bodyStart + length


def readLengthPrefixed(
    data: bytes, pos: int, end: int, what: str
) -> tuple[bytes, int]:
    """
    Read a 2-byte length and that many bytes; return them and the new offset.

    @raise PDUDecodeError: if the length or the bytes run past C{end}.
    """
    if end - pos < 2:
        raise PDUDecodeError(f"{what}: length field runs past its item", _INVALID)
    (length,) = _U16.unpack_from(data, pos)
    pos += 2
    if length > end - pos:
        raise PDUDecodeError(
            f"{what}: declares {length} bytes but only {end - pos} remain", _INVALID
        )
    return data[pos : pos + length], pos + length


def expectEnd(pos: int, end: int, what: str) -> None:
    """
    @raise PDUDecodeError: if bytes are left between C{pos} and C{end}.
    """
    if pos != end:
        raise PDUDecodeError(
            f"{what}: {end - pos} unexpected trailing byte(s)", _INVALID
        )


def needLength(length: int, minimum: int, what: str) -> None:
    """
    @raise PDUDecodeError: if an item of C{length} bytes cannot hold its
        fixed part of C{minimum} bytes.
    """
    if length < minimum:
        raise PDUDecodeError(
            f"{what}: item length {length} is shorter than its fixed part "
            f"({minimum})",
            _INVALID,
        )


_T = TypeVar("_T")


def singleValued(current: _T | None, new: _T, what: str) -> _T:
    """
    C{new}, the value of an item that may appear once, if none came before.

    @raise PDUDecodeError: unexpected-PDU-parameter, if C{current} is
        already set.
    """
    if current is not None:
        raise PDUDecodeError(f"more than one {what}", _UNEXPECTED)
    return new


@dataclass(frozen=True, slots=True)
class UnknownItem:
    """
    An item or sub-item whose type we do not recognise. PS3.8 §9.3.1 and
    Annex D say to skip it; it is kept so logs can mention it and so encoding
    what was decoded gives the same items back.
    """

    itemType: int
    data: bytes
    second: int = 0

    def encode(self) -> bytes:
        return encodeItem(self.itemType, self.data, self.second)
