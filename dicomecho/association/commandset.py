# -*- test-case-name: tests.test_commandset -*-
"""
The DIMSE command set (PS3.7 §6.3.1): its element values and their codec.

The command set is group 0000, always Implicit VR Little Endian (PS3.7
§6.3.1, PS3.5 §7.1.3); its VRs come from pydicom's data dictionary, read
once at import. The per-message path uses C{struct} and precomputed tables
only and never builds a pydicom C{Dataset}.

A malformed command set is a L{CommandSetError}, a L{DIMSEError} that says
which A-ABORT to send (PS3.8 §9.3.8, Table 9-26).
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Callable, Mapping

from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_dict, tag_for_keyword

from dicomecho.wire.errors import (
    AbortReason,
    AbortSource,
    DICOMProtocolError,
    LocalProtocolError,
)

__all__ = [
    "CommandField",
    "NO_DATA_SET",
    "Status",
    "tag",
    "DIMSEError",
    "CommandSetError",
    "decodeCommandSet",
    "encodeCommandSet",
]


class CommandField(IntEnum):
    """
    Values of CommandField (0000,0100) (PS3.7 Annex E, Table E.1-1).
    A response is its request with bit 0x8000 set.
    """

    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    N_EVENT_REPORT_RQ = 0x0100
    N_EVENT_REPORT_RSP = 0x8100
    N_GET_RQ = 0x0110
    N_GET_RSP = 0x8110
    N_SET_RQ = 0x0120
    N_SET_RSP = 0x8120
    N_ACTION_RQ = 0x0130
    N_ACTION_RSP = 0x8130
    N_CREATE_RQ = 0x0140
    N_CREATE_RSP = 0x8140
    N_DELETE_RQ = 0x0150
    N_DELETE_RSP = 0x8150
    C_CANCEL_RQ = 0x0FFF


#: CommandDataSetType (0000,0800) meaning "no data set"; any other value
#: means one follows (PS3.7 Annex E, Table E.1-1).
NO_DATA_SET = 0x0101


class Status:
    """
    DIMSE status codes used here (PS3.7 Annex C.5, general status codes).
    Not an enum: peers may send any 16-bit value.
    """

    SUCCESS = 0x0000
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    UNRECOGNIZED_OPERATION = 0x0211


def tag(keyword: str) -> int:
    """
    The tag of a data dictionary keyword, e.g. C{tag("MessageID") ==
    0x00000110}, from pydicom's dictionary.

    @raise KeyError: if pydicom does not know C{keyword}.
    """
    result = tag_for_keyword(keyword)
    if result is None:
        raise KeyError(keyword)
    return result


class DIMSEError(DICOMProtocolError):
    """
    A received DIMSE message, or the PDVs carrying it, broke PS3.7 or
    PS3.8 Annex E. Answer with the A-ABORT described by L{abortSource} and
    L{abortReason}, then close.
    """

    abortSource: AbortSource = AbortSource.SERVICE_USER
    abortReason: int = AbortReason.REASON_NOT_SPECIFIED


class CommandSetError(DIMSEError):
    """
    A command set is malformed or lacks a required element. The command
    set belongs to the DIMSE layer above the Upper Layer (PS3.7 §6.3), so
    the application aborts as the service-user: source 0, reason 0 (the
    reason is not significant for that source, PS3.8 Table 9-26).
    """


# --- command-set codec (PS3.7 §6.3.1, PS3.5 §7.1.3) -------------------------

_HEADER = struct.Struct("<HHI")  # group, element, value length
_UL = struct.Struct("<I")
_GROUP_LENGTH_HEADER = _HEADER.pack(0, 0, 4)

_GROUP_LENGTH = tag("CommandGroupLength")
_COMMAND_FIELD = tag("CommandField")
_DATA_SET_TYPE = tag("CommandDataSetType")

# Text VRs: ISO 8859-1 keeps every byte as data. PS3.5 §6.2: UI is padded
# with NUL, the others with a space.
_TEXT_VRS = frozenset({"UI", "AE", "CS", "SH", "LO", "ST", "LT", "IS", "DS"})

_Decoder = Callable[[bytes, int, int], object]
_Encoder = Callable[[int, object], bytes]
_Codec = tuple[_Decoder, _Encoder]


def _numeric(vr: str, code: str, single: bool) -> _Codec:
    """
    Codec for US (C{code} "H") or UL ("I"): an C{int} if the dictionary's
    VM is 1, else a tuple.
    """
    unit = struct.calcsize(code)
    value = struct.Struct("<" + code)
    whole = struct.Struct("<HHI" + code)

    def decode(data: bytes, start: int, length: int) -> object:
        if length != unit if single else length % unit:
            expected = unit if single else f"a multiple of {unit}"
            raise CommandSetError(f"{vr} value of {length} bytes, expected {expected}")
        if single:
            return value.unpack_from(data, start)[0]
        return struct.unpack_from(f"<{length // unit}{code}", data, start)

    def encode(element: int, v: object) -> bytes:
        if single:
            return whole.pack(0, element, unit, v)
        values = (v,) if isinstance(v, int) else tuple(v)  # type: ignore[arg-type]
        return _HEADER.pack(0, element, unit * len(values)) + struct.pack(
            f"<{len(values)}{code}", *values
        )

    return decode, encode


def _decodeAT(data: bytes, start: int, length: int) -> object:
    if length % 4:
        raise CommandSetError(f"AT value of {length} bytes, expected a multiple of 4")
    # PS3.5 §6.2 (AT): group then element, each a 16-bit LE integer.
    h = struct.unpack_from(f"<{length // 2}H", data, start)
    return tuple((h[i] << 16) | h[i + 1] for i in range(0, len(h), 2))


def _encodeAT(element: int, value: object) -> bytes:
    tags = (value,) if isinstance(value, int) else tuple(value)  # type: ignore
    halves = [half for t in tags for half in (t >> 16, t & 0xFFFF)]
    return _HEADER.pack(0, element, 2 * len(halves)) + struct.pack(
        f"<{len(halves)}H", *halves
    )


def _decodeText(data: bytes, start: int, length: int) -> object:
    return data[start : start + length].decode("latin-1").rstrip("\0 ")


def _textEncoder(pad: bytes) -> _Encoder:
    def encode(element: int, value: object) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"expected str, got {type(value).__name__}")
        raw = value.encode("latin-1")
        if len(raw) & 1:
            raw += pad
        return _HEADER.pack(0, element, len(raw)) + raw

    return encode


def _encodeBytes(element: int, value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"an unknown tag needs bytes, got {type(value).__name__}")
    if len(value) & 1:
        raise ValueError(f"odd length {len(value)} (PS3.5 §7.1.1)")
    return _HEADER.pack(0, element, len(value)) + bytes(value)


def _buildTables() -> tuple[dict[int, _Decoder], dict[int, _Encoder]]:
    codecs: dict[int, _Codec] = {}
    for t in keyword_dict.values():
        if t >> 16 != 0 or t == _GROUP_LENGTH:
            continue
        vr, vm = dictionary_VR(t), dictionary_VM(t)
        if vr in ("US", "UL"):
            codecs[t] = _numeric(vr, "H" if vr == "US" else "I", vm == "1")
        elif vr == "AT":
            codecs[t] = (_decodeAT, _encodeAT)
        elif vr in _TEXT_VRS:
            codecs[t] = (_decodeText, _textEncoder(b"\0" if vr == "UI" else b" "))
        # Any other VR is kept as bytes, like an unknown tag.
    return {t: c[0] for t, c in codecs.items()}, {t: c[1] for t, c in codecs.items()}


_DECODERS, _ENCODERS = _buildTables()


def decodeCommandSet(data: bytes) -> dict[int, object]:
    """
    Decode a whole command set (PS3.7 §6.3.1, Implicit VR Little Endian).

    US/UL values are C{int}s (a tuple when the dictionary's VM allows
    several), text VRs are C{str}s without trailing NUL/space padding, AT
    values are tuples of tags, and tags pydicom does not know are C{bytes}.
    CommandGroupLength (0000,0000) is checked and left out of the result.

    @raise CommandSetError: if the encoding or a required element is wrong.
    """
    end = len(data)
    if end < 12:
        raise CommandSetError(f"command set of {end} bytes has no CommandGroupLength")
    group, element, length = _HEADER.unpack_from(data, 0)
    # PS3.7 §6.3.1, Annex E: (0000,0000) UL comes first and counts the
    # bytes of the group after it.
    if group != 0 or element != 0 or length != 4:
        raise CommandSetError(
            f"command set starts with ({group:04X},{element:04X}) of length "
            f"{length}, not CommandGroupLength (0000,0000) UL"
        )
    groupLength = _UL.unpack_from(data, 8)[0]
    if groupLength != end - 12:
        raise CommandSetError(f"CommandGroupLength {groupLength}; {end - 12} follow")
    result: dict[int, object] = {}
    decoders = _DECODERS
    unpack = _HEADER.unpack_from
    pos = 12
    last = 0
    while pos < end:
        if end - pos < 8:
            raise CommandSetError(f"{end - pos} trailing byte(s), not an element")
        group, element, length = unpack(data, pos)
        if group != 0:
            raise CommandSetError(f"({group:04X},{element:04X}) is not in group 0000")
        # PS3.7 §6.3.1: ordered by increasing tag, each at most once.
        if element <= last:
            raise CommandSetError(f"(0000,{element:04X}) after (0000,{last:04X})")
        # PS3.5 §7.1.1: value lengths are even (this also refuses the
        # undefined length 0xFFFFFFFF).
        if length & 1:
            raise CommandSetError(f"(0000,{element:04X}) has odd length {length}")
        start = pos + 8
        pos = start + length
        if pos > end:
            raise CommandSetError(f"(0000,{element:04X}) overruns by {pos - end} bytes")
        decoder = decoders.get(element)
        if decoder is None:
            result[element] = data[start:pos]
        else:
            result[element] = decoder(data, start, length)
        last = element
    # PS3.7 §9.3, §10.3: every command carries these two.
    if _COMMAND_FIELD not in result:
        raise CommandSetError("command set has no CommandField (0000,0100)")
    if _DATA_SET_TYPE not in result:
        raise CommandSetError("command set has no CommandDataSetType (0000,0800)")
    return result


def encodeCommandSet(elements: Mapping[int, object]) -> bytes:
    """
    Encode a command set: elements sorted by tag, each encoded by its
    dictionary VR, text padded to even length (NUL for UI, space otherwise;
    PS3.5 §6.2, §9.1), and CommandGroupLength (0000,0000) computed and put
    first (any value given for it is ignored).

    @param elements: tag → value, in the shapes L{decodeCommandSet} returns.
    @raise LocalProtocolError: if a tag is not in group 0000 or a value does
        not fit its VR.
    """
    parts = []
    encoders = _ENCODERS
    for t in sorted(elements):
        if t == _GROUP_LENGTH:
            continue
        if not 0 < t <= 0xFFFF:
            raise LocalProtocolError(f"tag {t:08X} is not a command element")
        value = elements[t]
        try:
            parts.append(encoders.get(t, _encodeBytes)(t, value))
        except (struct.error, TypeError, ValueError) as e:
            raise LocalProtocolError(f"(0000,{t:04X}) {value!r}: {e}") from None
    body = b"".join(parts)
    return _GROUP_LENGTH_HEADER + _UL.pack(len(body)) + body
