# -*- test-case-name: tests.test_logs -*-
"""
The logger every dicomecho module emits through, and its level.

L{log} emits through a filter on the C{dicomecho} namespace, so
C{-q}/C{-v}/C{-d}/C{-ll} take effect under any runner and any observer
(twistd's, ours, a test's). L{isEnabled} lets a caller skip building an
event that would be dropped.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    LogEvent,
    Logger,
    LogLevel,
    PredicateResult,
    globalLogPublisher,
)
from zope.interface import implementer

__all__ = ["NAMESPACE", "LOG_LEVEL_NAMES", "log", "setLogLevel", "logLevel", "isEnabled", "enabledCheck", "passes"]

#: The namespace of every dicomecho event.
NAMESPACE = "dicomecho"

#: echoscp's -ll names (pynetdicom's docs also say "warning").
LOG_LEVEL_NAMES: dict[str, LogLevel] = {
    "critical": LogLevel.critical,
    "error": LogLevel.error,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "info": LogLevel.info,
    "debug": LogLevel.debug,
}


@implementer(ILogFilterPredicate)
class _LevelFilter:
    """
    Pass dicomecho events at or above the current level; C{None} (quiet)
    passes none. Other namespaces are left to the observer.
    """

    def __init__(self) -> None:
        self.level: LogLevel | None = None
        #: The levels that pass, as a set: a membership test is cheaper than
        #: ordering L{LogLevel}s, and callers test it per PDU. Changed in
        #: place, never replaced: L{enabledCheck} holds it.
        self.enabled: set[LogLevel] = set()
        self.setLevel(LogLevel.info)

    def setLevel(self, level: LogLevel | None) -> None:
        self.level = level
        self.enabled.clear()
        if level is not None:
            self.enabled.update(each for each in LogLevel.iterconstants() if each >= level)

    def passes(self, level: LogLevel, always: object = False) -> bool:
        """
        Whether an event at C{level} passes; one flagged C{always} (a
        security warning at start-up) passes at any level but quiet.
        """
        return level in self.enabled or (bool(always) and self.level is not None)

    def __call__(self, event: LogEvent) -> PredicateResult:
        if self.passes(event["log_level"], event.get("dicomAlways")):
            return PredicateResult.maybe
        return PredicateResult.no


_filter = _LevelFilter()


class _LevelGatedLogger(Logger):
    """
    A L{Logger} that drops an event below the current level before Twisted
    builds it. Several info events are emitted per association while the
    command line's default level is error: building and filtering them cost
    about a tenth of an association's CPU (benchmarks/hotpath.py).
    """

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if level in _filter.enabled or _filter.passes(level, kwargs.get("dicomAlways")):
            Logger.emit(self, level, format, **kwargs)


#: The logger every dicomecho module emits through.
log: Logger = _LevelGatedLogger(
    namespace=NAMESPACE,
    observer=FilteringLogObserver(globalLogPublisher, [_filter]),
)


def setLogLevel(level: LogLevel | None) -> None:
    """
    Set the least severe level dicomecho emits; C{None} emits nothing
    (echoscp's C{-q}). The default, for library use, is C{info}.
    """
    _filter.setLevel(level)


def logLevel() -> LogLevel | None:
    """
    The current level, or C{None} when quiet.
    """
    return _filter.level


def isEnabled(level: LogLevel) -> bool:
    """
    Whether an event at C{level} would be emitted; lets callers skip
    building expensive events (the C{-d} blocks).
    """
    return level in _filter.enabled


def enabledCheck(level: LogLevel) -> Callable[[], bool]:
    """
    A function of no arguments that says whether C{level} is enabled at the
    time it is called: L{isEnabled} for checks made per PDU, as one C call
    (no Python frame).
    """
    return partial(_filter.enabled.__contains__, level)


# --- rendering helpers ---------------------------------------------------------

#: A rendered line before its prefix: the level whose letter prefixes it,
#: or C{None} for a line printed as is (a traceback).


def passes(level: LogLevel, always: object = False) -> bool:
    """
    Whether an event at C{level} passes the filter (one flagged C{always}
    passes at any level but quiet).
    """
    return _filter.passes(level, always)
