"""
The TLS refusals of issue 7 against one running server (C{python -m
dicomecho --tls-key ... --tls-ca ... -ta 2}, default log level), with real
peers: each refused client leaves exactly one C{E:} line that says why, and
the server still serves DCMTK's echoscu and pynetdicom with a good
certificate afterwards. Also the plain options and C{--listen dicomtls:}
next to a plain port.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
import time
import warnings
from typing import Iterator

import pytest

from tests.support.peers import requirePynetdicom
from tests.support.processes import TIMEOUT, Server, freePort, servers, start, waitListening  # noqa: F401 (fixture)
from tests.support.peers import echoscu
from tests.support.tlscerts import TestPKI, createPKI

pytestmark = pytest.mark.peer

REFUSED = re.compile(r"^E: TLS handshake with 127\.0\.0\.1:\d+ failed: (.*)$")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return createPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def mutualServer(servers: list[Server], pki: TestPKI) -> Iterator[tuple[Server, int]]:
    port = freePort()
    server = start(
        servers,
        [sys.executable, "-m", "dicomecho", "-ta", "2", "--bind-address", "127.0.0.1",
         "--tls-key", pki.serverKey, "--tls-cert", pki.serverCert, "--tls-ca", pki.caCert, str(port)],
    )
    waitListening(port, server)
    yield server, port


def goodEchoscu(pki: TestPKI, port: int) -> None:
    done = echoscu(port, "+tls", pki.clientKey, pki.clientCert, "+cf", pki.caCert)
    assert done.returncode == 0, done.stdout + done.stderr


def refusals(server: Server) -> list[str]:
    return [m.group(1) for m in map(REFUSED.match, server.lines) if m]


def waitRefusals(server: Server, count: int) -> list[str]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = refusals(server)
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"expected {count} refusals in:\n" + "\n".join(server.lines))


def pythonClient(pki: TestPKI, port: int, *, certificate: bool = True, maximum: ssl.TLSVersion | None = None) -> None:
    """
    Handshake (and read once: TLS 1.3 reports a refused certificate late);
    errors are what the test expects, so they are swallowed.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.caCert)
    if certificate:
        context.load_cert_chain(pki.clientCert, pki.clientKey)
    if maximum is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = maximum
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.settimeout(TIMEOUT)
                tls.recv(1)
    except (ssl.SSLError, OSError):
        pass


