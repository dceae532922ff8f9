# -*- test-case-name: tests.test_items -*-
"""
Items and sub-items of the A-ASSOCIATE-RQ/AC variable field (PS3.8 §9.3.2,
§9.3.3 and Annex D; PS3.7 Annex D.3.3).

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
from dataclasses import dataclass, field
from typing import Iterator, TypeVar

from dicomecho.wire.errors import AbortReason, LocalProtocolError, PDUDecodeError

__all__ = [
    "ItemType",
    "PresentationContextRQ",
    "PresentationContextAC",
    "PresentationResult",
    "UserInformation",
    "AsyncOperationsWindow",
    "RoleSelection",
    "SOPClassExtendedNegotiation",
    "SOPClassCommonExtendedNegotiation",
    "UserIdentityRQ",
    "UserIdentityAC",
    "UnknownItem",
    "MAX_KEPT_UNKNOWN_ITEMS",
    "iterItems",
    "encodeItem",
    "decodeText",
    "encodeText",
]

_HEADER = struct.Struct(">BBH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U16U16 = struct.Struct(">HH")

_INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE
_UNEXPECTED = AbortReason.UNEXPECTED_PDU_PARAMETER


#: Unknown items kept per container for the log; beyond this they are
#: only counted, so a request made of 260,000 empty items costs no memory.
MAX_KEPT_UNKNOWN_ITEMS = 8


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


class PresentationResult:
    """
    Result/Reason of a presentation context in an A-ASSOCIATE-AC
    (PS3.8 Table 9-18).
    """

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


# --- primitive helpers -----------------------------------------------------


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


def _lengthPrefixed(value: bytes, what: str) -> bytes:
    if len(value) > 0xFFFF:
        raise LocalProtocolError(f"{what} of {len(value)} bytes exceeds 65535")
    return _U16.pack(len(value)) + value


def iterItems(
    data: bytes, start: int, end: int, container: str
) -> Iterator[tuple[int, int, int, int]]:
    """
    Walk the items in C{data[start:end]}.

    @return: an iterator of C{(itemType, secondByte, bodyStart, bodyEnd)}.
    @raise PDUDecodeError: if a header or a body runs past C{end}.
    """
    pos = start
    while pos < end:
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


def _readLengthPrefixed(
    data: bytes, pos: int, end: int, what: str
) -> tuple[bytes, int]:
    """
    Read a 2-byte length and that many bytes; return them and the new offset.
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


def _expectEnd(pos: int, end: int, what: str) -> None:
    if pos != end:
        raise PDUDecodeError(
            f"{what}: {end - pos} unexpected trailing byte(s)", _INVALID
        )


def _needLength(length: int, minimum: int, what: str) -> None:
    if length < minimum:
        raise PDUDecodeError(
            f"{what}: item length {length} is shorter than its fixed part "
            f"({minimum})",
            _INVALID,
        )


_T = TypeVar("_T")


def _single(current: _T | None, new: _T, what: str) -> _T:
    if current is not None:
        raise PDUDecodeError(f"more than one {what}", _UNEXPECTED)
    return new


# --- items of the variable field -------------------------------------------


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


def _checkContextID(contextID: int) -> None:
    if not 0 <= contextID <= 0xFF:
        raise LocalProtocolError(f"presentation context ID {contextID} not a byte")


