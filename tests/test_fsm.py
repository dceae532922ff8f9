"""
Tests for L{dicomecho.association.fsm}: every (state, event) cell of the
acceptor's part of PS3.8 Table 9-10 runs its action, and what each action
does. The table itself is checked in C{tests.test_transitions}.
"""

from __future__ import annotations

import pytest

from dicomecho.wire.errors import AbortReason, LocalProtocolError, PDUDecodeError
from dicomecho.association.transitions import TRANSITIONS, Event, State
from dicomecho.association.fsm import (
    AbortIndication,
    AcceptorStateMachine,
    AssociateIndication,
    CloseTransport,
    DataIndication,
    PDUIgnored,
    ReleaseConfirmation,
    ReleaseIndication,
    SendPDU,
    StartARTIM,
    StopARTIM,
)
from dicomecho.association.transitions import PEER_EVENTS
from dicomecho.wire.pdu import (
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    PresentationDataValue,
    ReleaseRP,
    ReleaseRQ,
    decode,
)

RQ = AssociateRQ("ECHOSCP", "SCU")
AC = AssociateAC("ECHOSCP", "SCU")
RJ = AssociateRJ(1, 1, 1)
PDATA = PDataTF((PresentationDataValue(1, True, True, b"\0\0"),))
PEER_ABORT = Abort(0, 0)
BAD = PDUDecodeError("bad item", AbortReason.INVALID_PDU_PARAMETER_VALUE)

PDUS = {
    Event.EVT3: AC,
    Event.EVT4: RJ,
    Event.EVT6: RQ,
    Event.EVT10: PDATA,
    Event.EVT12: ReleaseRQ(),
    Event.EVT13: ReleaseRP(),
    Event.EVT16: PEER_ABORT,
}


def fire(machine: AcceptorStateMachine, event: Event) -> list[object]:
    """
    Feed C{event} to C{machine} with a representative input.
    """
    if event in PDUS:
        return machine.pduReceived(PDUS[event])  # type: ignore[arg-type]
    calls = {
        Event.EVT5: machine.transportConnected,
        Event.EVT7: lambda: machine.associateResponse(AC),
        Event.EVT8: lambda: machine.associateResponse(RJ),
        Event.EVT9: lambda: machine.dataRequest([b"pdu-1", b"pdu-2"]),
        Event.EVT11: machine.releaseRequest,
        Event.EVT14: machine.releaseResponse,
        Event.EVT15: machine.abortRequest,
        Event.EVT17: machine.transportClosed,
        Event.EVT18: machine.artimExpired,
        Event.EVT19: lambda: machine.invalidPDUReceived(BAD),
    }
    return calls[event]()  # type: ignore[no-any-return]


# What each action must do: (next state or None if it depends, effect types).
ACTION_EFFECTS: dict[str, tuple[State | None, list[type]]] = {
    "AE-5": (State.STA2, [StartARTIM]),
    "AE-6": (State.STA3, [StopARTIM, AssociateIndication]),
    "AE-7": (State.STA6, [SendPDU]),
    "AE-8": (State.STA13, [SendPDU, StartARTIM]),
    "DT-1": (State.STA6, [SendPDU, SendPDU]),
    "DT-2": (State.STA6, [DataIndication]),
    "AR-1": (State.STA7, [SendPDU]),
    "AR-2": (State.STA8, [ReleaseIndication]),
    "AR-3": (State.STA1, [ReleaseConfirmation, CloseTransport]),
    "AR-4": (State.STA13, [SendPDU, StartARTIM]),
    "AR-5": (State.STA1, [StopARTIM]),
    "AR-6": (State.STA7, [DataIndication]),
    "AR-7": (State.STA8, [SendPDU, SendPDU]),
    "AR-8": (State.STA10, [ReleaseIndication]),
    "AR-9": (State.STA11, [SendPDU]),
    "AR-10": (State.STA12, [ReleaseConfirmation]),
    "AA-1": (State.STA13, [SendPDU, StartARTIM, AbortIndication]),
    "AA-3": (State.STA1, [AbortIndication, CloseTransport]),
    "AA-4": (State.STA1, [AbortIndication]),
    "AA-5": (State.STA1, [StopARTIM]),
    "AA-6": (State.STA13, [PDUIgnored]),
    "AA-7": (State.STA13, [SendPDU]),
    "AA-8": (State.STA13, [SendPDU, AbortIndication, StartARTIM]),
}

