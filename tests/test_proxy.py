"""
dicomecho behind the PROXY-protocol wrapper (C{haproxy:},
L{dicomecho.server.proxyheader}): the client address from a v1 or v2 header,
written here byte by byte from the HAProxy specification, is what the
allow-list checks and the log events carry; the load balancer's own
address is not. A header may arrive split anywhere; an invalid one is
closed at once with one error line; an incomplete one is closed by ARTIM.
Fake transport and clock.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.logger import LogLevel, globalLogPublisher
from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper

from dicomecho.security.access import AccessList
from dicomecho.association.transitions import State
from dicomecho.wire.pdu import AssociateAC, ReleaseRP, ReleaseRQ, encode
from dicomecho.server.factory import DICOMServerFactory
from dicomecho.observability.logs import renderEcho
from dicomecho.server.proxyheader import (
    HeaderState,
    ProxyHeaderEndpoint,
    ProxyHeaderWrappingFactory,
    readHeader,
    serverFromDescription,
)
from tests.support.helpers import logLevelSet
from tests.support.harness import echo, responses, rq
from tests.support.proxyheaders import BALANCER, V2_SIGNATURE, Proxied, v1Header, v2Header

HEADERS = [
    pytest.param(v1Header, "10.1.2.3", id="v1-ipv4"),
    pytest.param(v1Header, "2001:db8::7", id="v1-ipv6"),
    pytest.param(v2Header, "10.1.2.3", id="v2-ipv4"),
    pytest.param(v2Header, "2001:db8::7", id="v2-ipv6"),
]


@pytest.mark.parametrize("header, client", HEADERS)
def test_clientAddressFromHeader(clock: Clock, events: list[dict[str, Any]], header: Any, client: str) -> None:
    """
    The header and the A-ASSOCIATE-RQ in one read: the association is
    served, and every event names the client, never the balancer.
    """
    factory = DICOMServerFactory(clock=clock, access=AccessList.build(["10.0.0.0/8", "2001:db8::/32"]))
    c = Proxied(factory)
    assert c.protocol.state is State.STA2
    c.send(header(client, 40123) + encode(rq()))
    assert isinstance(c.received()[0], AssociateAC)
    c.send(encode(echo(1)))
    assert responses(c.received())[0][0x00000900] == 0
    c.send(encode(ReleaseRQ()))
    assert c.received() == [ReleaseRP()]
    c.close()
    peers = {e["peer"] for e in events if e.get("dicomEvent") and e.get("peer")}
    expected = f"[{client}]:40123" if ":" in client else f"{client}:40123"
    assert peers == {expected}
    (summary,) = [e for e in events if e.get("dicomEvent") == "association-summary"]
    assert (summary["peerHost"], summary["peerPort"]) == (client, 40123)


@pytest.mark.parametrize("header, client", HEADERS)
def test_clientRefusedByHeader(clock: Clock, events: list[dict[str, Any]], header: Any, client: str) -> None:
    """
    The balancer's address is allowed but the client's is not: the
    connection is closed when the header arrives, nothing is answered, and
    the refusal names the client.
    """
    factory = DICOMServerFactory(clock=clock, access=AccessList.build(["192.0.2.0/24"]))
    c = Proxied(factory)
    assert c.protocol.state is State.STA2  # not judged on the balancer's address
    c.send(header(client, 40123) + encode(rq()))
    assert c.transport.value() == b""
    assert c.transport.disconnecting
    (refused,) = [e for e in events if e.get("dicomEvent") == "connection-refused"]
    assert refused["peer"] == (f"[{client}]:40123" if ":" in client else f"{client}:40123")
    c.close()
    assert factory.openConnections == 0


def test_headerInPieces(clock: Clock) -> None:
    """
    A v1 header split after its first 8 bytes, then the request: the
    client is judged once the header is complete.
    """
    factory = DICOMServerFactory(clock=clock, access=AccessList.build(["10.0.0.0/8"]))
    c = Proxied(factory)
    data = v1Header("10.9.9.9", 1234) + encode(rq())
    c.send(data[:8])
    c.send(data[8:20])
    c.send(data[20:])
    assert isinstance(c.received()[0], AssociateAC)
    c.close()


def test_noHeaderIsClosedByARTIM(clock: Clock) -> None:
    """
    A connection that never sends its PROXY header is closed by ARTIM,
    which runs from the accept as for any connection.
    """
    factory = DICOMServerFactory(clock=clock, acseTimeout=5, access=AccessList.build(["10.0.0.0/8"]))
    c = Proxied(factory)
    clock.advance(5.01)
    assert c.transport.disconnecting
    c.close()


def test_withoutAccessListNoCostBeyondTheWrapper(clock: Clock) -> None:
    """
    Without an access list the protocol keeps its class's dataReceived
    (the first-data hook is only for checking a proxied source).
    """
    factory = DICOMServerFactory(clock=clock)
    c = Proxied(factory)
    assert "dataReceived" not in c.protocol.__dict__
    c.send(v2Header("10.1.2.3", 5) + encode(rq()))
    assert isinstance(c.received()[0], AssociateAC)
    assert c.protocol.peerText() == "10.1.2.3:5"
    c.close()


# --- headers in pieces (issue 13 §3) -------------------------------------------


def peerText(client: str, port: int) -> str:
    return f"[{client}]:{port}" if ":" in client else f"{client}:{port}"


@pytest.mark.parametrize("header, client", HEADERS)
def test_headerSplitAtEveryPosition(clock: Clock, header: Any, client: str) -> None:
    """
    The header in two reads, cut at every position (the second read also
    carries the A-ASSOCIATE-RQ): always served, always as the client.
    """
    data = header(client, 40123)
    for cut in range(1, len(data)):
        factory = DICOMServerFactory(clock=clock, access=AccessList.build(["10.0.0.0/8", "2001:db8::/32"]))
        c = Proxied(factory)
        c.send(data[:cut])
        assert not c.transport.disconnecting, cut
        c.send(data[cut:] + encode(rq()))
        assert isinstance(c.received()[0], AssociateAC), cut
        assert ip_address(c.wrapper.getPeer().host) == ip_address(client)
        c.close()


@pytest.mark.parametrize("header, client", HEADERS)
def test_headerOneByteAtATime(clock: Clock, events: list[dict[str, Any]], header: Any, client: str) -> None:
    """
    The header one byte per read, then a whole association: served, and
    every event names the client.
    """
    factory = DICOMServerFactory(clock=clock, access=AccessList.build(["10.0.0.0/8", "2001:db8::/32"]))
    c = Proxied(factory)
    for byte in header(client, 40123):
        c.send(bytes((byte,)))
        assert not c.transport.disconnecting
    assert c.received() == []
    c.send(encode(rq()))
    assert isinstance(c.received()[0], AssociateAC)
    c.send(encode(echo(1)))
    assert responses(c.received())[0][0x00000900] == 0
    c.send(encode(ReleaseRQ()))
    assert c.received() == [ReleaseRP()]
    c.close()
    assert {e["peer"] for e in events if e.get("dicomEvent") and e.get("peer")} == {peerText(client, 40123)}


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"PROXY UNKNOWN\r\n", id="v1-unknown-short"),
        pytest.param(b"PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n", id="v1-unknown"),
        pytest.param(V2_SIGNATURE + b"\x20\x00\x00\x00", id="v2-local"),
        pytest.param(V2_SIGNATURE + b"\x20\x11\x00\x0c" + bytes(12), id="v2-local-with-addresses"),
    ],
)
def test_headerWithoutClient(clock: Clock, header: bytes) -> None:
    """
    UNKNOWN (v1, either form of §2.1) and LOCAL (v2) headers, byte by
    byte: the connection's own endpoints stand (a balancer's health check).
    """
    factory = DICOMServerFactory(clock=clock, access=AccessList.build(["192.0.2.0/24"]))
    c = Proxied(factory)
    for byte in header:
        c.send(bytes((byte,)))
    c.send(encode(rq()))
    assert isinstance(c.received()[0], AssociateAC)
    assert c.wrapper.getPeer() == BALANCER
    c.close()


#: An invalid start, the number of bytes after which it is known to be
#: invalid, and what the error line says.
INVALID = [
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 1, "wrong signature: b'G'", id="http"),
    pytest.param(encode(rq()), 1, "wrong signature: b'\\x01'", id="dicom-without-header"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01", 1, "wrong signature: b'\\x16'", id="tls-without-header"),
    pytest.param(b"PROXX TCP4", 5, "wrong signature: b'PROXX'", id="v1-misspelt"),
    pytest.param(V2_SIGNATURE[:7] + b"X" * 9, 8, "wrong signature: b'\\r\\n\\r\\n\\x00\\r\\nX'", id="v2-misspelt"),
    pytest.param(b"PROXY TCP4 " + b"1" * 200 + b"\r\n", 107, "v1 line longer than 107 bytes (no CRLF)", id="v1-too-long"),
    pytest.param(V2_SIGNATURE + b"\x21\x11\xff\xff" + bytes(64), 16, "v2 address length 65535 is beyond the limit of 2048 bytes", id="v2-too-long"),
    pytest.param(V2_SIGNATURE + b"\x11\x11\x00\x0c", 13, "v2 signature with version 1", id="v2-version"),
    pytest.param(V2_SIGNATURE + b"\x2f\x11\x00\x0c", 13, "v2 command 15 is neither LOCAL (0) nor PROXY (1)", id="v2-command"),
    pytest.param(V2_SIGNATURE + b"\x21\x51\x00\x00", 16, "v2 address family and protocol 0x51 are not defined", id="v2-family"),
    pytest.param(V2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12), 28, "v2 address length 12 too short for 0x21", id="v2-short-block"),
    pytest.param(b"PROXY TCP5 10.1.2.3 10.0.0.1 1 2\r\n", 34, "v1 protocol is not TCP4, TCP6 or UNKNOWN", id="v1-protocol"),
    pytest.param(b"PROXY TCP4 10.1.2.3\r\n", 21, "v1 addresses or ports missing", id="v1-missing"),
    pytest.param(b"PROXY TCP4 10.1.2.300 10.0.0.1 1 2\r\n", 36, "source address '10.1.2.300' is not an IPv4", id="v1-address"),
    pytest.param(b"PROXY TCP6 10.1.2.3 ::1 1 2\r\n", 29, "source address '10.1.2.3' is not an IPv6", id="v1-family"),
    pytest.param(b"PROXY TCP4 10.1.2.3 10.0.0.1 70000 2\r\n", 38, "source port 70000 is not from 0 to 65535", id="v1-port"),
    pytest.param(b"PROXY TCP4 10.1.2.3 10.0.0.1 x 2\r\n", 34, "malformed v1 header", id="v1-port-text"),
]


@pytest.mark.parametrize("data, invalidAfter, why", INVALID)
def test_invalidHeaderClosedAtOnce(
    clock: Clock, events: list[dict[str, Any]], data: bytes, invalidAfter: int, why: str
) -> None:
    """
    Byte by byte: the connection is closed by the byte that makes the
    header invalid, with one error line naming the balancer and the
    fault; nothing before or after it reaches the DICOM protocol.
    """
    c = Proxied(DICOMServerFactory(clock=clock))
    seen: list[bytes] = []
    c.protocol.dataReceived = seen.append  # type: ignore[method-assign]
    closedAfter = None
    for index in range(len(data)):
        c.send(data[index : index + 1])
        if closedAfter is None and c.transport.disconnecting:
            closedAfter = index + 1
    assert closedAfter == invalidAfter
    c.send(encode(rq()))
    assert seen == [] and c.transport.value() == b""
    c.close()
    (error,) = [e for e in events if e["log_level"] >= LogLevel.warn]
    assert error["dicomEvent"] == "proxy-header-invalid" and error["log_level"] == LogLevel.error
    assert error["peer"] == "192.0.2.10:50000"
    assert why in error["why"]
    assert renderEcho(error) == [f"E: Invalid PROXY header from 192.0.2.10:50000: {error['why']}"]


@pytest.mark.parametrize(
    "partial",
    [pytest.param(b"PROXY TCP4 10.", id="v1"), pytest.param(V2_SIGNATURE + b"\x21\x11\x00\x0c\x0a", id="v2")],
)
def test_incompleteHeaderClosedByARTIM(clock: Clock, events: list[dict[str, Any]], partial: bytes) -> None:
    """
    A header that stops short is closed by ARTIM (the ACSE timeout), with
    one line (debug, as for any silent peer) and no error.
    """
    factory = DICOMServerFactory(clock=clock, acseTimeout=5)
    c = Proxied(factory)
    for byte in partial:
        c.send(bytes((byte,)))
    clock.advance(4.99)
    assert not c.transport.disconnecting
    clock.advance(0.02)
    assert c.transport.disconnecting
    c.close()
    (closed,) = [e for e in events if e.get("dicomEvent") not in (None, "association-summary")]
    assert closed["dicomEvent"] == "connection-closed" and closed["log_level"] == LogLevel.debug
    assert closed["peer"] == "192.0.2.10:50000"


def test_incompleteHeaderSaysSo(clock: Clock, events: list[dict[str, Any]]) -> None:
    """
    The ARTIM line of an incomplete header says so, with the bytes that
    had arrived.
    """
    c = Proxied(DICOMServerFactory(clock=clock, acseTimeout=5))
    c.send(b"PROXY TCP4 10.")
    clock.advance(5)
    c.close()
    (closed,) = [e for e in events if e.get("dicomEvent") == "connection-closed"]
    assert closed["detail"] == "PROXY header incomplete (14 bytes received) when the ARTIM timer expired"
    assert renderEcho(closed) == [
        "D: Connection from 192.0.2.10:50000 closed: "
        "PROXY header incomplete (14 bytes received) when the ARTIM timer expired"
    ]


def test_serverFromDescription() -> None:
    """
    haproxy: (any case) gives our endpoint around the rest; anything else
    is serverFromString's.
    """
    reactor = MemoryReactor()
    endpoint = serverFromDescription(reactor, "HAProxy:tcp:0:interface=127.0.0.1")
    assert isinstance(endpoint, ProxyHeaderEndpoint)
    assert isinstance(endpoint.wrappedEndpoint, TCP4ServerEndpoint)
    endpoint.listen(DICOMServerFactory(clock=Clock()))
    port, factory, _, interface = reactor.tcpServers[0]
    assert (port, interface) == (0, "127.0.0.1")
    assert type(factory) is ProxyHeaderWrappingFactory
    assert isinstance(factory.buildProtocol(BALANCER), HAProxyProtocolWrapper)
    assert isinstance(serverFromDescription(reactor, "tcp:0"), TCP4ServerEndpoint)


# --- properties ------------------------------------------------------------------

addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@given(
    version=st.sampled_from([v1Header, v2Header]),
    client=addresses,
    port=st.integers(0, 65535),
    cuts=st.lists(st.integers(0, 120), max_size=12),
)
def test_anySplitSameClient(version: Any, client: Any, port: int, cuts: list[int]) -> None:
    """
    However a valid header (v1 or v2, IPv4 or IPv6) is split, getPeer()
    and the log name the same client as when it arrives whole.
    """
    data = version(str(client), port) + encode(rq())
    points = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    whole = connectAs([data])
    split = connectAs([data[a:b] for a, b in zip(points, points[1:])])
    assert split == whole
    host, logged = whole
    assert ip_address(host) == client
    assert logged[1] == port and ip_address(logged[0]) == client


def connectAs(pieces: list[bytes]) -> tuple[str, tuple[str, int]]:
    """
    One connection fed C{pieces}: the host its getPeer() gives and the
    (peerHost, peerPort) of its association summary.
    """
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        with logLevelSet(LogLevel.info):
            c = Proxied(DICOMServerFactory(clock=Clock()))
            for piece in pieces:
                c.send(piece)
            assert isinstance(c.received()[0], AssociateAC)
            host = c.wrapper.getPeer().host
            c.close()
    finally:
        globalLogPublisher.removeObserver(seen.append)
    (summary,) = [e for e in seen if e.get("dicomEvent") == "association-summary"]
    return host, (summary["peerHost"], summary["peerPort"])


starts = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda h, b: h + b, st.sampled_from([b"PROXY ", V2_SIGNATURE + b"\x21\x11", V2_SIGNATURE]), st.binary(max_size=150)),
    st.builds(lambda h, b: h + b, st.sampled_from([v1Header("10.1.2.3", 9), v2Header("2001:db8::1", 9)]), st.binary(max_size=40)),
)


@given(data=starts, cuts=st.lists(st.integers(0, 200), max_size=8))
def test_anyBytesAnySplit(data: bytes, cuts: list[int]) -> None:
    """
    Any bytes, split anywhere: no exception; the header is read (and
    exactly what follows it is passed on), or found invalid (at most one
    error line, the connection closing, nothing passed on), or still
    awaited.
    """
    points = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        c = Proxied(DICOMServerFactory(clock=Clock()))
        passed: list[bytes] = []
        c.protocol.dataReceived = passed.append  # type: ignore[method-assign]
        for a, b in zip(points, points[1:]):
            c.send(data[a:b])
        state, closing = c.wrapper.state, c.transport.disconnecting
        c.close()
    finally:
        globalLogPublisher.removeObserver(seen.append)
    errors = [e for e in seen if e.get("dicomEvent") == "proxy-header-invalid"]
    assert len(errors) == (state is HeaderState.INVALID) == closing
    if state is HeaderState.READ:
        read = readHeader(data)
        assert read is not None and b"".join(passed) == read[1]
    else:
        assert passed == []
