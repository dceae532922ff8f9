"""
PROXY protocol headers written in pieces over real loopback (issue 13
§3), against servers started as a user would: C{python -m dicomecho} or
C{twistd -n dicomecho} with C{--listen haproxy:tcp:...}, and
C{--listen dicomtls:...:proxy=yes}.

Every header is written one byte per TCP segment (C{TCP_NODELAY}, 20 ms
apart); the association that follows is a real one: our own codec, DCMTK's
echoscu and pynetdicom through a relay that writes the header so, and
echoscu through a real HAProxy. The allow-lists admit only the clients the
headers name (never 127.0.0.1, the balancer), so an accepted association
proves the header was read; the JSON log's summary names the client.
"""

from __future__ import annotations

import json
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from dicomecho.wire.framer import PDUFramer
from dicomecho.wire.pdu import AssociateAC, PDataTF, ReleaseRP, ReleaseRQ, decodePDU, encode
from tests.support.peers import requireEchoscu, requirePynetdicom
from tests.support.processes import BIN, TIMEOUT, Server, freePort, servers, start  # noqa: F401 (fixture)
from tests.support.proxyheaders import V2_SIGNATURE, v1Header, v2Header
from tests.support.harness import echo, rq
from tests.support.tlscerts import TestPKI, createPKI

pytestmark = pytest.mark.peer

#: Seconds between the bytes of a header.
GAP = 0.02
#: The networks the servers admit: the clients the headers name.
ALLOWED = ["--allow-network", "10.0.0.0/8", "--allow-network", "2001:db8::/32"]

HEADERS = [
    pytest.param(v1Header, "10.1.2.3", 40001, id="v1-ipv4"),
    pytest.param(v1Header, "2001:db8::7", 40002, id="v1-ipv6"),
    pytest.param(v2Header, "10.1.2.3", 40003, id="v2-ipv4"),
    pytest.param(v2Header, "2001:db8::7", 40004, id="v2-ipv6"),
]


# --- helpers ----------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def slowly(sock: socket.socket, data: bytes) -> None:
    """
    Write C{data} one byte per segment, L{GAP} seconds apart.
    """
    for byte in data:
        sock.sendall(bytes((byte,)))
        time.sleep(GAP)


def readPDUs(sock: Any, count: int) -> list[Any]:
    """
    Read until C{count} PDUs have arrived (or the peer closes, or
    L{TIMEOUT}).
    """
    framer, pdus = PDUFramer(maxPDataLength=0), []
    deadline = time.monotonic() + TIMEOUT
    while len(pdus) < count and time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        framer.receiveData(data)
        while (frame := framer.nextFrame()) is not None:
            pdus.append(decodePDU(*frame))
    return pdus


def closedByServer(sock: socket.socket) -> bool:
    """
    Whether the server closes the connection without sending anything
    (waiting at most L{TIMEOUT}).
    """
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def summaries(server: Server) -> list[dict[str, Any]]:
    """
    The association summaries in a JSON-logging server's output so far.
    """
    records = [json.loads(line) for line in list(server.lines) if line.startswith("{")]
    return [r for r in records if r.get("dicomEvent") == "association-summary"]


def summaryFor(server: Server, port: int) -> dict[str, Any]:
    """
    Wait (bounded) for the summary of the association from source port
    C{port} (as the header names it).
    """
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = [s for s in summaries(server) if s.get("peerPort") == port]
        if found:
            (summary,) = found
            return summary
        time.sleep(0.05)
    raise AssertionError(f"no summary for port {port} in:\n{server.output()}")


@contextmanager
def serving(args: list[str], ready: str) -> Iterator[Server]:
    """
    A server for a whole module: started, awaited until C{ready} is
    logged, stopped (by PID) after.
    """
    server = Server(args)
    try:
        server.waitFor(ready)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def jsonServer() -> Iterator[tuple[Server, int]]:
    """
    twistd -n dicomecho -v, JSON logs, behind haproxy: on 127.0.0.1.
    """
    port = freePort()
    args = [str(BIN / "twistd"), "-n", "--pidfile=", "--logger", "dicomecho.logs.jsonObserver",
            "dicomecho", "-v", "--listen", f"haproxy:tcp:{port}:interface=127.0.0.1", *ALLOWED]
    with serving(args, r'"dicomEvent": "listening"') as server:
        yield server, port


@pytest.fixture(scope="module")
def consoleServer() -> Iterator[tuple[Server, int]]:
    """
    python -m dicomecho -d -ta 2 (echoscp's lines) behind haproxy: on
    127.0.0.1.
    """
    port = freePort()
    args = [sys.executable, "-m", "dicomecho", "-d", "-ta", "2",
            "--listen", f"haproxy:tcp:{port}:interface=127.0.0.1", *ALLOWED]
    with serving(args, r"Listening on haproxy:") as server:
        yield server, port


