# -*- test-case-name: tests.test_tls -*-
"""
DICOM over TLS: the server side of PS3.15 Annex B.12, "BCP 195 RFC 8996
(9325) TLS Secure Transport Connection Profile".

What the profile asks of a server, and where it is done here:

  - TLS 1.2 shall be supported and TLS 1.3 may be; nothing older (RFC 8996
    deprecates TLS 1.0 and 1.1): L{serverContextFactory} raises the minimum
    to TLS 1.2 and leaves TLS 1.3 on.
  - A server shall prefer TLS 1.3 when a client offers it: OpenSSL always
    picks the highest version both sides support.
  - TLS 1.2 cipher suites as RFC 9325 recommends: L{BCP195_CIPHERS}, chosen
    in our order rather than the client's. The TLS 1.3 suites are all AEAD
    and are left to OpenSSL.
  - Port 2762 is registered as "dicom-tls"; PS3.15 wants the TLS port to
    differ from the plain one.

L{DICOMTLSServerEndpoint} puts TLS in front of any stream server endpoint;
the C{dicomtls:} endpoint description (the plugin in
C{twisted/plugins/dicomecho_tls.py}, parsed by L{parseStreamServer}) builds
one. L{describeHandshakeFailure} and L{tlsSessionInfo} give the log what it
needs to say who connected and, when the handshake fails, why.

The TLS work itself is Twisted's (L{CertificateOptions},
L{TLSMemoryBIOFactory}) and OpenSSL's; this module only configures it.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from dicomecho.server.descriptions import checkArguments, numberArgument

__all__ = [
    "BCP195_CIPHERS",
    "DICOM_TLS_PORT",
    "FIRST_BYTES",
    "TLSConfigurationError",
    "serverContextFactory",
    "DICOMTLSProtocol",
    "DICOMTLSServerEndpoint",
    "describeHandshakeFailure",
    "tlsSessionInfo",
    "parseStreamServer",
]

#: The port IANA registered as "dicom-tls" (PS3.15 Annex B).
DICOM_TLS_PORT = 2762

#: The TLS 1.2 cipher suites we accept, in our order of preference (OpenSSL
#: names). RFC 9325 section 4.2 recommends exactly the four ECDHE AES-GCM
#: suites (ECDSA and RSA certificates); AES-256 comes first, as section
#: 4.2.1 asks of a server whose client offers it. ECDHE with
#: CHACHA20-POLY1305 (RFC 7905) follows, as the one other suite meeting
#: section 4.1 (AEAD, forward secrecy) for peers without AES hardware.
#: Left out: RSA key exchange (no forward secrecy), CBC modes, and DHE,
#: which section 4.1 says not to negotiate. DCMTK's default profile
#: ("Non-downgrading BCP 195", 3.6.7) offers ECDHE-RSA-AES-GCM, so an RSA
#: server certificate serves it over TLS 1.2. These names only govern TLS
#: 1.2: OpenSSL configures the TLS 1.3 suites apart, and all of them are
#: AEAD with (EC)DHE.
BCP195_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)

#: How many of the first bytes a connection received
#: L{DICOMTLSProtocol.firstBytes} keeps.
FIRST_BYTES = 16

#: How L{DICOMTLSProtocol} starts the note it adds to the L{SSL.Error} of a
#: refused client certificate, for L{describeHandshakeFailure}.
_VERIFY_NOTE = "client certificate refused: "


class TLSConfigurationError(ValueError):
    """
    The TLS settings cannot be used: a file is missing or unreadable, holds
    no usable key or certificate, the key does not match the certificate,
    or the options contradict each other. The message names the file and
    the problem.
    """


# --- the server's TLS settings ----------------------------------------------


def _readFile(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigurationError(
            f"cannot read the {what} file {path!r}: {e.strerror or e}"
        ) from None


def _loadCertificates(path: str, what: str) -> list[x509.Certificate]:
    data = _readFile(path, what)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TLSConfigurationError(
            f"the {what} file {path!r} holds no PEM certificate "
            f"(expected '-----BEGIN CERTIFICATE-----' blocks)"
        ) from None


def _loadPrivateKey(path: str) -> Any:
    data = _readFile(path, "private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography: "Password was not given but private key is encrypted"
        raise TLSConfigurationError(
            f"the private key file {path!r} is encrypted; dicomecho needs an "
            f"unencrypted key (e.g. openssl pkey -in KEY -out PLAIN.key), "
            f"readable only by the server's user"
        ) from None
    except Exception as e:  # ValueError, UnsupportedAlgorithm
        raise TLSConfigurationError(
            f"the private key file {path!r} holds no usable PEM private key "
            f"({type(e).__name__})"
        ) from None


def _publicBytes(publicKey: Any) -> bytes:
    return publicKey.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def serverContextFactory(
    privateKey: str,
    certKey: str,
    caCerts: str | None = None,
    requireClientCert: bool | None = None,
) -> CertificateOptions:
    """
    The TLS settings of a DICOM server (PS3.15 B.12): TLS 1.2 or 1.3,
    L{BCP195_CIPHERS} for TLS 1.2 in our order, and, given C{caCerts},
    client certificates verified against those CAs.

    @param privateKey: path of the server's PEM private key (unencrypted).
    @param certKey: path of a PEM file with the server's certificate first,
        then any intermediate CA certificates clients need to build the
        chain. (It may also hold the private key.)
    @param caCerts: path of a PEM bundle of the CA certificates client
        certificates must chain to; C{None} to ask for no client
        certificate.
    @param requireClientCert: refuse clients without a certificate;
        defaults to C{True} when C{caCerts} is given. C{False} with
        C{caCerts} asks for a certificate and verifies any that is sent,
        but lets clients without one in.
    @return: the settings, already turned into an OpenSSL context once, so
        that any mistake shows at start-up rather than at the first
        connection.
    @raise TLSConfigurationError: if a file cannot be read or used, the key
        does not match the certificate, or C{requireClientCert} is C{True}
        without C{caCerts}.
    """
    if requireClientCert is None:
        requireClientCert = caCerts is not None
    if requireClientCert and caCerts is None:
        raise TLSConfigurationError(
            "requireClientCert needs caCerts: the CA certificates that client "
            "certificates must be signed by"
        )

    key = _loadPrivateKey(privateKey)
    chain = _loadCertificates(certKey, "certificate")
    keyPublic = _publicBytes(key.public_key())
    if _publicBytes(chain[0].public_key()) != keyPublic:
        if any(_publicBytes(c.public_key()) == keyPublic for c in chain[1:]):
            raise TLSConfigurationError(
                f"the server certificate must come first in {certKey!r}, "
                f"followed by its intermediate CA certificates"
            )
        raise TLSConfigurationError(
            f"the private key in {privateKey!r} does not match the "
            f"certificate in {certKey!r}"
        )

    trusted: list[crypto.X509] | None = None
    if caCerts is not None:
        # Twisted adds these to an X509Store, which takes pyOpenSSL's X509.
        trusted = [
            crypto.X509.from_cryptography(c)
            for c in _loadCertificates(caCerts, "CA certificates")
        ]

    options = CertificateOptions(
        # cryptography objects: pyOpenSSL deprecates its own X509 and PKey
        # for these, and Twisted hands them straight to pyOpenSSL.
        privateKey=key,
        certificate=chain[0],  # type: ignore[arg-type]
        extraCertChain=chain[1:],  # type: ignore[arg-type]
        # Twisted's default minimum is already TLS 1.2; raising (rather than
        # setting) it keeps any later, higher default. TLS 1.3 stays on.
        raiseMinimumTo=TLSVersion.TLSv1_2,
        acceptableCiphers=AcceptableCiphers.fromOpenSSLCipherString(BCP195_CIPHERS),
        # verify=True with caCerts: OpenSSL asks for a client certificate
        # and fails the handshake if one is sent that does not chain to
        # these CAs; requireCertificate also fails it if none is sent.
        verify=trusted is not None,
        caCerts=trusted,
        requireCertificate=requireClientCert,
    )
    # CertificateOptions always sets OP_CIPHER_SERVER_PREFERENCE: our order
    # of BCP195_CIPHERS wins. Build the context now (it is cached and used
    # by every connection), which also runs OpenSSL's own key check.
    try:
        options.getContext()
    except SSL.Error as e:
        raise TLSConfigurationError(
            f"OpenSSL refused the key {privateKey!r} and certificate "
            f"{certKey!r}: {_openSSLReasons(e) or e}"
        ) from None
    return options


# --- the endpoint -----------------------------------------------------------


def _verifyErrorText(code: int) -> str:
    """
    OpenSSL's X509 verification error C{code} in words, from pyOpenSSL's
    names for it (the numbers differ between OpenSSL versions), e.g.
    C{ERR_CERT_HAS_EXPIRED} -> C{"certificate has expired"}.
    """
    for name, value in vars(SSL.X509VerificationCodes).items():
        if name.startswith("ERR_") and value == code:
            words = name[len("ERR_") :].lower().split("_")
            return " ".join("certificate" if w == "cert" else w for w in words)
    return f"X509 verification error {code}"


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
            self.verifyError = _verifyErrorText(code)
            if depth == 0:
                self.rejectedCertificate = refused
            else:
                self.verifyError += f" (at chain depth {depth}: {_nameString(refused.subject)})"
        return bool(ok)

    def dataReceived(self, data: bytes) -> None:
        if len(self.firstBytes) < FIRST_BYTES:
            self.firstBytes += data[: FIRST_BYTES - len(self.firstBytes)]
        super().dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.verifyError is not None:
            # The handshake's SSL.Error (Twisted keeps it in _reason for the
            # DICOM protocol) only says "certificate verify failed": add why,
            # for describeHandshakeFailure.
            failure = getattr(self, "_reason", None) or reason
            error = failure.value
            notes = getattr(error, "__notes__", [])
            if isinstance(error, SSL.Error) and not any(
                n.startswith(_VERIFY_NOTE) for n in notes
            ):
                error.add_note(f"{_VERIFY_NOTE}{self.verifyError}")
        super().connectionLost(reason)


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

    def wrapFactory(self, protocolFactory: IProtocolFactory) -> TLSMemoryBIOFactory:
        """
        @return: the factory L{listen} passes to the wrapped endpoint: it
            builds a L{DICOMTLSProtocol} around each protocol
            C{protocolFactory} builds.
        """
        factory = TLSMemoryBIOFactory(
            self.contextFactory, False, protocolFactory, clock=self._clock
        )
        factory.protocol = DICOMTLSProtocol
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


# --- the log's view ---------------------------------------------------------


def _openSSLReasons(error: BaseException) -> str:
    """
    The reason strings of an L{SSL.Error}'s error queue, joined with "; ",
    duplicates dropped. Only OpenSSL's fixed texts: no key material.
    """
    reasons: list[str] = []
    queue = error.args[0] if error.args else None
    if isinstance(queue, list):
        for entry in queue:
            text = entry[-1] if isinstance(entry, tuple) and entry else entry
            text = str(text)
            if text and text not in reasons:
                reasons.append(text)
    elif error.args:
        reasons.extend(str(a) for a in error.args if a not in (None, ""))
    return "; ".join(reasons)


_HTTP_METHODS = (
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

_PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

# OpenSSL reason texts (any version we met: 3.0 to 4.0) -> our sentence.
_OLD_VERSIONS = ("unsupported protocol", "version too low")
_NO_CERTIFICATE = ("peer did not return a certificate",)
_UNTRUSTED = ("certificate verify failed",)
_NO_CIPHER = ("no shared cipher",)
_BAD_OUR_CERTIFICATE = (
    "unknown ca",
    "bad certificate",
    "certificate unknown",
    "certificate expired",
    "certificate revoked",
    "unsupported certificate",
)


def _startsLikeHTTP(firstBytes: bytes) -> bool:
    return any(firstBytes.startswith(m) for m in _HTTP_METHODS)


def describeHandshakeFailure(
    reason: Failure | BaseException, firstBytes: bytes = b""
) -> str:
    """
    Say in one short sentence why a TLS handshake failed, for the log.

    @param reason: what the DICOM protocol's C{connectionLost} received: an
        L{SSL.Error} (its arguments: OpenSSL's error queue, a list of
        C{(library, function, reason)}), or a connection error.
    @param firstBytes: L{DICOMTLSProtocol.firstBytes} of the connection: it
        tells plain DICOM, HTTP or a PROXY header apart from broken TLS.
    @return: e.g. C{"plain DICOM (an A-ASSOCIATE-RQ) on the TLS port"}.
        OpenSSL's reason texts are quoted; no key material ever is.
    """
    error = reason.value if isinstance(reason, Failure) else reason

    # What the peer sent first tells most non-TLS clients apart, whatever
    # OpenSSL made of it ("wrong version number", "http request", ...).
    if firstBytes[:2] == b"\x01\x00":
        return "plain DICOM (an A-ASSOCIATE-RQ) on the TLS port"
    if _startsLikeHTTP(firstBytes):
        return "HTTP on the TLS port"
    if firstBytes.startswith(b"PROXY ") or (
        len(firstBytes) >= 4 and _PROXY_V2_SIGNATURE.startswith(firstBytes[:12])
    ):
        return "a PROXY protocol header on the TLS port (not expected here)"
    if firstBytes[:1] == b"\x80" and isinstance(error, SSL.Error):
        return "an SSLv2-format ClientHello (a very old client)"
    if firstBytes and firstBytes[0] != 0x16 and isinstance(error, SSL.Error):
        shown = " ".join(f"{b:02x}" for b in firstBytes[:8])
        return f"not TLS on the TLS port (first bytes {shown})"

    if isinstance(error, SSL.Error):
        reasons = _openSSLReasons(error)
        lowered = reasons.lower()
        if any(r in lowered for r in _OLD_VERSIONS):
            return "the client offered only TLS versions below 1.2"
        if any(r in lowered for r in _NO_CERTIFICATE):
            return "no client certificate (one is required)"
        if any(r in lowered for r in _UNTRUSTED):
            notes = getattr(error, "__notes__", [])
            why = [n[len(_VERIFY_NOTE) :] for n in notes if n.startswith(_VERIFY_NOTE)]
            return f"the client certificate is not trusted ({why[0] if why else reasons})"
        if any(r in lowered for r in _NO_CIPHER):
            return "no cipher suite in common"
        if "alert" in lowered and any(r in lowered for r in _BAD_OUR_CERTIFICATE):
            return f"the client rejected our certificate ({reasons})"
        return f"TLS handshake failed: {reasons or type(error).__name__}"

    if isinstance(error, ConnectionAborted):
        return "the connection was aborted during the TLS handshake"
    if isinstance(error, (ConnectionDone, ConnectionLost)):
        if not firstBytes:
            return "the client closed the connection without sending anything"
        return "the client closed the connection during the TLS handshake"
    return f"TLS handshake failed: {type(error).__name__}: {error}"


def _nameString(name: x509.Name) -> str:
    """
    An RFC 4514 string of C{name}; never raises (attributes cryptography
    cannot decode are left out).
    """
    try:
        return name.rfc4514_string()
    except Exception:
        parts = []
        for attribute in reversed(list(name)):
            try:
                parts.append(x509.Name([attribute]).rfc4514_string())
            except Exception:
                parts.append(f"{attribute.oid.dotted_string}=?")
        return ",".join(parts)


def tlsSessionInfo(transport: Any) -> dict[str, str | None]:
    """
    What the TLS session of a connection is, for the log.

    @param transport: the DICOM protocol's transport (a
        L{TLSMemoryBIOProtocol}); anything else gives all C{None}.
    @return: C{tlsVersion} (e.g. C{"TLSv1.3"}), C{tlsCipher} (OpenSSL's
        name), C{tlsSubject} and C{tlsIssuer} (the client certificate's, as
        RFC 4514 strings such as C{"CN=modality1,O=Hospital"}; C{None}
        without one; after a failed handshake, those of the certificate
        OpenSSL refused, if any). Without a cipher (a handshake that failed
        early) the version is C{None} too. Nothing is escaped here.
    """
    info: dict[str, str | None] = {
        "tlsVersion": None,
        "tlsCipher": None,
        "tlsSubject": None,
        "tlsIssuer": None,
    }
    getHandle = getattr(transport, "getHandle", None)
    connection = getHandle() if getHandle is not None else None
    # A plain TCP transport's handle is its socket.
    if not isinstance(connection, SSL.Connection):
        return info
    cipher = connection.get_cipher_name()
    if cipher is not None:
        info["tlsCipher"] = cipher
        info["tlsVersion"] = connection.get_protocol_version_name()
    certificate = connection.get_peer_certificate(as_cryptography=True)
    if certificate is None:
        certificate = getattr(transport, "rejectedCertificate", None)
    if certificate is not None:
        info["tlsSubject"] = _nameString(certificate.subject)
        info["tlsIssuer"] = _nameString(certificate.issuer)
    return info


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
        from dicomecho.server.proxyheader import proxyEndpoint

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
