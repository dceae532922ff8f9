# -*- test-case-name: tests.test_ping_association -*-
"""
How a health check ends: its exit status, its result, and the typed
failure every step of it raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from dicomecho.wire.errors import AbortReason, AbortSource

__all__ = ["ExitCode", "PingResult", "PingFailure", "USER_ABORT"]


class ExitCode(IntEnum):
    """
    The exit status of C{python -m dicomecho.ping} and L{PingResult.exitCode}.
    """

    OK = 0
    REJECTED = 1
    USAGE = 2
    UNREACHABLE = 3
    TIMEOUT = 4
    PROTOCOL = 5


@dataclass(frozen=True)
class PingResult:
    """
    The outcome of one L{dicomecho.cli.pingassociation.ping}.

    @ivar ok: whether the C-ECHO succeeded (status 0x0000).
    @ivar exitCode: an L{ExitCode}.
    @ivar message: one line saying what happened; never contains the
        passcode.
    @ivar elapsed: seconds from the start of the DNS lookup to the end.
    @ivar tlsVersion: the negotiated TLS version (e.g. C{"TLSv1.3"}), or
        C{None} without TLS or before the handshake completed.
    @ivar status: the C-ECHO-RSP Status, or C{None} if none arrived.
    """

    ok: bool
    exitCode: ExitCode
    message: str
    elapsed: float
    tlsVersion: str | None = None
    status: int | None = None


#: The A-ABORT we send when we give up (PS3.8 Table 9-26).
USER_ABORT = (AbortSource.SERVICE_USER, AbortReason.REASON_NOT_SPECIFIED)


class PingFailure(Exception):
    """
    Why the ping failed.

    @ivar exitCode: an L{ExitCode}.
    @ivar message: the line to report.
    @ivar abort: C{(source, reason)} of the A-ABORT to send before closing,
        or C{None} to just close.
    @ivar soft: the association is still up: release it, then report.
    """

    def __init__(
        self,
        exitCode: ExitCode,
        message: str,
        abort: tuple[int, int] | None = None,
        soft: bool = False,
    ) -> None:
        super().__init__(message)
        self.exitCode = exitCode
        self.message = message
        self.abort = abort
        self.soft = soft
