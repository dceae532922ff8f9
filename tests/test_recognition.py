"""
Tests for L{dicomecho.wire.recognition}: what the first bytes of a
connection say about its protocol.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomecho.wire.recognition import (
    HTTP_REQUEST_STARTS,
    PROXY_V1_SIGNATURE,
    PROXY_V2_SIGNATURE,
    FirstBytes,
    recognize,
)
from tests.support.helpers import fixtureBytes


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"", FirstBytes.NOTHING),
        (fixtureBytes("dcmtk_echoscu_default", "c2s"), FirstBytes.DICOM),
        (b"\x01\x00", FirstBytes.DICOM),
        (b"\x01", FirstBytes.UNKNOWN),
        (b"\x01\x05\x00\x00", FirstBytes.UNKNOWN),
        (bytes.fromhex("160301020001") + bytes(10), FirstBytes.TLS),
        (b"\x16", FirstBytes.TLS),
        (b"\x16\x01\x00\x00\x00\x00", FirstBytes.TLS_UNKNOWN_VERSION),
        (b"\x80\x2e\x01\x03\x01", FirstBytes.SSLV2),
        (b"GET / HTTP/1.1\r\n", FirstBytes.HTTP),
        (b"POST /wado HTTP/1.1\r\n", FirstBytes.HTTP),
        (b"PRI * HTTP/2.0\r\n", FirstBytes.HTTP),
        (b"DELETE", FirstBytes.HTTP),  # six bytes of "DELETE "
        (b"OPTION", FirstBytes.HTTP),
        (b"GET", FirstBytes.UNKNOWN),  # too few to tell
        (b"GETS /", FirstBytes.UNKNOWN),
        (b"SSH-2.0-OpenSSH_9.6\r\n", FirstBytes.SSH),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n", FirstBytes.PROXY_V1),
        (PROXY_V2_SIGNATURE + b"\x21\x11", FirstBytes.PROXY_V2),
        (PROXY_V2_SIGNATURE[:4], FirstBytes.PROXY_V2),
        (PROXY_V2_SIGNATURE[:7] + b"X", FirstBytes.UNKNOWN),
        (b"\x08\x00\x00\x00\x00\x04abcd", FirstBytes.UNKNOWN),
    ],
)
def test_recognize(data: bytes, kind: FirstBytes) -> None:
    assert recognize(data) is kind


def test_signatures() -> None:
    """
    The signatures are HAProxy's (as Twisted's parsers know them).
    """
    from twisted.protocols.haproxy._v2parser import V2Parser

    assert PROXY_V1_SIGNATURE == b"PROXY "
    assert PROXY_V2_SIGNATURE == V2Parser.PREFIX


@given(st.sampled_from(HTTP_REQUEST_STARTS), st.binary(max_size=20))
def test_anyHTTPRequest(start: bytes, rest: bytes) -> None:
    """
    A method and a space (or the HTTP/2 preface), whatever follows, is HTTP.
    """
    assert recognize(start + rest) is FirstBytes.HTTP


@given(st.binary(max_size=32))
def test_anyBytes(data: bytes) -> None:
    """
    Any bytes are recognized as exactly one kind, from their beginning: a
    longer read never changes a decided kind other than UNKNOWN or a
    still-open prefix.
    """
    kind = recognize(data)
    assert isinstance(kind, FirstBytes)
    assert (kind is FirstBytes.NOTHING) == (data == b"")
    if kind in (FirstBytes.DICOM, FirstBytes.TLS_UNKNOWN_VERSION, FirstBytes.SSLV2, FirstBytes.SSH, FirstBytes.PROXY_V1):
        assert recognize(data + b"\x00more") is kind


@given(st.binary(min_size=2, max_size=16))
def test_tlsRecordsOnlyFrom0x16(data: bytes) -> None:
    kind = recognize(data)
    if kind in (FirstBytes.TLS, FirstBytes.TLS_UNKNOWN_VERSION):
        assert data[0] == 0x16
    if data[0] == 0x16:
        assert kind is (FirstBytes.TLS if data[1] == 3 else FirstBytes.TLS_UNKNOWN_VERSION)