@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    """
    Item 0x20 (PS3.8 §9.3.2.2): one proposed presentation context.

    @ivar contextID: as sent; PS3.8 wants an odd number 1-255, but the
        decoder keeps any byte so the negotiation layer can answer it.
    @ivar abstractSyntax: the abstract syntax sub-item (0x30), C{None} if the
        peer left it out.
    @ivar transferSyntaxes: the transfer syntax sub-items (0x40), in order;
        may be empty if the peer sent none.
    """

    contextID: int
    abstractSyntax: str | None
    transferSyntaxes: tuple[str, ...]

    def encode(self) -> bytes:
        _checkContextID(self.contextID)
        parts = [bytes((self.contextID, 0, 0, 0))]
        if self.abstractSyntax is not None:
            parts.append(
                encodeItem(
                    ItemType.ABSTRACT_SYNTAX,
                    encodeText(self.abstractSyntax, "abstract syntax"),
                )
            )
        for ts in self.transferSyntaxes:
            parts.append(
                encodeItem(ItemType.TRANSFER_SYNTAX, encodeText(ts, "transfer syntax"))
            )
        return encodeItem(ItemType.PRESENTATION_CONTEXT_RQ, b"".join(parts))

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> PresentationContextRQ:
        _needLength(end - start, 4, "presentation context item")
        contextID = data[start]
        what = f"presentation context {contextID}"
        abstract: str | None = None
        transfers: list[str] = []
        for itemType, _, s, e in iterItems(data, start + 4, end, what):
            if itemType == ItemType.ABSTRACT_SYNTAX:
                abstract = _single(
                    abstract, decodeText(data[s:e]), f"abstract syntax in {what}"
                )
            elif itemType == ItemType.TRANSFER_SYNTAX:
                transfers.append(decodeText(data[s:e]))
            # Other sub-item types: ignored and skipped (PS3.8 §9.3.1).
        return cls(contextID, abstract, tuple(transfers))


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    """
    Item 0x21 (PS3.8 §9.3.3.2): the acceptor's answer for one context.

    @ivar result: a L{PresentationResult} value.
    @ivar transferSyntax: the transfer syntax sub-item; PS3.8 says it is not
        significant when C{result} is not acceptance. C{None} if absent.
    """

    contextID: int
    result: int
    transferSyntax: str | None

    def encode(self) -> bytes:
        _checkContextID(self.contextID)
        if not 0 <= self.result <= 0xFF:
            raise LocalProtocolError(f"presentation result {self.result} not a byte")
        body = bytes((self.contextID, 0, self.result, 0))
        if self.transferSyntax is not None:
            body += encodeItem(
                ItemType.TRANSFER_SYNTAX,
                encodeText(self.transferSyntax, "transfer syntax"),
            )
        return encodeItem(ItemType.PRESENTATION_CONTEXT_AC, body)

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> PresentationContextAC:
        _needLength(end - start, 4, "presentation context item")
        contextID = data[start]
        result = data[start + 2]
        what = f"presentation context {contextID}"
        transfer: str | None = None
        for itemType, _, s, e in iterItems(data, start + 4, end, what):
            if itemType == ItemType.TRANSFER_SYNTAX:
                transfer = _single(
                    transfer, decodeText(data[s:e]), f"transfer syntax in {what}"
                )
        return cls(contextID, result, transfer)


# --- user information sub-items (PS3.8 Annex D, PS3.7 Annex D.3.3) ---------


@dataclass(frozen=True, slots=True)
class AsyncOperationsWindow:
    """
    Sub-item 0x53 (PS3.7 D.3.3.3).
    """

    maxOperationsInvoked: int
    maxOperationsPerformed: int

    def encode(self) -> bytes:
        try:
            body = _U16U16.pack(self.maxOperationsInvoked, self.maxOperationsPerformed)
        except struct.error:
            raise LocalProtocolError("async operations window out of range") from None
        return encodeItem(ItemType.ASYNC_OPERATIONS_WINDOW, body)

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> AsyncOperationsWindow:
        if end - start != 4:
            raise PDUDecodeError(
                f"asynchronous operations window item length {end - start}, "
                f"expected 4",
                _INVALID,
            )
        return cls(*_U16U16.unpack_from(data, start))


