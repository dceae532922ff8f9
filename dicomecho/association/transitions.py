# -*- test-case-name: tests.test_transitions -*-
"""
PS3.8 Table 9-10, the DICOM Upper Layer state transition table, for every
state an association-acceptor can be in: written so it can be held against
the standard cell by cell. L{dicomecho.association.fsm} runs it.

Sta4 and Sta5 (and Evt1, Evt2) belong to the association-requestor alone
and are left out. The release-collision states Sta7 and Sta9-Sta12 are
kept: they become reachable if the local user ever requests a release
(Evt11).
"""

from __future__ import annotations

from enum import Enum

from dicomecho.wire.pdu import PDUType

__all__ = ["State", "Event", "TRANSITIONS", "PEER_EVENTS", "PDU_EVENTS"]


class State(Enum):
    """
    PS3.8 Tables 9-1 to 9-5, acceptor-reachable states.
    """

    STA1 = "Sta1"  # Idle
    STA2 = "Sta2"  # Transport connection open (awaiting A-ASSOCIATE-RQ PDU)
    STA3 = "Sta3"  # Awaiting local A-ASSOCIATE response primitive
    STA6 = "Sta6"  # Association established and ready for data transfer
    STA7 = "Sta7"  # Awaiting A-RELEASE-RP PDU
    STA8 = "Sta8"  # Awaiting local A-RELEASE response primitive
    STA9 = "Sta9"  # Release collision requestor side; awaiting A-RELEASE response
    STA10 = "Sta10"  # Release collision acceptor side; awaiting A-RELEASE-RP PDU
    STA11 = "Sta11"  # Release collision requestor side; awaiting A-RELEASE-RP PDU
    STA12 = "Sta12"  # Release collision acceptor side; awaiting A-RELEASE response
    STA13 = "Sta13"  # Awaiting transport connection close indication

    # Members are singletons compared by identity: hash them the same way,
    # in C, rather than by Enum's Python-level hash of the name (the table
    # is looked up several times per PDU).
    __hash__ = object.__hash__


class Event(Enum):
    """
    PS3.8 Table 9-10 events an acceptor can see (Evt1 and Evt2 are the
    requestor's).
    """

    EVT3 = "Evt3"  # A-ASSOCIATE-AC PDU received
    EVT4 = "Evt4"  # A-ASSOCIATE-RJ PDU received
    EVT5 = "Evt5"  # Transport connection indication
    EVT6 = "Evt6"  # A-ASSOCIATE-RQ PDU received
    EVT7 = "Evt7"  # A-ASSOCIATE response primitive (accept)
    EVT8 = "Evt8"  # A-ASSOCIATE response primitive (reject)
    EVT9 = "Evt9"  # P-DATA request primitive
    EVT10 = "Evt10"  # P-DATA-TF PDU received
    EVT11 = "Evt11"  # A-RELEASE request primitive
    EVT12 = "Evt12"  # A-RELEASE-RQ PDU received
    EVT13 = "Evt13"  # A-RELEASE-RP PDU received
    EVT14 = "Evt14"  # A-RELEASE response primitive
    EVT15 = "Evt15"  # A-ABORT request primitive
    EVT16 = "Evt16"  # A-ABORT PDU received
    EVT17 = "Evt17"  # Transport connection closed indication
    EVT18 = "Evt18"  # ARTIM timer expired
    EVT19 = "Evt19"  # Unrecognized or invalid PDU received

    __hash__ = object.__hash__  # as State's


S = State
E = Event