def linesAbout(server: Server, sock: socket.socket) -> list[str]:
    """
    The server's lines that name C{sock}'s end (the balancer, as the
    server sees it before a header is read).
    """
    peer = "127.0.0.1:%d" % sock.getsockname()[1]
    return [line for line in list(server.lines) if peer in line]


def waitLines(server: Server, sock: socket.socket, pattern: str) -> list[str]:
    """
    Wait (bounded) for a line about C{sock} matching C{pattern}, then a
    little more (for any line that would wrongly follow it); return the
    lines about C{sock}.
    """
    deadline = time.monotonic() + TIMEOUT
    while not any(re.search(pattern, line) for line in linesAbout(server, sock)):
        assert time.monotonic() < deadline, f"no line {pattern!r} in:\n{server.output()}"
        time.sleep(0.05)
    time.sleep(0.3)
    return linesAbout(server, sock)


# --- haproxy: with our own codec ------------------------------------------------------


@pytest.mark.parametrize("header, client, port", HEADERS)
def test_headerByteByByte(jsonServer: tuple[Server, int], header: Any, client: str, port: int) -> None:
    """
    The header one byte per segment, then an association (request, echo,
    release): served, and the summary names the client of the header.
    """
    server, listening = jsonServer
    with connect(listening) as sock:
        slowly(sock, header(client, port))
        sock.sendall(encode(rq()))
        (ac,) = readPDUs(sock, 1)
        assert isinstance(ac, AssociateAC)
        sock.sendall(encode(echo(1)))
        (answer,) = readPDUs(sock, 1)
        assert isinstance(answer, PDataTF)
        sock.sendall(encode(ReleaseRQ()))
        assert readPDUs(sock, 1) == [ReleaseRP()]
    summary = summaryFor(server, port)
    assert (summary["peerHost"], summary["outcome"], summary["messages"]) == (client, "released", 1)
    assert summary["peer"] == (f"[{client}]:{port}" if ":" in client else f"{client}:{port}")


INVALID = [
    pytest.param(b"G", "wrong signature: b'G", id="wrong-signature"),
    pytest.param(b"PROXY TCP4 " + b"1" * 120, "v1 line longer than 107 bytes", id="v1-too-long"),
    pytest.param(V2_SIGNATURE + b"\x21\x11\x10\x00", "v2 address length 4096 is beyond", id="v2-too-long"),
]


@pytest.mark.parametrize("data, why", INVALID)
def test_invalidHeaderOneErrorLine(consoleServer: tuple[Server, int], data: bytes, why: str) -> None:
    """
    An invalid header is closed at once with one E: line naming the
    balancer and the fault; the A-ASSOCIATE-RQ after it is not answered.
    """
    server, port = consoleServer
    with connect(port) as sock:
        sock.sendall(data)
        try:
            sock.sendall(encode(rq()))
        except OSError:
            pass  # already closed
        assert closedByServer(sock)
        lines = waitLines(server, sock, r"^E: Invalid PROXY header")
    (line,) = lines
    assert re.match(r"^E: Invalid PROXY header from 127\.0\.0\.1:\d+: ", line)
    assert why in line


def test_incompleteHeaderClosedByARTIM(consoleServer: tuple[Server, int]) -> None:
    """
    A header that stops short is closed by ARTIM (-ta 2), with one line.
    """
    server, port = consoleServer
    started = time.monotonic()
    with connect(port) as sock:
        slowly(sock, b"PROXY TCP4 10.")
        assert closedByServer(sock)
        assert time.monotonic() - started > 1.9
        lines = waitLines(server, sock, r"^D: Connection from 127\.0\.0\.1:\d+ closed: ")
    (line,) = lines
    # The wording is tests/test_proxy.py's (test_incompleteHeaderSaysSo).
    assert line.startswith("D: Connection from ")


# --- haproxy: with real SCUs --------------------------------------------------------------


class SlowRelay:
    """
    A one-connection relay on 127.0.0.1 that, once its client connects,
    opens a connection to the server, writes C{header} there one byte per
    segment, then relays both ways until either side closes.
    """

    def __init__(self, server: int, header: bytes) -> None:
        self.server, self.header = server, header
        self.error: BaseException | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            client, _ = self.listener.accept()
            with client, connect(self.server) as upstream:
                slowly(upstream, self.header)
                self._pump(client, upstream)
        except BaseException as e:  # re-raised by join()
            self.error = e
        finally:
            self.listener.close()

    @staticmethod
    def _pump(client: socket.socket, upstream: socket.socket) -> None:
        other = {client: upstream, upstream: client}
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            readable, _, _ = select.select(list(other), [], [], 0.2)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    return
                other[sock].sendall(data)

    def join(self) -> None:
        self.thread.join(TIMEOUT + 5)
        assert not self.thread.is_alive(), "relay still running"
        if self.error is not None:
            raise self.error


