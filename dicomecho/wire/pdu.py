# -*- test-case-name: tests.test_pdu -*-
"""
The seven PDUs of the DICOM Upper Layer (PS3.8 §9.3) as immutable values,
with C{encode()} to the exact bytes PS3.8 specifies and L{decode} /
L{decodePDU} that validate every length before reading.

A PDU on the wire is C{type (1) | reserved (1) | length (4, big endian) |
body}. L{dicomecho.wire.framer.PDUFramer} splits a byte stream into C{(type,
body)} frames; L{decodePDU} turns one frame into a value. Decoding errors are
L{PDUDecodeError}s carrying the A-ABORT reason they imply (PS3.8 Table 9-26).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable, ClassVar, Union

from dicomecho.wire.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    PDUDecodeError,
    UnrecognizedPDUError,
)
from dicomecho.wire.itemcodec import (
    MAX_KEPT_UNKNOWN_ITEMS,
    MAX_PRESENTATION_CONTEXTS,
    ItemBudget,
    ItemType,
    checkRoom,
    UnknownItem,
    decodeText,
    encodeItem,
    encodeText,
    iterItems,
)
from dicomecho.wire.items import PresentationContextAC, PresentationContextRQ
from dicomecho.wire.userinfo import UserInformation

__all__ = [
    "validateAETitle",
    "PDUType",
    "RejectResult",
    "RejectSource",
    "RejectReason",
    "DICOM_APPLICATION_CONTEXT",
    "AssociateRQ",
    "AssociateAC",
    "AssociateRJ",
    "PresentationDataValue",
    "PDataTF",
    "ReleaseRQ",
    "ReleaseRP",
    "Abort",
    "PDU",
    "decode",
    "decodePDU",
    "encode",
]

#: The only application context name PS3.7 Annex A defines.
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

_PDU_HEADER = struct.Struct(">BBI")
_ASSOCIATE_FIXED = struct.Struct(">HH16s16s32s")
#: The reserved field of bytes 43-74 (PS3.8 Tables 9-11 and 9-17).
_RESERVED_LENGTH = 32
_PDV_HEADER = struct.Struct(">IBB")
_FOUR = struct.Struct(">xxBB")  # RJ/ABORT: reserved, [result], source, reason

_INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE

_CONTEXTS_WHY = "presentation context items (PS3.8 §9.3.2.2: their IDs are odd, 1 to 255)"

#: The item types an A-ASSOCIATE-RQ/AC's variable field may hold.
_KNOWN_ITEMS = frozenset((
    ItemType.APPLICATION_CONTEXT,
    ItemType.PRESENTATION_CONTEXT_RQ,
    ItemType.PRESENTATION_CONTEXT_AC,
    ItemType.USER_INFORMATION,
))
_UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER


class PDUType(IntEnum):
    """
    PDU-type byte (PS3.8 §9.3.1).
    """

    A_ASSOCIATE_RQ = 0x01
    A_ASSOCIATE_AC = 0x02
    A_ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    A_RELEASE_RQ = 0x05
    A_RELEASE_RP = 0x06
    A_ABORT = 0x07


class RejectResult(IntEnum):
    """
    A-ASSOCIATE-RJ result (PS3.8 Table 9-21).
    """

    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(IntEnum):
    """
    A-ASSOCIATE-RJ source (PS3.8 Table 9-21).
    """

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class RejectReason:
    """
    A-ASSOCIATE-RJ reason/diag., whose meaning depends on the source
    (PS3.8 Table 9-21).
    """

    # source 1, service-user
    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    CALLING_AE_TITLE_NOT_RECOGNIZED = 3
    CALLED_AE_TITLE_NOT_RECOGNIZED = 7
    # source 2, service-provider (ACSE related function)
    ACSE_NO_REASON_GIVEN = 1
    PROTOCOL_VERSION_NOT_SUPPORTED = 2
    # source 3, service-provider (presentation related function)
    TEMPORARY_CONGESTION = 1
    LOCAL_LIMIT_EXCEEDED = 2


def _header(pduType: int, body: bytes) -> bytes:
    return _PDU_HEADER.pack(pduType, 0, len(body)) + body


def validateAETitle(title: str, what: str = "AE title") -> str:
    """
    Check an AE title as PS3.5 defines the AE value representation: 1-16
    characters of ISO 646 (printable ASCII), no backslash, not all spaces.

    @param what: how the error message names it.
    @return: C{title} without leading and trailing spaces.
    @raise ValueError: with the reason, if it is not a valid AE title.
    """
    if not isinstance(title, str) or not title.strip(" "):
        raise ValueError(f"{what} {title!r} is empty or all spaces")
    if len(title) > 16:
        raise ValueError(f"{what} {title!r} is longer than 16 characters")
    bad = [c for c in title if not (" " <= c <= "~") or c == "\\"]
    if bad:
        raise ValueError(
            f"{what} {title!r} contains {bad[0]!r}: only printable ASCII "
            f"without backslash is allowed"
        )
    return title.strip(" ")


def _decodeAETitle(raw: bytes) -> str:
    # PS3.8 §9.3.2 and PS3.5 (AE VR): leading and trailing spaces are not
    # significant. Trailing NULs are padding some peers use.
    return raw.decode("latin-1").rstrip("\0 ").lstrip(" ")


def _encodeAETitle(title: str, what: str) -> bytes:
    raw = encodeText(title, what)
    if len(raw) > 16:
        raise LocalProtocolError(f"{what} {title!r} is longer than 16 bytes")
    return raw.ljust(16, b" ")


def _byte(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise LocalProtocolError(f"{what} {value} does not fit a byte")
    return value


@dataclass(frozen=True, slots=True)
class _Associate:
    """
    Fields common to the A-ASSOCIATE-RQ and -AC PDUs (PS3.8 §9.3.2, §9.3.3).

    @ivar calledAETitle: without padding; as received, even if invalid.
    @ivar callingAETitle: likewise.
    @ivar applicationContextName: item 0x10, C{None} if the peer left it out.
    @ivar userInformation: item 0x50, C{None} if the peer left it out.
    @ivar protocolVersion: the 16-bit field; only bit 0 is significant.
    @ivar unknownItems: items of unrecognized types, skipped (PS3.8 §9.3.1);
        the first L{MAX_KEPT_UNKNOWN_ITEMS} are kept for the log.
    @ivar droppedUnknownItems: how many more were skipped and not kept.
    @ivar reservedField: bytes 43-74, 32 bytes. Not tested on receipt; an
        A-ASSOCIATE-AC carries the value its A-ASSOCIATE-RQ held (PS3.8
        Table 9-17), so it is kept as received.
    """

    calledAETitle: str
    callingAETitle: str
    applicationContextName: str | None = DICOM_APPLICATION_CONTEXT
    userInformation: UserInformation | None = None
    protocolVersion: int = 1
    unknownItems: tuple[UnknownItem, ...] = ()
    droppedUnknownItems: int = field(default=0, compare=False)  # for the log, not re-encoded
    reservedField: bytes = bytes(_RESERVED_LENGTH)

    pduType: ClassVar[PDUType]
    _contextItemType: ClassVar[int]
    _contextType: ClassVar[type]

    def _encodeContexts(self) -> list[bytes]:
        raise NotImplementedError

    def encode(self) -> bytes:
        if not 0 <= self.protocolVersion <= 0xFFFF:
            raise LocalProtocolError("protocol version does not fit 16 bits")
        # struct pads or cuts a bytes value to the field's size: check it.
        reserved = self.reservedField
        if not isinstance(reserved, bytes) or len(reserved) != _RESERVED_LENGTH:
            got = f"{len(reserved)} bytes" if isinstance(reserved, bytes) else repr(type(reserved))
            raise LocalProtocolError(
                f"reserved field is {got}, not {_RESERVED_LENGTH} bytes"
            )
        parts = [
            _ASSOCIATE_FIXED.pack(
                self.protocolVersion,
                0,
                _encodeAETitle(self.calledAETitle, "called AE title"),
                _encodeAETitle(self.callingAETitle, "calling AE title"),
                reserved,
            )
        ]
        if self.applicationContextName is not None:
            parts.append(
                encodeItem(
                    ItemType.APPLICATION_CONTEXT,
                    encodeText(self.applicationContextName, "application context"),
                )
            )
        parts.extend(self._encodeContexts())
        if self.userInformation is not None:
            parts.append(self.userInformation.encode())
        parts.extend(item.encode() for item in self.unknownItems)
        return _header(self.pduType, b"".join(parts))

    @classmethod
    def _fixedPart(cls, body: bytes) -> tuple[int, bytes, bytes, bytes]:
        """Version, called and calling AE titles, reserved field (Table 9-11)."""
        if len(body) < _ASSOCIATE_FIXED.size:
            raise PDUDecodeError(
                f"{cls.pduType.name.replace('_', '-')} PDU of {len(body)} bytes is shorter "
                f"than its {_ASSOCIATE_FIXED.size}-byte fixed part",
                _INVALID,
            )
        version, _, called, calling, reserved = _ASSOCIATE_FIXED.unpack_from(body, 0)
        return version, called, calling, reserved

    @classmethod
    def _decodeFields(cls, body: bytes) -> dict[str, object]:
        what = cls.pduType.name.replace("_", "-")
        version, called, calling, reserved = cls._fixedPart(body)
        applicationContext: str | None = None
        userInformation: UserInformation | None = None
        contexts: list[object] = []
        unknown: list[UnknownItem] = []
        dropped = 0
        budget = ItemBudget()
        for itemType, second, s, e in iterItems(
            body, _ASSOCIATE_FIXED.size, len(body), what, budget
        ):
            # Unknown items first: a request may hold thousands (PS3.8
            # §9.3.1: skip them), and they must cost little.
            if itemType not in _KNOWN_ITEMS:
                if len(unknown) < MAX_KEPT_UNKNOWN_ITEMS:
                    unknown.append(UnknownItem(itemType, body[s:e], second))
                else:
                    dropped += 1
            elif itemType == ItemType.APPLICATION_CONTEXT:
                if applicationContext is not None:
                    raise PDUDecodeError(
                        f"{what}: more than one application context item", _UNEXPECTED
                    )
                applicationContext = decodeText(body[s:e])
            elif itemType == cls._contextItemType:
                checkRoom(contexts, MAX_PRESENTATION_CONTEXTS, _CONTEXTS_WHY)
                contexts.append(cls._contextType.decode(body, s, e, budget))  # type: ignore[attr-defined]
            elif itemType == ItemType.USER_INFORMATION:
                if userInformation is not None:
                    raise PDUDecodeError(
                        f"{what}: more than one user information item", _UNEXPECTED
                    )
                userInformation = UserInformation.decode(body, s, e, budget)
            else:
                raise PDUDecodeError(
                    f"{what}: presentation context item 0x{itemType:02X} belongs "
                    f"to the other A-ASSOCIATE PDU",
                    _UNEXPECTED,
                )
        return dict(
            calledAETitle=_decodeAETitle(called),
            callingAETitle=_decodeAETitle(calling),
            applicationContextName=applicationContext,
            userInformation=userInformation,
            protocolVersion=version,
            unknownItems=tuple(unknown),
            droppedUnknownItems=dropped,
            reservedField=reserved,
            presentationContexts=tuple(contexts),
        )


@dataclass(frozen=True, slots=True)
class AssociateRQ(_Associate):
    """
    A-ASSOCIATE-RQ PDU (PS3.8 §9.3.2).
    """

    presentationContexts: tuple[PresentationContextRQ, ...] = ()

    pduType: ClassVar[PDUType] = PDUType.A_ASSOCIATE_RQ
    _contextItemType: ClassVar[int] = ItemType.PRESENTATION_CONTEXT_RQ
    _contextType: ClassVar[type] = PresentationContextRQ

    def _encodeContexts(self) -> list[bytes]:
        return [pc.encode() for pc in self.presentationContexts]

    @classmethod
    def decode(cls, body: bytes) -> AssociateRQ:
        return cls(**cls._decodeFields(body))  # type: ignore[arg-type]

    @classmethod
    def decodeFixedPart(cls, body: bytes) -> AssociateRQ:
        """The fixed part alone, items unread: enough to reject the request."""
        version, called, calling, reserved = cls._fixedPart(body)
        called, calling = _decodeAETitle(called), _decodeAETitle(calling)
        return cls(called, calling, protocolVersion=version, reservedField=reserved)


@dataclass(frozen=True, slots=True)
class AssociateAC(_Associate):
    """
    A-ASSOCIATE-AC PDU (PS3.8 §9.3.3). The AE title fields and the
    reserved field of bytes 43-74 are reserved but shall carry the
    request's values (PS3.8 Table 9-17), so they are kept like the RQ's.
    """

    presentationContexts: tuple[PresentationContextAC, ...] = ()

    pduType: ClassVar[PDUType] = PDUType.A_ASSOCIATE_AC
    _contextItemType: ClassVar[int] = ItemType.PRESENTATION_CONTEXT_AC
    _contextType: ClassVar[type] = PresentationContextAC

    def _encodeContexts(self) -> list[bytes]:
        return [pc.encode() for pc in self.presentationContexts]

    @classmethod
    def decode(cls, body: bytes) -> AssociateAC:
        return cls(**cls._decodeFields(body))  # type: ignore[arg-type]


def _checkFixedFour(body: bytes, what: str) -> None:
    if len(body) != 4:
        raise PDUDecodeError(
            f"{what} PDU length {len(body)}, expected 4", _INVALID
        )


@dataclass(frozen=True, slots=True)
class AssociateRJ:
    """
    A-ASSOCIATE-RJ PDU (PS3.8 §9.3.4). Values are kept as sent; see
    L{RejectResult}, L{RejectSource} and L{RejectReason}.
    """

    result: int
    source: int
    reason: int

    pduType: ClassVar[PDUType] = PDUType.A_ASSOCIATE_RJ

    def encode(self) -> bytes:
        return _header(
            self.pduType,
            bytes(
                (
                    0,
                    _byte(self.result, "reject result"),
                    _byte(self.source, "reject source"),
                    _byte(self.reason, "reject reason"),
                )
            ),
        )

    @classmethod
    def decode(cls, body: bytes) -> AssociateRJ:
        _checkFixedFour(body, "A-ASSOCIATE-RJ")
        return cls(body[1], body[2], body[3])


@dataclass(frozen=True, slots=True)
class PresentationDataValue:
    """
    One PDV item of a P-DATA-TF (PS3.8 §9.3.5.1) with its message control
    header (PS3.8 Annex E.2) unpacked: bit 0 set means command, bit 1 set
    means last fragment. The other six bits are not tested on receipt.
    """

    contextID: int
    isCommand: bool
    isLastFragment: bool
    data: bytes

    def encode(self) -> bytes:
        header = (1 if self.isCommand else 0) | (2 if self.isLastFragment else 0)
        length = len(self.data) + 2
        if length > 0xFFFFFFFF:
            raise LocalProtocolError("PDV too long")
        return (
            _PDV_HEADER.pack(length, _byte(self.contextID, "context ID"), header)
            + self.data
        )


@dataclass(frozen=True, slots=True)
class PDataTF:
    """
    P-DATA-TF PDU (PS3.8 §9.3.5): one or more PDV items.
    """

    pdvs: tuple[PresentationDataValue, ...]

    pduType: ClassVar[PDUType] = PDUType.P_DATA_TF

    def encode(self) -> bytes:
        return _header(self.pduType, b"".join(pdv.encode() for pdv in self.pdvs))

    @classmethod
    def decode(cls, body: bytes) -> PDataTF:
        pdvs = []
        pos = 0
        end = len(body)
        while pos < end:
            if end - pos < 6:
                raise PDUDecodeError(
                    f"P-DATA-TF: {end - pos} trailing byte(s), too short for a "
                    f"PDV item",
                    _INVALID,
                )
            length, contextID, control = _PDV_HEADER.unpack_from(body, pos)
            # PS3.8 §9.3.5.1: the item length counts the context ID and the
            # message control header, so it is at least 2.
            if length < 2:
                raise PDUDecodeError(
                    f"P-DATA-TF: PDV item length {length} is shorter than 2",
                    _INVALID,
                )
            if length > end - pos - 4:
                raise PDUDecodeError(
                    f"P-DATA-TF: PDV item declares {length} bytes but only "
                    f"{end - pos - 4} remain",
                    _INVALID,
                )
            start = pos + 6
            pos += 4 + length
            pdvs.append(
                PresentationDataValue(
                    contextID, bool(control & 1), bool(control & 2), body[start:pos]
                )
            )
        if not pdvs:
            raise PDUDecodeError("P-DATA-TF carries no PDV item", _INVALID)
        return cls(tuple(pdvs))


@dataclass(frozen=True, slots=True)
class ReleaseRQ:
    """
    A-RELEASE-RQ PDU (PS3.8 §9.3.6): four reserved bytes.
    """

    pduType: ClassVar[PDUType] = PDUType.A_RELEASE_RQ

    def encode(self) -> bytes:
        return _header(self.pduType, bytes(4))

    @classmethod
    def decode(cls, body: bytes) -> ReleaseRQ:
        _checkFixedFour(body, "A-RELEASE-RQ")
        return cls()


@dataclass(frozen=True, slots=True)
class ReleaseRP:
    """
    A-RELEASE-RP PDU (PS3.8 §9.3.7): four reserved bytes.
    """

    pduType: ClassVar[PDUType] = PDUType.A_RELEASE_RP

    def encode(self) -> bytes:
        return _header(self.pduType, bytes(4))

    @classmethod
    def decode(cls, body: bytes) -> ReleaseRP:
        _checkFixedFour(body, "A-RELEASE-RP")
        return cls()


@dataclass(frozen=True, slots=True)
class Abort:
    """
    A-ABORT PDU (PS3.8 §9.3.8). Values kept as sent; see L{AbortSource}
    and L{AbortReason}.
    """

    source: int = AbortSource.SERVICE_USER
    reason: int = AbortReason.REASON_NOT_SPECIFIED

    pduType: ClassVar[PDUType] = PDUType.A_ABORT

    def encode(self) -> bytes:
        return _header(
            self.pduType,
            bytes(
                (
                    0,
                    0,
                    _byte(self.source, "abort source"),
                    _byte(self.reason, "abort reason"),
                )
            ),
        )

    @classmethod
    def decode(cls, body: bytes) -> Abort:
        _checkFixedFour(body, "A-ABORT")
        return cls(body[2], body[3])


PDU = Union[
    AssociateRQ, AssociateAC, AssociateRJ, PDataTF, ReleaseRQ, ReleaseRP, Abort
]

_DECODERS: dict[int, Callable[[bytes], PDU]] = {
    cls.pduType: cls.decode
    for cls in (
        AssociateRQ,
        AssociateAC,
        AssociateRJ,
        PDataTF,
        ReleaseRQ,
        ReleaseRP,
        Abort,
    )
}


def decodePDU(pduType: int, body: bytes) -> PDU:
    """
    Decode the body of one PDU whose header carried C{pduType}.

    @raise UnrecognizedPDUError: if C{pduType} is not one of the seven.
    @raise PDUDecodeError: if the body is malformed.
    """
    decoder = _DECODERS.get(pduType)
    if decoder is None:
        raise UnrecognizedPDUError(pduType, None)
    return decoder(body)


def decode(data: bytes) -> PDU:
    """
    Decode exactly one whole PDU, header included.

    @raise PDUDecodeError: if C{data} is shorter or longer than the header
        says, or the body is malformed.
    """
    if len(data) < _PDU_HEADER.size:
        raise PDUDecodeError(
            f"{len(data)} byte(s) is shorter than a PDU header", _INVALID
        )
    pduType, _, length = _PDU_HEADER.unpack_from(data, 0)
    if length != len(data) - _PDU_HEADER.size:
        raise PDUDecodeError(
            f"PDU header declares {length} bytes, {len(data) - 6} given", _INVALID
        )
    return decodePDU(pduType, data[_PDU_HEADER.size :])


def encode(pdu: PDU) -> bytes:
    """
    Encode C{pdu}, header included.

    @raise LocalProtocolError: if a value does not fit its field.
    """
    return pdu.encode()
