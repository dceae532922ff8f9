# -*- test-case-name: tests.test_ping_connection -*-
"""
Tests for L{dicomecho.cli.pingconnection}: what the command says when it
cannot connect (refused, unknown host), the PROXY header, and TLS against
real dicomecho servers (mutual TLS, a refused or missing client
certificate, an untrusted server, host name checks, TLS and plain ports
mixed up).

Every wait is bounded: servers are subprocesses stopped by PID (SIGTERM,
then SIGKILL), and the pings themselves run with short deadlines.
"""

from __future__ import annotations

import sys
from typing import Iterator

import pytest

from dicomecho.cli.pingassociation import ping
from dicomecho.cli.pingconnection import makeSSLContext
from tests.support.processes import Server, freePort
from tests.support.tlscerts import TestPKI, createPKI
from tests.support.ping import oneLine, plainServer, run, startDicomecho  # noqa: F401 (plainServer: a fixture)


# --- module-scoped servers --------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return createPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tlsServer(pki: TestPKI) -> Iterator[int]:
    server, port = startDicomecho(
        "--tls-key", str(pki.serverKey), "--tls-cert", str(pki.serverCert), "--tls-ca", str(pki.caCert)
    )
    yield port
    server.stop()


# --- connecting ---------------------------------------------------------------------


def test_connectionRefused(capsys: pytest.CaptureFixture[str]) -> None:
    """
    Nothing listening: exit 3, "connection refused".
    """
    status, out, err = run(capsys, "127.0.0.1", str(freePort()), "-t", "2")
    assert (status, out) == (3, "")
    assert "connection refused" in oneLine(err)


def test_unknownHost(capsys: pytest.CaptureFixture[str]) -> None:
    """
    A name that does not resolve (RFC 6761 reserves .invalid): exit 3.
    """
    status, _, err = run(capsys, "no-such-host.invalid", "104", "-t", "5")
    assert status == 3
    assert "cannot resolve host" in oneLine(err)


@pytest.mark.peer
def test_dicomechoTLSPortPlain(tlsServer: int, capsys: pytest.CaptureFixture[str]) -> None:
    """
    Plain DICOM to a TLS port: exit 5, the line asks whether it expects TLS.
    """
    status, _, err = run(capsys, "127.0.0.1", str(tlsServer), "-t", "5")
    assert status == 5
    assert "expect TLS" in oneLine(err)


@pytest.mark.peer
def test_proxyHeader(capsys: pytest.CaptureFixture[str]) -> None:
    """
    A server listening behind a load balancer (haproxy:) is reached with
    --proxy-header (PROXY v2, LOCAL); without it, it closes: exit 5.
    """
    port = freePort()
    server = Server(
        [sys.executable, "-m", "dicomecho", "-v", "--listen", f"haproxy:tcp:{port}:interface=127.0.0.1"]
    )
    try:
        server.waitFor("Listening on")
        assert run(capsys, "--proxy-header", "127.0.0.1", str(port), "-t", "5")[:3] == (0, "", "")
        status, _, err = run(capsys, "127.0.0.1", str(port), "-t", "5")
        assert status == 5
        assert "PROXY header" in oneLine(err)
    finally:
        server.stop()


# --- TLS --------------------------------------------------------------------------------


def tlsArguments(pki: TestPKI, certificate: bool = True) -> list[str]:
    arguments = ["--tls", "--tls-ca", str(pki.caCert)]
    if certificate:
        arguments += ["--tls-cert", str(pki.clientCert), "--tls-key", str(pki.clientKey)]
    return arguments


@pytest.mark.peer
def test_mutualTLS(tlsServer: int, pki: TestPKI, capsys: pytest.CaptureFixture[str]) -> None:
    """
    With the CA and a client certificate: exit 0; L{ping} reports the TLS
    version.
    """
    assert run(capsys, "127.0.0.1", str(tlsServer), *tlsArguments(pki))[:3] == (0, "", "")
    context = makeSSLContext(str(pki.caCert), str(pki.clientCert), str(pki.clientKey))
    result = ping("127.0.0.1", tlsServer, timeout=5, sslContext=context)
    assert result.ok, result.message
    assert result.tlsVersion in ("TLSv1.2", "TLSv1.3")


@pytest.mark.peer
def test_tlsWithoutClientCertificate(
    tlsServer: int, pki: TestPKI, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    No client certificate for a server that requires one: exit 3, and the
    line says the certificate was refused (TLS 1.3 reports it on the first
    read, after the client's handshake has completed).
    """
    status, _, err = run(capsys, "127.0.0.1", str(tlsServer), "-t", "5", *tlsArguments(pki, False))
    assert status == 3
    assert "refused our client certificate" in oneLine(err)


@pytest.mark.peer
def test_tlsServerNotTrusted(tlsServer: int, capsys: pytest.CaptureFixture[str]) -> None:
    """
    --tls with the system's CAs only: the test server is not trusted, exit 3.
    """
    status, _, err = run(capsys, "127.0.0.1", str(tlsServer), "-t", "5", "--tls")
    assert status == 3
    assert "TLS handshake failed: server certificate not trusted" in oneLine(err)


@pytest.mark.peer
def test_tlsHostName(tlsServer: int, pki: TestPKI, capsys: pytest.CaptureFixture[str]) -> None:
    """
    The server certificate is checked against --tls-server-name (default:
    HOST) unless --tls-no-verify-host.
    """
    arguments = ["127.0.0.1", str(tlsServer), "-t", "5", *tlsArguments(pki)]
    status, _, err = run(capsys, *arguments, "--tls-server-name", "elsewhere.example")
    assert status == 3
    assert "elsewhere.example" in oneLine(err)
    assert run(capsys, *arguments, "--tls-server-name", "localhost")[0] == 0
    assert run(capsys, *arguments, "--tls-server-name", "elsewhere.example", "--tls-no-verify-host")[0] == 0


@pytest.mark.peer
def test_tlsToPlainServer(plainServer: int, pki: TestPKI, capsys: pytest.CaptureFixture[str]) -> None:
    """
    TLS to a plain DICOM port: exit 3, "TLS handshake failed".
    """
    status, _, err = run(capsys, "127.0.0.1", str(plainServer), "-t", "5", *tlsArguments(pki))
    assert status == 3
    assert "TLS handshake failed" in oneLine(err)