CELLS = sorted(TRANSITIONS.items(), key=lambda kv: (kv[0][0].value, kv[0][1].value))


@pytest.mark.parametrize(
    "cell", CELLS, ids=[f"{s.value}-{e.value}-{a}" for (s, e), a in CELLS]
)
def test_everyCell(cell: tuple[tuple[State, Event], str]) -> None:
    """
    Each defined cell runs its action: the next state and the effects are
    those PS3.8 Tables 9-6 to 9-9 define for the action.
    """
    (state, event), action = cell
    machine = AcceptorStateMachine()
    machine.state = state
    effects = fire(machine, event)
    if action == "AA-2":
        assert machine.state is State.STA1
        assert [type(e) for e in effects][:2] == [StopARTIM, CloseTransport]
        return
    nextState, types = ACTION_EFFECTS[action]
    assert machine.state is nextState
    assert [type(e) for e in effects] == types


def test_undefinedLocalEventsRaise() -> None:
    """
    A local primitive with no cell in the current state (a bug in the local
    user) raises L{LocalProtocolError} and leaves the state alone.
    """
    count = 0
    for state in State:
        for event in set(Event) - PEER_EVENTS - {Event.EVT18}:
            if (state, event) in TRANSITIONS:
                continue
            machine = AcceptorStateMachine()
            machine.state = state
            with pytest.raises(LocalProtocolError):
                fire(machine, event)
            assert machine.state is state
            count += 1
    assert count > 50


def sent(effects: list[object]) -> list[object]:
    return [decode(e.data) for e in effects if isinstance(e, SendPDU)]


def test_abortParameters() -> None:
    """
    AA-1 on a local request sends the user's A-ABORT (default 0, 0); AA-1
    for a peer's PDU in Sta2, AA-7 and AA-8 send source 2 with reason 2
    (unexpected PDU) or the decode error's reason.
    """
    cases = [
        (State.STA6, Event.EVT15, Abort(0, 0)),
        (State.STA2, Event.EVT10, Abort(2, 2)),
        (State.STA2, Event.EVT19, Abort(2, 6)),
        (State.STA6, Event.EVT6, Abort(2, 2)),
        (State.STA6, Event.EVT19, Abort(2, 6)),
        (State.STA13, Event.EVT6, Abort(2, 2)),
        (State.STA13, Event.EVT19, Abort(2, 6)),
    ]
    for state, event, expected in cases:
        machine = AcceptorStateMachine()
        machine.state = state
        assert sent(fire(machine, event)) == [expected], (state, event)
    machine = AcceptorStateMachine()
    machine.state = State.STA6
    assert sent(machine.abortRequest(Abort(2, 6))) == [Abort(2, 6)]


def test_normalAssociation() -> None:
    """
    Connect, associate, exchange data, release, peer closes: the acceptor
    walks Sta1, 2, 3, 6, 8, 13, 1 and sends AC, data, RP.
    """
    machine = AcceptorStateMachine()
    assert machine.transportConnected() == [StartARTIM()]
    effects = machine.pduReceived(RQ)
    assert effects == [StopARTIM(), AssociateIndication(RQ)]
    assert sent(machine.associateResponse(AC)) == [AC]
    assert machine.pduReceived(PDATA) == [DataIndication(PDATA)]
    assert machine.dataRequest([b"x"]) == [SendPDU(b"x")]
    assert machine.pduReceived(ReleaseRQ()) == [ReleaseIndication()]
    assert machine.state is State.STA8
    assert sent(machine.releaseResponse()) == [ReleaseRP()]
    assert machine.state is State.STA13
    assert machine.transportClosed() == [StopARTIM()]
    assert machine.state is State.STA1


def test_releaseCollision() -> None:
    """
    If we request a release and the peer's A-RELEASE-RQ crosses ours, the
    acceptor side of the collision (Sta10, Sta12) ends with our RP.
    """
    machine = AcceptorStateMachine()
    machine.state = State.STA6
    assert sent(machine.releaseRequest()) == [ReleaseRQ()]
    assert machine.pduReceived(ReleaseRQ()) == [ReleaseIndication()]
    assert machine.state is State.STA10
    assert machine.pduReceived(ReleaseRP()) == [ReleaseConfirmation()]
    assert machine.state is State.STA12
    assert sent(machine.releaseResponse()) == [ReleaseRP()]
    assert machine.state is State.STA13
