# -*- test-case-name: tests.test_recognition -*-
"""
What protocol a connection speaks, from its first bytes: plain DICOM, TLS,
HTTP, SSH, a PROXY protocol header. The plain port names a foreign
protocol in its unrecognized-PDU error; the TLS port says what a client
that failed the handshake sent instead; the PROXY layer uses the
signatures.

L{recognize} reads as few bytes as each protocol needs, so the first
bytes of a connection (6 on the plain port, 16 on the TLS port) are
enough.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "FirstBytes",
    "PROXY_V1_SIGNATURE",
    "PROXY_V2_SIGNATURE",
    "HTTP_REQUEST_STARTS",
    "recognize",
]

#: A PROXY protocol v1 header starts with "PROXY" and one space (HAProxy's
#: specification, section 2.1).
PROXY_V1_SIGNATURE = b"PROXY "
#: The 12 bytes that start a PROXY protocol v2 header (section 2.2).
PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

#: What an HTTP request starts with: a method and a space (RFC 9110
#: section 9), or the HTTP/2 connection preface (RFC 9113 section 3.4).
HTTP_REQUEST_STARTS = (
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
    b"PRI * HTTP/2",
)

#: Fewest bytes taken as the start of an HTTP request or a PROXY v2 header.
_ENOUGH = 4


class FirstBytes(Enum):
    """
    What the first bytes of a connection are; the value names it for the
    plain port's log (C{"this looks like ..."}).
    """

    #: Nothing was received.
    NOTHING = "nothing"
    #: A DICOM A-ASSOCIATE-RQ: PDU type 1, then the reserved byte 0 (PS3.8
    #: §9.3.2).
    DICOM = "a DICOM A-ASSOCIATE-RQ"
    #: A TLS record of content type 22 (handshake), major version 3 (RFC
    #: 8446 section 5.1): a ClientHello.
    TLS = "a TLS handshake"
    #: A TLS handshake record of a major version other than 3: TLS-like,
    #: but no version this century.
    TLS_UNKNOWN_VERSION = "a TLS record of an unknown version"
    #: An SSLv2-format ClientHello (RFC 6101 Appendix E.2): a very old
    #: client.
    SSLV2 = "an SSLv2 ClientHello"
    #: An HTTP request (see L{HTTP_REQUEST_STARTS}).
    HTTP = "an HTTP request"
    #: An SSH identification string (RFC 4253 section 4.2).
    SSH = "SSH"
    #: A PROXY protocol v1 header.
    PROXY_V1 = "a PROXY protocol v1 header"
    #: A PROXY protocol v2 header.
    PROXY_V2 = "a PROXY protocol v2 header"
    #: Something else.
    UNKNOWN = "unknown"


def _startsLike(data: bytes, start: bytes) -> bool:
    """
    Whether C{data} begins with C{start}, or is at least L{_ENOUGH} bytes
    of its beginning.
    """
    if len(data) >= len(start):
        return data.startswith(start)
    return len(data) >= _ENOUGH and start.startswith(data)


def recognize(data: bytes) -> FirstBytes:
    """
    What protocol C{data}, the first bytes of a connection, belongs to.

    Not called per PDU: only when a connection's first bytes are in
    question (an unknown PDU type, a failed TLS handshake).
    """
    if not data:
        return FirstBytes.NOTHING
    first = data[0]
    if first == 0x16:
        return FirstBytes.TLS if data[1:2] in (b"\x03", b"") else FirstBytes.TLS_UNKNOWN_VERSION
    if first == 0x01:
        return FirstBytes.DICOM if data[1:2] == b"\x00" else FirstBytes.UNKNOWN
    if first == 0x80:
        return FirstBytes.SSLV2
    if data.startswith(b"SSH-"):
        return FirstBytes.SSH
    if data.startswith(PROXY_V1_SIGNATURE):
        return FirstBytes.PROXY_V1
    if _startsLike(data, PROXY_V2_SIGNATURE):
        return FirstBytes.PROXY_V2
    if any(_startsLike(data, start) for start in HTTP_REQUEST_STARTS):
        return FirstBytes.HTTP
    return FirstBytes.UNKNOWN
