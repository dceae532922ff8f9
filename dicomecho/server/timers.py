# -*- test-case-name: tests.test_protocol -*-
"""
An association's timers on an injected L{IReactorTime}.

ARTIM (Sta2, Sta13) and the network timer (Sta6, Sta8) never run at once:
they share one DelayedCall, the phase timer, which records which of them
it is. The DIMSE timer has its own. Each runs on its own, so a
half-received PDU cannot hold a connection open.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dicomecho.association.effects import Timer

__all__ = ["AssociationTimers", "TimerOwner"]


class TimerOwner(Protocol):
    """
    Told when one of its timers is due.
    """

    def timerExpired(self, timer: Timer) -> None: ...


class AssociationTimers:
    """
    The phase timer (ARTIM or network) and the DIMSE timer of one
    connection.
    """

    __slots__ = ("_clock", "_owner", "_phaseCall", "_phase", "_dimseCall")

    def __init__(self, clock: IReactorTime, owner: TimerOwner) -> None:
        self._clock = clock
        self._owner = owner
        self._phaseCall: IDelayedCall | None = None
        self._phase: Timer | None = None
        self._dimseCall: IDelayedCall | None = None

    def start(self, timer: Timer, delay: float) -> None:
        """
        Start C{timer}, due in C{delay} seconds.
        """
        if timer is Timer.DIMSE:
            if self._dimseCall is None:
                self._dimseCall = self._clock.callLater(delay, self._dimseFired)
            return
        self._setPhase(timer, delay)

    def stop(self, timer: Timer) -> None:
        """
        Stop C{timer}. A stopped phase leaves its call pending for the next
        phase to move; if none comes, it fires and does nothing, or
        L{cancelAll} cancels it.
        """
        if timer is Timer.DIMSE:
            call, self._dimseCall = self._dimseCall, None
            if call is not None and call.active():
                call.cancel()
        elif self._phase is timer:
            self._phase = None

    def cancelAll(self) -> None:
        """
        The connection is gone: cancel every pending call.
        """
        for call in (self._phaseCall, self._dimseCall):
            if call is not None and call.active():
                call.cancel()
        self._phaseCall = self._dimseCall = None
        self._phase = None

    def _setPhase(self, timer: Timer, delay: float) -> None:
        """
        Make the phase timer C{timer}, due in C{delay} seconds.

        A pending call is moved later with C{reset()} rather than cancelled
        and re-created: a connection then makes one DelayedCall, not three
        (about 7% of an association's instructions, benchmarks/instructions.py).
        A call due later than wanted is replaced instead, as the reactor
        moves a call sooner by a linear search of its queue.
        """
        self._phase = timer
        call = self._phaseCall
        if call is not None and call.active():
            if call.getTime() <= self._clock.seconds() + delay:
                call.reset(delay)
                return
            call.cancel()
        self._phaseCall = self._clock.callLater(delay, self._phaseFired)

    def _phaseFired(self) -> None:
        self._phaseCall = None
        phase, self._phase = self._phase, None
        if phase is not None:
            self._owner.timerExpired(phase)

    def _dimseFired(self) -> None:
        self._dimseCall = None
        self._owner.timerExpired(Timer.DIMSE)
