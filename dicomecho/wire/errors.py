# -*- test-case-name: tests.test_pdu -*-
"""
Errors raised by the pure layers, and the A-ABORT codes they imply (their
words are L{dicomecho.wire.vocabulary}'s).

A L{RemoteProtocolError} means the peer sent something PS3.8 does not allow.
It carries the A-ABORT source and reason the acceptor should answer with
(PS3.8 §9.3.8, Table 9-26), so the state machine never has to guess.
A L{LocalProtocolError} means we were asked to encode something that cannot
be put on the wire (a value that does not fit its field).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "AbortSource",
    "AbortReason",
    "DICOMProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "PDUDecodeError",
    "UnrecognizedPDUError",
    "PDULengthError",
]


class AbortSource(IntEnum):
    """
    The source field of an A-ABORT PDU (PS3.8 Table 9-26).
    """

    #: DICOM UL service-user (initiated abort).
    SERVICE_USER = 0
    #: Reserved.
    RESERVED = 1
    #: DICOM UL service-provider (initiated abort).
    SERVICE_PROVIDER = 2


class AbortReason(IntEnum):
    """
    The reason/diag. field of an A-ABORT PDU sent by the service-provider
    (PS3.8 Table 9-26). Only meaningful when the source is
    L{AbortSource.SERVICE_PROVIDER}; a service-user abort sends 0.
    """

    REASON_NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6


class DICOMProtocolError(Exception):
    """
    Base class of every protocol error raised by dicomecho's pure layers.
    """


class LocalProtocolError(DICOMProtocolError):
    """
    We tried to encode a value that PS3.8 cannot represent (too long for its
    length field, out of range for its byte, not encodable as ISO 646).
    """


class RemoteProtocolError(DICOMProtocolError):
    """
    The peer broke PS3.8. Answer with an A-ABORT from the service-provider
    carrying L{abortReason}, then close.

    @ivar abortSource: always L{AbortSource.SERVICE_PROVIDER}: the upper
        layer, not the application, detected the fault.
    @ivar abortReason: the PS3.8 Table 9-26 reason this fault implies.
    """

    abortSource = AbortSource.SERVICE_PROVIDER

    def __init__(self, message: str, abortReason: AbortReason) -> None:
        super().__init__(message)
        self.abortReason = abortReason


class PDUDecodeError(RemoteProtocolError):
    """
    The body of a PDU, or one of its items, is malformed: a length that does
    not fit its container or its fixed part, a missing or repeated parameter.
    """


class UnrecognizedPDUError(RemoteProtocolError):
    """
    The first byte of a PDU header is not one of the seven PDU types
    (PS3.8 §9.3). Abort reason: unrecognized-PDU.

    @ivar pduType: the byte found.
    @ivar looksLike: a short description when the header looks like another
        protocol (C{"a TLS handshake"}, C{"an HTTP request"}, C{"SSH"}),
        else C{None}; for the log line, so an operator sees a TLS client on the
        plain port for what it is.
    """

    def __init__(self, pduType: int, looksLike: str | None) -> None:
        message = f"unrecognized PDU type 0x{pduType:02X}"
        if looksLike is not None:
            message += f" (this looks like {looksLike}, not DICOM)"
        super().__init__(message, AbortReason.UNRECOGNIZED_PDU)
        self.pduType = pduType
        self.looksLike = looksLike


class PDULengthError(RemoteProtocolError):
    """
    A PDU header declares a length its type does not allow: above the cap for
    an A-ASSOCIATE or P-DATA-TF PDU, or other than 4 for a fixed-size PDU.
    Raised from the 6-byte header, before any of the body is buffered.
    Abort reason: invalid-PDU-parameter-value.

    @ivar pduType: the PDU type in the header.
    @ivar length: the declared PDU length.
    """

    def __init__(self, pduType: int, length: int, message: str) -> None:
        super().__init__(message, AbortReason.INVALID_PDU_PARAMETER_VALUE)
        self.pduType = pduType
        self.length = length
