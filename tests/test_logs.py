"""
Tests for L{dicomecho.observability.logs}: echoscp's C{I:}/C{E:} lines at
each level, other events and namespaces, passwords never shown, and the
console and JSON observers.
"""

from __future__ import annotations

import io
import json
import pytest
from dicomecho.observability.logs import consoleObserver, jsonObserver, logStartup, renderEcho
from dicomecho.observability.levels import log, setLogLevel
from dicomecho.wire.pdu import AssociateRQ
from tests.support.helpers import logLevelSet
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from typing import Any
from zope.interface.verify import verifyObject
from tests.support.logevents import (  # noqa: F401 (debugLevel: an autouse fixture)
    PEER,
    REFERENCE_ECHO_BLOCK,
    REFERENCE_RQ_BLOCK,
    capturedRQ,
    debugLevel,
    event,
    isPlain,
    renderAll,
    rqEvent,
    sessionEvents,
)

# --- levels ------------------------------------------------------------------------------------


def test_debugSession() -> None:
    """
    Under C{-d} a whole DCMTK session renders as the reference's capture,
    but for our identity and responding name.
    """
    lines = renderAll(sessionEvents())
    assert lines[: len(REFERENCE_RQ_BLOCK)] == REFERENCE_RQ_BLOCK
    assert lines[-len(REFERENCE_ECHO_BLOCK) - 1 : -1] == REFERENCE_ECHO_BLOCK
    assert lines[-1] == "I: Association Released"
    assert [line for line in lines if line.startswith("I:")] == [
        "I: Accepting Association",
        "I: Received Echo Request (MsgID 1)",
        "I: Association Released",
    ]


def test_verboseHasNoDebugLines() -> None:
    """
    Under C{-v} a session is exactly echoscp's three lines (§9.1).
    """
    setLogLevel(LogLevel.info)
    assert renderAll(sessionEvents()) == [
        "I: Accepting Association",
        "I: Received Echo Request (MsgID 1)",
        "I: Association Released",
    ]


def test_quietShowsNothing() -> None:
    """
    Under C{-q} no dicomecho event renders, errors included.
    """
    setLogLevel(None)
    events = sessionEvents() + [event("timeout", LogLevel.error, what="Network")]
    assert renderAll(events) == []


def test_defaultModeShowsErrorsOnly() -> None:
    """
    At echoscp's default level (error) normal traffic prints nothing, a
    timeout prints its error line.
    """
    setLogLevel(LogLevel.error)
    events = sessionEvents() + [event("timeout", LogLevel.error, what="Network")]
    assert renderAll(events) == ["E: Network timeout reached"]


# --- other events ------------------------------------------------------------------------------


def test_simpleEvents() -> None:
    """
    The one-line events read as the event table says.
    """
    cases = [
        (
            event(
                "listening",
                address="IPv4Address(...)",
                description="tcp:11112",
                host="0.0.0.0",
                port=11112,
            ),
            ["I: Listening on tcp:11112 (0.0.0.0:11112)"],
        ),
        (
            event("listening", description="tcp6:104", host="::1", port=104),
            ["I: Listening on tcp6:104 ([::1]:104)"],
        ),
        (
            event(
                "listening",
                description="unix:/run/d.sock",
                host="/run/d.sock",
                port=None,
            ),
            ["I: Listening on unix:/run/d.sock (/run/d.sock)"],
        ),
        (event("timeout", LogLevel.error, what="DIMSE"), ["E: DIMSE timeout reached"]),
        (
            event(
                "invalid-pdu",
                LogLevel.error,
                error="unrecognized PDU type 0x16",
                abortReason=1,
                looksLike="a TLS handshake",
            ),
            [f"E: Invalid PDU from {PEER}: unrecognized PDU type 0x16"],
        ),
        (
            event("connection-closed", LogLevel.debug, detail="no A-ASSOCIATE-RQ"),
            [f"D: Connection from {PEER} closed: no A-ASSOCIATE-RQ"],
        ),
        (event("association-summary", outcome="released"), []),
    ]
    for e, lines in cases:
        assert renderEcho(e) == lines