def test_refusalsEachLogOneLine(mutualServer: tuple[Server, int], pki: TestPKI) -> None:
    """
    Plain DICOM on the TLS port, a TLS 1.0/1.1-only client, no client
    certificate, an untrusted one, and a handshake that stalls: five
    refusals, five E: lines, and good clients served in between.
    """
    server, port = mutualServer
    goodEchoscu(pki, port)

    plain = echoscu(port)
    assert plain.returncode != 0
    assert "plain DICOM (an A-ASSOCIATE-RQ) on the TLS port" in waitRefusals(server, 1)[0]

    pythonClient(pki, port, maximum=ssl.TLSVersion.TLSv1_1)
    assert "only TLS versions below 1.2" in waitRefusals(server, 2)[1]

    pythonClient(pki, port, certificate=False)
    assert "no client certificate" in waitRefusals(server, 3)[2]

    rogue = echoscu(port, "+tls", pki.rogueKey, pki.rogueCert, "+cf", pki.caCert)
    assert rogue.returncode != 0
    assert "not trusted" in waitRefusals(server, 4)[3]

    # A ClientHello that never finishes: closed by ARTIM (-ta 2).
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as stalled:
        stalled.sendall(b"\x16\x03\x01\x02\x00\x01")
        stalled.settimeout(TIMEOUT)
        try:
            while stalled.recv(4096):
                pass
        except ConnectionResetError:
            pass  # aborted mid-handshake: the unread bytes make it a reset
    assert "handshake not completed within 2 s (ACSE timeout)" in waitRefusals(server, 5)[4]

    goodEchoscu(pki, port)
    pynetdicom = requirePynetdicom()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.caCert)
    context.load_cert_chain(pki.clientCert, pki.clientKey)
    ae = pynetdicom.AE(ae_title="PYSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="ECHOSCP", tls_args=(context, "localhost"))
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    assert server.stop() == 0
    assert len(refusals(server)) == 5
    # Nothing else at the default level: one line per refusal.
    assert [line for line in server.lines if line.startswith(("E:", "W:"))] == [
        line for line in server.lines if REFUSED.match(line)
    ]


def test_subjectInTheLog(servers: list[Server], pki: TestPKI) -> None:
    """
    -v: the TLS line names version, cipher and the client certificate's
    subject; the JSON summary carries them as fields.
    """
    port = freePort()
    server = start(
        servers,
        [sys.executable, "-m", "dicomecho", "-v", "--bind-address", "127.0.0.1",
         "--tls-key", pki.serverKey, "--tls-cert", pki.serverCert, "--tls-ca", pki.caCert, str(port)],
    )
    waitListening(port, server)
    goodEchoscu(pki, port)
    server.waitFor(r"^I: TLS TLSv1\.3 from 127\.0\.0\.1:\d+ \(TLS_\w+\), client certificate: .*CN=modality1")
    server.waitFor(r"^I: Association Released")
    assert server.stop() == 0


def test_tlsNextToPlain(servers: list[Server], pki: TestPKI) -> None:
    """
    --listen dicomtls:... next to a plain port: both serve; no start-up
    warning, since the plain port is on loopback.
    """
    plainPort, tlsPort = freePort(), freePort()
    description = (
        f"dicomtls:{tlsPort}:interface=127.0.0.1:privateKey={pki.serverKey}"
        f":certKey={pki.serverCert}"
    )
    server = start(
        servers,
        [sys.executable, "-m", "dicomecho", "--bind-address", "127.0.0.1",
         "--port", str(plainPort), "--listen", description],
    )
    waitListening(plainPort, server)
    waitListening(tlsPort, server)
    assert echoscu(plainPort).returncode == 0
    # Server authentication only (no caCerts): DCMTK without a certificate.
    anonymous = echoscu(tlsPort, "+tla", "+cf", pki.caCert)
    assert anonymous.returncode == 0, anonymous.stdout + anonymous.stderr
    assert server.stop() == 0
    assert not any(line.startswith("W:") for line in server.lines)


def test_tlsBehindProxy(servers: list[Server], pki: TestPKI) -> None:
    """
    dicomtls:...:proxy=yes, as behind a load balancer passing TLS through
    (send-proxy-v2): the PROXY header comes first in the clear, then TLS.
    The client address it names is what the log shows and the allow-list
    judges, right after the handshake and before any DICOM; the balancer's
    own health check (python -m dicomecho.ping --proxy-header, a LOCAL
    header) is judged on the real connection's address.
    """
    from dicomecho.wire.pdu import AssociateAC, decodePDU, encode
    from tests.support.helpers import splitStream
    from tests.support.harness import rq

    port = freePort()
    description = (
        f"dicomtls:{port}:interface=127.0.0.1:privateKey={pki.serverKey}"
        f":certKey={pki.serverCert}:proxy=yes"
    )
    server = start(
        servers,
        [sys.executable, "-m", "dicomecho", "-v", "--listen", description,
         "--allow-network", "10.0.0.0/8", "--allow-network", "127.0.0.1/32"],
    )
    waitListening(port, server)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.caCert)

    def associateAs(source: str) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
            raw.sendall(f"PROXY TCP4 {source} 127.0.0.1 40404 {port}\r\n".encode())
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.settimeout(TIMEOUT)
                tls.sendall(encode(rq()))
                try:
                    return tls.recv(65536)
                except (ssl.SSLError, OSError):
                    return b""

    answer = associateAs("10.1.2.3")
    (ac,) = [decodePDU(*f) for f in splitStream(answer)]
    assert isinstance(ac, AssociateAC)
    server.waitFor(r"^I: TLS TLSv1\.3 from 10\.1\.2\.3:40404 ")
    assert associateAs("192.168.9.9") == b""
    server.waitFor(r"^W: Refused connection from 192\.168\.9\.9:40404: source address not allowed")
    probe = subprocess.run(
        [sys.executable, "-m", "dicomecho.ping", "--proxy-header", "--tls", "--tls-ca", pki.caCert,
         "--tls-server-name", "localhost", "-aec", "ECHOSCP", "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert probe.returncode == 0, probe.stderr
    assert server.stop() == 0
    assert not any("Received" in line and "192.168.9.9" in line for line in server.lines)
