# -*- test-case-name: tests.test_fsm -*-
"""
The acceptor's side of the DICOM Upper Layer state machine (PS3.8 §9.2):
L{AcceptorStateMachine} runs PS3.8 Table 9-10 (L{TRANSITIONS}, in
L{dicomecho.association.transitions}) and does the actions of Tables 9-6
to 9-9.

The machine is pure. Each input method takes one event and returns the
effects its action asks for (send bytes, start or stop ARTIM, close the
transport, indications to the local user). The Twisted protocol performs
them. An event with no cell in the current state is a bug in the local
user and raises L{LocalProtocolError}; every event a peer can cause has a
cell in every acceptor state.

A-ABORT parameters. PS3.8 Table 9-9 names the source of AA-1 (service-user)
and AA-8 (service-provider) but leaves the reason to the event. Choices:
 - AA-1 for a local abort request (Evt15): the PDU the local user supplies,
   by default source 0, reason 0.
 - AA-1 for a PDU received in Sta2 that is unexpected (Evt3, 4, 10, 12, 13)
   or invalid (Evt19): source 2 (service-provider) with reason 2
   (unexpected-PDU) or the decode error's reason. The literal service-user
   source with reason 0 would tell the peer nothing about what went wrong.
 - AA-7 and AA-8: source 2 and the same reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, NamedTuple, Union

from dicomecho.wire.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RemoteProtocolError,
)
from dicomecho.association.transitions import (
    PDU_EVENTS,
    TRANSITIONS,
    Event,
    State,
)
from dicomecho.wire.pdu import (
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
)

__all__ = [
    "AcceptorStateMachine",
    "SendPDU",
    "StartARTIM",
    "StopARTIM",
    "CloseTransport",
    "AssociateIndication",
    "DataIndication",
    "ReleaseIndication",
    "ReleaseConfirmation",
    "AbortIndication",
    "PDUIgnored",
    "Effect",
]


# The members as plain attributes: on Python 3.11 reading one from its
# Enum class (State.STA6) runs EnumType's attribute hook, as dear as two
# function calls, and the machine reads two per event.
S = SimpleNamespace(**State.__members__)
E = SimpleNamespace(**Event.__members__)


# --- effects ----------------------------------------------------------------


@dataclass(slots=True)
class SendPDU:
    """
    Write these bytes (one whole PDU) to the transport. Not frozen: one is
    made per response, and a frozen dataclass takes over twice as long to
    build (it sets each field through C{object.__setattr__}).
    """

    data: bytes
    pdu: PDU | None = None


@dataclass(frozen=True, slots=True)
class StartARTIM:
    """
    Start, or restart, the ARTIM timer (PS3.8 §9.1.5).
    """


@dataclass(frozen=True, slots=True)
class StopARTIM:
    """
    Stop the ARTIM timer if it is running.
    """


@dataclass(frozen=True, slots=True)
class CloseTransport:
    """
    Close the transport connection once what was written is flushed.
    """


@dataclass(frozen=True, slots=True)
class AssociateIndication:
    """
    A-ASSOCIATE indication: the local user must answer with
    L{AcceptorStateMachine.associateResponse}.
    """

    rq: AssociateRQ


@dataclass(frozen=True, slots=True)
class DataIndication:
    """
    P-DATA indication: PDVs for the DIMSE layer.
    """

    pdata: PDataTF


@dataclass(frozen=True, slots=True)
class ReleaseIndication:
    """
    A-RELEASE indication: the local user answers with
    L{AcceptorStateMachine.releaseResponse} once its responses are sent.
    """


@dataclass(frozen=True, slots=True)
class ReleaseConfirmation:
    """
    A-RELEASE confirmation (only after a local release request).
    """


@dataclass(frozen=True, slots=True)
class AbortIndication:
    """
    The association ended abnormally.

    @ivar source: the A-ABORT source (PS3.8 Table 9-26).
    @ivar reason: the A-ABORT reason, or for a transport that closed
        without an A-ABORT (A-P-ABORT, AA-4), C{None}.
    @ivar byPeer: C{True} when the peer sent the A-ABORT or closed the
        transport, C{False} when we sent it.
    @ivar detail: why, in words, for the log.
    """

    source: int
    reason: int | None
    byPeer: bool
    detail: str


@dataclass(frozen=True, slots=True)
class PDUIgnored:
    """
    A PDU received in Sta13 was ignored (AA-6).
    """

    pdu: PDU


Effect = Union[
    SendPDU,
    StartARTIM,
    StopARTIM,
    CloseTransport,
    AssociateIndication,
    DataIndication,
    ReleaseIndication,
    ReleaseConfirmation,
    AbortIndication,
    PDUIgnored,
]

# The effects without fields, built once: they are returned for most events.
_START_ARTIM = StartARTIM()
_STOP_ARTIM = StopARTIM()
_CLOSE_TRANSPORT = CloseTransport()
_RELEASE_INDICATION = ReleaseIndication()
_RELEASE_CONFIRMATION = ReleaseConfirmation()
_SEND_RELEASE_RP = SendPDU(ReleaseRP().encode(), ReleaseRP())


class _Input(NamedTuple):
    """
    What came with an event: a PDU, a decode error, or a primitive's data.
    (A named tuple: one is built per event, and builds faster than a frozen
    dataclass.)
    """

    pdu: object = None
    error: RemoteProtocolError | None = None
    detail: str = ""
    #: The PDU already encoded, if the caller has its bytes.
    encoded: bytes | None = None


_Action = Callable[["AcceptorStateMachine", Event, _Input], "tuple[list[Effect], State]"]


def _providerAbort(event: Event, given: _Input) -> Abort:
    """
    The A-ABORT to send for a PDU we did not expect or could not decode.
    """
    if given.error is not None:
        return Abort(AbortSource.SERVICE_PROVIDER, given.error.abortReason)
    return Abort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU)


def _describe(event: Event, given: _Input) -> str:
    if given.error is not None:
        return str(given.error)
    pdu = given.pdu
    name = pdu.pduType.name.replace("_", "-") if pdu is not None else event.value
    return f"unexpected {name} PDU"


class AcceptorStateMachine:
    """
    PS3.8 §9.2 for one association, acceptor side.

    @ivar state: the current L{State}; starts in Sta1.
    """

    # One per connection: no instance dictionary.
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = State.STA1

    # --- inputs -------------------------------------------------------------

    def transportConnected(self) -> list[Effect]:
        """
        Evt5: the transport connection was accepted.
        """
        return self._handle(E.EVT5, _Input())

    def pduReceived(self, pdu: PDU) -> list[Effect]:
        """
        Evt3, 4, 6, 10, 12, 13 or 16, by the type of C{pdu}.
        """
        return self._handle(PDU_EVENTS[pdu.pduType], _Input(pdu))

    def invalidPDUReceived(self, error: RemoteProtocolError) -> list[Effect]:
        """
        Evt19: unrecognized or invalid PDU.
        """
        return self._handle(E.EVT19, _Input(error=error))

    def associateResponse(
        self, response: AssociateAC | AssociateRJ, encoded: bytes | None = None
    ) -> list[Effect]:
        """
        Evt7 (accept) or Evt8 (reject): the local user's answer to an
        L{AssociateIndication}.

        @param encoded: C{response}'s bytes, if known, to send as they are.
        """
        event = E.EVT7 if isinstance(response, AssociateAC) else E.EVT8
        return self._handle(event, _Input(response, encoded=encoded))

    def dataRequest(self, pdus: list[bytes]) -> list[Effect]:
        """
        Evt9: send these encoded P-DATA-TF PDUs.
        """
        return self._handle(E.EVT9, _Input(pdus))

    def releaseRequest(self) -> list[Effect]:
        """
        Evt11: the local user asks to release the association.
        """
        return self._handle(E.EVT11, _Input())

    def releaseResponse(self) -> list[Effect]:
        """
        Evt14: the local user accepts the peer's release request.
        """
        return self._handle(E.EVT14, _Input())

    def abortRequest(
        self, abort: Abort | None = None, detail: str = "local abort"
    ) -> list[Effect]:
        """
        Evt15: the local user aborts; C{abort} defaults to source 0, reason
        0. C{detail} says why, for the L{AbortIndication}.
        """
        return self._handle(E.EVT15, _Input(abort or Abort(), detail=detail))

    def transportClosed(self) -> list[Effect]:
        """
        Evt17: the transport connection closed.
        """
        return self._handle(E.EVT17, _Input())

    def artimExpired(self) -> list[Effect]:
        """
        Evt18: the ARTIM timer expired.
        """
        return self._handle(E.EVT18, _Input())

    def _handle(self, event: Event, given: _Input) -> list[Effect]:
        try:
            action = _TABLE[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"{event.value} is not valid in {self.state.value}"
            ) from None
        effects, self.state = action(self, event, given)
        return effects

    # --- actions, PS3.8 Tables 9-6 to 9-9 ------------------------------------

    def _ae5(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        # Issue transport connection response; start ARTIM.
        return [_START_ARTIM], S.STA2

    def _ae6(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        # Stop ARTIM; issue A-ASSOCIATE indication. The service-provider's
        # own acceptability test (protocol version, PS3.8 §9.3.2) is done
        # by negotiation.negotiate; its A-ASSOCIATE-RJ then goes through
        # Evt8/AE-8, which puts the same bytes on the wire as AE-6's reject
        # branch (send RJ, start ARTIM, Sta13).
        assert isinstance(given.pdu, AssociateRQ)
        return [_STOP_ARTIM, AssociateIndication(given.pdu)], S.STA3

    def _ae7(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        ac = given.pdu
        assert isinstance(ac, AssociateAC)
        return [SendPDU(given.encoded or ac.encode(), ac)], S.STA6

    def _ae8(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        rj = given.pdu
        assert isinstance(rj, AssociateRJ)
        return [SendPDU(rj.encode(), rj), _START_ARTIM], S.STA13

    def _dt1(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        return [SendPDU(data) for data in given.pdu], S.STA6  # type: ignore[attr-defined]

    def _dt2(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        assert isinstance(given.pdu, PDataTF)
        return [DataIndication(given.pdu)], S.STA6

    def _ar1(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        return [SendPDU(ReleaseRQ().encode(), ReleaseRQ())], S.STA7

    def _ar2(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        return [_RELEASE_INDICATION], S.STA8

    def _ar3(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        return [_RELEASE_CONFIRMATION, _CLOSE_TRANSPORT], S.STA1

    def _ar4(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        return [_SEND_RELEASE_RP, _START_ARTIM], S.STA13

    def _ar5(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        return [_STOP_ARTIM], S.STA1

    def _ar6(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        assert isinstance(given.pdu, PDataTF)
        return [DataIndication(given.pdu)], S.STA7

    def _ar7(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        return [SendPDU(data) for data in given.pdu], S.STA8  # type: ignore[attr-defined]

    def _ar8(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        # Release collision; we are never the association-requestor.
        return [_RELEASE_INDICATION], S.STA10

    def _ar9(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        return [SendPDU(ReleaseRP().encode(), ReleaseRP())], S.STA11

    def _ar10(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        return [_RELEASE_CONFIRMATION], S.STA12

    def _aa1(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        # Send A-ABORT and start (or restart) ARTIM. See the module
        # docstring for the source and reason chosen.
        if event is E.EVT15:
            abort = given.pdu
            assert isinstance(abort, Abort)
            detail = given.detail
        else:
            abort = _providerAbort(event, given)
            detail = _describe(event, given)
        return [
            SendPDU(abort.encode(), abort),
            _START_ARTIM,
            AbortIndication(abort.source, abort.reason, False, detail),
        ], S.STA13

    def _aa2(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        # Stop ARTIM if running; close the transport.
        effects: list[Effect] = [_STOP_ARTIM, _CLOSE_TRANSPORT]
        if event is E.EVT16 and self.state is S.STA2:
            abort = given.pdu
            assert isinstance(abort, Abort)
            effects.append(
                AbortIndication(abort.source, abort.reason, True, "peer sent A-ABORT")
            )
        elif event is E.EVT18 and self.state is S.STA2:
            effects.append(
                AbortIndication(
                    AbortSource.SERVICE_PROVIDER,
                    None,
                    False,
                    "no A-ASSOCIATE-RQ before the ARTIM timer expired",
                )
            )
        return effects, S.STA1

    def _aa3(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        # The peer aborted: issue A-ABORT (source 0) or A-P-ABORT indication
        # and close.
        abort = given.pdu
        assert isinstance(abort, Abort)
        return [
            AbortIndication(abort.source, abort.reason, True, "peer sent A-ABORT"),
            _CLOSE_TRANSPORT,
        ], S.STA1

    def _aa4(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        # Transport closed without release or abort: A-P-ABORT indication.
        return [
            AbortIndication(
                AbortSource.SERVICE_PROVIDER,
                None,
                True,
                "connection closed without A-RELEASE or A-ABORT",
            )
        ], S.STA1

    def _aa5(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        return [_STOP_ARTIM], S.STA1

    def _aa6(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        return [PDUIgnored(given.pdu)], S.STA13  # type: ignore[arg-type]

    def _aa7(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        abort = _providerAbort(event, given)
        return [SendPDU(abort.encode(), abort)], S.STA13

    def _aa8(self, event: Event, given: _Input) -> tuple[list[Effect], State]:
        # Send A-ABORT (service-provider), issue A-P-ABORT, start ARTIM.
        abort = _providerAbort(event, given)
        return [
            SendPDU(abort.encode(), abort),
            AbortIndication(abort.source, abort.reason, False, _describe(event, given)),
            _START_ARTIM,
        ], S.STA13


_ACTIONS: dict[str, _Action] = {
    "AE-5": AcceptorStateMachine._ae5,
    "AE-6": AcceptorStateMachine._ae6,
    "AE-7": AcceptorStateMachine._ae7,
    "AE-8": AcceptorStateMachine._ae8,
    "DT-1": AcceptorStateMachine._dt1,
    "DT-2": AcceptorStateMachine._dt2,
    "AR-1": AcceptorStateMachine._ar1,
    "AR-2": AcceptorStateMachine._ar2,
    "AR-3": AcceptorStateMachine._ar3,
    "AR-4": AcceptorStateMachine._ar4,
    "AR-5": AcceptorStateMachine._ar5,
    "AR-6": AcceptorStateMachine._ar6,
    "AR-7": AcceptorStateMachine._ar7,
    "AR-8": AcceptorStateMachine._ar8,
    "AR-9": AcceptorStateMachine._ar9,
    "AR-10": AcceptorStateMachine._ar10,
    "AA-1": AcceptorStateMachine._aa1,
    "AA-2": AcceptorStateMachine._aa2,
    "AA-3": AcceptorStateMachine._aa3,
    "AA-4": AcceptorStateMachine._aa4,
    "AA-5": AcceptorStateMachine._aa5,
    "AA-6": AcceptorStateMachine._aa6,
    "AA-7": AcceptorStateMachine._aa7,
    "AA-8": AcceptorStateMachine._aa8,
}

#: TRANSITIONS with each action name resolved to its method.
_TABLE: dict[tuple[State, Event], _Action] = {
    key: _ACTIONS[name] for key, name in TRANSITIONS.items()
}
