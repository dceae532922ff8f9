"""
The commands a user runs, run as subprocesses exactly as a user would:
C{twistd -n dicomecho}, C{python -m dicomecho}, the C{dicomecho} script and
the example C{.tac}; echoed with DCMTK's echoscu, their log lines checked
against echoscp's 3.0.4 output, their exits on signals and errors.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from dicomecho import __version__
from dicomecho.association.negotiation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from tests.support.peers import echoscu
from tests.support.processes import BIN, LISTENING, ROOT, TIMEOUT, Server, freePort, servers, start, tcpSockets  # noqa: F401 (fixture)

pytestmark = pytest.mark.peer


def stoppedCleanly(status: int, sig: int = signal.SIGTERM) -> bool:
    """
    A graceful stop exits 0, under twistd (which would otherwise re-raise
    the signal) as under python -m.
    """
    return status == 0


TWISTD = [str(BIN / "twistd"), "-n", "--pidfile="]
PYTHON_M = [sys.executable, "-m", "dicomecho"]


#: The association's last line at -v/-d (not echoscp's), for echoscu -aet MYSCU.
SUMMARY_LINE = (
    r"I: Association from 127\.0\.0\.1:\d+: MYSCU -> ECHOSCP, released after \d+\.\d{{3}} s, {messages}"
)


def settled(server: Server, last: str) -> list[str]:
    """
    The server's lines once C{last} has been logged.
    """
    server.waitFor(re.escape(last))
    return list(server.lines)


def test_twistdEchoscpLines(servers: list[Server]) -> None:
    """
    twistd -n dicomecho -v with dicomecho's console observer prints
    exactly echoscp's -v lines for a DCMTK echo, after the
    line saying where it listens.
    """
    server = start(
        servers,
        TWISTD + ["--logger", "dicomecho.logs.consoleObserver", "dicomecho",
                  "--port", "tcp:0:interface=127.0.0.1", "-v"],
    )
    port = server.port()
    result = echoscu(port)
    assert result.returncode == 0, result.stderr
    lines = settled(server, "I: Association from ")
    assert lines[-4:-1] == [
        "I: Accepting Association",
        "I: Received Echo Request (MsgID 1)",
        "I: Association Released",
    ]
    assert re.fullmatch(SUMMARY_LINE.format(messages="1 message"), lines[-1]), lines
    assert lines[0].startswith("I: Listening on tcp:0:interface=127.0.0.1 (127.0.0.1:")
    assert stoppedCleanly(server.stop())


def test_twistdDefaultObserver(servers: list[Server]) -> None:
    """
    Under twistd's own observer the same events appear, with twistd's
    timestamps, in the dicomecho namespace.
    """
    server = start(servers, TWISTD + ["dicomecho", "-p", "tcp:0:interface=127.0.0.1", "-v"])
    port = server.port()
    assert echoscu(port).returncode == 0
    server.waitFor(r"\[dicomecho#info\] Association Released")
    assert any("[dicomecho#info] Received Echo Request (MsgID 1)" in l for l in server.lines)
    assert stoppedCleanly(server.stop())


def test_defaultModeIsQuiet(servers: list[Server]) -> None:
    """
    Without -v only errors print: a normal echo prints nothing (echoscp's
    default), but a non-DICOM client's bytes give one E: line naming it.
    """
    server = start(servers, PYTHON_M + ["-ba", "127.0.0.1", "--listen", "tcp:0:interface=127.0.0.1"])
    # The listening line is info-level, so find the port from the socket list.
    port = _listeningPort(server)
    assert echoscu(port).returncode == 0
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(10) == bytes.fromhex("07000000000400000201")
    server.waitFor("^E: ")
    errors = [l for l in server.lines if l]
    assert len(errors) == 1 and "looks like an HTTP request" in errors[0], errors
    assert server.stop() == 0


def _listeningPort(server: Server) -> int:
    """
    The TCP port the server process listens on, from /proc.
    """
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for local, _, state in tcpSockets(server.process.pid):
            if state == "0A":
                return int(local.split(":")[1], 16)
        time.sleep(0.05)
    raise AssertionError(f"process {server.process.pid} has no listening TCP socket")


def test_pythonMEchoscpCommandLine(servers: list[Server]) -> None:
    """
    python -m dicomecho takes echoscp's command line (options, then the
    port) and prints echoscp's -v lines.
    """
    server = start(servers, PYTHON_M + ["-aet", "ECHOSCP", "-ta", "30", "-x=", "-ba", "127.0.0.1", "-v", "0"])
    port = server.port()
    result = echoscu(port, "--repeat", "2")
    assert result.returncode == 0
    lines = settled(server, "I: Association from ")
    assert lines[1:-1] == [
        "I: Accepting Association",
        "I: Received Echo Request (MsgID 1)",
        "I: Received Echo Request (MsgID 2)",
        "I: Association Released",
    ]
    assert re.fullmatch(SUMMARY_LINE.format(messages="2 messages"), lines[-1]), lines
    assert server.stop(signal.SIGINT) == 0


def test_debugBlocks(servers: list[Server]) -> None:
    """
    -d prints echoscp 3.0.4's -d blocks with true values: our implementation
    UID and version, the real responding AE title, and no pydicom line.
    """
    server = start(servers, PYTHON_M + ["-d", "-ba", "127.0.0.1", "0"])
    port = server.port()
    assert echoscu(port).returncode == 0
    lines = settled(server, "I: Association from ")
    assert re.fullmatch(SUMMARY_LINE.format(messages="1 message"), lines[-1]), lines
    lines = lines[:-1]
    expected = [
        f"D: dicomecho v{__version__}",
        "D: ",
        "D: Request Parameters:",
        "D: ======================= INCOMING A-ASSOCIATE-RQ PDU ========================",
        "D: Their Implementation Class UID:      1.2.276.0.7230010.3.0.3.6.7",
        "D: Their Implementation Version Name:   OFFIS_DCMTK_367",
        "D: Application Context Name:    1.2.840.10008.3.1.1.1",
        "D: Calling Application Name:    MYSCU",
        "D: Called Application Name:     ECHOSCP",
        "D: Their Max PDU Receive Size:  16384",
        "D: Presentation Context:",
        "D:   Context ID:        1 (Proposed)",
        "D:     Abstract Syntax: =Verification SOP Class",
        "D:     Proposed SCP/SCU Role: Default",
        "D:     Proposed Transfer Syntax:",
        "D:       =Implicit VR Little Endian",
        "D: Requested Extended Negotiation: None",
        "D: Requested Common Extended Negotiation: None",
        "D: Requested Asynchronous Operations Window Negotiation: None",
        "D: Requested User Identity Negotiation: None",
        "D: ========================== END A-ASSOCIATE-RQ PDU ==========================",
        "I: Accepting Association",
        "D: Accept Parameters:",
        "D: ======================= OUTGOING A-ASSOCIATE-AC PDU ========================",
        f"D: Our Implementation Class UID:      {IMPLEMENTATION_CLASS_UID}",
        f"D: Our Implementation Version Name:   {IMPLEMENTATION_VERSION_NAME}",
        "D: Application Context Name:    1.2.840.10008.3.1.1.1",
        "D: Responding Application Name: ECHOSCP",
        "D: Our Max PDU Receive Size:    16382",
        "D: Presentation Contexts:",
        "D:   Context ID:        1 (Accepted)",
        "D:     Abstract Syntax: =Verification SOP Class",
        "D:     Accepted SCP/SCU Role: Default",
        "D:     Accepted Transfer Syntax: =Implicit VR Little Endian",
        "D: Accepted Extended Negotiation: None",
        "D: Accepted Asynchronous Operations Window Negotiation: None",
        "D: User Identity Negotiation Response: None",
        "D: ========================== END A-ASSOCIATE-AC PDU ==========================",
        "I: Received Echo Request (MsgID 1)",
        "D: ========================== INCOMING DIMSE MESSAGE ==========================",
        "D: Message Type                  : C-ECHO RQ",
        "D: Presentation Context ID       : 1",
        "D: Message ID                    : 1",
        "D: Data Set                      : None",
        "D: ============================ END DIMSE MESSAGE =============================",
        "I: Association Released",
    ]
    body = [l for l in lines if not LISTENING.search(l) and "Connection from" not in l]
    assert body == expected
    assert not any("pydicom.read_dataset" in l for l in lines)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("command", ["python -m", "twistd"])
def test_signalsExitCleanly(servers: list[Server], sig: int, command: str) -> None:
    """
    SIGINT and SIGTERM stop an idle server promptly with exit status 0,
    under python -m as under twistd.
    """
    args = (PYTHON_M + ["-v", "-ba", "127.0.0.1", "0"]) if command == "python -m" else (
        TWISTD + ["dicomecho", "-v", "--port", "tcp:0:interface=127.0.0.1"]
    )
    server = start(servers, args)
    server.port()
    began = time.monotonic()
    assert server.stop(sig) == 0
    assert time.monotonic() - began < 5


def test_exitStatuses(servers: list[Server]) -> None:
    """
    python -m dicomecho: --version prints and exits 0, a usage error exits 2
    with echoscp-style "error:" text, a port already in use exits 1.
    """
    version = subprocess.run(PYTHON_M + ["--version"], capture_output=True, text=True, timeout=TIMEOUT)
    assert (version.returncode, version.stdout.strip()) == (0, f"dicomecho v{__version__}")
    usage = subprocess.run(PYTHON_M + ["-v", "-d", "11112"], capture_output=True, text=True, timeout=TIMEOUT)
    assert usage.returncode == 2
    assert "error: argument -d/--debug: not allowed with argument -v/--verbose" in usage.stderr
    assert "Traceback" not in usage.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = subprocess.run(
            PYTHON_M + ["-ba", "127.0.0.1", str(taken.getsockname()[1])],
            capture_output=True, text=True, timeout=TIMEOUT,
        )
    assert busy.returncode == 1
    assert "cannot listen" in busy.stderr and "Traceback" not in busy.stderr


def test_consoleScript() -> None:
    """
    The installed dicomecho console script runs the same command line.
    """
    result = subprocess.run([str(BIN / "dicomecho"), "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    assert (result.returncode, result.stdout.strip()) == (0, f"dicomecho v{__version__}")


def test_twistdListsPlugin() -> None:
    """
    After installation twistd --help lists the dicomecho subcommand.
    """
    result = subprocess.run([str(BIN / "twistd"), "--help"], capture_output=True, text=True, timeout=TIMEOUT, cwd="/")
    assert re.search(r"^\s+dicomecho\s+DICOM Verification SCP", result.stdout, re.M), result.stdout


def test_jsonObserverSummary(servers: list[Server]) -> None:
    """
    twistd --logger dicomecho.logs.jsonObserver writes one JSON object per
    line; each association yields a summary with peer, AE titles, context,
    outcome and duration, and no object or secret leaks into it.
    """
    server = start(servers, TWISTD + ["--logger", "dicomecho.logs.jsonObserver", "dicomecho", "-v", "--port", "tcp:0:interface=127.0.0.1"])
    match = server.waitFor(r'"dicomEvent": "listening"')
    port = json.loads(match.string)["port"]
    assert echoscu(port).returncode == 0
    line = server.waitFor(r'"dicomEvent": "association-summary"').string
    summary = json.loads(line)
    assert summary["callingAETitle"] == "MYSCU" and summary["calledAETitle"] == "ECHOSCP"
    assert summary["peerHost"] == "127.0.0.1" and summary["outcome"] == "released"
    assert summary["contexts"] == ["1:1.2.840.10008.1.1/1.2.840.10008.1.2"]
    assert summary["messages"] == 1 and summary["durationSeconds"] >= 0
    assert stoppedCleanly(server.stop())


def test_tacComposition(servers: list[Server]) -> None:
    """
    The example .tac runs dicomecho, a twisted.web health page, the
    metrics resource and the live page in one process; all answer, and the
    metrics and the live page's API count the echo.
    """
    dicomPort, webPort = freePort(), freePort()
    server = start(
        servers,
        TWISTD + ["-y", str(ROOT / "examples" / "dicomecho_web.tac")],
        env={
            "DICOMECHO_LISTEN": f"tcp:{dicomPort}:interface=127.0.0.1",
            "HEALTH_LISTEN": f"tcp:{webPort}:interface=127.0.0.1",
        },
    )
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{webPort}/health", timeout=5) as r:
                assert r.read() == b"ok\n"
            break
        except OSError:
            if time.monotonic() > deadline or server.process.poll() is not None:
                raise
            time.sleep(0.1)
    result = echoscu(dicomPort, "-v")
    assert result.returncode == 0 and "Received Echo Response (Success)" in result.stderr + result.stdout
    server.waitFor("I: Association Released")
    with urllib.request.urlopen(f"http://127.0.0.1:{webPort}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert "dicomecho_associations_released_total 1.0" in metrics
    assert "dicomecho_echoes_answered_total 1.0" in metrics
    with urllib.request.urlopen(f"http://127.0.0.1:{webPort}/live/api/associations", timeout=5) as r:
        (association,) = json.loads(r.read())["associations"]
    assert association["outcome"] == "released" and association["product"].startswith("DCMTK")
    with urllib.request.urlopen(f"http://127.0.0.1:{webPort}/live/", timeout=5) as r:
        assert b'<link rel="stylesheet" href="static/page.css">' in r.read()
    # A hand-written .tac keeps twistd's own convention for signals (it
    # re-raises SIGTERM after stopping) unless it uses DICOMEchoService.
    assert server.stop() in (0, -signal.SIGTERM)


def test_bindAddresses(servers: list[Server]) -> None:
    """
    -ba :: listens on IPv6 and IPv4 (pynetdicom over ::1, echoscu over
    127.0.0.1, since DCMTK 3.6.7's echoscu takes no IPv6 address); -ba
    localhost resolves the host name.
    """
    from tests.support.peers import requirePynetdicom

    requirePynetdicom()
    from pynetdicom import AE

    dual = start(servers, PYTHON_M + ["-v", "-ba", "::", "0"])
    port = dual.port()
    assert dual.waitFor(LISTENING).string.startswith("I: Listening on tcp6:0:interface=\\:\\::backlog=128 ([::]:")
    ae = AE()
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 10
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("::1", port)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    assert echoscu(port).returncode == 0
    named = start(servers, PYTHON_M + ["-v", "-ba", "localhost", "0"])
    assert "(127.0.0.1:" in named.waitFor(LISTENING).string
    assert echoscu(named.port()).returncode == 0


def _associate(port: int) -> socket.socket:
    """
    A raw requestor holding an established association (DCMTK's captured
    A-ASSOCIATE-RQ), its A-ASSOCIATE-AC read.
    """
    from tests.support.helpers import fixtureBytes, splitStream

    rq = fixtureBytes("dcmtk_echoscu_default", "c2s")
    first = splitStream(rq)[0]
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(rq[: 6 + len(first.body)])
    header = _readExactly(sock, 6)
    assert header[0] == 0x02
    _readExactly(sock, int.from_bytes(header[2:], "big"))
    return sock


def _readExactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def _readUntilClosed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("command", ["python -m", "twistd"])
def test_gracefulShutdown(servers: list[Server], command: str) -> None:
    """
    On SIGTERM the server stops listening at once, lets an established
    association run for --shutdown-grace, then sends it A-ABORT (0, 0),
    closes it and exits 0 within grace + 1 s.
    """
    options = ["-v", "--shutdown-grace", "2"]
    args = (PYTHON_M + options + ["-ba", "127.0.0.1", "0"]) if command == "python -m" else (
        TWISTD + ["--logger", "dicomecho.logs.consoleObserver", "dicomecho", *options,
                  "--port", "tcp:0:interface=127.0.0.1"]
    )
    server = start(servers, args)
    port = server.port()
    held = _associate(port)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.waitFor("Shutting down")
    # The grace period runs from when the server handled the signal, which
    # its line says (a loaded machine may take a while to get there).
    began = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    rest = _readUntilClosed(held)
    held.close()
    ended = time.monotonic()
    assert rest.endswith(bytes.fromhex("07000000000400000000"))
    assert ended - signalled > 1.8 and ended - began < 3.0
    assert server.process.wait(timeout=TIMEOUT) == 0
    assert time.monotonic() - began < 3.0 + 0.5
    assert any("I: Aborting Association" in line for line in server.lines)


def test_shutdownWaitsForRelease(servers: list[Server]) -> None:
    """
    An association that releases during the grace period ends normally
    (A-RELEASE-RP, no abort) and the server exits 0 right after it.
    """
    server = start(servers, TWISTD + ["dicomecho", "--shutdown-grace", "10", "--port", "tcp:0:interface=127.0.0.1"])
    port = _listeningPort(server)
    held = _associate(port)
    server.process.send_signal(signal.SIGTERM)
    _waitRefused(port)  # the signal has been handled: it stops listening first
    began = time.monotonic()
    held.sendall(bytes.fromhex("05000000000400000000"))
    assert _readUntilClosed(held) == bytes.fromhex("06000000000400000000")
    held.close()
    assert server.process.wait(timeout=TIMEOUT) == 0
    assert time.monotonic() - began < 2


def _waitRefused(port: int) -> None:
    """
    Wait (bounded) until nothing listens on 127.0.0.1:C{port} any more.
    """
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.02)
    raise AssertionError(f"port {port} still accepts connections")


def test_repeatedEchoesAtTheDefaultLevel(servers: list[Server]) -> None:
    """
    At the default level (errors only) known requests are answered from the
    acceptance cache and repeated echoes are replayed (README, Performance):
    DCMTK's echoscu and pynetdicom, each on two associations of many
    echoes, get a successful C-ECHO-RSP to every request, and the server
    logs nothing.
    """
    from tests.support.peers import requirePynetdicom

    requirePynetdicom()
    from pynetdicom import AE

    server = start(servers, PYTHON_M + ["-ba", "127.0.0.1", "--listen", "tcp:0:interface=127.0.0.1"])
    port = _listeningPort(server)
    for _ in range(2):
        result = echoscu(port, "-v", "--repeat", "25")
        assert result.returncode == 0, result.stderr
        output = result.stdout + result.stderr
        assert output.count("I: Received Echo Response (Success)") == 25, output
    ae = AE()
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 10
    ae.add_requested_context("1.2.840.10008.1.1")
    for _ in range(2):
        assoc = ae.associate("127.0.0.1", port)
        assert assoc.is_established
        statuses = [assoc.send_c_echo(msg_id=messageID).Status for messageID in range(1, 26)]
        assert statuses == [0] * 25
        assoc.release()
    assert server.stop() == 0
    assert [line for line in server.lines if line] == []


#: Each entry point and the usage line its --help and usage errors show.
USAGE_LINES = [
    ([sys.executable, "-m", "dicomecho"], "python -m dicomecho", "usage: python -m dicomecho [options] [port]"),
    ([str(BIN / "dicomecho")], "dicomecho", "usage: dicomecho [options] [port]"),
    ([str(BIN / "twistd"), "dicomecho"], "twistd dicomecho",
     "usage: twistd [options] dicomecho [options] [port]"),
]


@pytest.mark.parametrize("command, name, usage", USAGE_LINES, ids=[u[1] for u in USAGE_LINES])
def test_helpAndUsageErrors(command: list[str], name: str, usage: str) -> None:
    """
    Each entry point's --help (and -h) starts with its usage line and
    lists echoscp's groups; a second port, also after --, is a usage error:
    the usage line and one error line on stderr, exit status 2.
    """
    for flag in ("--help", "-h"):
        shown = subprocess.run(command + [flag], capture_output=True, text=True, timeout=TIMEOUT, cwd="/")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith(usage + "\n")
        assert "\nGeneral Options:\n" in shown.stdout and "\nNetwork Options:\n" in shown.stdout
    for extra in (["11112", "-v", "104"], ["-v", "--", "11112", "-d"]):
        failed = subprocess.run(command + extra, capture_output=True, text=True, timeout=TIMEOUT, cwd="/")
        assert failed.returncode == 2
        assert failed.stderr.splitlines() == [usage, f"{name}: error: unrecognized arguments: {extra[-1]}"]
        assert failed.stdout == ""
