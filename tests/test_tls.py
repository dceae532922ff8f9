# -*- test-case-name: tests.test_tls -*-
"""
Tests for L{dicomecho.security.tls} and the C{dicomtls:} endpoint plugin.

Handshakes are real (OpenSSL on both sides) but in memory: the server is
the L{DICOMTLSProtocol} that L{DICOMTLSServerEndpoint.listen} builds, on a
L{StringTransport} with a L{Clock}; the client is the standard library's
C{ssl} module over memory BIOs, so that it can be made old-fashioned (TLS
1.0, weak suites) independently of pyOpenSSL. L{_handshake} moves bytes
between them until neither has anything more to say (bounded).

The C{peer} tests run C{python -m dicomecho --listen dicomtls:...} in a
subprocess and talk to it with DCMTK's C{echoscu} and with pynetdicom.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHandshakeListener, IStreamServerEndpointStringParser
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.plugin import getPlugins
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from zope.interface import implementer

from dicomecho.security.tls import (
    BCP195_CIPHERS,
    FIRST_BYTES,
    DICOMTLSProtocol,
    DICOMTLSServerEndpoint,
    TLSConfigurationError,
    describeHandshakeFailure,
    serverContextFactory,
    tlsSessionInfo,
)
from tests.support.helpers import fixtureBytes
from tests.support.peers import ECHOSCU_TIMEOUT_OPTIONS, requireEchoscu, requirePynetdicom
from tests.support.processes import ROOT, Server
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
        self.description = describeHandshakeFailure(reason, firstBytes)


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


def test_http(mutual: Any) -> None:
    connection = _raw(mutual, b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n")
    assert connection.recorder.description == "HTTP on the TLS port"


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


# --- describeHandshakeFailure and tlsSessionInfo alone ------------------------


def _sslError(*reasons: str) -> SSL.Error:
    return SSL.Error([("SSL routines", "", reason) for reason in reasons])


@pytest.mark.parametrize(
    "reasons, expected",
    [
        (["unsupported protocol"], "the client offered only TLS versions below 1.2"),
        (["version too low"], "the client offered only TLS versions below 1.2"),
        (["no shared cipher"], "no cipher suite in common"),
        (["peer did not return a certificate"], "no client certificate (one is required)"),
        (
            ["certificate verify failed"],
            "the client certificate is not trusted (certificate verify failed)",
        ),
        (
            ["tlsv1 alert unknown ca"],
            "the client rejected our certificate (tlsv1 alert unknown ca)",
        ),
        (
            ["bad key share", "bad key share", "other"],
            "TLS handshake failed: bad key share; other",
        ),
    ],
)
def test_describeOpenSSLReasons(reasons: list[str], expected: str) -> None:
    error = _sslError(*reasons)
    assert describeHandshakeFailure(error, b"\x16\x03\x01") == expected
    assert describeHandshakeFailure(Failure(error), b"\x16\x03\x01") == expected


def test_describeOtherFailures() -> None:
    assert describeHandshakeFailure(ConnectionAborted()) == (
        "the connection was aborted during the TLS handshake"
    )
    assert describeHandshakeFailure(ConnectionDone(), b"\x16") == (
        "the client closed the connection during the TLS handshake"
    )
    assert describeHandshakeFailure(RuntimeError("boom")) == (
        "TLS handshake failed: RuntimeError: boom"
    )
    assert describeHandshakeFailure(SSL.Error([])) == "TLS handshake failed: Error"


def test_describeFirstBytesWin() -> None:
    """
    What the client sent first decides, whatever OpenSSL made of it.
    """
    error = _sslError("packet length too long")
    assert describeHandshakeFailure(error, b"\x01\x00\x00\x00\x00\xcd") == (
        "plain DICOM (an A-ASSOCIATE-RQ) on the TLS port"
    )
    assert describeHandshakeFailure(error, b"POST /x HTTP/1.1") == "HTTP on the TLS port"
    proxy2 = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11"
    assert describeHandshakeFailure(error, proxy2).startswith("a PROXY protocol header")
    assert describeHandshakeFailure(error, b"\x80\x2e\x01\x03\x01") == (
        "an SSLv2-format ClientHello (a very old client)"
    )


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


# --- the dicomtls: endpoint description ---------------------------------------


def _description(pki: TestPKI, port: int | str = 2762, **extra: str) -> str:
    arguments = {"privateKey": pki.serverKey, "certKey": pki.serverCert, **extra}
    return f"dicomtls:{port}:" + ":".join(f"{k}={v}" for k, v in arguments.items())


def test_pluginFound() -> None:
    parsers = [
        p for p in getPlugins(IStreamServerEndpointStringParser) if p.prefix == "dicomtls"
    ]
    assert len(parsers) == 1


def test_serverFromString(pki: TestPKI) -> None:
    """
    C{dicomtls:PORT:...} builds a L{DICOMTLSServerEndpoint} on a TCP4
    endpoint on all IPv4 interfaces with C{tcp:}'s backlog, and listening
    wraps the factory in L{DICOMTLSProtocol}s.
    """
    reactor = MemoryReactor()
    endpoint = serverFromString(reactor, _description(pki, caCerts=pki.caCert))
    assert isinstance(endpoint, DICOMTLSServerEndpoint)
    assert isinstance(endpoint.wrappedEndpoint, TCP4ServerEndpoint)
    assert endpoint.contextFactory.verify and endpoint.contextFactory.requireCertificate
    endpoint.listen(RecorderFactory())
    port, factory, backlog, interface = reactor.tcpServers[0]
    assert (port, backlog, interface) == (2762, 50, "")
    assert factory.protocol is DICOMTLSProtocol


def test_serverFromStringOptions(pki: TestPKI) -> None:
    reactor = MemoryReactor()
    endpoint = serverFromString(
        reactor,
        _description(
            pki,
            0,
            caCerts=pki.caCert,
            requireClientCert="no",
            interface="\\:\\:1",
            backlog="200",
        ),
    )
    assert isinstance(endpoint.wrappedEndpoint, TCP6ServerEndpoint)
    assert endpoint.contextFactory.verify
    assert not endpoint.contextFactory.requireCertificate
    endpoint.listen(RecorderFactory())
    assert reactor.tcpServers[0][0::2] == (0, 200) and reactor.tcpServers[0][3] == "::1"


def test_proxyOption(pki: TestPKI) -> None:
    """
    proxy=yes puts Twisted's PROXY-protocol layer under the TLS layer (the
    header comes first, in the clear); proxy=maybe is refused.
    """
    from twisted.protocols.haproxy._wrapper import HAProxyWrappingFactory

    reactor = MemoryReactor()
    endpoint = serverFromString(reactor, _description(pki, 0, proxy="yes"))
    endpoint.listen(RecorderFactory())
    outer = reactor.tcpServers[0][1]
    assert isinstance(outer, HAProxyWrappingFactory)
    assert type(outer.wrappedFactory).__name__ == "TLSMemoryBIOFactory"
    with pytest.raises(ValueError, match="proxy='maybe' is not yes"):
        serverFromString(MemoryReactor(), _description(pki, 0, proxy="maybe"))


@pytest.mark.parametrize(
    "description, error, message",
    [
        ("dicomtls:2762:certKey={cert}", ValueError, "privateKey= is required"),
        ("dicomtls:privateKey={key}:certKey={cert}", ValueError, "exactly one port"),
        ("dicomtls:https:privateKey={key}:certKey={cert}", ValueError, "port='https'"),
        ("dicomtls:70000:privateKey={key}:certKey={cert}", ValueError, "from 0 to 65535"),
        (
            "dicomtls:2762:privateKey={key}:certKey={cert}:cert=x",
            ValueError,
            "unknown argument 'cert'",
        ),
        ("dicomtls:2762:privateKey={key}:certKey={cert}:backlog=0", ValueError, "backlog='0'"),
        (
            "dicomtls:2762:privateKey={key}:certKey={cert}:requireClientCert=maybe",
            ValueError,
            "requireClientCert='maybe' is not yes, no",
        ),
        (
            "dicomtls:2762:privateKey={key}:certKey={cert}:requireClientCert=yes",
            TLSConfigurationError,
            "requireClientCert needs caCerts",
        ),
        (
            "dicomtls:2762:privateKey=/nonexistent/x.key:certKey={cert}",
            TLSConfigurationError,
            "cannot read the private key file '/nonexistent/x.key': No such file",
        ),
    ],
)
def test_parserErrors(pki: TestPKI, description: str, error: type, message: str) -> None:
    text = description.format(key=pki.serverKey, cert=pki.serverCert)
    with pytest.raises(error, match=re.escape(message)):
        serverFromString(MemoryReactor(), text)


@pytest.mark.parametrize(
    "value, required",
    [("YES", True), ("true", True), ("1", True), ("No", False), ("false", False), ("0", False)],
)
def test_requireClientCertSpellings(pki: TestPKI, value: str, required: bool) -> None:
    endpoint = serverFromString(
        MemoryReactor(), _description(pki, caCerts=pki.caCert, requireClientCert=value)
    )
    assert endpoint.contextFactory.requireCertificate is required


def test_listenOptionErrorIsUsageError(pki: TestPKI) -> None:
    """
    C{--listen} with a broken C{dicomtls:} description is a usage error
    that names the problem.
    """
    from dicomecho.server.tap import Options

    with pytest.raises(UsageError, match="requireClientCert needs caCerts"):
        Options().parseOptions(["--listen", _description(pki, requireClientCert="yes")])


def test_pluginModuleImportLight() -> None:
    """
    Importing the plugin module (as every getPlugins() call may) imports
    neither the reactor nor dicomecho.security.tls and its TLS libraries.
    """
    code = (
        "import sys, twisted.plugins.dicomecho_tls as m; "
        "print(sorted(n for n in ('twisted.internet.reactor', 'dicomecho.security.tls', "
        "'OpenSSL', 'cryptography') if n in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- real peers ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tlsServer(pki: TestPKI) -> Iterator[Server]:
    """
    One C{python -m dicomecho -d} on dicomtls:0 (127.0.0.1), requiring
    client certificates from our CA, for all the peer tests.
    """
    description = _description(pki, 0, interface="127.0.0.1", caCerts=pki.caCert)
    server = Server([sys.executable, "-m", "dicomecho", "-d", "--listen", description])
    try:
        server.port()
    except AssertionError:
        server.stop()
        raise
    yield server
    assert server.stop() == 0, server.output()


def _echoscu(echoscu: str, port: int, *options: str) -> tuple[int, str]:
    completed = subprocess.run(
        [echoscu, "-d", *ECHOSCU_TIMEOUT_OPTIONS, *options, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return completed.returncode, completed.stdout + completed.stderr


@pytest.mark.peer
@pytest.mark.parametrize(
    "profile, version, suite",
    [
        # DCMTK 3.6.7's default, "Non-downgrading BCP 195": TLS 1.3 offered.
        ([], "TLSv1.3", "TLS_AES_256_GCM_SHA384"),
        # "Extended BCP 195": TLS 1.2 only, ECDHE-AES-GCM suites.
        (["+pz"], "TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384"),
    ],
    ids=["default-profile", "tls1.2-profile"],
)
def test_echoscu(
    pki: TestPKI, tlsServer: Server, profile: list[str], version: str, suite: str
) -> None:
    """
    DCMTK echoscu, with a client certificate, gets its C-ECHO answered over
    TLS; the server logs the client's subject.
    """
    echoscu = requireEchoscu()
    since = len(tlsServer.lines)
    status, output = _echoscu(
        echoscu,
        tlsServer.port(),
        *profile,
        "+tls",
        pki.clientKey,
        pki.clientCert,
        "+cf",
        pki.caCert,
    )
    assert status == 0, output
    assert re.search(rf"Protocol\s*: {re.escape(version)}", output), output
    assert re.search(rf"Ciphersuite\s*: {re.escape(suite)}", output), output
    assert "Received Echo Response (Success)" in output
    tlsServer.waitFor(re.escape(CLIENT_SUBJECT), since=since)


@pytest.mark.peer
def test_echoscuRefused(pki: TestPKI, tlsServer: Server) -> None:
    """
    echoscu without TLS, and with a certificate from another CA: refused,
    and the server says why.
    """
    echoscu = requireEchoscu()
    since = len(tlsServer.lines)
    status, output = _echoscu(echoscu, tlsServer.port())
    assert status != 0, output
    tlsServer.waitFor(r"plain DICOM \(an A-ASSOCIATE-RQ\) on the TLS port", since=since)

    since = len(tlsServer.lines)
    status, output = _echoscu(
        echoscu, tlsServer.port(), "+tls", pki.rogueKey, pki.rogueCert, "+cf", pki.caCert
    )
    assert status != 0, output
    tlsServer.waitFor(r"the client certificate is not trusted", since=since)


@pytest.mark.peer
def test_pynetdicom(pki: TestPKI, tlsServer: Server) -> None:
    """
    pynetdicom over TLS (the standard library's ssl) with a client
    certificate: C-ECHO status 0x0000.
    """
    pynetdicom = requirePynetdicom()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.caCert)
    context.load_cert_chain(pki.clientCert, pki.clientKey)
    since = len(tlsServer.lines)
    ae = pynetdicom.AE(ae_title="PYNETDICOM")
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate(
        "127.0.0.1", tlsServer.port(), ae_title="ECHOSCP", tls_args=(context, "localhost")
    )
    try:
        assert assoc.is_established
        status = assoc.send_c_echo()
        assert status.Status == 0x0000
        assert assoc.dul.socket.socket.version() == "TLSv1.3"
    finally:
        if assoc.is_established:
            assoc.release()
        else:
            assoc.abort()
        ae.shutdown()
    tlsServer.waitFor(re.escape(CLIENT_SUBJECT), since=since)
