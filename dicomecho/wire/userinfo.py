# -*- test-case-name: tests.test_userinfo -*-
"""
The User Information item (0x50) of the A-ASSOCIATE-RQ/AC and its sub-items
(PS3.8 §9.3.2.3, Annex D; PS3.7 Annex D.3.3): maximum length,
implementation class UID and version name, asynchronous operations window,
role selection, SOP class (common) extended negotiation and user identity.

Each sub-item decodes from a byte range already bounded by its header
(L{dicomecho.wire.itemcodec.iterItems}) and checks its own fields against
that range.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Sized

from dicomecho.wire.errors import AbortReason, LocalProtocolError, PDUDecodeError
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
    expectEnd,
    iterItems,
    lengthPrefixed,
    needLength,
    readLengthPrefixed,
    singleValued,
)

__all__ = [
    "UserInformation",
    "AsyncOperationsWindow",
    "RoleSelection",
    "SOPClassExtendedNegotiation",
    "SOPClassCommonExtendedNegotiation",
    "UserIdentityRQ",
    "UserIdentityAC",
]

_U32 = struct.Struct(">I")
_U16U16 = struct.Struct(">HH")

_INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE

#: The sub-item types a User Information item may hold.
_KNOWN_SUB_ITEMS = frozenset(range(ItemType.MAXIMUM_LENGTH, ItemType.USER_IDENTITY_AC + 1))


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
        body = lengthPrefixed(encodeText(self.sopClassUID, "SOP class UID"), "UID")
        return encodeItem(
            ItemType.ROLE_SELECTION, body + bytes((self.scuRole, self.scpRole))
        )

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> RoleSelection:
        what = "SCP/SCU role selection item"
        uid, pos = readLengthPrefixed(data, start, end, what)
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
        body = lengthPrefixed(encodeText(self.sopClassUID, "SOP class UID"), "UID")
        return encodeItem(
            ItemType.SOP_CLASS_EXTENDED, body + self.applicationInformation
        )

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> SOPClassExtendedNegotiation:
        uid, pos = readLengthPrefixed(
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
            lengthPrefixed(encodeText(uid, "related SOP class UID"), "UID")
            for uid in self.relatedGeneralSOPClassUIDs
        )
        body = (
            lengthPrefixed(encodeText(self.sopClassUID, "SOP class UID"), "UID")
            + lengthPrefixed(
                encodeText(self.serviceClassUID, "service class UID"), "UID"
            )
            + lengthPrefixed(related, "related general SOP class identification")
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
        sop, pos = readLengthPrefixed(data, start, end, what)
        service, pos = readLengthPrefixed(data, pos, end, what)
        related, pos = readLengthPrefixed(data, pos, end, what)
        expectEnd(pos, end, what)
        uids = []
        rpos = 0
        while rpos < len(related):
            uid, rpos = readLengthPrefixed(related, rpos, len(related), what)
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
            + lengthPrefixed(self.primaryField, "user identity primary field")
            + lengthPrefixed(self.secondaryField, "user identity secondary field")
        )
        return encodeItem(ItemType.USER_IDENTITY_RQ, body)

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> UserIdentityRQ:
        what = "user identity item"
        needLength(end - start, 6, what)
        identityType, positive = data[start], data[start + 1]
        primary, pos = readLengthPrefixed(data, start + 2, end, what)
        secondary, pos = readLengthPrefixed(data, pos, end, what)
        expectEnd(pos, end, what)
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
            lengthPrefixed(self.serverResponse, "user identity server response"),
        )

    @classmethod
    def decode(cls, data: bytes, start: int, end: int) -> UserIdentityAC:
        what = "user identity response item"
        response, pos = readLengthPrefixed(data, start, end, what)
        expectEnd(pos, end, what)
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
    def decode(
        cls, data: bytes, start: int, end: int, budget: ItemBudget | None = None
    ) -> UserInformation:
        reader = _SubItemReader()
        read = reader.read
        for itemType, second, s, e in iterItems(data, start, end, "user information", budget):
            read(data, itemType, second, s, e)
        return reader.result()


def _room(kept: Sized, what: str) -> None:
    """
    @raise PDUDecodeError: if C{kept} already holds one sub-item per
        possible presentation context (they come one per SOP class).
    """
    checkRoom(kept, MAX_PRESENTATION_CONTEXTS, f"{what} sub-items (one per SOP class, PS3.7 D.3.3)")


class _SubItemReader:
    """
    The sub-items of one User Information item, gathered as they are walked
    and then frozen into a L{UserInformation}.
    """

    __slots__ = (
        "maximumLength",
        "implementationUID",
        "versionName",
        "window",
        "identity",
        "identityResponse",
        "roles",
        "extended",
        "common",
        "unknown",
        "dropped",
    )

    def __init__(self) -> None:
        self.maximumLength: int | None = None
        self.implementationUID: str | None = None
        self.versionName: str | None = None
        self.window: AsyncOperationsWindow | None = None
        self.identity: UserIdentityRQ | None = None
        self.identityResponse: UserIdentityAC | None = None
        self.roles: list[RoleSelection] = []
        self.extended: list[SOPClassExtendedNegotiation] = []
        self.common: list[SOPClassCommonExtendedNegotiation] = []
        self.unknown: list[UnknownItem] = []
        self.dropped = 0

    def read(self, data: bytes, itemType: int, second: int, s: int, e: int) -> None:
        """
        Decode the sub-item in C{data[s:e]} and keep it.

        @raise PDUDecodeError: if it is malformed, or a second instance of a
            single-valued sub-item.
        """
        # Unknown sub-items first: they are ignored (PS3.8 Annex D), there
        # may be thousands, and they must cost little. The first few are
        # kept for the log, the rest only counted.
        if itemType not in _KNOWN_SUB_ITEMS:
            if len(self.unknown) < MAX_KEPT_UNKNOWN_ITEMS:
                self.unknown.append(UnknownItem(itemType, data[s:e], second))
            else:
                self.dropped += 1
        elif itemType == ItemType.MAXIMUM_LENGTH:
            if e - s != 4:
                raise PDUDecodeError(
                    f"maximum length item length {e - s}, expected 4", _INVALID
                )
            self.maximumLength = singleValued(
                self.maximumLength, _U32.unpack_from(data, s)[0], "maximum length item"
            )
        elif itemType == ItemType.IMPLEMENTATION_CLASS_UID:
            self.implementationUID = singleValued(
                self.implementationUID,
                decodeText(data[s:e]),
                "implementation class UID item",
            )
        elif itemType == ItemType.IMPLEMENTATION_VERSION_NAME:
            self.versionName = singleValued(
                self.versionName, decodeText(data[s:e]), "implementation version name item"
            )
        elif itemType == ItemType.ASYNC_OPERATIONS_WINDOW:
            self.window = singleValued(
                self.window,
                AsyncOperationsWindow.decode(data, s, e),
                "asynchronous operations window item",
            )
        elif itemType == ItemType.ROLE_SELECTION:
            _room(self.roles, "role selection")
            self.roles.append(RoleSelection.decode(data, s, e))
        elif itemType == ItemType.SOP_CLASS_EXTENDED:
            _room(self.extended, "SOP class extended negotiation")
            self.extended.append(SOPClassExtendedNegotiation.decode(data, s, e))
        elif itemType == ItemType.SOP_CLASS_COMMON_EXTENDED:
            _room(self.common, "SOP class common extended negotiation")
            self.common.append(SOPClassCommonExtendedNegotiation.decode(data, s, e, second))
        elif itemType == ItemType.USER_IDENTITY_RQ:
            self.identity = singleValued(
                self.identity, UserIdentityRQ.decode(data, s, e), "user identity item"
            )
        else:
            self.identityResponse = singleValued(
                self.identityResponse,
                UserIdentityAC.decode(data, s, e),
                "user identity response item",
            )

    def result(self) -> UserInformation:
        """
        The sub-items read so far, as a L{UserInformation}.
        """
        return UserInformation(
            maximumLength=self.maximumLength,
            implementationClassUID=self.implementationUID,
            implementationVersionName=self.versionName,
            asyncOperationsWindow=self.window,
            roleSelections=tuple(self.roles),
            sopClassExtendedNegotiations=tuple(self.extended),
            sopClassCommonExtendedNegotiations=tuple(self.common),
            userIdentity=self.identity,
            userIdentityResponse=self.identityResponse,
            unknownSubItems=tuple(self.unknown),
            droppedUnknownSubItems=self.dropped,
        )
