# -*- test-case-name: tests.test_framer -*-
"""
Incremental splitting of a byte stream into PDU frames.

The framer owns one buffer. Feed it whatever the transport delivered with
L{PDUFramer.receiveData}, then pull frames with L{PDUFramer.nextFrame} until
it returns C{None}. Every cap is decided from the 6-byte PDU header before
any of the body is buffered, so a header that declares 4 GiB costs nothing.
As long as the caller drains the framer after each read, it never holds
more than the largest allowed PDU plus one read.

Caps are read when a header is examined, not when data arrives: after
sending an A-ASSOCIATE-AC the caller may set L{PDUFramer.maxPDataLength}
and the next P-DATA-TF header is judged by the new value, even if it came
in the same read as the request.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import NamedTuple

from dicomecho.wire.errors import (
    PDULengthError,
    RemoteProtocolError,
    UnrecognizedPDUError,
)
from dicomecho.wire.pdu import PDUType
from dicomecho.wire.recognition import FirstBytes, recognize

__all__ = [
    "Frame",
    "PDUFramer",
    "DEFAULT_MAX_ASSOCIATE_LENGTH",
    "DEFAULT_MAX_PDATA_LENGTH",
    "UNLIMITED_PDATA_CEILING",
    "HEADER_LENGTH",
]

HEADER_LENGTH = 6
_HEADER = struct.Struct(">BxI")

#: Default cap on an A-ASSOCIATE-RQ/AC. DCMTK's largest request (echoscu
#: -ppc 128 -pts 38: 128 contexts x 38 transfer syntaxes) is 129,691 bytes
#: after the header; this admits twice that. What decoding may cost is
#: bounded by the item budget (L{dicomecho.wire.itemcodec.MAX_ITEMS}).
DEFAULT_MAX_ASSOCIATE_LENGTH = 256 * 1024

#: The largest cap C{--max-associate-length} accepts.
MAX_ASSOCIATE_LENGTH_CEILING = 16 * 1024 * 1024

#: echoscp's default maximum PDU length (its C{--max-pdu} default).
DEFAULT_MAX_PDATA_LENGTH = 16382

#: What a P-DATA-TF may be when the advertised maximum is 0 ("no limit",
#: PS3.8 D.1): still bounded, so one peer cannot make us buffer gigabytes.
UNLIMITED_PDATA_CEILING = 4 * 1024 * 1024

_FIXED_FOUR = frozenset(
    {
        PDUType.A_ASSOCIATE_RJ,
        PDUType.A_RELEASE_RQ,
        PDUType.A_RELEASE_RP,
        PDUType.A_ABORT,
    }
)
_ASSOCIATE = frozenset({PDUType.A_ASSOCIATE_RQ, PDUType.A_ASSOCIATE_AC})
_KNOWN = frozenset(PDUType)
_PDU_TYPES = {each.value: each for each in PDUType}
# Frame's fields without NamedTuple's Python-level __new__ (one per PDU).
_newFrame = tuple.__new__

#: The foreign protocols an unrecognized-PDU error names, as it names them.
_NAMED = frozenset({FirstBytes.TLS, FirstBytes.HTTP, FirstBytes.SSH})


def sniffForeignProtocol(header: bytes) -> str | None:
    """
    Name the protocol a non-DICOM header appears to belong to, for the log.

    @param header: at least the first 6 bytes a peer sent.
    @return: C{"a TLS handshake"}, C{"an HTTP request"}, C{"SSH"} or C{None}.
    """
    seen = recognize(header)
    return seen.value if seen in _NAMED else None


class Frame(NamedTuple):
    """
    One whole PDU: its type and its body (the bytes after the header).
    """

    pduType: PDUType
    body: bytes


@lru_cache(maxsize=16)
def _limits(maxAssociateLength: int, maxPDataLength: int) -> dict[int, int]:
    """
    The longest body each PDU type may declare, looked up per PDU (shared
    by the framers of one server; read only). L{PDUFramer._checkHeader}
    says why a header is refused.
    """
    return {
        pduType: (
            maxPDataLength or UNLIMITED_PDATA_CEILING
            if pduType == PDUType.P_DATA_TF
            else 4
            if pduType in _FIXED_FOUR
            else maxAssociateLength
        )
        for pduType in _PDU_TYPES
    }


class PDUFramer:
    """
    Split a DICOM UL byte stream into L{Frame}s (PS3.8 §9.3.1 header).

    After a L{RemoteProtocolError} the framer stays failed: it discards
    further data and raises the same error again, so nothing more is
    buffered for a connection that is being aborted.
    """

    # One per connection: no instance dictionary.
    __slots__ = (
        "_limits", "_maxAssociateLength", "_maxPDataLength", "_buffer", "_offset", "_failure",
        "failed", "bufferedLength",
    )

    def __init__(
        self,
        maxAssociateLength: int = DEFAULT_MAX_ASSOCIATE_LENGTH,
        maxPDataLength: int = DEFAULT_MAX_PDATA_LENGTH,
    ) -> None:
        """
        @param maxAssociateLength: largest A-ASSOCIATE-RQ/AC PDU length.
        @param maxPDataLength: the maximum length we advertise (sub-item
            0x51); P-DATA-TF PDUs longer than this are refused. 0 means
            "unlimited", bounded by L{UNLIMITED_PDATA_CEILING}.
        """
        self._limits: dict[int, int] = {}
        self._maxAssociateLength = maxAssociateLength
        self._maxPDataLength = maxPDataLength
        self._setLimits()
        self._buffer = bytearray()
        self._offset = 0
        #: Bytes received and not yet returned as frames. (An attribute: a
        #: caller reads it after every PDU to know whether to ask again.)
        self.bufferedLength = 0
        self._failure: RemoteProtocolError | None = None
        #: Whether a header was refused; the framer then keeps nothing. (An
        #: attribute, not a property: it is read for every PDU.)
        self.failed = False

    @property
    def maxAssociateLength(self) -> int:
        """
        The largest A-ASSOCIATE-RQ/AC PDU length accepted.
        """
        return self._maxAssociateLength

    @maxAssociateLength.setter
    def maxAssociateLength(self, value: int) -> None:
        self._maxAssociateLength = value
        self._setLimits()

    @property
    def maxPDataLength(self) -> int:
        """
        The largest P-DATA-TF PDU length accepted; 0 for the ceiling.
        """
        return self._maxPDataLength

    @maxPDataLength.setter
    def maxPDataLength(self, value: int) -> None:
        self._maxPDataLength = value
        self._setLimits()

    def _setLimits(self) -> None:
        self._limits = _limits(self._maxAssociateLength, self._maxPDataLength)

    def receiveData(self, data: bytes) -> None:
        """
        Append bytes from the transport. Call L{nextFrame} until it returns
        C{None} afterwards.
        """
        if self._failure is None:
            self._buffer += data
            self.bufferedLength += len(data)

    def nextFrame(self) -> Frame | None:
        """
        Return the next complete PDU, or C{None} if more bytes are needed.

        @raise UnrecognizedPDUError: the next header has an unknown type.
        @raise PDULengthError: the next header declares a length its type
            does not allow.
        """
        if self._failure is not None:
            # Re-raising would grow the stored traceback (and keep its frames
            # and their data alive) with every call: reset it.
            raise self._failure.with_traceback(None)
        buffer = self._buffer
        offset = self._offset
        size = len(buffer)
        if size - offset < HEADER_LENGTH:
            if offset:
                self._compact()
            return None
        pduType, length = _HEADER.unpack_from(buffer, offset)
        limit = self._limits.get(pduType)
        if limit is None or length > limit or (length != 4 and pduType in _FIXED_FOUR):
            try:
                self._checkHeader(pduType, length, offset)
            except RemoteProtocolError as e:
                self._fail(e)
                raise
        end = offset + HEADER_LENGTH + length
        if end > size:
            if offset:
                self._compact()
            return None
        body = bytes(buffer[offset + HEADER_LENGTH : end])
        if end == size:
            buffer.clear()
            self._offset = 0
            self.bufferedLength = 0
        else:
            self._offset = end
            self.bufferedLength = size - end
        return _newFrame(Frame, (_PDU_TYPES[pduType], body))

    def _checkHeader(self, pduType: int, length: int, offset: int) -> None:
        if pduType not in _KNOWN:
            header = bytes(self._buffer[offset : offset + HEADER_LENGTH + 10])
            raise UnrecognizedPDUError(pduType, sniffForeignProtocol(header))
        if pduType == PDUType.P_DATA_TF:
            limit = self.maxPDataLength or UNLIMITED_PDATA_CEILING
            if length > limit:
                raise PDULengthError(
                    pduType,
                    length,
                    f"P-DATA-TF PDU declares length {length}, above the "
                    f"maximum of {limit} we accept",
                )
        elif pduType in _FIXED_FOUR:
            # PS3.8 §9.3.4, §9.3.6-9.3.8: these PDUs are always 4 bytes long.
            if length != 4:
                raise PDULengthError(
                    pduType,
                    length,
                    f"{PDUType(pduType).name.replace('_', '-')} PDU declares "
                    f"length {length}, but this PDU is always 4 bytes",
                )
        elif length > self.maxAssociateLength:
            raise PDULengthError(
                pduType,
                length,
                f"{PDUType(pduType).name.replace('_', '-')} PDU declares "
                f"length {length}, above the cap of {self.maxAssociateLength}",
            )

    def _compact(self) -> None:
        del self._buffer[: self._offset]
        self._offset = 0

    def _fail(self, error: RemoteProtocolError) -> None:
        self._failure = error
        self.failed = True
        self._buffer = bytearray()
        self._offset = 0
        self.bufferedLength = 0
