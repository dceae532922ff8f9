"""
Tests for L{dicomecho.association.transitions}: the acceptor's part of PS3.8
Table 9-10, checked against an independent transcription (pynetdicom's),
and a cell for every event a peer can cause.
"""

from __future__ import annotations

import pytest

from dicomecho.association.transitions import (
    PDU_EVENTS,
    PEER_EVENTS,
    TRANSITIONS,
    Event,
    State,
)
from dicomecho.wire.pdu import PDUType


def test_tableMatchesIndependentTranscription() -> None:
    """
    Every cell of our table equals pynetdicom's transcription of PS3.8
    Table 9-10, and pynetdicom has no cell for our states and events that
    we lack.
    """
    fsm = pytest.importorskip("pynetdicom.fsm")
    theirs = fsm.TRANSITION_TABLE
    for (state, event), action in TRANSITIONS.items():
        assert theirs[(event.value, state.value)] == action, (state, event)
    ours = {(e.value, s.value) for (s, e) in TRANSITIONS}
    for (event, state) in theirs:
        if state in {s.value for s in State} and event in {e.value for e in Event}:
            assert (event, state) in ours, (state, event)


def test_peerEventsHaveCellsEverywhere() -> None:
    """
    Whatever the peer sends, in any state past Sta1, there is a defined
    action: nothing a peer does can hit an undefined cell.
    """
    for state in State:
        if state is State.STA1:
            continue
        for event in PEER_EVENTS:
            assert (state, event) in TRANSITIONS, (state, event)
    # ARTIM runs only in Sta2 and Sta13.
    assert {s for (s, e) in TRANSITIONS if e is Event.EVT18} == {State.STA2, State.STA13}


def test_pduEvents() -> None:
    """
    Each of the seven PDU types is its own event (PS3.8 Table 9-10), and
    every one of them is a peer event.
    """
    assert set(PDU_EVENTS) == set(PDUType)
    assert len(set(PDU_EVENTS.values())) == len(PDUType)
    assert set(PDU_EVENTS.values()) <= PEER_EVENTS
