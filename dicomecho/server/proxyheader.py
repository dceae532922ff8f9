# -*- test-case-name: tests.test_proxy -*-
"""
PROXY protocol headers however TCP splits them.

The PROXY protocol (HAProxy's C{doc/proxy-protocol.txt}) lets a load
balancer start each connection with a header naming the client. Twisted's
C{haproxy:} wrapper (L{HAProxyProtocolWrapper}) picks its parser from the
first read alone: a first read shorter than 16 bytes (v2) or 8 bytes (v1)
drops the connection, yet §2 of the specification says a header may reach
the receiver fragmented and recommends tolerance. It also drops an invalid
header without a word, and buffers up to 64 KiB for a v2 header.

L{ProxyHeaderWrapper} is a small buffering layer in front of Twisted's
parsers: it holds the bytes until the header is complete, tells v1 from v2
from garbage as early as the bytes allow, hands the whole header to
Twisted's C{V1Parser.parse} or C{V2Parser.parse}, and on an invalid header
logs one line saying what was wrong and closes at once. It is a subclass of
Twisted's wrapper, so L{dicomecho.server.admission.behindProxy} still finds it. A
header that never completes is left to the DICOM protocol's ARTIM timer
(the ACSE timeout), like any silent peer.

L{proxyEndpoint} and L{serverFromDescription} build listeners with it;
C{serverFromDescription(reactor, "haproxy:tcp:11112")} is the drop-in for
C{serverFromString} that a C{--listen} value or a C{.tac} should use.
"""

from __future__ import annotations

