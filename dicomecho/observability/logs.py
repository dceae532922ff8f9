# -*- test-case-name: tests.test_logs -*-
"""
dicomecho's log events, their level filter, and their renderings.

Every event is emitted once, by L{log}, with structured fields (the peer,
the PDUs, the outcome); see the event table in README.rst. The echoscp
C{I:}/C{D:}/C{E:} text and the JSON lines are two renderings of the same
events.

L{renderEcho} turns one event into pynetdicom C{echoscp}'s lines: the first
letter of the level, a colon, a space, the text (reference §1.3), and under
C{-d} the C{D:} blocks echoscp prints for PDUs and DIMSE messages (reference
§9.2, pynetdicom's C{_handlers.py}). L{consoleObserver} and L{jsonObserver}
are the sinks, usable as C{twistd --logger dicomecho.logs.consoleObserver}.

Every string a peer chose (AE titles, UIDs, names) is escaped before it is
rendered, so a peer cannot forge log lines; a user identity's passcode is
never rendered, only its length.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timezone
from typing import Callable, Iterable, TextIO

from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEvent,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from dicomecho.association.dimse import DIMSEMessage
from dicomecho.association.outcome import Outcome
from dicomecho.observability.events import EventName
from dicomecho.observability.levels import NAMESPACE, isEnabled, log, passes
from dicomecho.observability.logblocks import (
    abortLines,
    associateACLines,
    associateRJLines,
    associateRQLines,
    dimseLines,
    escape,
    valueText,
)
from dicomecho.wire.pdu import AssociateRQ

__all__ = [
    "listeningAddress",
    "renderEcho",
    "consoleObserver",
    "jsonObserver",
    "logStartup",
    "jsonRecord",
]

_Line = tuple["LogLevel | None", str]

def _prefixed(lines: Iterable[_Line]) -> list[str]:
    """
    Prefix each line with its level's letter (C{D: }, C{I: } ...); lines
    without a level are kept as they are.
    """
    return [
        text if level is None else f"{level.name[0].upper()}: {text}"
        for level, text in lines
    ]


def _debug(lines: Iterable[str]) -> list[_Line]:
    return [(LogLevel.debug, line) for line in lines]


def _tracebackLines(event: LogEvent) -> list[_Line]:
    failure = event.get("log_failure")
    if not isinstance(failure, Failure):
        return []
    return [(None, line) for line in _splitEscaped(failure.getTraceback())]


def _splitEscaped(text: str) -> list[str]:
    """
    C{text} split at its line feeds only, each line escaped.
    """
    lines = text.split("\n")
    if len(lines) > 1 and not lines[-1]:
        lines.pop()
    return [escape(line, backslash=False) for line in lines]


def _formatted(level: LogLevel, event: LogEvent) -> list[_Line]:
    """
    C{formatEvent(event)}, escaped, one prefixed line per line of text.
    """
    return [(level, line) for line in _splitEscaped(formatEvent(event))]


# --- events -----------------------------------------------------------------------

_Renderer = Callable[[LogEvent, LogLevel, bool], list[_Line]]


def _main(level: LogLevel, text: str) -> list[_Line]:
    return [(level, text)]


def listeningAddress(host: object, port: int | None) -> str:
    """
    Where a listening port is bound, as C{host:port} (C{[host]:port} for
    IPv6), or a UNIX socket's path alone.
    """
    if port is None:
        return f"{host}"
    if isinstance(host, str) and ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _renderListening(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    where = listeningAddress(event.get("host"), event.get("port"))
    # Our own endpoint description: escaped, but its backslashes (endpoint
    # syntax, e.g. interface=\:\:) are kept as they are.
    description = escape(str(event.get("description") or event.get("address")), backslash=False)
    return _main(level, f"Listening on {description} ({valueText(where)})")


def _renderStartup(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    return _main(level, f"dicomecho v{event.get('version')}") + _main(level, "")


def _renderAssociateRQ(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    return [(level, line) for line in associateRQLines(event["rq"])]


def _renderAccepted(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    lines = _main(level, "Accepting Association")
    if debug:
        lines += _debug(associateACLines(event.get("rq"), event["ac"]))
    return lines


def _renderRejected(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    result, source, diagnostic = event["result"], event["source"], event["diagnostic"]
    rq = event.get("rq")
    if (result, source, diagnostic) == (1, 2, 2) and isinstance(rq, AssociateRQ):
        # Reference §3.1: an error line and no "Rejecting Association".
        lines = _main(
            LogLevel.error,
            f"A-ASSOCIATE-RQ: Unsupported protocol version '0x{rq.protocolVersion:04X}'",
        )
    else:
        lines = _main(level, "Rejecting Association")
    if debug:
        reason = event.get("reason")
        if reason:
            lines += _debug([escape(str(reason), backslash=False)])
        lines += _debug(associateRJLines(result, source, diagnostic))
    return lines


def _renderDIMSE(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    name = escape(str(event.get("commandName")), backslash=False)
    lines = _main(level, f"Received {name} (MsgID {event.get('messageID')})")
    message = event.get("message")
    if debug and isinstance(message, DIMSEMessage):
        lines += _debug(dimseLines(message))
    return lines


def _renderReleased(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    return _main(level, "Association Released")


def _renderAborted(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    source, reason = event.get("source"), event.get("reason")
    text = "Association Aborted"
    if reason is None or source != 0:
        text += " (A-P-ABORT)"
    # echoscp logs the received PDU's block before the line (verified).
    lines: list[_Line] = []
    if debug and reason is not None:
        lines += _debug(abortLines("INCOMING", source, reason))  # type: ignore[arg-type]
    return lines + _main(level, text)


def _renderAborting(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    lines = _main(level, "Aborting Association")
    if debug:
        detail = event.get("detail")
        if detail:
            lines += _debug([escape(str(detail), backslash=False)])
        lines += _debug(abortLines("OUTGOING", event["source"], event["reason"]))
    return lines


def _renderClosed(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    detail = escape(str(event.get("detail")), backslash=False)
    return _main(level, f"Connection from {event.get('peer')} closed: {detail}")


def _renderTimeout(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    return _main(level, f"{event.get('what')} timeout reached")


def _renderInvalid(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    error = escape(str(event.get("error")), backslash=False)
    return _main(level, f"Invalid PDU from {event.get('peer')}: {error}")


def _renderFailed(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    lines = _main(level, "Service responder failed; aborting the association")
    return lines + _tracebackLines(event)


def _renderSummary(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    """
    Who came and what happened, as the association's last line (it is
    emitted when the connection closes): the peer (a PROXY header's client
    when there is one), calling -> called AE title, the outcome with its
    reason (but for a release), the connection's duration and the DIMSE
    messages handled, then the hint (what to change) when there is one.
    Not one of echoscp's lines: it follows them.

    Nothing for a connection that sent no A-ASSOCIATE-RQ (no calling AE
    title): port scans, TCP health checks and ARTIM on a silent connection
    would fill C{-v} with lines, and such a connection has its own C{D:}
    line (C{connection-closed}) or C{E:} line (an invalid PDU) already.
    """
    calling = event.get("callingAETitle")
    if calling is None:
        return []
    outcome = str(event["outcome"])
    if outcome != Outcome.RELEASED.value:
        outcome += f" ({event['reason']})"
    messages = int(event["messages"])
    text = (
        f"Association from {event['peer']}: {escape(calling)} -> "
        f"{escape(event['calledAETitle'])}, {outcome} after "
        f"{float(event['durationSeconds']):.3f} s, "
        f"{messages} message{'' if messages == 1 else 's'}"
    )
    hint = event.get("hint")
    if hint:
        # What to change (dicomecho.observability.hints), as a second sentence.
        text += f". Hint: {hint}"
    # Our own sentences; the peer's strings in them are escaped or repr()s.
    return _main(level, escape(text, backslash=False))




def _renderDescriptorLimit(event: LogEvent, level: LogLevel, debug: bool) -> list[_Line]:
    # The limit in effect is for the JSON log: echoscp's -d lines have no
    # such line. Its warning (a limit too low) is shown.
    return _formatted(level, event) if level >= LogLevel.warn else []

_RENDERERS: dict[str, _Renderer] = {
    EventName.STARTUP.value: _renderStartup,
    EventName.LISTENING.value: _renderListening,
    EventName.ASSOCIATE_RQ.value: _renderAssociateRQ,
    EventName.ASSOCIATION_ACCEPTED.value: _renderAccepted,
    EventName.ASSOCIATION_REJECTED.value: _renderRejected,
    EventName.DIMSE_RECEIVED.value: _renderDIMSE,
    EventName.ASSOCIATION_RELEASED.value: _renderReleased,
    EventName.ASSOCIATION_ABORTED.value: _renderAborted,
    EventName.ASSOCIATION_ABORTING.value: _renderAborting,
    EventName.CONNECTION_CLOSED.value: _renderClosed,
    EventName.TIMEOUT.value: _renderTimeout,
    EventName.INVALID_PDU.value: _renderInvalid,
    EventName.RESPONDER_FAILED.value: _renderFailed,
    EventName.ASSOCIATION_SUMMARY.value: _renderSummary,
    EventName.DESCRIPTOR_LIMIT.value: _renderDescriptorLimit,
}

#: Events whose JSON C{text} is their format string, not their console
#: line: the summary's JSON record keeps the text it had before the
#: console showed it (its fields say the rest).
_JSON_TEXT_IS_FORMAT = frozenset({EventName.ASSOCIATION_SUMMARY.value})


_LEVELS = frozenset(LogLevel.iterconstants())


def _level(event: LogEvent) -> LogLevel | None:
    level = event.get("log_level")
    return level if level in _LEVELS else None


def _isOurs(event: LogEvent) -> bool:
    namespace = event.get("log_namespace", "")
    return namespace == NAMESPACE or namespace.startswith(NAMESPACE + ".")


def _render(event: LogEvent, debug: bool) -> list[_Line]:
    """
    The lines for one event, C{[]} if it renders to nothing here.

    @param debug: include the C{D:} blocks attached to an event above debug.
    """
    level = _level(event)
    if level is None:
        return []
    if not _isOurs(event):
        # Twisted's own chatter (factory starting, ...) is not echoscp's.
        if level < LogLevel.warn:
            return []
        return _formatted(level, event) + _tracebackLines(event)
    if not passes(level, event.get("dicomAlways")):
        return []
    renderer = _RENDERERS.get(event.get("dicomEvent"))  # type: ignore[arg-type]
    if renderer is not None:
        try:
            return renderer(event, level, debug)
        except Exception:
            # A malformed event (a field missing or of the wrong type) must
            # not break the observer: fall back to its format string.
            pass
    return _formatted(level, event) + _tracebackLines(event)


def renderEcho(event: LogEvent) -> list[str]:
    """
    Render one event as echoscp's lines (without line ends), C{[]} if it
    is not shown: dicomecho events below the current level, the
    summary of a connection that sent no A-ASSOCIATE-RQ, and other
    namespaces' events below C{warn}.
    Attached C{D:} blocks appear only when debug is enabled.
    """
    return _prefixed(_render(event, isEnabled(LogLevel.debug)))


def logStartup(version: str) -> None:
    """
    Log what echoscp prints first under C{-d} (C{D: echoscp.py v0.7.0}
    and an empty C{D: } line), with our name and version: the C{startup}
    event, at debug level, under every entry point.
    """
    if isEnabled(LogLevel.debug):
        log.debug(
            "dicomecho v{version}", dicomEvent=EventName.STARTUP.value, peer="", version=version
        )


# --- observers ------------------------------------------------------------------------


@implementer(ILogObserver)
class _LineObserver:
    """
    Write the lines C{lines(event)} returns to a text stream and flush.
    An event logged while writing (the stream itself logging, as a
    redirected standard stream does) is dropped rather than recursed into.
    """

    def __init__(self, lines: Callable[[LogEvent], list[str]], stream: TextIO) -> None:
        self._lines = lines
        self._stream = stream
        self._writing = False

    def __call__(self, event: LogEvent) -> None:
        if self._writing:
            return
        lines = self._lines(event)
        if not lines:
            return
        text = "".join(line + "\n" for line in lines)
        self._writing = True
        try:
            try:
                self._stream.write(text)
            except UnicodeEncodeError:
                encoding = getattr(self._stream, "encoding", None) or "ascii"
                self._stream.write(
                    text.encode(encoding, "backslashreplace").decode(encoding)
                )
            self._stream.flush()
        finally:
            self._writing = False


def consoleObserver(stream: TextIO | None = None) -> ILogObserver:
    """
    An observer writing L{renderEcho}'s lines to C{stream}. Called with no
    arguments by C{twistd --logger dicomecho.logs.consoleObserver}: the
    default is the standard error stream when the observer is made, before
    twistd redirects standard I/O into the log.
    """
    return _LineObserver(renderEcho, sys.stderr if stream is None else stream)


def _plain(value: object) -> tuple[bool, object]:
    """
    Whether C{value} may go into a JSON record, and its JSON form: plain
    values and lists or tuples of them; never other objects.
    """
    if isinstance(value, bool) or value is None:
        return True, value
    if isinstance(value, int):
        return True, int(value)
    if isinstance(value, float):
        return True, value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return True, str(value)
    if isinstance(value, (list, tuple)):
        items = [_plain(item) for item in value]
        if all(ok and not isinstance(item, (list, tuple)) for ok, item in items):
            return True, [item for _, item in items]
    return False, None


def _timestamp(event: LogEvent) -> str | None:
    when = event.get("log_time")
    if not isinstance(when, (int, float)):
        return None
    return datetime.fromtimestamp(when, timezone.utc).isoformat()


def jsonRecord(event: LogEvent) -> dict[str, object] | None:
    """
    The JSON record for one event, C{None} if it is not logged: the same
    events as L{renderEcho} shows, plus the association summary. Fields
    that are plain values are copied; objects (PDUs, messages, failures)
    never are.
    """
    level = _level(event)
    ours = _isOurs(event)
    if level is None or (ours and not isEnabled(level)):
        return None
    lines = _render(event, debug=False)
    if not ours and not lines:
        return None
    own = [text for lineLevel, text in lines if lineLevel is not None]
    record: dict[str, object] = {
        "time": _timestamp(event),
        "level": level.name,
        "namespace": event.get("log_namespace"),
    }
    if ours and "dicomEvent" in event:
        record["dicomEvent"] = event["dicomEvent"]
    if own and event.get("dicomEvent") not in _JSON_TEXT_IS_FORMAT:
        record["text"] = own[0]
    else:
        record["text"] = formatEvent(event)
    if ours:
        for key, value in event.items():
            if not key.startswith("log_"):
                ok, plain = _plain(value)
                if ok:
                    record.setdefault(key, plain)
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        record["traceback"] = failure.getTraceback()
    return record


def _jsonLines(event: LogEvent) -> list[str]:
    record = jsonRecord(event)
    if record is None:
        return []
    return [json.dumps(record, allow_nan=False)]


def jsonObserver(stream: TextIO | None = None) -> ILogObserver:
    """
    An observer writing one JSON object a line (see L{jsonRecord}) to
    C{stream}; by default, the standard output stream when the observer is
    made. Called with no arguments by C{twistd --logger
    dicomecho.logs.jsonObserver}.
    """
    return _LineObserver(_jsonLines, sys.stdout if stream is None else stream)