#: PS3.8 Table 9-10, acceptor states. Keys are (state, event); values are
#: the action names of Tables 9-6 to 9-9.
TRANSITIONS: dict[tuple[State, Event], str] = {
    # Sta1: idle
    (S.STA1, E.EVT5): "AE-5",
    # Sta2: transport open, awaiting A-ASSOCIATE-RQ
    (S.STA2, E.EVT3): "AA-1",
    (S.STA2, E.EVT4): "AA-1",
    (S.STA2, E.EVT6): "AE-6",
    (S.STA2, E.EVT10): "AA-1",
    (S.STA2, E.EVT12): "AA-1",
    (S.STA2, E.EVT13): "AA-1",
    (S.STA2, E.EVT16): "AA-2",
    (S.STA2, E.EVT17): "AA-5",
    (S.STA2, E.EVT18): "AA-2",
    (S.STA2, E.EVT19): "AA-1",
    # Sta3: awaiting local A-ASSOCIATE response
    (S.STA3, E.EVT3): "AA-8",
    (S.STA3, E.EVT4): "AA-8",
    (S.STA3, E.EVT6): "AA-8",
    (S.STA3, E.EVT7): "AE-7",
    (S.STA3, E.EVT8): "AE-8",
    (S.STA3, E.EVT10): "AA-8",
    (S.STA3, E.EVT12): "AA-8",
    (S.STA3, E.EVT13): "AA-8",
    (S.STA3, E.EVT15): "AA-1",
    (S.STA3, E.EVT16): "AA-3",
    (S.STA3, E.EVT17): "AA-4",
    (S.STA3, E.EVT19): "AA-8",
    # Sta6: association established
    (S.STA6, E.EVT3): "AA-8",
    (S.STA6, E.EVT4): "AA-8",
    (S.STA6, E.EVT6): "AA-8",
    (S.STA6, E.EVT9): "DT-1",
    (S.STA6, E.EVT10): "DT-2",
    (S.STA6, E.EVT11): "AR-1",
    (S.STA6, E.EVT12): "AR-2",
    (S.STA6, E.EVT13): "AA-8",
    (S.STA6, E.EVT15): "AA-1",
    (S.STA6, E.EVT16): "AA-3",
    (S.STA6, E.EVT17): "AA-4",
    (S.STA6, E.EVT19): "AA-8",
    # Sta7: awaiting A-RELEASE-RP
    (S.STA7, E.EVT3): "AA-8",
    (S.STA7, E.EVT4): "AA-8",
    (S.STA7, E.EVT6): "AA-8",
    (S.STA7, E.EVT10): "AR-6",
    (S.STA7, E.EVT12): "AR-8",
    (S.STA7, E.EVT13): "AR-3",
    (S.STA7, E.EVT15): "AA-1",
    (S.STA7, E.EVT16): "AA-3",
    (S.STA7, E.EVT17): "AA-4",
    (S.STA7, E.EVT19): "AA-8",
    # Sta8: awaiting local A-RELEASE response
    (S.STA8, E.EVT3): "AA-8",
    (S.STA8, E.EVT4): "AA-8",
    (S.STA8, E.EVT6): "AA-8",
    (S.STA8, E.EVT9): "AR-7",
    (S.STA8, E.EVT10): "AA-8",
    (S.STA8, E.EVT12): "AA-8",
    (S.STA8, E.EVT13): "AA-8",
    (S.STA8, E.EVT14): "AR-4",
    (S.STA8, E.EVT15): "AA-1",
    (S.STA8, E.EVT16): "AA-3",
    (S.STA8, E.EVT17): "AA-4",
    (S.STA8, E.EVT19): "AA-8",
    # Sta9: release collision requestor side, awaiting A-RELEASE response
    (S.STA9, E.EVT3): "AA-8",
    (S.STA9, E.EVT4): "AA-8",
    (S.STA9, E.EVT6): "AA-8",
    (S.STA9, E.EVT10): "AA-8",
    (S.STA9, E.EVT12): "AA-8",
    (S.STA9, E.EVT13): "AA-8",
    (S.STA9, E.EVT14): "AR-9",
    (S.STA9, E.EVT15): "AA-1",
    (S.STA9, E.EVT16): "AA-3",
    (S.STA9, E.EVT17): "AA-4",
    (S.STA9, E.EVT19): "AA-8",
    # Sta10: release collision acceptor side, awaiting A-RELEASE-RP
    (S.STA10, E.EVT3): "AA-8",
    (S.STA10, E.EVT4): "AA-8",
    (S.STA10, E.EVT6): "AA-8",
    (S.STA10, E.EVT10): "AA-8",
    (S.STA10, E.EVT12): "AA-8",
    (S.STA10, E.EVT13): "AR-10",
    (S.STA10, E.EVT15): "AA-1",
    (S.STA10, E.EVT16): "AA-3",
    (S.STA10, E.EVT17): "AA-4",
    (S.STA10, E.EVT19): "AA-8",
    # Sta11: release collision requestor side, awaiting A-RELEASE-RP
    (S.STA11, E.EVT3): "AA-8",
    (S.STA11, E.EVT4): "AA-8",
    (S.STA11, E.EVT6): "AA-8",
    (S.STA11, E.EVT10): "AA-8",
    (S.STA11, E.EVT12): "AA-8",
    (S.STA11, E.EVT13): "AR-3",
    (S.STA11, E.EVT15): "AA-1",
    (S.STA11, E.EVT16): "AA-3",
    (S.STA11, E.EVT17): "AA-4",
    (S.STA11, E.EVT19): "AA-8",
    # Sta12: release collision acceptor side, awaiting A-RELEASE response
    (S.STA12, E.EVT3): "AA-8",
    (S.STA12, E.EVT4): "AA-8",
    (S.STA12, E.EVT6): "AA-8",
    (S.STA12, E.EVT10): "AA-8",
    (S.STA12, E.EVT12): "AA-8",
    (S.STA12, E.EVT13): "AA-8",
    (S.STA12, E.EVT14): "AR-4",
    (S.STA12, E.EVT15): "AA-1",
    (S.STA12, E.EVT16): "AA-3",
    (S.STA12, E.EVT17): "AA-4",
    (S.STA12, E.EVT19): "AA-8",
    # Sta13: awaiting transport close
    (S.STA13, E.EVT3): "AA-6",
    (S.STA13, E.EVT4): "AA-6",
    (S.STA13, E.EVT6): "AA-7",
    (S.STA13, E.EVT10): "AA-6",
    (S.STA13, E.EVT12): "AA-6",
    (S.STA13, E.EVT13): "AA-6",
    (S.STA13, E.EVT16): "AA-2",
    (S.STA13, E.EVT17): "AR-5",
    (S.STA13, E.EVT18): "AA-2",
    (S.STA13, E.EVT19): "AA-7",
}

#: Events caused by the peer or the network; every acceptor state that can
#: see them has a cell (ARTIM only runs in Sta2 and Sta13).
PEER_EVENTS = frozenset(
    {E.EVT3, E.EVT4, E.EVT6, E.EVT10, E.EVT12, E.EVT13, E.EVT16, E.EVT17, E.EVT19}
)

#: The event each received PDU type is (PS3.8 Table 9-10, Evt3 to Evt16).
PDU_EVENTS: dict[int, Event] = {
    PDUType.A_ASSOCIATE_AC: E.EVT3,
    PDUType.A_ASSOCIATE_RJ: E.EVT4,
    PDUType.A_ASSOCIATE_RQ: E.EVT6,
    PDUType.P_DATA_TF: E.EVT10,
    PDUType.A_RELEASE_RQ: E.EVT12,
    PDUType.A_RELEASE_RP: E.EVT13,
    PDUType.A_ABORT: E.EVT16,
}
