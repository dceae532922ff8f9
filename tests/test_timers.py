"""
Tests for L{dicomecho.association.timers}: an association's timers as
deadlines, with numbers for "now".
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dicomecho.association.timers import RESOLUTION, Timer, Timers


def test_nothingRunsAtFirst() -> None:
    timers = Timers()
    assert timers.deadline is None and timers.phase is None
    assert timers.expired(1e9, 60.0) is None


def test_phaseTimersReplaceEachOther() -> None:
    """
    ARTIM and the network timer are one phase timer: starting one replaces
    the other, and stopping one that does not run changes nothing.
    """
    timers = Timers()
    timers.startPhase(Timer.ARTIM, 30.0)
    timers.startPhase(Timer.NETWORK, 70.0)
    assert (timers.phase, timers.deadline) == (Timer.NETWORK, 70.0)
    timers.stopPhase(Timer.ARTIM)
    assert (timers.phase, timers.deadline) == (Timer.NETWORK, 70.0)
    timers.stopPhase(Timer.NETWORK)
    assert (timers.phase, timers.deadline) == (None, None)


def test_dimseBeforeNetwork() -> None:
    """
    The deadline is the earlier of the phase and DIMSE timers; when both
    are due the DIMSE timer is handled first, then the phase timer.
    """
    timers = Timers()
    timers.startPhase(Timer.NETWORK, 60.0)
    timers.trackMessage(True, 20.0)
    assert timers.deadline == 20.0
    timers.trackMessage(True, 25.0)  # still the same message: not moved
    assert timers.deadline == 20.0
    timers.lastReceived = 0.0
    assert timers.expired(19.0, 60.0) is None
    assert timers.expired(61.0, 60.0) is Timer.DIMSE
    assert timers.deadline == 60.0
    assert timers.expired(61.0, 60.0) is Timer.NETWORK
    assert timers.deadline is None


def test_messageCompleteStopsDIMSE() -> None:
    timers = Timers()
    timers.startPhase(Timer.NETWORK, 60.0)
    timers.trackMessage(True, 20.0)
    timers.trackMessage(False, 30.0)
    assert (timers.dimseDue, timers.deadline) == (None, 60.0)


def test_networkTimerMovesToLastByte() -> None:
    """
    The network timer is due C{networkTimeout} after the last byte: when it
    fires early it moves there instead of expiring.
    """
    timers = Timers()
    timers.startPhase(Timer.NETWORK, 60.0)
    timers.lastReceived = 40.0
    assert timers.expired(60.0, 60.0) is None
    assert (timers.phase, timers.deadline) == (Timer.NETWORK, 100.0)
    assert timers.expired(100.0, 60.0) is Timer.NETWORK
    assert timers.phase is None


def test_associationEndStopsNetworkAndDIMSE() -> None:
    timers = Timers()
    timers.startPhase(Timer.NETWORK, 60.0)
    timers.trackMessage(True, 20.0)
    timers.stopAssociationTimers()
    assert (timers.phase, timers.dimseDue, timers.deadline) == (None, None, None)
    timers.startPhase(Timer.ARTIM, 30.0)
    timers.stopAssociationTimers()
    assert (timers.phase, timers.deadline) == (Timer.ARTIM, 30.0)


def test_dueWithinResolution() -> None:
    """
    A callback a rounding error early still finds its timer due.
    """
    timers = Timers()
    timers.startPhase(Timer.ARTIM, 30.0)
    assert timers.expired(30.0 - RESOLUTION / 2, 60.0) is Timer.ARTIM


_operations = st.lists(
    st.one_of(
        st.tuples(st.just("phase"), st.sampled_from([Timer.ARTIM, Timer.NETWORK]),
                  st.floats(0, 1e6)),
        st.tuples(st.just("stop"), st.sampled_from([Timer.ARTIM, Timer.NETWORK]), st.just(0.0)),
        st.tuples(st.just("message"), st.booleans(), st.floats(0, 1e6)),
        st.tuples(st.just("end"), st.none(), st.just(0.0)),
    ),
    max_size=30,
)


@given(_operations)
def test_deadlineIsTheEarliestRunningTimer(operations: list[tuple[str, object, float]]) -> None:
    """
    Whatever starts and stops, the deadline is the earliest running timer,
    or C{None} when none runs.
    """
    timers = Timers()
    phase: tuple[Timer, float] | None = None
    dimse: float | None = None
    for kind, what, when in operations:
        if kind == "phase":
            timers.startPhase(what, when)  # type: ignore[arg-type]
            phase = (what, when)  # type: ignore[assignment]
        elif kind == "stop":
            timers.stopPhase(what)  # type: ignore[arg-type]
            if phase is not None and phase[0] is what:
                phase = None
        elif kind == "message":
            timers.trackMessage(bool(what), when)
            if what and dimse is None:
                dimse = when
            elif not what:
                dimse = None
        else:
            timers.stopAssociationTimers()
            dimse = None
            if phase is not None and phase[0] is Timer.NETWORK:
                phase = None
        running = [t for t in (phase[1] if phase else None, dimse) if t is not None]
        assert timers.deadline == (min(running) if running else None)
        assert timers.phase == (phase[0] if phase else None)