def test_responderFailureHasTraceback() -> None:
    """
    A failing responder is an error line followed by the traceback, its
    lines unprefixed as Python's C{logging.exception} prints them.
    """
    try:
        raise ValueError("boom")
    except ValueError:
        failure = Failure()
    lines = renderEcho(
        event("responder-failed", LogLevel.critical, log_failure=failure)
    )
    assert lines[0] == "C: Service responder failed; aborting the association"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1].endswith("ValueError: boom")


def test_unknownAndMalformedEvents() -> None:
    """
    An event the table does not know, or one missing a field, renders its
    format string; an empty message is C{D: } with its trailing space.
    """
    assert renderEcho(
        event("novel", LogLevel.warn, log_format="Hello {who}", who="you")
    ) == ["W: Hello you"]
    assert renderEcho(event("association-accepted", log_format="Accepting {peer}")) == [
        f"I: Accepting {PEER}"
    ]
    assert renderEcho(event("other", LogLevel.debug, log_format="")) == ["D: "]


def test_otherNamespaces() -> None:
    """
    Twisted's own info chatter is dropped; its warnings and errors are
    kept, with a failure's traceback.
    """
    chatter = dict(
        log_level=LogLevel.info,
        log_namespace="twisted.internet.protocol",
        log_format="Starting factory {f}",
        f="x",
    )
    assert renderEcho(chatter) == []
    setLogLevel(None)
    warning = dict(chatter, log_level=LogLevel.warn, log_format="disk full")
    assert renderEcho(warning) == ["W: disk full"]
    try:
        1 / 0
    except ZeroDivisionError:
        failure = Failure()
    error = dict(
        chatter, log_level=LogLevel.error, log_format="oops", log_failure=failure
    )
    lines = renderEcho(error)
    assert lines[:2] == ["E: oops", "Traceback (most recent call last):"]


def test_startupLines(events: list[dict[str, Any]]) -> None:
    """
    The C{-d} start-up lines are echoscp's with our name; the event is
    logged at debug level only.
    """
    with logLevelSet(LogLevel.debug):
        logStartup("0.1.0")
    with logLevelSet(LogLevel.info):
        logStartup("0.1.0")
    (event,) = [e for e in events if e.get("dicomEvent") == "startup"]
    with logLevelSet(LogLevel.debug):
        assert renderEcho(event) == ["D: dicomecho v0.1.0", "D: "]


# --- observers -----------------------------------------------------------------------------------


def test_consoleObserver() -> None:
    """
    The console observer is an L{ILogObserver} that writes the rendered
    lines; with no argument (as twistd calls it) it writes to the standard
    error stream of the moment.
    """
    stream = io.StringIO()
    observer = consoleObserver(stream)
    assert verifyObject(ILogObserver, observer)
    for e in sessionEvents():
        observer(e)
    assert stream.getvalue().splitlines() == renderAll(sessionEvents())
    assert stream.getvalue().endswith("\n")


def test_consoleObserverDoesNotRecurse() -> None:
    """
    A stream that logs what is written to it (as twistd's redirected
    standard error does) does not make the observer recurse.
    """
    written: list[str] = []

    class LoggingStream(io.StringIO):
        def write(self, text: str) -> int:
            written.append(text)
            observer(
                dict(
                    log_level=LogLevel.error,
                    log_namespace="stderr",
                    log_format="{t}",
                    t=text,
                )
            )
            return len(text)

    observer = consoleObserver(LoggingStream())
    observer(event("association-released"))
    assert written == ["I: Association Released\n"]


