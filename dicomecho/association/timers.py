# -*- test-case-name: tests.test_association -*-
"""
An association's timers as deadlines, without a clock.

ARTIM (PS3.8 §9.1.5) runs in Sta2 and Sta13; the network timer (no byte
received while associated) in Sta6 and Sta8; they never run at once, so
they are one I{phase} timer. The DIMSE timer runs while a message is half
received. L{Timers.deadline} is the earliest of them: the server arranges
to call back then (as aioquic's C{get_timer}/C{handle_timer}), and
L{Timers.expired} says which timer, if any, is due.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["RESOLUTION", "Timer", "Timers"]

#: A timer with less than this left is due: the server's clock may call
#: back a rounding error early.
RESOLUTION = 1e-3


class Timer(Enum):
    """
    The association's timers.
    """

    ARTIM = "ARTIM"
    NETWORK = "Network"
    DIMSE = "DIMSE"

    __hash__ = object.__hash__


# Read as a module constant: on Python 3.11 reading a member from its Enum
# class runs EnumType's attribute hook.
_DIMSE, _NETWORK = Timer.DIMSE, Timer.NETWORK


class Timers:
    """
    The running timers of one association and when each is due.

    @ivar phase: L{Timer.ARTIM}, L{Timer.NETWORK} or C{None}.
    @ivar dimseDue: when the DIMSE timer is due, C{None} when it does not run.
    @ivar lastReceived: when the peer last sent bytes (the network timer
        runs from it).
    @ivar deadline: the earliest time a running timer is due, or C{None}.
    """

    __slots__ = ("phase", "_phaseDue", "dimseDue", "lastReceived", "deadline")

    def __init__(self) -> None:
        self.phase: Timer | None = None
        self._phaseDue = 0.0
        self.dimseDue: float | None = None
        self.lastReceived = 0.0
        self.deadline: float | None = None

    def startPhase(self, timer: Timer, due: float) -> None:
        """
        Start (or move) ARTIM or the network timer; it replaces the other.
        """
        self.phase = timer
        self._phaseDue = due
        dimseDue = self.dimseDue
        self.deadline = due if dimseDue is None or due < dimseDue else dimseDue

    def stopPhase(self, timer: Timer) -> None:
        """
        Stop C{timer} if it is the phase timer running.
        """
        if self.phase is timer:
            self.phase = None
            self.deadline = self.dimseDue

    def setDIMSE(self, due: float | None) -> None:
        """
        Start the DIMSE timer, due at C{due}, or stop it (C{None}).
        """
        self.dimseDue = due
        if self.phase is None:
            self.deadline = due
        elif due is None or self._phaseDue < due:
            self.deadline = self._phaseDue
        else:
            self.deadline = due

    def trackMessage(self, inProgress: bool, due: float) -> None:
        """
        The DIMSE timer runs from a message's first fragment to its last:
        it starts, due at C{due}, when one is half received (C{inProgress})
        and stops when none is.
        """
        if inProgress:
            if self.dimseDue is None:
                self.setDIMSE(due)
        elif self.dimseDue is not None:
            self.setDIMSE(None)

    def stopAssociationTimers(self) -> None:
        """
        The association ended: the network and DIMSE timers stop (ARTIM
        may run on, in Sta13).
        """
        self.dimseDue = None
        if self.phase is _NETWORK:
            self.phase = None
        self.deadline = self._phaseDue if self.phase is not None else None

    def expired(self, now: float, networkTimeout: float) -> Timer | None:
        """
        The timer due at C{now}, stopped (the DIMSE timer first); C{None}
        if none is. The network timer is due C{networkTimeout} after the
        last byte received: it is moved there rather than on every read
        (one timer event per period, not per PDU).
        """
        soon = now + RESOLUTION
        dimseDue = self.dimseDue
        if dimseDue is not None and dimseDue <= soon:
            self.setDIMSE(None)
            return _DIMSE
        phase = self.phase
        if phase is None or self._phaseDue > soon:
            return None
        if phase is _NETWORK:
            remaining = networkTimeout - (now - self.lastReceived)
            # Compare with a margin: float rounding can leave a remainder so
            # small that adding it to the time changes nothing, and moving
            # the timer by it would fire again at once, forever (found by
            # fuzz/fuzz_dicomecho.py).
            if remaining > RESOLUTION:
                self.startPhase(_NETWORK, now + remaining)
                return None
        self.stopPhase(phase)
        return phase
