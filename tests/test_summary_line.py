"""
The association's last C{-v} line (not one of echoscp's): who came (the
peer's address and port, a PROXY header's client where there is one), the
calling and called AE titles, the outcome and its reason, the duration and
the messages handled, then the hint (what to change) when there is one.
Rendered from the association-summary event at info level, after echoscp's
lines; checked on synthetic events, through the protocol, behind the PROXY
wrapper, and with DCMTK's echoscu against C{python -m dicomecho -v}.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any, Iterator

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from dicomecho.observability import events
from dicomecho.security.access import AccessList
from dicomecho.observability.logs import jsonObserver, renderEcho
from dicomecho.wire.pdu import Abort, ReleaseRQ, encode
from dicomecho.server.factory import DICOMServerFactory
from tests.support.helpers import fixtureBytes, logLevelSet
from tests.support.peers import requireEchoscu
from tests.support.processes import LISTENING, TIMEOUT, Server, servers, start, tcpSockets  # noqa: F401 (fixture)
from tests.support.harness import Harness, echo, rq
from tests.support.proxyheaders import Proxied, v1Header, v2Header

SUMMARY_FORMAT = "Association from {peer}: {outcome} ({reason})"


def summary(**fields: Any) -> dict[str, Any]:
    """
    An association-summary event as the protocol emits it, for a released
    association unless C{fields} say otherwise.
    """
    event: dict[str, Any] = dict(
        log_level=LogLevel.info,
        log_namespace="dicomecho",
        log_format=SUMMARY_FORMAT,
        log_time=1795000000.25,
        dicomEvent="association-summary",
        peer="10.1.2.3:40312",
        peerHost="10.1.2.3",
        peerPort=40312,
        callingAETitle="CT1",
        calledAETitle="ECHOSCP",
        contexts=["1:1.2.840.10008.1.1/1.2.840.10008.1.2"],
        outcome="released",
        reason="A-RELEASE completed",
        durationSeconds=0.0123,
        messages=1,
        user=None,
    )
    event.update(fields)
    return event


@pytest.fixture(autouse=True)
def infoLevel() -> Iterator[None]:
    with logLevelSet(LogLevel.info):
        yield


# --- rendering ----------------------------------------------------------------------


def test_released() -> None:
    """
    A release: peer, calling -> called, "released" without its reason, the
    duration in milliseconds, the message count.
    """
    assert renderEcho(summary()) == [
        "I: Association from 10.1.2.3:40312: CT1 -> ECHOSCP, released after 0.012 s, 1 message"
    ]
    assert renderEcho(summary(messages=0, durationSeconds=2)) == [
        "I: Association from 10.1.2.3:40312: CT1 -> ECHOSCP, released after 2.000 s, 0 messages"
    ]


@pytest.mark.parametrize(
    "outcome, reason",
    [
        ("rejected", "called AE title 'ECHO' is not ours ('ECHOSCP')"),
        ("aborted", "Network timeout"),
        ("aborted-by-peer", "peer sent A-ABORT"),
        ("connection-lost", "connection closed without A-RELEASE or A-ABORT"),
    ],
)
def test_otherOutcomesGiveTheirReason(outcome: str, reason: str) -> None:
    """
    Any other outcome is followed by its reason in parentheses.
    """
    lines = renderEcho(summary(outcome=outcome, reason=reason, messages=3, durationSeconds=30.0004))
    assert lines == [
        f"I: Association from 10.1.2.3:40312: CT1 -> ECHOSCP, {outcome} ({reason}) "
        f"after 30.000 s, 3 messages"
    ]


def test_ipv6Peer() -> None:
    """
    An IPv6 peer is C{[host]:port}, as every event spells it.
    """
    (line,) = renderEcho(summary(peer="[2001:db8::7]:40123", peerHost="2001:db8::7", peerPort=40123))
    assert line.startswith("I: Association from [2001:db8::7]:40123: CT1 -> ECHOSCP, released")


def test_hostileAETitlesAreEscaped() -> None:
    """
    AE titles are the peer's: a line feed cannot start a forged line,
    control characters and backslashes are escaped, a long value is cut.
    """
    lines = renderEcho(
        summary(callingAETitle="EVIL\nI: forged", calledAETitle="\x1b[31m\\x41\r", messages=2)
    )
    assert lines == [
        "I: Association from 10.1.2.3:40312: EVIL\\nI: forged -> \\x1b[31m\\\\x41\\r, "
        "released after 0.012 s, 2 messages"
    ]
    (line,) = renderEcho(summary(callingAETitle="A" * 500, reason="x\ny", outcome="aborted"))
    assert "(372 more characters)" in line and "(x\\ny)" in line and line.isprintable()


def test_noLineWithoutARequest() -> None:
    """
    A connection that sent no A-ASSOCIATE-RQ (ARTIM on a silent connection,
    a health check, a port scan) has no summary line, at any level.
    """
    event = summary(
        callingAETitle=None,
        calledAETitle=None,
        contexts=[],
        outcome="no-association",
        reason="ARTIM expired",
        messages=0,
    )
    for level in (LogLevel.info, LogLevel.debug):
        with logLevelSet(level):
            assert renderEcho(event) == []


@pytest.mark.parametrize(
    "level, shown",
    [(LogLevel.debug, True), (LogLevel.info, True), (LogLevel.warn, False), (LogLevel.error, False), (None, False)],
)
def test_levels(level: LogLevel | None, shown: bool) -> None:
    """
    At -v and -d, not at the default (error) level, warn, or -q.
    """
    with logLevelSet(level):
        assert bool(renderEcho(summary())) == shown


HINT = (
    "The SCU called 'PACS1', but dicomecho answers only to 'ECHOSCP' (--require-called-aet). "
    "Set the SCU's called (destination) AE title to ECHOSCP, or start dicomecho with "
    "--ae-title PACS1."
)


def test_hintIsASecondSentence() -> None:
    """
    A hint follows the line as a second sentence; a line without one (None
    or empty) is as before.
    """
    rejected = summary(
        outcome="rejected", reason="called AE title 'PACS1' is not ours ('ECHOSCP')", messages=0,
        calledAETitle="PACS1", hint=HINT,
    )
    assert renderEcho(rejected) == [
        "I: Association from 10.1.2.3:40312: CT1 -> PACS1, rejected (called AE title 'PACS1' is "
        f"not ours ('ECHOSCP')) after 0.012 s, 0 messages. Hint: {HINT}"
    ]
    plain = "I: Association from 10.1.2.3:40312: CT1 -> ECHOSCP, released after 0.012 s, 1 message"
    assert renderEcho(summary(hint=None)) == renderEcho(summary(hint="")) == [plain]


def test_hintStaysOnOneLine() -> None:
    """
    A hint is printable already; were one not, the line would still be one.
    """
    (line,) = renderEcho(summary(outcome="aborted", reason="x", hint="a\nI: forged\x1b"))
    assert line.endswith("Hint: a\\nI: forged\\x1b") and line.isprintable()


def test_jsonCarriesTheHint() -> None:
    """
    emitSummary carries C{hint} as a JSON field: the hint, or null for a
    plain success; the record's text stays the event's format.
    """
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        fields = {
            k: v for k, v in summary().items() if not k.startswith("log_") and k != "dicomEvent"
        }
        events.emitSummary(**fields)
        events.emitSummary(**{**fields, "outcome": "rejected", "reason": "no"}, hint=HINT)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    stream = io.StringIO()
    observer = jsonObserver(stream)
    for event in seen:
        observer(event)
    plain, hinted = (json.loads(line) for line in stream.getvalue().splitlines())
    assert plain["hint"] is None and hinted["hint"] == HINT
    assert hinted["text"] == "Association from 10.1.2.3:40312: rejected (no)"


def test_jsonRecordUnchanged() -> None:
    """
    The JSON record of the summary keeps its text (the event's format, not
    the console line) and its fields, and gains none.
    """
    stream = io.StringIO()
    event = summary(user="alice")
    jsonObserver(stream)(event)
    record = json.loads(stream.getvalue())
    assert record["text"] == "Association from 10.1.2.3:40312: released (A-RELEASE completed)"
    assert record["text"] == formatEvent(event)
    fields = {k for k in event if not k.startswith("log_")}
    assert set(record) == fields | {"time", "level", "namespace", "text"}
    assert (record["peerHost"], record["peerPort"], record["callingAETitle"]) == ("10.1.2.3", 40312, "CT1")


# --- through the protocol --------------------------------------------------------------


def consoleLines(drive: Any, level: LogLevel = LogLevel.info, **options: Any) -> list[str]:
    """
    The console lines of one connection driven by C{drive(harness)} at
    C{level}, through its close (after 1.5 s, at 127.0.0.1:40000).
    """
    clock = Clock()
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        with logLevelSet(level):
            harness = Harness(DICOMServerFactory(clock=clock, **options), clock)
            drive(harness)
            clock.advance(1.5)
            harness.close()
            clock.advance(60)
            lines = [line for event in seen for line in renderEcho(event)]
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert clock.getDelayedCalls() == []
    return lines


def test_lastLineOfAReleasedAssociation() -> None:
    """
    DCMTK's captured session at -v: echoscp's three lines, then the
    summary line, last.
    """
    lines = consoleLines(lambda h: h.send(fixtureBytes("dcmtk_echoscu_default", "c2s")))
    assert lines == [
        "I: Accepting Association",
        "I: Received Echo Request (MsgID 1)",
        "I: Association Released",
        "I: Association from 127.0.0.1:40000: MYSCU -> ECHOSCP, released after 1.500 s, 1 message",
    ]


def test_lastLineAtDebug() -> None:
    """
    At -d too the summary line is the connection's last line.
    """
    lines = consoleLines(lambda h: h.send(fixtureBytes("dcmtk_echoscu_default", "c2s")), LogLevel.debug)
    assert lines[-2:] == [
        "I: Association Released",
        "I: Association from 127.0.0.1:40000: MYSCU -> ECHOSCP, released after 1.500 s, 1 message",
    ]
    assert sum(line.startswith("I: Association from") for line in lines) == 1


def test_lastLineOfRejectionAndAbort() -> None:
    """
    After "Rejecting Association" and after "Association Aborted" the
    summary line follows, with the outcome's reason.
    """
    rejected = consoleLines(lambda h: h.send(rq()), requireCalledAETitle=True, aeTitle="OTHER")
    assert rejected == [
        "I: Rejecting Association",
        "I: Association from 127.0.0.1:40000: SCU -> ECHOSCP, rejected "
        "(called AE title 'ECHOSCP' is not ours ('OTHER')) after 1.500 s, 0 messages. "
        "Hint: The SCU called 'ECHOSCP', but dicomecho answers only to 'OTHER' "
        "(--require-called-aet). Set the SCU's called (destination) AE title to OTHER, "
        "or start dicomecho with --ae-title ECHOSCP.",
    ]
    aborted = consoleLines(lambda h: h.send(rq(), echo(1), echo(2), Abort(0, 0)))
    assert aborted[-2:] == [
        "I: Association Aborted",
        "I: Association from 127.0.0.1:40000: SCU -> ECHOSCP, aborted-by-peer "
        "(peer sent A-ABORT) after 1.500 s, 2 messages. Hint: The SCU aborted the association "
        "itself. Its own log says why (often its timeout, or an answer from dicomecho it did "
        "not expect).",
    ]


def test_nothingNewAtDefaultLevelOrForSilentConnections() -> None:
    """
    At the default (error) level a normal association still prints
    nothing; a connection closed by ARTIM before any request prints no
    summary line at -v, and only its D: line at -d.
    """
    session = fixtureBytes("dcmtk_echoscu_default", "c2s")
    assert consoleLines(lambda h: h.send(session), LogLevel.error) == []
    assert consoleLines(lambda h: h.clock.advance(30)) == []
    silent = consoleLines(lambda h: h.clock.advance(30), LogLevel.debug)
    assert len(silent) == 1 and silent[0].startswith("D: Connection from 127.0.0.1:40000 closed: ")


def test_summaryNotBuiltBelowInfo() -> None:
    """
    The cost at the default level: no association-summary event is built
    when info is off.
    """
    clock = Clock()
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        with logLevelSet(LogLevel.error):
            harness = Harness(DICOMServerFactory(clock=clock), clock)
            harness.send(fixtureBytes("dcmtk_echoscu_default", "c2s"))
            harness.close()
            clock.advance(60)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert [e for e in seen if e.get("dicomEvent")] == []


# --- behind a PROXY-protocol listener -----------------------------------------------------


@pytest.mark.parametrize(
    "header, client, peer",
    [
        (v1Header, "10.1.2.3", "10.1.2.3:40123"),
        (v2Header, "10.1.2.3", "10.1.2.3:40123"),
        (v1Header, "2001:db8::7", "[2001:db8::7]:40123"),
        (v2Header, "2001:db8::7", "[2001:db8::7]:40123"),
    ],
)
@pytest.mark.parametrize("access", [None, ["10.0.0.0/8", "2001:db8::/32"]])
def test_proxyClientNamed(header: Any, client: str, peer: str, access: list[str] | None) -> None:
    """
    Behind C{haproxy:} the line names the header's client, never the load
    balancer, with or without an access list.
    """
    clock = Clock()
    options: dict[str, Any] = {} if access is None else {"access": AccessList.build(access)}
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        c = Proxied(DICOMServerFactory(clock=clock, **options))
        c.send(header(client, 40123) + encode(rq()) + encode(echo(1)) + encode(ReleaseRQ()))
        c.close()
        clock.advance(60)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    lines = [line for event in seen for line in renderEcho(event)]
    assert lines[-1] == f"I: Association from {peer}: SCU -> ECHOSCP, released after 0.000 s, 1 message"
    assert not any("192.0.2.10" in line for line in lines)


# --- a real peer ---------------------------------------------------------------------


def _connectedPort(pid: int, serverPort: int) -> int:
    """
    The local port of process C{pid}'s TCP connection to 127.0.0.1:C{serverPort}.
    """
    for local, remote, _ in tcpSockets(pid):
        if remote == f"0100007F:{serverPort:04X}":
            return int(local.split(":")[1], 16)
    raise LookupError(f"process {pid} has no connection to port {serverPort}")


def _echoscuPort(server: Server, serverPort: int) -> tuple[subprocess.Popen[str], int]:
    """
    Start echoscu -aet MYSCU against the server while the server is
    stopped (SIGSTOP, by its PID), so the connection waits for the AC;
    learn echoscu's local port from /proc, then let the server go on.
    """
    pid = server.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        scu = subprocess.Popen(
            [requireEchoscu(), "-aet", "MYSCU", "-aec", "ECHOSCP", "127.0.0.1", str(serverPort)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                return scu, _connectedPort(scu.pid, serverPort)
            except (LookupError, FileNotFoundError):
                if scu.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.peer
def test_echoscuAgainstPythonM(servers: list[Server]) -> None:
    """
    C{python -m dicomecho -v} and DCMTK's echoscu -aet MYSCU: echoscp's
    lines in order, then exactly one line naming echoscu's address and
    port, MYSCU -> ECHOSCP, released, and a duration.
    """
    server = start(servers, [sys.executable, "-m", "dicomecho", "-v", "-ba", "127.0.0.1", "0"])
    serverPort = server.port()
    scu, scuPort = _echoscuPort(server, serverPort)
    output, _ = scu.communicate(timeout=TIMEOUT)
    assert scu.returncode == 0, output
    pattern = (
        rf"^I: Association from 127\.0\.0\.1:{scuPort}: MYSCU -> ECHOSCP, "
        rf"released after \d+\.\d{{3}} s, 1 message$"
    )
    server.waitFor(pattern)
    lines = [line for line in server.lines if not LISTENING.search(line)]
    assert lines[:3] == [
        "I: Accepting Association",
        "I: Received Echo Request (MsgID 1)",
        "I: Association Released",
    ]
    assert re.match(pattern, lines[3]) and len(lines) == 4, lines
    assert server.stop(signal.SIGINT) == 0
    assert sum(bool(re.match(pattern, line)) for line in server.lines) == 1
