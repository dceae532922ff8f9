# -*- test-case-name: tests.test_tls -*-
"""
Tests for L{dicomecho.security.tls} (the BCP 195 settings, the session
information) and L{dicomecho.security.tlsfailures} (why a handshake
failed).

Handshakes are real (OpenSSL on both sides) but in memory: the server is
the L{DICOMTLSProtocol} that L{DICOMTLSServerEndpoint.listen} builds, on a
L{StringTransport} with a L{Clock}; the client is the standard library's
C{ssl} module over memory BIOs, so that it can be made old-fashioned (TLS
1.0, weak suites) independently of pyOpenSSL. L{_handshake} moves bytes
between them until neither has anything more to say (bounded).

The C{dicomtls:} description and the real peers are in
L{tests.test_tlsendpoint}.
"""

from __future__ import annotations

import ssl
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from dicomecho.security.tls import (
    BCP195_CIPHERS,
    TLSConfigurationError,
    serverContextFactory,
    tlsSessionInfo,
)
from dicomecho.security.tlsfailures import (
    HandshakeFailure,
    TLSFailureKind,
    classifyHandshakeFailure,
    handshakeTimeout,
)
from dicomecho.server.tlsendpoint import FIRST_BYTES, DICOMTLSProtocol, DICOMTLSServerEndpoint
from tests.support.helpers import fixtureBytes
from tests.support.tlscerts import CLIENT_SUBJECT, TestPKI

ROOT_ISSUER = "CN=dicomecho test root CA,O=dicomecho tests"
ROGUE_ISSUER = "CN=rogue CA,O=somebody else"

#: The real first PDU of DCMTK echoscu: an A-ASSOCIATE-RQ.
ASSOCIATE_RQ = fixtureBytes("dcmtk_echoscu_default", "c2s")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """
    One generated PKI for the whole session (see L{tests.support.tlscerts}).
    """
    return TestPKI.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def mutual(pki: TestPKI) -> Any:
    """
    Server settings that require a client certificate from our CA.
    """
    return serverContextFactory(pki.serverKey, pki.serverCert, pki.caCert)


@pytest.fixture(scope="session")
def serverOnly(pki: TestPKI) -> Any:
    """
    Server settings without client certificates.
    """
    return serverContextFactory(pki.serverKey, pki.serverCert)


# --- the in-memory handshake --------------------------------------------------