def dcmtkEcho(port: int) -> None:
    done = subprocess.run(
        [requireEchoscu(), "-to", "5", "-ta", "10", "-td", "10", "-aet", "MYSCU", "-aec", "ECHOSCP",
         "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=TIMEOUT + 10, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def pynetdicomEcho(port: int) -> None:
    pynetdicom = requirePynetdicom()
    ae = pynetdicom.AE(ae_title="MYSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="ECHOSCP")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()


@pytest.mark.parametrize(
    "scu, header, port",
    [
        pytest.param(dcmtkEcho, v2Header("10.9.8.7", 41001), 41001, id="echoscu-v2"),
        pytest.param(pynetdicomEcho, v1Header("2001:db8::99", 41002), 41002, id="pynetdicom-v1"),
    ],
)
def test_realSCUAfterSlowHeader(
    jsonServer: tuple[Server, int], scu: Callable[[int], None], header: bytes, port: int
) -> None:
    """
    A real SCU whose connection starts with a header written byte by
    byte (by L{SlowRelay}): it is served, as the client the header names.
    """
    server, listening = jsonServer
    requireEchoscu() if scu is dcmtkEcho else requirePynetdicom()
    relay = SlowRelay(listening, header)
    scu(relay.port)
    relay.join()
    summary = summaryFor(server, port)
    assert (summary["callingAETitle"], summary["outcome"], summary["messages"]) == ("MYSCU", "released", 1)
    assert summary["peerHost"] in ("10.9.8.7", "2001:db8::99")


def test_echoscuThroughHAProxy(servers: list[Server], tmp_path: Path) -> None:
    """
    DCMTK's echoscu through a real HAProxy (send-proxy-v2, the example
    configuration) to --listen haproxy:tcp:...: served.
    """
    from tests.support.haproxy import localConfig, requireHAProxy

    haproxy = requireHAProxy()
    frontend, backend = freePort(), freePort()
    dicom = start(
        servers,
        [sys.executable, "-m", "dicomecho", "-v", "--listen", f"haproxy:tcp:{backend}:interface=127.0.0.1",
         "--allow-network", "127.0.0.1/32"],
    )
    dicom.waitFor(r"Listening on haproxy:")
    start(servers, [haproxy, "-db", "-f", str(localConfig(tmp_path, frontend, backend))])
    # HAProxy's external check (a C-ECHO with a LOCAL header) marks it up.
    dicom.waitFor(r"^I: Association Released")
    since = len(dicom.lines)
    dcmtkEcho(frontend)
    dicom.waitFor(r"^I: Received Echo Request", since=since)
    assert not any(line.startswith("E:") for line in dicom.lines)


# --- dicomtls:...:proxy=yes ------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return createPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tlsServer(pki: TestPKI) -> Iterator[tuple[Server, int]]:
    """
    python -m dicomecho -v --listen dicomtls:...:proxy=yes on 127.0.0.1.
    """
    port = freePort()
    description = (
        f"dicomtls:{port}:interface=127.0.0.1:privateKey={pki.serverKey}"
        f":certKey={pki.serverCert}:proxy=yes"
    )
    args = [sys.executable, "-m", "dicomecho", "-v", "--listen", description, *ALLOWED]
    with serving(args, r"Listening on dicomtls:") as server:
        yield server, port


@pytest.mark.parametrize(
    "header, peer",
    [
        pytest.param(v1Header("10.4.5.6", 42001), "10.4.5.6:42001", id="v1"),
        pytest.param(v2Header("2001:db8::5", 42002), r"\[2001:db8::5\]:42002", id="v2"),
    ],
)
def test_tlsAfterSlowHeader(tlsServer: tuple[Server, int], pki: TestPKI, header: bytes, peer: str) -> None:
    """
    dicomtls:...:proxy=yes: the header byte by byte, then the TLS
    handshake and an A-ASSOCIATE-RQ: accepted, and the TLS line names the
    client of the header.
    """
    server, port = tlsServer
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.caCert)
    with connect(port) as raw:
        slowly(raw, header)
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(encode(rq()))
            (ac,) = readPDUs(tls, 1)
    assert isinstance(ac, AssociateAC)
    server.waitFor(rf"^I: TLS TLSv1\.\d from {peer} ")


def test_tlsWithoutHeaderOneErrorLine(tlsServer: tuple[Server, int], pki: TestPKI) -> None:
    """
    dicomtls:...:proxy=yes and a client that starts TLS without a header:
    one E: line, the connection closed.
    """
    server, port = tlsServer
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.caCert)
    with connect(port) as raw:
        ends = raw.getsockname()[1]
        with pytest.raises((ssl.SSLError, OSError)):
            context.wrap_socket(raw, server_hostname="localhost").close()
    match = server.waitFor(rf"^E: Invalid PROXY header from 127\.0\.0\.1:{ends}: wrong signature: b'\\x16\\x03")
    time.sleep(0.3)
    assert [line for line in server.lines if f"127.0.0.1:{ends}" in line] == [match.string]
