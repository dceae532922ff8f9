# -*- test-case-name: tests.test_tlsendpoint -*-
"""
The listening side of DICOM over TLS (PS3.15 Annex B.12): the C{dicomtls:}
endpoint description (the plugin in C{twisted/plugins/dicomecho_tls.py},
parsed by L{parseStreamServer}) builds a L{DICOMTLSServerEndpoint}, which
puts TLS in front of any stream server endpoint, with a PROXY protocol
layer under it on request. Each connection's TLS layer is a
L{DICOMTLSProtocol}, which keeps what a failed handshake needs to be
explained.

The TLS settings (BCP 195) are L{dicomecho.security.tls}'s; why a
handshake failed, L{dicomecho.security.tlsfailures}'.
"""

from __future__ import annotations

from typing import Any, Protocol as TypingProtocol

from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from dicomecho.security.tls import DICOM_TLS_PORT, nameString, serverContextFactory, verifyErrorText
from dicomecho.security.tlsfailures import noteRefusedCertificate
from dicomecho.server.descriptions import checkArguments, numberArgument
from dicomecho.server.proxyheader import ProxyHeaderEndpoint, proxyEndpoint

__all__ = [
    "FIRST_BYTES",
    "DICOMTLSFactory",
    "DICOMTLSProtocol",
    "JudgedAtAccept",
    "DICOMTLSServerEndpoint",
    "parseStreamServer",
]

#: How many of the first bytes a connection received
#: L{DICOMTLSProtocol.firstBytes} keeps.
FIRST_BYTES = 16


class DICOMTLSProtocol(BufferingTLSTransport):
    """
    The TLS layer of one connection; the DICOM protocol's transport.

    It is Twisted's (buffering) L{TLSMemoryBIOProtocol}, which also keeps
    what a failed handshake needs to be explained: the first bytes the peer
    sent (plain DICOM or HTTP on the TLS port, ...) and why OpenSSL refused
    a client certificate.

    As in Twisted, the DICOM protocol is connected at once, before the
    handshake, so its ARTIM timer also bounds a handshake that stalls; when
    the handshake completes, the DICOM protocol's C{handshakeCompleted()} is
    called if it provides L{IHandshakeListener
    <twisted.internet.interfaces.IHandshakeListener>}; when it fails, the
    DICOM protocol's C{connectionLost} receives the L{SSL.Error} (an end of
    stream mid-handshake arrives as L{ConnectionLost}).

    @ivar firstBytes: the first L{FIRST_BYTES} bytes received (fewer if the
        peer sent fewer). A TLS ClientHello is longer than that, so they
        always arrive before the handshake can complete.
    @ivar rejectedCertificate: the client certificate OpenSSL refused, or
        C{None}.
    @ivar verifyError: why OpenSSL refused it, e.g. C{"certificate has
        expired"}, or C{None}.
    """

    firstBytes = b""
    rejectedCertificate: x509.Certificate | None = None
    verifyError: str | None = None

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        connection = self.getHandle()
        if connection is not None and connection.get_verify_mode() != SSL.VERIFY_NONE:
            # Same mode as CertificateOptions set on the context; the
            # callback only watches OpenSSL's verdict.
            connection.set_verify(connection.get_verify_mode(), self._verified)

    def _verified(
        self, connection: SSL.Connection, certificate: crypto.X509, code: int, depth: int, ok: int
    ) -> bool:
        """
        OpenSSL's verification callback: return its own verdict, noting
        the certificate and the reason when it is a refusal.
        """
        if not ok and self.verifyError is None:
            refused = certificate.to_cryptography()
            self.verifyError = verifyErrorText(code)
            if depth == 0:
                self.rejectedCertificate = refused
            else:
                self.verifyError += f" (at chain depth {depth}: {nameString(refused.subject)})"
        return bool(ok)

    def dataReceived(self, data: bytes) -> None:
        if len(self.firstBytes) < FIRST_BYTES:
            self.firstBytes += data[: FIRST_BYTES - len(self.firstBytes)]
        super().dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.verifyError is not None:
            # The handshake's SSL.Error (Twisted keeps it in _reason for the
            # DICOM protocol) only says "certificate verify failed": add why,
            # for classifyHandshakeFailure.
            failure = getattr(self, "_reason", None) or reason
            noteRefusedCertificate(failure.value, self.verifyError)
        super().connectionLost(reason)


class JudgedAtAccept(TypingProtocol):
    """
    A protocol factory that can refuse a connection as it is accepted,
    before its TLS layer is built (L{DICOMServerFactory
    <dicomecho.server.factory.DICOMServerFactory>}).
    """

    def buildTLSProtocol(self, addr: IAddress) -> IProtocol | None:
        """The protocol for a connection from C{addr}, or C{None} to close it."""


class DICOMTLSFactory(TLSMemoryBIOFactory):
    """
    Twisted's TLS wrapping factory, which lets a L{JudgedAtAccept} factory
    refuse a connection before its TLS layer (an OpenSSL connection) is
    made: the listener then closes the socket unread.
    """

    protocol = DICOMTLSProtocol
    judgeAtAccept = True

    def buildProtocol(self, addr: IAddress | None) -> DICOMTLSProtocol | None:  # type: ignore[override]
        judged = getattr(self.wrappedFactory, "buildTLSProtocol", None)
        if judged is None or not self.judgeAtAccept:
            return super().buildProtocol(addr)
        wrapped = judged(addr)
        return None if wrapped is None else self.protocol(self, wrapped)