@implementer(IHandshakeListener)
class Recorder(Protocol):
    """
    Stands in for the DICOM protocol: records what the TLS layer tells it
    and echoes application data back.
    """

    def __init__(self) -> None:
        self.events: list[str] = []
        self.received = b""
        self.reason: Failure | None = None
        self.established: dict[str, str | None] | None = None
        self.atLoss: dict[str, str | None] | None = None

    def connectionMade(self) -> None:
        self.events.append("connectionMade")

    def handshakeCompleted(self) -> None:
        self.events.append("handshakeCompleted")
        self.established = tlsSessionInfo(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.transport.write(b"echo:" + data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.events.append("connectionLost")
        self.reason = reason
        # What protocol.py does on a failed handshake.
        self.atLoss = tlsSessionInfo(self.transport)
        firstBytes = self.transport.firstBytes  # type: ignore[union-attr]
        self.failure = classifyHandshakeFailure(reason, firstBytes)
        self.description = self.failure.sentence


class RecorderFactory(Factory):
    def __init__(self) -> None:
        self.built: list[Recorder] = []

    def buildProtocol(self, addr: Any) -> Recorder:
        protocol = Recorder()
        protocol.factory = self
        self.built.append(protocol)
        return protocol


class FakeEndpoint:
    """
    The wrapped endpoint: remembers the factory it was asked to listen
    with.
    """

    factory: Any = None

    def listen(self, factory: Any) -> Any:
        self.factory = factory
        return succeed(None)


@dataclass
class Connection:
    """
    One server-side connection in memory and what happened on it.
    """

    tls: DICOMTLSProtocol
    transport: StringTransport
    clock: Clock
    recorder: Recorder
    clientError: BaseException | None = None
    clientReceived: bytes = b""
    serverClosed: bool = False
    clientLog: list[str] = field(default_factory=list)

    def closeFromServerSide(self) -> None:
        """
        Deliver the end of the TCP connection the TLS layer asked for.
        """
        if not self.serverClosed:
            self.serverClosed = True
            self.tls.connectionLost(Failure(ConnectionDone()))


def _connect(options: Any) -> Connection:
    clock = Clock()
    wrapped = FakeEndpoint()
    factory = RecorderFactory()
    DICOMTLSServerEndpoint(wrapped, options, clock=clock).listen(factory)
    tls = wrapped.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    tls.makeConnection(transport)
    return Connection(tls, transport, clock, factory.built[0])


def _raw(options: Any, data: bytes, *, close: bool = False) -> Connection:
    """
    Send C{data} (not TLS) to a new connection; then close it, if the
    server has not (or if C{close}).
    """
    connection = _connect(options)
    if data:
        connection.tls.dataReceived(data)
        connection.clock.advance(0)
    if close or connection.transport.disconnecting:
        connection.closeFromServerSide()
    return connection


def _handshake(options: Any, client: ssl.SSLContext, send: bytes = b"ping") -> Connection:
    """
    Run a TLS client against a new connection until both sides are quiet,
    then send C{send} and read the echo if the handshake succeeded.
    """
    connection = _connect(options)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tlsClient = client.wrap_bio(incoming, outgoing, server_hostname="localhost")
    handshook = sent = False
    for _ in range(200):  # a handshake takes a handful of rounds
        if connection.clientError is None:
            try:
                if not handshook:
                    tlsClient.do_handshake()
                    handshook = True
                    connection.clientLog.append(f"{tlsClient.version()} {tlsClient.cipher()}")
                if send and not sent:
                    tlsClient.write(send)
                    sent = True
                connection.clientReceived += tlsClient.read(65536)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                connection.clientError = e
        toServer = outgoing.read()
        if toServer and not connection.serverClosed:
            connection.tls.dataReceived(toServer)
        connection.clock.advance(0)  # flushes the TLS layer's write buffer
        toClient = connection.transport.value()
        connection.transport.clear()
        if toClient:
            incoming.write(toClient)
        if not toServer and not toClient:
            if connection.transport.disconnecting and not connection.serverClosed:
                connection.closeFromServerSide()
                incoming.write_eof()
                continue
            return connection
    raise AssertionError("the in-memory handshake did not settle")


def _client(
    pki: TestPKI,
    cert: str | None = None,
    *,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """
    A stdlib TLS client trusting our root CA, with client certificate
    C{cert} (a base name in the PKI, e.g. C{"client"}).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.caCert)
    with warnings.catch_warnings():
        # ssl.TLSVersion.TLSv1/TLSv1_1 are deprecated: that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if cert is not None:
        context.load_cert_chain(pki.path(f"{cert}.pem"), pki.path(f"{cert}.key"))
    return context


def _refused(connection: Connection) -> str:
    """
    Assert the handshake failed on both sides; return the description.
    """
    assert connection.recorder.events == ["connectionMade", "connectionLost"]
    assert connection.clientError is not None
    assert connection.recorder.reason is not None
    assert connection.recorder.reason.check(SSL.Error)
    return connection.recorder.description


# --- versions and cipher suites -----------------------------------------------


def test_tls13WhenOffered(pki: TestPKI, mutual: Any) -> None:
    """
    A client that offers TLS 1.3 gets it (PS3.15 B.12: servers shall prefer
    1.3), and the DICOM protocol hears of the handshake and gets the data.
    """
    connection = _handshake(mutual, _client(pki, "client"))
    assert connection.clientError is None
    assert connection.recorder.events == ["connectionMade", "handshakeCompleted"]
    assert connection.recorder.established is not None
    assert connection.recorder.established["tlsVersion"] == "TLSv1.3"
    assert connection.recorder.established["tlsCipher"] in (
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_128_GCM_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    )
    assert connection.recorder.received == b"ping"
    assert connection.clientReceived == b"echo:ping"


def test_tls12WithBCP195Suite(pki: TestPKI, mutual: Any) -> None:
    """
    A TLS 1.2-only client is accepted, with a suite from L{BCP195_CIPHERS}.
    """
    connection = _handshake(mutual, _client(pki, "client", maximum=ssl.TLSVersion.TLSv1_2))
    assert connection.clientError is None
    info = connection.recorder.established
    assert info is not None
    assert info["tlsVersion"] == "TLSv1.2"
    assert info["tlsCipher"] in BCP195_CIPHERS.split(":")
    assert connection.clientReceived == b"echo:ping"


@pytest.mark.parametrize("suite", BCP195_CIPHERS.split(":"))
def test_eachBCP195Suite(pki: TestPKI, suite: str) -> None:
    """
    Every suite of L{BCP195_CIPHERS} works on its own over TLS 1.2, with a
    server certificate of the matching key type.
    """
    name = "ec-server" if "ECDSA" in suite else "server"
    options = serverContextFactory(pki.path(f"{name}.key"), pki.path(f"{name}.pem"))
    client = _client(pki, maximum=ssl.TLSVersion.TLSv1_2, ciphers=suite)
    connection = _handshake(options, client)
    assert connection.clientError is None
    assert connection.recorder.established is not None
    assert connection.recorder.established["tlsCipher"] == suite


def test_serverChoosesTheSuite(pki: TestPKI, serverOnly: Any) -> None:
    """
    Our order of L{BCP195_CIPHERS} wins over the client's: AES-256 before
    AES-128, as RFC 9325 section 4.2.1 asks.
    """
    client = _client(
        pki,
        maximum=ssl.TLSVersion.TLSv1_2,
        ciphers="ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
    )
    connection = _handshake(serverOnly, client)
    assert connection.recorder.established is not None
    assert connection.recorder.established["tlsCipher"] == "ECDHE-RSA-AES256-GCM-SHA384"


def test_oldVersionsRefused(pki: TestPKI, mutual: Any) -> None:
    """
    A client that speaks only TLS 1.0 and 1.1 (RFC 8996 deprecates both)
    is refused, and the log says why.
    """
    client = _client(
        pki,
        "client",
        minimum=ssl.TLSVersion.TLSv1,
        maximum=ssl.TLSVersion.TLSv1_1,
        ciphers="DEFAULT:@SECLEVEL=0",
    )
    connection = _handshake(mutual, client)
    assert _refused(connection) == "the client offered only TLS versions below 1.2"
    assert connection.recorder.atLoss == dict.fromkeys(
        ["tlsVersion", "tlsCipher", "tlsSubject", "tlsIssuer"]
    )


@pytest.mark.parametrize(
    "suites",
    [
        "AES128-SHA:AES256-SHA",  # RSA key exchange, CBC
        "AES128-GCM-SHA256:AES256-GCM-SHA384",  # RSA key exchange
        "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA384",  # CBC
        "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384",  # DHE
    ],
)
def test_weakSuitesRefused(pki: TestPKI, mutual: Any, suites: str) -> None:
    """
    A TLS 1.2 client offering only suites outside RFC 9325's
    recommendation finds none in common.
    """
    client = _client(pki, "client", maximum=ssl.TLSVersion.TLSv1_2, ciphers=suites)
    assert _refused(_handshake(mutual, client)) == "no cipher suite in common"


# --- client certificates ------------------------------------------------------


def test_validClientCertificate(pki: TestPKI, mutual: Any) -> None:
    """
    A client certificate from our CA is accepted, and L{tlsSessionInfo}
    names it in RFC 4514 form.
    """
    connection = _handshake(mutual, _client(pki, "client"))
    info = connection.recorder.established
    assert info is not None
    assert info["tlsSubject"] == CLIENT_SUBJECT == "CN=modality1,O=dicomecho tests"
    assert info["tlsIssuer"] == ROOT_ISSUER


@pytest.mark.parametrize("maximum", [None, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
def test_clientCertificateMissing(pki: TestPKI, mutual: Any, maximum: Any) -> None:
    """
    Without a client certificate, where one is required, the handshake
    fails.
    """
    connection = _handshake(mutual, _client(pki, maximum=maximum))
    assert _refused(connection) == "no client certificate (one is required)"
    assert connection.recorder.atLoss is not None
    assert connection.recorder.atLoss["tlsSubject"] is None


@pytest.mark.parametrize("maximum", [None, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
def test_rogueClientCertificate(pki: TestPKI, mutual: Any, maximum: Any) -> None:
    """
    A client certificate from another CA is refused; the description says
    why in OpenSSL's words, and L{tlsSessionInfo} names the refused
    certificate.
    """
    connection = _handshake(mutual, _client(pki, "rogue", maximum=maximum))
    description = _refused(connection)
    assert description.startswith("the client certificate is not trusted (")
    assert "issuer" in description  # e.g. "unable to get issuer certificate locally"
    assert connection.recorder.atLoss is not None
    assert connection.recorder.atLoss["tlsSubject"] == CLIENT_SUBJECT
    assert connection.recorder.atLoss["tlsIssuer"] == ROGUE_ISSUER
    assert isinstance(connection.tls, DICOMTLSProtocol)
    assert connection.tls.verifyError is not None


def test_expiredClientCertificate(pki: TestPKI, mutual: Any) -> None:
    """
    An expired client certificate is refused, and the description says it
    expired (not merely that verification failed).
    """
    pki.issueClient("expired", "modality2", expired=True)
    connection = _handshake(mutual, _client(pki, "expired"))
    assert _refused(connection) == "the client certificate is not trusted (certificate has expired)"


def test_serverCertificateAsClientCertificate(pki: TestPKI, mutual: Any) -> None:
    """
    A certificate from our CA that is not for client authentication (EKU
    serverAuth only) is refused.
    """
    connection = _handshake(mutual, _client(pki, "server"))
    assert _refused(connection).startswith("the client certificate is not trusted (")


def test_nonASCIISubject(pki: TestPKI, mutual: Any) -> None:
    """
    A subject outside ASCII comes back as text, not a crash.
    """
    pki.issueClient("unicode", "Modalität ☃", "Krankenhaus Köln")
    connection = _handshake(mutual, _client(pki, "unicode"))
    info = connection.recorder.established
    assert info is not None
    assert info["tlsSubject"] == "CN=Modalität ☃,O=Krankenhaus Köln"


def test_clientCertificateOptional(pki: TestPKI) -> None:
    """
    With C{requireClientCert=False}, a client without a certificate gets
    in, one with a valid certificate is named, and a rogue one is still
    refused.
    """
    options = serverContextFactory(pki.serverKey, pki.serverCert, pki.caCert, False)
    anonymous = _handshake(options, _client(pki))
    assert anonymous.clientError is None
    assert anonymous.recorder.established is not None
    assert anonymous.recorder.established["tlsSubject"] is None

    named = _handshake(options, _client(pki, "client"))
    assert named.recorder.established is not None
    assert named.recorder.established["tlsSubject"] == CLIENT_SUBJECT

    rogue = _handshake(options, _client(pki, "rogue"))
    assert _refused(rogue).startswith("the client certificate is not trusted")


def test_noClientCertificateAskedWithoutCAs(pki: TestPKI, serverOnly: Any) -> None:
    """
    Without C{caCerts} the server asks for no client certificate.
    """
    connection = _handshake(serverOnly, _client(pki, "client"))
    assert connection.recorder.established is not None
    assert connection.recorder.established["tlsSubject"] is None


def test_intermediateChainSent(pki: TestPKI) -> None:
    """
    Certificates after the first in C{certKey} are sent along, so a client
    that trusts only the root can verify a server signed by an
    intermediate CA.
    """
    options = serverContextFactory(pki.path("server-chain.key"), pki.path("server-chain.pem"))
    connection = _handshake(options, _client(pki))
    assert connection.clientError is None
    assert connection.recorder.events == ["connectionMade", "handshakeCompleted"]


# --- what arrives when the client does not speak TLS --------------------------


def test_plainDICOM(mutual: Any) -> None:
    """
    A plain A-ASSOCIATE-RQ on the TLS port is recognized.
    """
    connection = _raw(mutual, ASSOCIATE_RQ)
    assert connection.tls.firstBytes == ASSOCIATE_RQ[:FIRST_BYTES]
    assert connection.recorder.reason is not None
    assert connection.recorder.reason.check(SSL.Error)
    assert connection.recorder.description == "plain DICOM (an A-ASSOCIATE-RQ) on the TLS port"
    assert connection.recorder.failure.kind is TLSFailureKind.PLAIN_DICOM


def test_http(mutual: Any) -> None:
    connection = _raw(mutual, b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n")
    assert connection.recorder.description == "HTTP on the TLS port"
    assert connection.recorder.failure.kind is TLSFailureKind.HTTP


def test_proxyHeader(mutual: Any) -> None:
    """
    A PROXY protocol header (a load balancer configured for it) is named.
    """
    connection = _raw(mutual, b"PROXY TCP4 10.0.0.1 10.0.0.2 51000 2762\r\n")
    assert connection.recorder.description.startswith("a PROXY protocol header")


def test_otherNonTLS(mutual: Any) -> None:
    connection = _raw(mutual, b"SSH-2.0-OpenSSH_9.6\r\n")
    assert connection.recorder.description == (
        "not TLS on the TLS port (first bytes 53 53 48 2d 32 2e 30 2d)"
    )


def test_closedWithoutData(mutual: Any) -> None:
    """
    A TCP health check: connect, close. The DICOM protocol hears a clean
    close, not an SSL error.
    """
    connection = _raw(mutual, b"", close=True)
    assert connection.recorder.reason is not None
    # ConnectionLost: the TLS layer reports an end of stream before
    # close_notify as a lost connection, even before the first byte.
    assert connection.recorder.reason.check(ConnectionDone, ConnectionLost)
    assert not connection.recorder.reason.check(SSL.Error)
    assert connection.recorder.description == (
        "the client closed the connection without sending anything"
    )


def test_closedMidHandshake(pki: TestPKI, mutual: Any) -> None:
    """
    A client that goes away in the middle of its ClientHello.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = _client(pki, "client").wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    connection = _connect(mutual)
    connection.tls.dataReceived(hello[:40])
    connection.tls.connectionLost(Failure(ConnectionLost()))
    assert connection.recorder.reason is not None
    assert connection.recorder.reason.check(ConnectionLost, ConnectionDone)
    assert connection.recorder.description == (
        "the client closed the connection during the TLS handshake"
    )


def test_firstBytesKeepsSixteen(mutual: Any) -> None:
    connection = _connect(mutual)
    connection.tls.dataReceived(b"\x16\x03")
    connection.tls.dataReceived(bytes(range(100)))
    assert connection.tls.firstBytes == b"\x16\x03" + bytes(range(14))
    assert len(connection.tls.firstBytes) == FIRST_BYTES == 16


def test_protocolConnectedBeforeHandshake(mutual: Any) -> None:
    """
    The DICOM protocol is connected as soon as TCP is, before any TLS byte
    arrives, so its ARTIM timer also bounds a stalled handshake; closing
    it then aborts the connection.
    """
    connection = _connect(mutual)
    assert connection.recorder.events == ["connectionMade"]
    assert connection.tls.firstBytes == b""
    assert connection.transport.value() == b""  # the client speaks first
    connection.tls.loseConnection()  # what an expired ARTIM does
    assert connection.transport.disconnecting


def test_failedHandshakeSendsAlertThenCloses(pki: TestPKI, mutual: Any) -> None:
    """
    On a failed handshake Twisted sends OpenSSL's alert, then closes the
    TCP connection (not an abort), and hands the DICOM protocol the
    L{SSL.Error}.
    """
    connection = _handshake(mutual, _client(pki, "rogue"))
    assert isinstance(connection.clientError, ssl.SSLError)
    assert "UNKNOWN_CA" in str(connection.clientError)  # the alert arrived
    assert connection.transport.disconnecting
    assert not connection.transport.disconnected  # loseConnection, no abort


# --- classifyHandshakeFailure and tlsSessionInfo alone -----------------------


def _sslError(*reasons: str) -> SSL.Error:
    return SSL.Error([("SSL routines", "", reason) for reason in reasons])


K = TLSFailureKind


@pytest.mark.parametrize(
    "reasons, kind, expected",
    [
        (["unsupported protocol"], K.OLD_VERSION, "the client offered only TLS versions below 1.2"),
        (["version too low"], K.OLD_VERSION, "the client offered only TLS versions below 1.2"),
        (["no shared cipher"], K.NO_SHARED_CIPHER, "no cipher suite in common"),
        (
            ["peer did not return a certificate"],
            K.NO_CLIENT_CERTIFICATE,
            "no client certificate (one is required)",
        ),
        (
            ["certificate verify failed"],
            K.UNTRUSTED_CERTIFICATE,
            "the client certificate is not trusted (certificate verify failed)",
        ),
        (
            ["tlsv1 alert unknown ca"],
            K.SERVER_CERTIFICATE_REJECTED,
            "the client rejected our certificate (tlsv1 alert unknown ca)",
        ),
        (
            ["bad key share", "bad key share", "other"],
            K.OTHER,
            "TLS handshake failed: bad key share; other",
        ),
    ],
)
def test_classifyOpenSSLReasons(reasons: list[str], kind: TLSFailureKind, expected: str) -> None:
    error = _sslError(*reasons)
    assert classifyHandshakeFailure(error, b"\x16\x03\x01") == HandshakeFailure(kind, expected)
    assert classifyHandshakeFailure(Failure(error), b"\x16\x03\x01") == HandshakeFailure(kind, expected)
    assert str(classifyHandshakeFailure(error, b"\x16\x03\x01")) == expected


@pytest.mark.parametrize(
    "reason, firstBytes, kind, expected",
    [
        (ConnectionAborted(), b"", K.CLOSED, "the connection was aborted during the TLS handshake"),
        (ConnectionDone(), b"\x16", K.CLOSED, "the client closed the connection during the TLS handshake"),
        (ConnectionLost(), b"", K.CLOSED, "the client closed the connection without sending anything"),
        (RuntimeError("boom"), b"", K.OTHER, "TLS handshake failed: RuntimeError: boom"),
        (SSL.Error([]), b"", K.OTHER, "TLS handshake failed: Error"),
    ],
)
def test_classifyOtherFailures(
    reason: BaseException, firstBytes: bytes, kind: TLSFailureKind, expected: str
) -> None:
    assert classifyHandshakeFailure(reason, firstBytes) == HandshakeFailure(kind, expected)


def test_handshakeTimeout() -> None:
    """
    The ACSE timeout cut the handshake short: kind C{timeout}, the timeout
    in the sentence.
    """
    assert handshakeTimeout(2) == HandshakeFailure(
        K.TIMEOUT, "handshake not completed within 2 s (ACSE timeout)"
    )
    assert handshakeTimeout(0.5).sentence == "handshake not completed within 0.5 s (ACSE timeout)"


@pytest.mark.parametrize(
    "firstBytes, kind, expected",
    [
        (b"\x01\x00\x00\x00\x00\xcd", K.PLAIN_DICOM, "plain DICOM (an A-ASSOCIATE-RQ) on the TLS port"),
        (b"POST /x HTTP/1.1", K.HTTP, "HTTP on the TLS port"),
        (
            b"\r\n\r\n\x00\r\nQUIT\n\x21\x11",
            K.OTHER,
            "a PROXY protocol header on the TLS port (not expected here)",
        ),
        (
            b"PROXY TCP4 10.0.0.1",
            K.OTHER,
            "a PROXY protocol header on the TLS port (not expected here)",
        ),
        (b"\x80\x2e\x01\x03\x01", K.OLD_VERSION, "an SSLv2-format ClientHello (a very old client)"),
        (b"SSH-2.0-x", K.OTHER, "not TLS on the TLS port (first bytes 53 53 48 2d 32 2e 30 2d)"),
    ],
)
def test_classifyFirstBytesWin(firstBytes: bytes, kind: TLSFailureKind, expected: str) -> None:
    """
    What the client sent first decides, whatever OpenSSL made of it.
    """
    error = _sslError("packet length too long")
    assert classifyHandshakeFailure(error, firstBytes) == HandshakeFailure(kind, expected)


def test_firstBytesOfATLSRecordLeaveItToOpenSSL() -> None:
    """
    A TLS record, even of an unknown version, is judged by OpenSSL's
    reasons; plain DICOM, HTTP and PROXY headers are named even when the
    connection merely closed.
    """
    error = _sslError("wrong version number")
    for firstBytes in (b"\x16\x03\x01", b"\x16\x01\x00", b"\x16"):
        assert classifyHandshakeFailure(error, firstBytes).sentence == (
            "TLS handshake failed: wrong version number"
        )
    assert classifyHandshakeFailure(ConnectionDone(), b"\x01\x00").kind is K.PLAIN_DICOM
    assert classifyHandshakeFailure(ConnectionDone(), b"SSH-2.0").kind is K.CLOSED


def test_sessionInfoOfOtherTransports() -> None:
    """
    A transport without TLS gives all C{None}.
    """
    empty = dict.fromkeys(["tlsVersion", "tlsCipher", "tlsSubject", "tlsIssuer"])
    assert tlsSessionInfo(StringTransport()) == empty
    assert tlsSessionInfo(object()) == empty


# --- serverContextFactory: configuration errors --------------------------------


def test_contextSettings(pki: TestPKI, mutual: Any, serverOnly: Any) -> None:
    """
    The settings are Twisted's L{CertificateOptions}, with client
    verification as asked (the versions and suites are tested by the
    handshakes above).
    """
    assert mutual.verify and mutual.requireCertificate
    assert not serverOnly.verify
    optional = serverContextFactory(pki.serverKey, pki.serverCert, pki.caCert, False)
    assert optional.verify and not optional.requireCertificate


def test_missingFile(pki: TestPKI, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.key")
    with pytest.raises(TLSConfigurationError, match="cannot read the private key file .*nope.key"):
        serverContextFactory(missing, pki.serverCert)


def test_keyDoesNotMatch(pki: TestPKI) -> None:
    with pytest.raises(TLSConfigurationError, match="does not match the certificate"):
        serverContextFactory(pki.clientKey, pki.serverCert)


def test_leafNotFirst(pki: TestPKI, tmp_path: Path) -> None:
    chain = Path(pki.path("server-chain.pem")).read_bytes()
    leaf, intermediate = chain.split(b"-----END CERTIFICATE-----\n")[:2]
    reordered = tmp_path / "reordered.pem"
    reordered.write_bytes(
        intermediate + b"-----END CERTIFICATE-----\n" + leaf + b"-----END CERTIFICATE-----\n"
    )
    with pytest.raises(TLSConfigurationError, match="server certificate must come first"):
        serverContextFactory(pki.path("server-chain.key"), str(reordered))


def test_keyAndCertificateInOneFile(pki: TestPKI, tmp_path: Path) -> None:
    combined = tmp_path / "combined.pem"
    combined.write_bytes(
        Path(pki.serverKey).read_bytes() + Path(pki.serverCert).read_bytes()
    )
    serverContextFactory(str(combined), str(combined))


def test_notPEM(pki: TestPKI, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(TLSConfigurationError, match="holds no PEM certificate"):
        serverContextFactory(pki.serverKey, str(junk))
    with pytest.raises(TLSConfigurationError, match="CA certificates file .* holds no PEM"):
        serverContextFactory(pki.serverKey, pki.serverCert, str(junk))
    with pytest.raises(TLSConfigurationError, match="holds no usable PEM private key"):
        serverContextFactory(str(junk), pki.serverCert)


def test_encryptedKey(pki: TestPKI, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(Path(pki.clientKey).read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(TLSConfigurationError, match="is encrypted") as raised:
        serverContextFactory(str(encrypted), pki.clientCert)
    assert "secret" not in str(raised.value)


def test_requireClientCertWithoutCAs(pki: TestPKI) -> None:
    with pytest.raises(TLSConfigurationError, match="requireClientCert needs caCerts"):
        serverContextFactory(pki.serverKey, pki.serverCert, None, True)
