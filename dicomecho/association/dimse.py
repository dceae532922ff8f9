# -*- test-case-name: tests.test_dimse -*-
"""
DIMSE messages over P-DATA: the command-set codec, reassembly of PDVs into
messages, and fragmentation of outgoing messages into P-DATA-TF PDUs.

A DIMSE message is a command set followed by an optional data set
(PS3.7 §6.3). The command set is group 0000, always Implicit VR Little
Endian (PS3.7 §6.3.1, PS3.5 §7.1.3); its VRs come from pydicom's data
dictionary, read once at import. The per-message path uses C{struct} and
precomputed tables only and never builds a pydicom C{Dataset}.

Errors are L{DIMSEError}s that say which A-ABORT to send (PS3.8 §9.3.8,
Table 9-26).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Collection, Mapping

from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_dict, tag_for_keyword

from dicomecho.wire.errors import (
    AbortReason,
    AbortSource,
    DICOMProtocolError,
    LocalProtocolError,
)
from dicomecho.wire.pdu import PresentationDataValue

__all__ = [
    "CommandField",
    "NO_DATA_SET",
    "Status",
    "tag",
    "DIMSEError",
    "CommandSetError",
    "PresentationContextError",
    "FragmentError",
    "MessageTooLargeError",
    "decodeCommandSet",
    "encodeCommandSet",
    "DIMSEMessage",
    "MessageAssembler",
    "fragment",
    "refusalResponse",
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


class PresentationContextError(DIMSEError):
    """
    A PDV names a presentation context that was not accepted
    (PS3.8 §9.3.5.1, Table 9-23; §7.1.1.13). Abort: service-provider,
    invalid-PDU-parameter-value.
    """

    abortSource = AbortSource.SERVICE_PROVIDER
    abortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE


class FragmentError(DIMSEError):
    """
    A PDV's message control header (PS3.8 Annex E.2) is out of order: a
    data-set fragment before its command is complete, or a command fragment
    while the data set is expected (PS3.8 Annex E.1: the command comes
    first, then the data set). The P-DATA-TF itself is expected in this
    state, so the fault is a PDU parameter with an unexpected value:
    service-provider, unexpected-PDU-parameter (PS3.8 Table 9-26).
    """

    abortSource = AbortSource.SERVICE_PROVIDER
    abortReason = AbortReason.UNEXPECTED_PDU_PARAMETER


class MessageTooLargeError(DIMSEError):
    """
    A command or data set grew beyond our configured cap. Treated like a
    P-DATA-TF above our maximum length (L{dicomecho.wire.errors.PDULengthError}):
    service-provider, invalid-PDU-parameter-value (PS3.8 Table 9-26).
    """

    abortSource = AbortSource.SERVICE_PROVIDER
    abortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE


# --- command-set codec (PS3.7 §6.3.1, PS3.5 §7.1.3) -------------------------

_HEADER = struct.Struct("<HHI")  # group, element, value length
_UL = struct.Struct("<I")
_GROUP_LENGTH_HEADER = _HEADER.pack(0, 0, 4)

_GROUP_LENGTH = tag("CommandGroupLength")
_AFFECTED_SOP_CLASS = tag("AffectedSOPClassUID")
_REQUESTED_SOP_CLASS = tag("RequestedSOPClassUID")
_COMMAND_FIELD = tag("CommandField")
_MESSAGE_ID = tag("MessageID")
_MESSAGE_ID_RESPONDED = tag("MessageIDBeingRespondedTo")
_DATA_SET_TYPE = tag("CommandDataSetType")
_STATUS = tag("Status")
_AFFECTED_SOP_INSTANCE = tag("AffectedSOPInstanceUID")
_REQUESTED_SOP_INSTANCE = tag("RequestedSOPInstanceUID")

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


# --- messages and their reassembly (PS3.8 Annex E) ---------------------------


@dataclass(frozen=True, slots=True)
class DIMSEMessage:
    """
    One complete DIMSE message as received (PS3.7 §6.3).

    @ivar contextID: the presentation context its PDVs used.
    @ivar command: the decoded command set (see L{decodeCommandSet}).
    @ivar dataSet: the data set's bytes, encoded in the context's transfer
        syntax, or C{None} if the command announced none.
    """

    contextID: int
    command: Mapping[int, object]
    dataSet: bytes | None

    @property
    def commandField(self) -> int:
        """
        CommandField (0000,0100).
        """
        return self.command[_COMMAND_FIELD]  # type: ignore[return-value]

    @property
    def messageID(self) -> int | None:
        """
        MessageID (0000,0110), C{None} if absent (as in responses).
        """
        return self.command.get(_MESSAGE_ID)  # type: ignore[return-value]

    @property
    def affectedSOPClassUID(self) -> str | None:
        """
        AffectedSOPClassUID (0000,0002), C{None} if absent.
        """
        return self.command.get(_AFFECTED_SOP_CLASS)  # type: ignore[return-value]

    @property
    def hasDataSet(self) -> bool:
        """
        Whether CommandDataSetType (0000,0800) announces a data set.
        """
        return self.command.get(_DATA_SET_TYPE, NO_DATA_SET) != NO_DATA_SET


class _Partial:
    """
    A message being received on one presentation context.
    """

    __slots__ = ("fragments", "length", "command")

    def __init__(self) -> None:
        self.fragments: list[bytes] = []
        self.length = 0
        #: Set once the command is complete and a data set is expected.
        self.command: dict[int, object] | None = None


class MessageAssembler:
    """
    Reassemble PDVs into L{DIMSEMessage}s (PS3.8 Annex E).

    Feed every PDV of every P-DATA-TF, in order, to L{receive}. A message
    is its command fragments up to the one with the last-fragment bit, then,
    if CommandDataSetType is not 0x0101, its data-set fragments up to the
    last one. State is kept per presentation context, so messages on
    different contexts may interleave (PS3.8 Annex E.1 forbids senders to
    do so; tolerating it costs nothing). Odd-length fragments, which
    Annex E.1 also forbids, are accepted: pynetdicom sends them when the
    maximum PDU length is odd. Several messages in one P-DATA-TF are
    returned one per L{receive} call.

    Memory is bounded: each message's command and data set by the caps, and
    all partial messages together by the sum of the caps.
    """

    # One per association: no instance dictionary.
    __slots__ = ("_accepted", "maxCommandLength", "maxDataSetLength", "_partial", "_buffered")

    def __init__(
        self,
        acceptedContextIDs: Collection[int],
        maxCommandLength: int = 65536,
        maxDataSetLength: int = 4 * 1024 * 1024,
    ) -> None:
        """
        @param acceptedContextIDs: the IDs of the contexts accepted in the
            A-ASSOCIATE-AC; a PDV on any other is an error.
        @param maxCommandLength: largest command set accepted, in bytes.
        @param maxDataSetLength: largest data set accepted, in bytes.
        """
        self._accepted = frozenset(acceptedContextIDs)
        self.maxCommandLength = maxCommandLength
        self.maxDataSetLength = maxDataSetLength
        self._partial: dict[int, _Partial] = {}
        self._buffered = 0

    @property
    def inProgress(self) -> bool:
        """
        Whether any message is partially received.
        """
        return bool(self._partial)

    def receive(self, pdv: PresentationDataValue) -> DIMSEMessage | None:
        """
        Take one PDV; return the message it completes, else C{None}.

        @raise PresentationContextError: the PDV's context was not accepted.
        @raise FragmentError: a fragment arrived out of order.
        @raise MessageTooLargeError: a cap would be exceeded.
        @raise CommandSetError: a completed command set is malformed.
        """
        contextID = pdv.contextID
        if contextID not in self._accepted:
            raise PresentationContextError(f"PDV on unaccepted context {contextID}")
        partial = self._partial.get(contextID)
        data = pdv.data
        if partial is None and pdv.isCommand:
            if pdv.isLastFragment:
                # Fast path: a whole command in one PDV, as every peer sends
                # a C-ECHO-RQ.
                if len(data) > self.maxCommandLength:
                    raise self._tooLarge("command", len(data))
                return self._commandComplete(contextID, data, None)
            partial = self._partial[contextID] = _Partial()
        expectingData = partial is not None and partial.command is not None
        if pdv.isCommand == expectingData:
            # PS3.8 Annex E.1: all of the command, then all of the data set.
            if partial is not None:
                self._discard(contextID, partial)
            raise FragmentError(
                f"{'command' if pdv.isCommand else 'data-set'} fragment on "
                f"context {contextID} while the "
                f"{'data set' if expectingData else 'command'} is expected"
            )
        assert partial is not None
        limit = self.maxDataSetLength if expectingData else self.maxCommandLength
        total = self.maxCommandLength + self.maxDataSetLength
        if partial.length + len(data) > limit or self._buffered + len(data) > total:
            self._discard(contextID, partial)
            what = "data set" if expectingData else "command"
            raise self._tooLarge(what, partial.length + len(data))
        partial.fragments.append(data)
        partial.length += len(data)
        self._buffered += len(data)
        if not pdv.isLastFragment:
            return None
        self._discard(contextID, partial)
        joined = b"".join(partial.fragments)
        if partial.command is None:
            return self._commandComplete(contextID, joined, partial)
        return DIMSEMessage(contextID, partial.command, joined)

    def _commandComplete(
        self, contextID: int, data: bytes, partial: _Partial | None
    ) -> DIMSEMessage | None:
        command = decodeCommandSet(data)
        if command[_DATA_SET_TYPE] == NO_DATA_SET:
            return DIMSEMessage(contextID, command, None)
        if partial is None:
            partial = _Partial()
        else:
            partial.fragments = []
            partial.length = 0
        partial.command = command
        self._partial[contextID] = partial
        return None

    def _discard(self, contextID: int, partial: _Partial) -> None:
        del self._partial[contextID]
        self._buffered -= partial.length

    def _tooLarge(self, what: str, length: int) -> MessageTooLargeError:
        return MessageTooLargeError(
            f"{what} of at least {length} bytes is over the limit (command "
            f"{self.maxCommandLength}, data set {self.maxDataSetLength}, all "
            f"partial messages their sum)"
        )


# --- sending (PS3.8 §9.3.5, Annex E) ------------------------------------------

_PDU_AND_PDV_HEADER = struct.Struct(">BxIIBB")


def fragment(
    contextID: int, command: bytes, dataSet: bytes | None, peerMaxPDULength: int
) -> list[bytes]:
    """
    Encode a message as P-DATA-TF PDUs, one PDV per PDU (as pynetdicom).

    Each PDV carries at most C{peerMaxPDULength - 6} bytes, rounded down to
    an even number: PS3.8 Annex E.1 wants even fragments, and the PDV item
    header (6 bytes) must fit in the peer's maximum variable field length
    (PS3.8 §9.3.5, D.1). Command PDVs have control header 0x01 (0x03 on the
    last), data-set PDVs 0x00 (0x02 on the last) (PS3.8 Annex E.2).

    @param peerMaxPDULength: the peer's Maximum Length sub-item; 0 means
        unlimited: one PDV for the command and one for the data set.
    @raise ValueError: if C{peerMaxPDULength} is 1 to 7, too small for even
        2-byte fragments.
    @raise LocalProtocolError: if C{contextID} does not fit a byte.
    """
    if peerMaxPDULength < 0 or 0 < peerMaxPDULength < 8:
        raise ValueError(f"peer maximum PDU length {peerMaxPDULength} is below 8")
    if not 0 <= contextID <= 0xFF:
        raise LocalProtocolError(f"context ID {contextID} does not fit a byte")
    pack = _PDU_AND_PDV_HEADER.pack
    pdus = []
    for data, control in ((command, 0x01), (dataSet, 0x00)):
        if data is None:
            continue
        total = len(data)
        size = (peerMaxPDULength - 6) & ~1 if peerMaxPDULength else max(total, 1)
        start = 0
        while True:
            chunk = data[start : start + size]
            start += size
            last = start >= total
            n = len(chunk)
            pdus.append(
                pack(0x04, n + 6, n + 2, contextID, control | (0x02 if last else 0))
                + chunk
            )
            if last:
                break
    return pdus


# --- answering requests we do not serve (PS3.7 §9.3, §10.3) -----------------

_REQUESTS = frozenset(f for f in CommandField if not f & 0x8000) - {
    CommandField.C_CANCEL_RQ
}

# PS3.7 §10.3.2-10.3.4, §10.3.6: these requests name their target with
# Requested* UIDs; the response carries them as Affected*.
_REQUESTED_TO_AFFECTED = frozenset(
    {CommandField.N_GET_RQ, CommandField.N_SET_RQ}
    | {CommandField.N_ACTION_RQ, CommandField.N_DELETE_RQ}
)


def refusalResponse(request: DIMSEMessage, status: int) -> dict[int, object] | None:
    """
    The response command answering a DIMSE request with a failure status.

    The response has the request's CommandField with bit 0x8000 set,
    MessageIDBeingRespondedTo, no data set, C{status}, and the request's
    Affected SOP Class/Instance UIDs (from the Requested ones for N-GET,
    N-SET, N-ACTION and N-DELETE) when present (PS3.7 §9.3, §10.3).

    @return: C{None} for C-CANCEL-RQ, which has no response (PS3.7
        §9.3.2.3), and for messages that are themselves responses.
    @raise CommandSetError: if the request has no MessageID or an unknown
        CommandField.
    """
    field = request.commandField
    if field & 0x8000 or field == CommandField.C_CANCEL_RQ:
        return None
    if field not in _REQUESTS:
        raise CommandSetError(f"unknown CommandField 0x{field:04X} (PS3.7 Annex E)")
    messageID = request.messageID
    if messageID is None:
        raise CommandSetError(f"request 0x{field:04X} has no MessageID (0000,0110)")
    command = request.command
    response: dict[int, object] = {
        _COMMAND_FIELD: field | 0x8000,
        _MESSAGE_ID_RESPONDED: messageID,
        _DATA_SET_TYPE: NO_DATA_SET,
        _STATUS: status,
    }
    renamed = field in _REQUESTED_TO_AFFECTED
    for affected, requested in (
        (_AFFECTED_SOP_CLASS, _REQUESTED_SOP_CLASS),
        (_AFFECTED_SOP_INSTANCE, _REQUESTED_SOP_INSTANCE),
    ):
        if affected in command:
            response[affected] = command[affected]
        elif renamed and requested in command:
            response[affected] = command[requested]
    return response