def test_observersDefaultToStandardStreams(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    C{consoleObserver()} writes to the C{sys.stderr} of its creation, as
    twistd calls it before redirecting standard I/O into the log, and
    C{jsonObserver()} to C{sys.stdout}.
    """
    stderr, stdout = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    monkeypatch.setattr("sys.stdout", stdout)
    console, records = consoleObserver(), jsonObserver()
    monkeypatch.setattr("sys.stderr", io.StringIO())
    monkeypatch.setattr("sys.stdout", io.StringIO())
    console(event("association-released"))
    records(event("association-released"))
    assert stderr.getvalue() == "I: Association Released\n"
    assert json.loads(stdout.getvalue())["text"] == "Association Released"


def test_throughTheLogger() -> None:
    """
    Emitted through L{log}, events reach an observer on the global
    publisher at or above the level only.
    """
    stream = io.StringIO()
    observer = consoleObserver(stream)
    globalLogPublisher.addObserver(observer)
    try:
        setLogLevel(LogLevel.info)
        log.debug(
            "A-ASSOCIATE-RQ",
            dicomEvent="associate-rq",
            peer=PEER,
            rq=capturedRQ("dcmtk_echoscu_default"),
        )
        log.info("Association Released", dicomEvent="association-released", peer=PEER)
        setLogLevel(None)
        log.error(
            "{what} timeout reached", dicomEvent="timeout", what="Network", peer=PEER
        )
    finally:
        globalLogPublisher.removeObserver(observer)
    assert stream.getvalue() == "I: Association Released\n"


def test_jsonObserver() -> None:
    """
    The JSON observer writes one object a line carrying the summary's
    fields and the echoscp text, never objects and never a password.
    """
    stream = io.StringIO()
    observer = jsonObserver(stream)
    assert verifyObject(ILogObserver, observer)
    events = sessionEvents("pynetdicom_extended")
    events.append(
        event(
            "association-summary",
            log_format="Association from {peer}: {outcome} ({reason})",
            peerHost="127.0.0.1",
            peerPort=50000,
            callingAETitle="PYEXTSCU",
            calledAETitle="ECHOSCP",
            contexts=["1:1.2.840.10008.1.1/1.2.840.10008.1.2"],
            outcome="released",
            reason="A-RELEASE completed",
            durationSeconds=0.012,
            messages=1,
        )
    )
    events.append(
        dict(log_level=LogLevel.info, log_namespace="twisted", log_format="hi")
    )
    events.append(
        dict(
            log_level=LogLevel.error,
            log_namespace="twisted",
            log_format="bad",
            log_time=0.0,
        )
    )
    for e in events:
        observer(e)
    output = stream.getvalue()
    assert "s3cret" not in output
    records = [json.loads(line) for line in output.splitlines()]
    assert [r.get("dicomEvent") for r in records] == [
        "associate-rq",
        "association-accepted",
        "dimse-received",
        "association-released",
        "association-summary",
        None,
    ]
    for record in records:
        assert all(isPlain(value) for value in record.values()), record
    rq, accepted, dimse, released, summary, twisted = records
    assert rq["text"] == "Request Parameters:" and "rq" not in rq
    assert accepted["text"] == "Accepting Association"
    assert "contexts" not in accepted and "ac" not in accepted
    assert dimse["text"] == "Received Echo Request (MsgID 1)"
    assert dimse["messageID"] == 1 and "message" not in dimse
    assert released == {
        "time": "2026-11-18T11:06:40.250000+00:00",
        "level": "info",
        "namespace": "dicomecho",
        "dicomEvent": "association-released",
        "peer": PEER,
        "text": "Association Released",
    }
    assert summary["text"] == f"Association from {PEER}: released (A-RELEASE completed)"
    assert summary["contexts"] == ["1:1.2.840.10008.1.1/1.2.840.10008.1.2"]
    assert (summary["peerHost"], summary["peerPort"], summary["messages"]) == (
        "127.0.0.1",
        50000,
        1,
    )
    assert summary["durationSeconds"] == 0.012
    assert twisted == {
        "time": "1970-01-01T00:00:00+00:00",
        "level": "error",
        "namespace": "twisted",
        "text": "bad",
    }


def test_summaryWithAndWithoutHint() -> None:
    """
    The summary's hint ends its console line as a second sentence and is a
    JSON field; a summary without one has neither.
    """
    fields = dict(
        log_format="Association from {peer}: {outcome} ({reason})",
        peerHost="127.0.0.1",
        peerPort=50000,
        callingAETitle="CT1",
        calledAETitle="ECHOSCP",
        contexts=[],
        outcome="rejected",
        reason="calling AE title 'CT1' is not allowed",
        durationSeconds=0.012,
        messages=0,
    )
    hint = "The SCU calls itself 'CT1', not one of dicomecho's --allow-calling-aet titles (MR1)."
    withHint = event("association-summary", hint=hint, **fields)
    without = event("association-summary", hint=None, **fields)
    setLogLevel(LogLevel.info)
    console, stream = io.StringIO(), io.StringIO()
    for e in (withHint, without):
        consoleObserver(console)(e)
        jsonObserver(stream)(e)
    line = (
        f"I: Association from {PEER}: CT1 -> ECHOSCP, rejected (calling AE title 'CT1' is "
        "not allowed) after 0.012 s, 0 messages"
    )
    assert console.getvalue().splitlines() == [f"{line}. Hint: {hint}", line]
    hinted, plain = (json.loads(text) for text in stream.getvalue().splitlines())
    assert (hinted["hint"], plain["hint"]) == (hint, None)
    assert hinted["text"] == plain["text"] == f"Association from {PEER}: rejected ({fields['reason']})"


def test_jsonFailureAndQuiet() -> None:
    """
    A failure's traceback is a string field; under C{-q} nothing of ours
    is written.
    """
    try:
        raise KeyError("k")
    except KeyError:
        failure = Failure()
    stream = io.StringIO()
    observer = jsonObserver(stream)
    observer(event("responder-failed", LogLevel.critical, log_failure=failure))
    record = json.loads(stream.getvalue())
    assert record["text"] == "Service responder failed; aborting the association"
    assert "KeyError" in record["traceback"]
    setLogLevel(None)
    observer(event("association-summary", outcome="released"))
    assert len(stream.getvalue().splitlines()) == 1


def test_hostileValuesAreCutAndEscaped() -> None:
    """
    A request carrying a 5,000-character abstract syntax UID, control
    characters and line breaks in its AE titles and a 65,000-character
    implementation UID renders as short, single, printable lines: every
    peer value is escaped and cut, with the number of characters left out.
    """
    from dicomecho.wire.items import PresentationContextRQ
    from dicomecho.wire.userinfo import UserInformation
    from dicomecho.observability.logblocks import MAX_VALUE_LENGTH

    rq = AssociateRQ(
        "EVIL\nI: forged",
        "\x1b[31mRED\x00",
        presentationContexts=(PresentationContextRQ(1, "1." * 2500, ("1.2.840.10008.1.2",)),),
        userInformation=UserInformation(maximumLength=0, implementationClassUID="9" * 65000),
    )
    lines = renderAll([rqEvent(rq)])
    assert all(len(line) < 2 * MAX_VALUE_LENGTH + 100 for line in lines)
    assert all(line.isprintable() for line in lines)
    assert not any(line.startswith("I: forged") for line in lines)
    assert any("64872 more characters" in line for line in lines)
    assert any("\\n" in line and "EVIL" in line for line in lines)


def test_invalidUIDsDoNotReachPydicom() -> None:
    """
    Strings that are not UIDs (letters, too long) are printed as they are
    without asking pydicom for a name, which would warn, and remember the
    warning, once per distinct value a peer sends.
    """
    import warnings

    from dicomecho.wire.items import PresentationContextRQ

    rq = AssociateRQ(
        "ECHOSCP",
        "SCU",
        presentationContexts=tuple(
            PresentationContextRQ(2 * i + 1, f"1.2.A{i}", ("1.2.840.10008.1.2",)) for i in range(50)
        ),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lines = renderAll([rqEvent(rq)])
    assert caught == []
    assert any("=1.2.A49" in line for line in lines)
    assert any("=Verification SOP Class" in line for line in renderAll(sessionEvents()))
