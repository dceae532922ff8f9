"""
PROXY protocol headers written byte by byte from HAProxy's specification
(L{v1Header}, L{v2Header}), and L{Proxied}, one connection through the
PROXY wrapper on a fake transport.
"""

from __future__ import annotations

import socket
import struct

from twisted.internet.address import IPv4Address

from dicomecho.server.factory import DICOMServerFactory
from dicomecho.server.proxyheader import ProxyHeaderWrappingFactory
from tests.support.harness import Harness, TCPStringTransport

#: The load balancer, as the TCP peer of every connection through L{Proxied}.
BALANCER = IPv4Address("TCP", "192.0.2.10", 50000)
#: The 12 bytes that start a v2 header (section 2.2).
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
        self.wrapper = ProxyHeaderWrappingFactory(factory).buildProtocol(BALANCER)
        self.transport = TCPStringTransport(peerAddress=BALANCER)
        self.wrapper.makeConnection(self.transport)
        self.protocol = self.wrapper.wrappedProtocol

    def send(self, data: bytes) -> None:  # type: ignore[override]
        self.wrapper.dataReceived(data)

    def close(self) -> None:
        if self.transport.connected:
            self.transport.loseConnection()
        self.wrapper.connectionLost(None)