@dataclass(frozen=True, slots=True)
class RoleSelection:
    """
    Sub-item 0x54 (PS3.7 D.3.3.4). C{scuRole}/C{scpRole} are the raw bytes
    (0 = non-support, 1 = support); other values are kept for the policy
    layer to judge.
    """

    sopClassUID: str
    scuRole: int
    scpRole: int

    def encode(self) -> bytes:
        if not (0 <= self.scuRole <= 0xFF and 0 <= self.scpRole <= 0xFF):
            raise LocalProtocolError("role selection values must be bytes")
        body = _lengthPrefixed(encodeText(self.sopClassUID, "SOP class UID"), "UID")
        return encodeItem(
            ItemType.ROLE_SELECTION, body + bytes((self.scuRole, self.scpRole))
        )

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> RoleSelection:
        what = "SCP/SCU role selection item"
        uid, pos = _readLengthPrefixed(data, start, end, what)
        if end - pos != 2:
            raise PDUDecodeError(
                f"{what}: expected 2 role bytes after the UID, found {end - pos}",
                _INVALID,
            )
        return cls(decodeText(uid), data[pos], data[pos + 1])


@dataclass(frozen=True, slots=True)
class SOPClassExtendedNegotiation:
    """
    Sub-item 0x56 (PS3.7 D.3.3.5).
    """

    sopClassUID: str
    applicationInformation: bytes

    def encode(self) -> bytes:
        body = _lengthPrefixed(encodeText(self.sopClassUID, "SOP class UID"), "UID")
        return encodeItem(
            ItemType.SOP_CLASS_EXTENDED, body + self.applicationInformation
        )

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> SOPClassExtendedNegotiation:
        uid, pos = _readLengthPrefixed(
            data, start, end, "SOP class extended negotiation item"
        )
        return cls(decodeText(uid), data[pos:end])


@dataclass(frozen=True, slots=True)
class SOPClassCommonExtendedNegotiation:
    """
    Sub-item 0x57 (PS3.7 D.3.3.6). The byte after the item type is the
    sub-item version (0 today), kept as C{subItemVersion}.
    """

    sopClassUID: str
    serviceClassUID: str
    relatedGeneralSOPClassUIDs: tuple[str, ...] = ()
    subItemVersion: int = 0

    def encode(self) -> bytes:
        related = b"".join(
            _lengthPrefixed(encodeText(uid, "related SOP class UID"), "UID")
            for uid in self.relatedGeneralSOPClassUIDs
        )
        body = (
            _lengthPrefixed(encodeText(self.sopClassUID, "SOP class UID"), "UID")
            + _lengthPrefixed(
                encodeText(self.serviceClassUID, "service class UID"), "UID"
            )
            + _lengthPrefixed(related, "related general SOP class identification")
        )
        if not 0 <= self.subItemVersion <= 0xFF:
            raise LocalProtocolError("sub-item version not a byte")
        return encodeItem(
            ItemType.SOP_CLASS_COMMON_EXTENDED, body, self.subItemVersion
        )

    @classmethod
    def decode(
        cls, data: bytes, start: int, end: int, subItemVersion: int
    ) -> SOPClassCommonExtendedNegotiation:
        what = "SOP class common extended negotiation item"
        sop, pos = _readLengthPrefixed(data, start, end, what)
        service, pos = _readLengthPrefixed(data, pos, end, what)
        related, pos = _readLengthPrefixed(data, pos, end, what)
        _expectEnd(pos, end, what)
        uids = []
        rpos = 0
        while rpos < len(related):
            uid, rpos = _readLengthPrefixed(related, rpos, len(related), what)
            uids.append(decodeText(uid))
        return cls(decodeText(sop), decodeText(service), tuple(uids), subItemVersion)


