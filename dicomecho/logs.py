# -*- test-case-name: tests.test_logs -*-
"""
dicomecho's log events, their level filter, and their renderings.

Every event is emitted once, by L{log}, with structured fields (the peer,
the PDUs, the outcome); see the event table in README.rst. The echoscp
C{I:}/C{D:}/C{E:} text and the JSON lines are two renderings of the same
events.

L{log} emits through a filter on the C{dicomecho} namespace, so
C{-q}/C{-v}/C{-d}/C{-ll} take effect under any runner and any observer
(twistd's, ours, a test's).
"""

from __future__ import annotations

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

__all__ = [
    "NAMESPACE",
    "log",
    "setLogLevel",
    "logLevel",
    "isEnabled",
    "LOG_LEVEL_NAMES",
]

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
        self.level: LogLevel | None = LogLevel.info

    def __call__(self, event: LogEvent) -> PredicateResult:
        if self.level is None:
            return PredicateResult.no
        if event["log_level"] < self.level:
            return PredicateResult.no
        return PredicateResult.maybe


_filter = _LevelFilter()

#: The logger every dicomecho module emits through.
log = Logger(
    namespace=NAMESPACE,
    observer=FilteringLogObserver(globalLogPublisher, [_filter]),
)


def setLogLevel(level: LogLevel | None) -> None:
    """
    Set the least severe level dicomecho emits; C{None} emits nothing
    (echoscp's C{-q}). The default, for library use, is C{info}.
    """
    _filter.level = level


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
    current = _filter.level
    return current is not None and level >= current