import ipaddress
from enum import Enum
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.protocols.haproxy._exceptions import (
    InvalidNetworkProtocol,
    InvalidProxyHeader,
    MissingAddressData,
)
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.haproxy._wrapper import (
    HAProxyProtocolWrapper,
    HAProxyWrappingFactory,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from dicomecho.observability.events import EventName
from dicomecho.observability.logs import listeningAddress
from dicomecho.observability.levels import log
from dicomecho.wire.recognition import PROXY_V1_SIGNATURE, PROXY_V2_SIGNATURE

__all__ = [
    "HeaderState",
    "InvalidHeader",
    "readHeader",
    "ProxyHeaderWrapper",
    "ProxyHeaderWrappingFactory",
    "ProxyHeaderEndpoint",
    "proxyEndpoint",
    "serverFromDescription",
    "incompleteHeader",
    "proxyLayerUnder",
    "V1_MAX_LINE",
    "V2_MAX_LENGTH",
]

#: §2.1: the short form of a v1 line for an unknown protocol.
_V1_UNKNOWN = b"PROXY UNKNOWN"
#: §2.1: the longest v1 line, CRLF included (the worst UNKNOWN case).
V1_MAX_LINE = 107
#: §2.2: the fixed part of a v2 header (signature, version and command,
#: family and protocol, length).
V2_FIXED = 16
#: The longest v2 address block (addresses and TLVs) we accept. §2 sizes
#: a header to fit 536 bytes; the TLVs §2.2 defines (ALPN, authority, SSL,
#: a unique ID of at most 128 bytes ...) stay well under this. Twisted
#: would buffer up to the length field's 65,535.
V2_MAX_LENGTH = 2048

#: Bytes of a wrong signature shown in the log.
_SHOWN = 16


class HeaderState(Enum):
    """
    Where a connection is in its PROXY header.
    """

    READING = "reading"
    READ = "read"
    INVALID = "invalid"


class InvalidHeader(InvalidProxyHeader):
    """
    The bytes received are not the start of a valid PROXY header; the
    message says why, with any bytes shown escaped.
    """


def _shown(data: bytes, limit: int = _SHOWN) -> str:
    """
    The first C{limit} bytes of C{data}, escaped as a bytes literal.
    """
    text = repr(bytes(data[:limit]))
    return text + "..." if len(data) > limit else text


def _version(data: bytes) -> int | None:
    """
    1 or 2 once the bytes received tell which header this is, C{None}
    while they could still begin either.

    @raise InvalidHeader: if they cannot begin one (§2.2: "otherwise the
        protocol is not covered by this specification and the connection
        must be dropped"), or the v2 version or command is unknown.
    """
    if PROXY_V2_SIGNATURE.startswith(data[: len(PROXY_V2_SIGNATURE)]):
        if len(data) <= len(PROXY_V2_SIGNATURE):
            return None
        version, command = data[12] >> 4, data[12] & 0x0F
        if version != 2:
            raise InvalidHeader(f"v2 signature with version {version} (only 2 exists)")
        if command not in (0, 1):
            raise InvalidHeader(f"v2 command {command} is neither LOCAL (0) nor PROXY (1)")
        return 2
    if PROXY_V1_SIGNATURE.startswith(data[: len(PROXY_V1_SIGNATURE)]):
        return 1 if len(data) >= len(PROXY_V1_SIGNATURE) else None
    raise InvalidHeader(f"wrong signature: {_shown(data)}")


def readHeader(data: bytes) -> tuple[ProxyInfo, bytes] | None:
    """
    Read a PROXY header at the start of C{data}, the bytes received so far.

    @return: the header's information and the bytes after it, or C{None}
        if C{data} is a valid beginning that needs more bytes.
    @raise InvalidHeader: as soon as C{data} cannot begin a valid header:
        a wrong signature (from the first byte), a v1 line without CRLF in
        its first 107 bytes (§2.1), a v2 version, command or length beyond
        its limits (§2.2), or addresses that do not parse.
    """
    version = _version(data)
    if version is None:
        return None
    if version == 1:
        end = data.find(b"\r\n", 0, V1_MAX_LINE)
        if end < 0:
            if len(data) >= V1_MAX_LINE:
                raise InvalidHeader(
                    f"v1 line longer than {V1_MAX_LINE} bytes (no CRLF): {_shown(data)}"
                )
            return None
        size = end + 2
        if data[:end] == _V1_UNKNOWN:
            # §2.1 allows this short form; Twisted's parser refuses it.
            info = ProxyInfo(data[:end], None, None)
        else:
            info = _parsed(V1Parser.parse, data[:end], 1)
    else:
        if len(data) < V2_FIXED:
            return None
        length = int.from_bytes(data[14:16], "big")
        if length > V2_MAX_LENGTH:
            raise InvalidHeader(
                f"v2 address length {length} is beyond the limit of {V2_MAX_LENGTH} bytes"
            )
        size = V2_FIXED + length
        if len(data) < size:
            return None
        info = _parsed(V2Parser.parse, data[:size], 2)
    _checkAddress(info.source, "source")
    _checkAddress(info.destination, "destination")
    return info, data[size:]


def _parsed(parse: Any, header: bytes, version: int) -> ProxyInfo:
    """
    C{parse(header)} (Twisted's parser), its errors said in words.
    """
    try:
        return parse(header)  # type: ignore[no-any-return]
    except InvalidNetworkProtocol:
        if version == 1:
            why = "v1 protocol is not TCP4, TCP6 or UNKNOWN"
        else:
            why = f"v2 address family and protocol 0x{header[13]:02X} are not defined"
    except MissingAddressData:
        if version == 1:
            why = "v1 addresses or ports missing"
        else:
            why = f"v2 address length {len(header) - V2_FIXED} too short for 0x{header[13]:02X}"
    except (InvalidProxyHeader, ValueError, LookupError):
        why = f"malformed v{version} header"
    raise InvalidHeader(f"{why}: {_shown(header, 56)}")


def _checkAddress(address: IAddress | None, which: str) -> None:
    """
    Twisted's v1 parser takes any text for an address and any number for a
    port: check them (§2.1).
    """
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return
    family = 4 if isinstance(address, IPv4Address) else 6
    try:
        valid = ipaddress.ip_address(address.host).version == family
    except ValueError:
        valid = False
    if not valid:
        raise InvalidHeader(f"{which} address {ascii(address.host)} is not an IPv{family} address")
    if not 0 <= address.port <= 65535:
        raise InvalidHeader(f"{which} port {address.port} is not from 0 to 65535")


class ProxyHeaderWrapper(HAProxyProtocolWrapper):
    """
    Twisted's PROXY wrapper, with the header read however it is split:
    bytes are held until L{readHeader} has the whole header; then
    C{getPeer} and C{getHost} give its addresses (the connection's own for
    LOCAL and UNKNOWN headers) and what follows reaches the wrapped
    protocol. An invalid header is logged once (C{proxy-header-invalid},
    an error) and the connection closed; nothing after it is passed on.

    @ivar state: where the header is (L{HeaderState}).
    """

    state = HeaderState.READING
    _info: ProxyInfo | None = None
    _pending = b""

    def dataReceived(self, data: bytes) -> None:
        state = self.state
        if state is HeaderState.READ:
            self.wrappedProtocol.dataReceived(data)
            return
        if state is HeaderState.INVALID:
            return
        self._pending += data
        try:
            read = readHeader(self._pending)
        except InvalidHeader as error:
            self._invalid(str(error))
            return
        if read is None:
            return
        self._info, rest = read
        self._pending = b""
        self.state = HeaderState.READ
        if rest:
            self.wrappedProtocol.dataReceived(rest)

    def _invalid(self, why: str) -> None:
        self.state = HeaderState.INVALID
        self._pending = b""
        address = self.transport.getPeer()  # type: ignore[union-attr]
        host = getattr(address, "host", None) or getattr(address, "name", None)
        log.error(
            "Invalid PROXY header from {peer}: {why}",
            dicomEvent=EventName.PROXY_HEADER_INVALID.value,
            peer=listeningAddress(host or address, getattr(address, "port", None)),
            why=why,
        )
        self.loseConnection()

    @property
    def bytesReceived(self) -> int:
        """
        Bytes of a header still being read (0 once it is read or invalid).
        """
        return len(self._pending)

    def getPeer(self) -> IAddress:
        source = self._info.source if self._info is not None else None
        return source if source is not None else self.transport.getPeer()  # type: ignore[union-attr]

    def getHost(self) -> IAddress:
        destination = self._info.destination if self._info is not None else None
        return destination if destination is not None else self.transport.getHost()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._pending = b""
        super().connectionLost(reason)


class ProxyHeaderWrappingFactory(HAProxyWrappingFactory):
    """
    Wraps each protocol of a factory in a L{ProxyHeaderWrapper}.
    """

    protocol = ProxyHeaderWrapper
    # The DICOM factory's "Listening on" line says where we listen: no
    # "Starting factory" lines for this one either.
    noisy = False


@implementer(IStreamServerEndpoint)
class ProxyHeaderEndpoint:
    """
    A listening endpoint whose connections start with a PROXY header.

    @ivar wrappedEndpoint: the endpoint listened on (TCP, usually).
    """

    def __init__(self, wrappedEndpoint: IStreamServerEndpoint) -> None:
        self.wrappedEndpoint = wrappedEndpoint

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        return self.wrappedEndpoint.listen(ProxyHeaderWrappingFactory(protocolFactory))


def proxyEndpoint(wrappedEndpoint: IStreamServerEndpoint) -> ProxyHeaderEndpoint:
    """
    C{wrappedEndpoint} with PROXY protocol support, as Twisted's
    C{haproxy.proxyEndpoint} but with L{ProxyHeaderWrapper}.
    """
    return ProxyHeaderEndpoint(wrappedEndpoint)


_PREFIX = "haproxy:"


def serverFromDescription(reactor: Any, description: str) -> IStreamServerEndpoint:
    """
    C{serverFromString(reactor, description)}, except that a description
    starting with C{haproxy:} (any case) gives L{proxyEndpoint} around the
    endpoint of the rest, e.g. C{haproxy:tcp:11112:interface=127.0.0.1}.
    """
    if description[: len(_PREFIX)].lower() == _PREFIX:
        return proxyEndpoint(serverFromString(reactor, description[len(_PREFIX):]))
    return serverFromString(reactor, description)


def proxyLayerUnder(transport: object) -> HAProxyProtocolWrapper | None:
    """
    The PROXY-protocol layer (ours or Twisted's C{haproxy:} wrapper)
    somewhere under C{transport}, e.g. under a TLS layer, or C{None}. Its
    C{getPeer} gives the client's address once the header is read.
    """
    for _ in range(4):
        if transport is None:
            return None
        if isinstance(transport, HAProxyProtocolWrapper):
            return transport
        transport = getattr(transport, "transport", None)
    return None


def incompleteHeader(transport: object) -> str | None:
    """
    If the PROXY header under C{transport} is still incomplete, the reason
    to log when ARTIM closes the connection (e.g. C{"PROXY header incomplete
    (5 bytes received) when the ARTIM timer expired"}); else C{None}.
    """
    wrapper = proxyLayerUnder(transport)
    if not isinstance(wrapper, ProxyHeaderWrapper) or wrapper.state is not HeaderState.READING:
        return None
    count = wrapper.bytesReceived
    plural = "" if count == 1 else "s"
    return f"PROXY header incomplete ({count} byte{plural} received) when the ARTIM timer expired"