@dataclass(frozen=True, slots=True)
class UserIdentityRQ:
    """
    Sub-item 0x58 (PS3.7 D.3.3.7.1). The fields are never shown by C{repr}:
    the secondary field is a passcode.

    @ivar identityType: 1 username, 2 username and passcode, 3 Kerberos,
        4 SAML, 5 JWT; other values kept for the policy layer.
    @ivar positiveResponseRequested: the raw byte (1 = requested).
    """

    identityType: int
    positiveResponseRequested: int
    primaryField: bytes = field(repr=False)
    secondaryField: bytes = field(default=b"", repr=False)

    def __repr__(self) -> str:
        return (
            f"UserIdentityRQ(identityType={self.identityType}, "
            f"positiveResponseRequested={self.positiveResponseRequested}, "
            f"primaryField=<{len(self.primaryField)} bytes>, "
            f"secondaryField=<{len(self.secondaryField)} bytes>)"
        )

    def encode(self) -> bytes:
        if not (
            0 <= self.identityType <= 0xFF
            and 0 <= self.positiveResponseRequested <= 0xFF
        ):
            raise LocalProtocolError("user identity type/flag must be bytes")
        body = (
            bytes((self.identityType, self.positiveResponseRequested))
            + _lengthPrefixed(self.primaryField, "user identity primary field")
            + _lengthPrefixed(self.secondaryField, "user identity secondary field")
        )
        return encodeItem(ItemType.USER_IDENTITY_RQ, body)

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> UserIdentityRQ:
        what = "user identity item"
        _needLength(end - start, 6, what)
        identityType, positive = data[start], data[start + 1]
        primary, pos = _readLengthPrefixed(data, start + 2, end, what)
        secondary, pos = _readLengthPrefixed(data, pos, end, what)
        _expectEnd(pos, end, what)
        return cls(identityType, positive, primary, secondary)


@dataclass(frozen=True, slots=True)
class UserIdentityAC:
    """
    Sub-item 0x59 (PS3.7 D.3.3.7.2).
    """

    serverResponse: bytes = field(repr=False)

    def encode(self) -> bytes:
        return encodeItem(
            ItemType.USER_IDENTITY_AC,
            _lengthPrefixed(self.serverResponse, "user identity server response"),
        )

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> UserIdentityAC:
        what = "user identity response item"
        response, pos = _readLengthPrefixed(data, start, end, what)
        _expectEnd(pos, end, what)
        return cls(response)