@implementer(IStreamServerEndpoint)
class DICOMTLSServerEndpoint:
    """
    A stream server endpoint that speaks TLS on top of another one (TCP, in
    the C{dicomtls:} description).

    @ivar wrappedEndpoint: the endpoint listened on.
    @ivar contextFactory: the TLS settings, e.g. from
        L{serverContextFactory}.
    """

    def __init__(
        self,
        wrappedEndpoint: IStreamServerEndpoint,
        contextFactory: CertificateOptions,
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param clock: schedules the flushes of the TLS layer's write buffer;
            defaults to the global reactor.
        """
        self.wrappedEndpoint = wrappedEndpoint
        self.contextFactory = contextFactory
        self._clock = clock

    def wrapFactory(self, protocolFactory: IProtocolFactory) -> DICOMTLSFactory:
        """
        @return: the factory L{listen} passes to the wrapped endpoint: it
            builds a L{DICOMTLSProtocol} around each protocol
            C{protocolFactory} builds.
        """
        factory = DICOMTLSFactory(self.contextFactory, False, protocolFactory, clock=self._clock)
        # Behind a PROXY layer the address at accept is the balancer's: the
        # client is judged once its header is read.
        factory.judgeAtAccept = not isinstance(self.wrappedEndpoint, ProxyHeaderEndpoint)
        return factory

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """
        Listen on the wrapped endpoint; every connection does the TLS
        handshake, then carries C{protocolFactory}'s protocol.
        """
        # Layers, outermost first: wrapped endpoint (TCP), TLS, DICOM. A
        # PROXY protocol layer goes under the TLS, since a load balancer
        # sends its PROXY header in the clear before the client's TLS bytes:
        # proxy=yes wraps the TCP endpoint with dicomecho.server.proxyheader's
        # proxyEndpoint() (Twisted's wrapper, tolerant of a header split
        # over several reads) and passes that as wrappedEndpoint here. The
        # TLS and DICOM layers then see the client's address in getPeer().
        return self.wrappedEndpoint.listen(self.wrapFactory(protocolFactory))


# --- the dicomtls: endpoint description -------------------------------------

_YES = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
_ARGUMENTS = (
    "privateKey", "certKey", "caCerts", "requireClientCert", "interface", "backlog", "proxy",
)


def parseStreamServer(
    reactor: Any, *args: str, **kwargs: str
) -> DICOMTLSServerEndpoint:
    """
    Build the endpoint of a C{dicomtls:} description:
    C{dicomtls:PORT:privateKey=KEY:certKey=CERT[:caCerts=CAS]
    [:requireClientCert=yes|no][:interface=ADDR][:backlog=N][:proxy=yes|no]}.

    C{proxy=yes} expects a PROXY protocol header (v1 or v2) before the TLS
    bytes, as a load balancer passing TLS through sends it (HAProxy's
    C{send-proxy-v2}): the client's address then reaches the log and the
    allow-list.

    The interface defaults to all IPv4 addresses (as in C{tcp:}); an IPv6
    address (written with escaped colons, C{interface=\\:\\:}) listens on
    IPv6. The backlog defaults to 50 (as in C{tcp:}).

    @raise ValueError: on a missing or malformed argument.
    @raise TLSConfigurationError: if the files cannot be used (see
        L{serverContextFactory}).
    """
    if len(args) != 1:
        raise ValueError(
            "dicomtls: needs exactly one port number, e.g. "
            f"dicomtls:{DICOM_TLS_PORT}:privateKey=server.key:certKey=server.pem"
            + (f" (got {len(args)} positional arguments)" if args else "")
        )
    checkArguments("dicomtls", kwargs, _ARGUMENTS)
    for required in ("privateKey", "certKey"):
        if not kwargs.get(required):
            raise ValueError(f"dicomtls: {required}= is required (a PEM file)")
    port = numberArgument("dicomtls", "port", args[0], 0, 65535)
    backlog = numberArgument("dicomtls", "backlog", kwargs.get("backlog", "50"), 1, 2**31 - 1)
    requireClientCert: bool | None = None
    if "requireClientCert" in kwargs:
        requireClientCert = _yesNo("requireClientCert", kwargs["requireClientCert"])
    proxy = _yesNo("proxy", kwargs.get("proxy", "no"))
    caCerts = kwargs.get("caCerts") or None
    contextFactory = serverContextFactory(
        kwargs["privateKey"], kwargs["certKey"], caCerts, requireClientCert
    )
    interface = kwargs.get("interface", "")
    wrapped: IStreamServerEndpoint
    if isIPv6Address(interface):
        wrapped = TCP6ServerEndpoint(reactor, port, backlog, interface)
    else:
        wrapped = TCP4ServerEndpoint(reactor, port, backlog, interface)
    if proxy:
        # The PROXY header comes first, in the clear: its layer goes under
        # the TLS (see DICOMTLSServerEndpoint.listen).
        wrapped = proxyEndpoint(wrapped)
    return DICOMTLSServerEndpoint(wrapped, contextFactory)


def _yesNo(name: str, value: str) -> bool:
    try:
        return _YES[value.lower()]
    except KeyError:
        raise ValueError(
            f"dicomtls: {name}={value!r} is not yes, no, true, false, 1 or 0"
        ) from None
