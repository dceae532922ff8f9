"""
dicomecho behind Twisted's PROXY-protocol wrapper (C{haproxy:}): the
client address from a v1 or v2 header, written here byte by byte from the
HAProxy specification, is what the allow-list checks and the log events
carry; the load balancer's own address is not. Fake transport and clock.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.protocols.haproxy._wrapper import HAProxyWrappingFactory

from dicomecho.access import AccessList
from dicomecho.fsm import State
from dicomecho.pdu import AssociateAC, ReleaseRP, ReleaseRQ, encode
from dicomecho.protocol import DICOMServerFactory
from tests.test_protocol import Harness, TCPStringTransport, echo, responses, rq

#: The load balancer, as the TCP peer of every connection here.
BALANCER = IPv4Address("TCP", "192.0.2.10", 50000)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1Header(source: str, port: int) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    destination = "::1" if family == "TCP6" else "192.0.2.1"
    return f"PROXY {family} {source} {destination} {port} 11112\r\n".encode()


def v2Header(source: str, port: int) -> bytes:
    """
    PROXY v2: signature, version 2 + PROXY command, TCP over IPv4 (0x11) or
    IPv6 (0x21), the address block length, then addresses and ports.
    """
    if ":" in source:
        family, packed = 0x21, socket.inet_pton(socket.AF_INET6, source) + socket.inet_pton(socket.AF_INET6, "::1")
    else:
        family, packed = 0x11, socket.inet_aton(source) + socket.inet_aton("192.0.2.1")
    block = packed + struct.pack("!HH", port, 11112)
    return V2_SIGNATURE + bytes((0x21, family)) + struct.pack("!H", len(block)) + block


class Proxied(Harness):
    """
    One connection through the PROXY wrapper, as the listener builds it;
    the bytes in go to the wrapper, the PDUs out are read as a L{Harness}'s.
    """

    def __init__(self, factory: DICOMServerFactory) -> None:
        # Not Harness.__init__: the listener's wrapper builds our protocol.
        self.factory = factory
        self.wrapper = HAProxyWrappingFactory(factory).buildProtocol(BALANCER)
        self.transport = TCPStringTransport(peerAddress=BALANCER)
        self.wrapper.makeConnection(self.transport)
        self.protocol = self.wrapper.wrappedProtocol

    def send(self, data: bytes) -> None:  # type: ignore[override]
        self.wrapper.dataReceived(data)

    def close(self) -> None:
        if self.transport.connected:
            self.transport.loseConnection()
        self.wrapper.connectionLost(None)


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
    assert c.protocol._peer == "10.1.2.3:5"
    c.close()