@dataclass(frozen=True, slots=True)
class UserInformation:
    """
    Item 0x50 (PS3.8 §9.3.2.3, Annex D) and its sub-items.

    Single-valued sub-items are C{None} when absent; a second instance of
    one is an unexpected-PDU-parameter error. Sub-items may arrive in any
    order (PS3.8 §9.3.2.3 note); they are encoded in ascending type order.

    @ivar maximumLength: sub-item 0x51, the largest P-DATA-TF variable field
        the sender will receive; 0 means no limit (PS3.8 D.1).
    """

    maximumLength: int | None = None
    implementationClassUID: str | None = None
    implementationVersionName: str | None = None
    asyncOperationsWindow: AsyncOperationsWindow | None = None
    roleSelections: tuple[RoleSelection, ...] = ()
    sopClassExtendedNegotiations: tuple[SOPClassExtendedNegotiation, ...] = ()
    sopClassCommonExtendedNegotiations: tuple[
        SOPClassCommonExtendedNegotiation, ...
    ] = ()
    userIdentity: UserIdentityRQ | None = None
    userIdentityResponse: UserIdentityAC | None = None
    unknownSubItems: tuple[UnknownItem, ...] = ()
    # A count for the log, not part of the value: it is not re-encoded.
    droppedUnknownSubItems: int = field(default=0, compare=False)

    def encode(self) -> bytes:
        parts: list[bytes] = []
        if self.maximumLength is not None:
            if not 0 <= self.maximumLength <= 0xFFFFFFFF:
                raise LocalProtocolError(
                    f"maximum length {self.maximumLength} does not fit 32 bits"
                )
            parts.append(
                encodeItem(ItemType.MAXIMUM_LENGTH, _U32.pack(self.maximumLength))
            )
        if self.implementationClassUID is not None:
            parts.append(
                encodeItem(
                    ItemType.IMPLEMENTATION_CLASS_UID,
                    encodeText(self.implementationClassUID, "implementation UID"),
                )
            )
        if self.asyncOperationsWindow is not None:
            parts.append(self.asyncOperationsWindow.encode())
        parts.extend(r.encode() for r in self.roleSelections)
        if self.implementationVersionName is not None:
            parts.append(
                encodeItem(
                    ItemType.IMPLEMENTATION_VERSION_NAME,
                    encodeText(
                        self.implementationVersionName, "implementation version name"
                    ),
                )
            )
        parts.extend(s.encode() for s in self.sopClassExtendedNegotiations)
        parts.extend(s.encode() for s in self.sopClassCommonExtendedNegotiations)
        if self.userIdentity is not None:
            parts.append(self.userIdentity.encode())
        if self.userIdentityResponse is not None:
            parts.append(self.userIdentityResponse.encode())
        parts.extend(u.encode() for u in self.unknownSubItems)
        return encodeItem(ItemType.USER_INFORMATION, b"".join(parts))

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> UserInformation:
        maximumLength: int | None = None
        implementationUID: str | None = None
        versionName: str | None = None
        window: AsyncOperationsWindow | None = None
        identity: UserIdentityRQ | None = None
        identityResponse: UserIdentityAC | None = None
        roles: list[RoleSelection] = []
        extended: list[SOPClassExtendedNegotiation] = []
        common: list[SOPClassCommonExtendedNegotiation] = []
        unknown: list[UnknownItem] = []
        dropped = 0
        for itemType, second, s, e in iterItems(data, start, end, "user information"):
            if itemType == ItemType.MAXIMUM_LENGTH:
                if e - s != 4:
                    raise PDUDecodeError(
                        f"maximum length item length {e - s}, expected 4", _INVALID
                    )
                maximumLength = _single(
                    maximumLength, _U32.unpack_from(data, s)[0], "maximum length item"
                )
            elif itemType == ItemType.IMPLEMENTATION_CLASS_UID:
                implementationUID = _single(
                    implementationUID,
                    decodeText(data[s:e]),
                    "implementation class UID item",
                )
            elif itemType == ItemType.IMPLEMENTATION_VERSION_NAME:
                versionName = _single(
                    versionName,
                    decodeText(data[s:e]),
                    "implementation version name item",
                )
            elif itemType == ItemType.ASYNC_OPERATIONS_WINDOW:
                window = _single(
                    window,
                    AsyncOperationsWindow.decode(data, s, e),
                    "asynchronous operations window item",
                )
            elif itemType == ItemType.ROLE_SELECTION:
                roles.append(RoleSelection.decode(data, s, e))
            elif itemType == ItemType.SOP_CLASS_EXTENDED:
                extended.append(SOPClassExtendedNegotiation.decode(data, s, e))
            elif itemType == ItemType.SOP_CLASS_COMMON_EXTENDED:
                common.append(
                    SOPClassCommonExtendedNegotiation.decode(data, s, e, second)
                )
            elif itemType == ItemType.USER_IDENTITY_RQ:
                identity = _single(
                    identity, UserIdentityRQ.decode(data, s, e), "user identity item"
                )
            elif itemType == ItemType.USER_IDENTITY_AC:
                identityResponse = _single(
                    identityResponse,
                    UserIdentityAC.decode(data, s, e),
                    "user identity response item",
                )
            else:
                # Unknown sub-items are ignored (PS3.8 Annex D); the first
                # few are kept for the log, the rest only counted.
                if len(unknown) < MAX_KEPT_UNKNOWN_ITEMS:
                    unknown.append(UnknownItem(itemType, data[s:e], second))
                else:
                    dropped += 1
        return cls(
            maximumLength=maximumLength,
            implementationClassUID=implementationUID,
            implementationVersionName=versionName,
            asyncOperationsWindow=window,
            roleSelections=tuple(roles),
            sopClassExtendedNegotiations=tuple(extended),
            sopClassCommonExtendedNegotiations=tuple(common),
            userIdentity=identity,
            userIdentityResponse=identityResponse,
            unknownSubItems=tuple(unknown),
            droppedUnknownSubItems=dropped,
        )

