# -*- test-case-name: tests.test_tlsendpoint -*-
"""
Tests for L{dicomecho.server.tlsendpoint}: the C{dicomtls:} endpoint
description and its plugin, and, in C{peer} tests, C{python -m dicomecho
--listen dicomtls:...} in a subprocess, talked to with DCMTK's C{echoscu}
and with pynetdicom. (The handshakes in memory are L{tests.test_tls}'s.)
"""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
from typing import Iterator

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.plugin import getPlugins
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.python.usage import UsageError

from dicomecho.security.tls import TLSConfigurationError
from dicomecho.security.sourcelimits import SourceLimitsPolicy
from dicomecho.server.factory import DICOMServerFactory
from dicomecho.server.tlsendpoint import DICOMTLSFactory, DICOMTLSProtocol, DICOMTLSServerEndpoint
from tests.support.peers import ECHOSCU_TIMEOUT_OPTIONS, requireEchoscu, requirePynetdicom
from tests.support.processes import ROOT, Server
from tests.support.tlscerts import CLIENT_SUBJECT, TestPKI


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """
    One generated PKI for the module (see L{tests.support.tlscerts}).
    """
    return TestPKI.create(tmp_path_factory.mktemp("pki"))


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
    endpoint.listen(Factory.forProtocol(Protocol))
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
    endpoint.listen(Factory.forProtocol(Protocol))
    assert reactor.tcpServers[0][0::2] == (0, 200) and reactor.tcpServers[0][3] == "::1"


def test_proxyOption(pki: TestPKI) -> None:
    """
    proxy=yes puts Twisted's PROXY-protocol layer under the TLS layer (the
    header comes first, in the clear); proxy=maybe is refused.
    """
    from twisted.protocols.haproxy._wrapper import HAProxyWrappingFactory

    reactor = MemoryReactor()
    endpoint = serverFromString(reactor, _description(pki, 0, proxy="yes"))
    endpoint.listen(Factory.forProtocol(Protocol))
    outer = reactor.tcpServers[0][1]
    assert isinstance(outer, HAProxyWrappingFactory)
    assert isinstance(outer.wrappedFactory, DICOMTLSFactory)
    # The address at accept is the balancer's: the client is judged later.
    assert not outer.wrappedFactory.judgeAtAccept
    with pytest.raises(ValueError, match="proxy='maybe' is not yes"):
        serverFromString(MemoryReactor(), _description(pki, 0, proxy="maybe"))


def _tlsListener(pki: TestPKI, limits: SourceLimitsPolicy) -> tuple[DICOMServerFactory, DICOMTLSFactory]:
    reactor, clock = MemoryReactor(), Clock()
    factory = DICOMServerFactory(clock=clock, sourceLimits=limits)
    serverFromString(reactor, _description(pki, 0)).listen(factory)
    return factory, reactor.tcpServers[0][1]


class _TCPTransport(StringTransport):
    """An in-memory TCP connection (the TLS layer passes ITCPTransport on)."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


def _accept(tlsFactory: DICOMTLSFactory, host: str, port: int) -> DICOMTLSProtocol | None:
    """What the listener does with a connection from C{host}: build, connect."""
    address = IPv4Address("TCP", host, port)
    protocol = tlsFactory.buildProtocol(address)
    if protocol is not None:
        protocol.makeConnection(_TCPTransport(peerAddress=address))
    return protocol


def test_handshakesJudgedAtAccept(pki: TestPKI) -> None:
    """
    A source beyond its TLS handshake rate is refused as the connection is
    accepted: no TLS layer and no DICOM protocol are built (the listener
    closes the socket); the refusal is counted. Another source is not.
    """
    factory, tlsFactory = _tlsListener(pki, SourceLimitsPolicy(handshakeRate=1, handshakeBurst=2))
    built: list[object] = []
    factory.buildProtocol = lambda addr, build=factory.buildProtocol: built.append(addr) or build(addr)  # type: ignore[method-assign]
    accepted = [_accept(tlsFactory, "192.0.2.7", n) for n in range(3)]
    assert [type(p) for p in accepted] == [DICOMTLSProtocol, DICOMTLSProtocol, type(None)]
    assert len(built) == 2
    assert factory.stats.sourceRefusals == {"handshakes": 1}
    assert isinstance(_accept(tlsFactory, "192.0.2.8", 1), DICOMTLSProtocol)


def test_judgedAtAcceptCountedOnce(pki: TestPKI) -> None:
    """
    A connection judged at accept counts once as pending (not again when
    its protocol connects), and no longer once it is closed.
    """
    limits = SourceLimitsPolicy(maxPending=1, connectionRate=0)
    factory, tlsFactory = _tlsListener(pki, limits)
    first = _accept(tlsFactory, "192.0.2.7", 1)
    assert first is not None and not first.transport.disconnecting
    assert len(factory.pending) == 1
    assert _accept(tlsFactory, "192.0.2.7", 2) is None
    assert factory.stats.sourceRefusals == {"pending": 1}
    first.connectionLost(Failure(ConnectionDone()))
    assert len(factory.pending) == 0
    assert _accept(tlsFactory, "192.0.2.7", 3) is not None


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
    neither the reactor nor the TLS modules and their TLS libraries.
    """
    code = (
        "import sys, twisted.plugins.dicomecho_tls as m; "
        "print(sorted(n for n in ('twisted.internet.reactor', 'dicomecho.security.tls', "
        "'dicomecho.server.tlsendpoint', 'OpenSSL', 'cryptography') if n in sys.modules))"
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
