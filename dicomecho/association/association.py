# -*- test-case-name: tests.test_association -*-
"""
One DICOM association, acceptor side, without I/O (as h11's C{Connection}).

L{Association} takes bytes and the time, and answers with effects: bytes to
send, a close, an identity to check, a responder result to wait for, and
events for the operator (L{dicomecho.association.effects}). Its timers are
deadlines (L{dicomecho.association.timers}): the server calls
L{timerExpired} when C{timers.deadline} passes. It drives the state
machine (PS3.8 Table 9-10) from the framer's PDUs: establishment
(negotiation, the acceptance cache), the replay fast path, release when no
response is pending, aborts and timeouts. Its P-DATA side (reassembly,
responders, response order) is a L{DataTransfer}. It never touches a
transport, a clock or a logger: the server performs what it returns.

Inputs: L{connected}; L{receiveData} (which handles the first complete PDU;
L{bufferData} does not), then L{nextEffects} until either returns C{None};
L{timerExpired} (at C{timers.deadline}); L{answerRequest} (after
L{CheckIdentity}); L{responseReady}/L{responseFailed} (after
L{AwaitResponse}); L{abort}; L{connectionLost}.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from dicomecho.association.commandset import DIMSEError
from dicomecho.association.datatransfer import DataTransfer
from dicomecho.association.dimse import DIMSEMessage
from dicomecho.association.effects import (
    AssociateRequested,
    AssociationAborted,
    AssociationAccepted,
    AssociationEffect,
    AssociationEnded,
    AssociationRejected,
    AssociationReleased,
    CheckIdentity,
    InvalidPDU,
    MessageReceived,
    RequestNeverCame,
    ResponderFailed,
    TimedOut,
)
from dicomecho.association.establishment import (
    AssociationHost,
    PeerAddress,
    decideRequest,
    readRequest,
)
from dicomecho.association.fastpaths import ResponseReplayer
from dicomecho.association.transitions import TRANSITIONS, Event, State
from dicomecho.association.fsm import (
    AbortIndication,
    AcceptorStateMachine,
    AssociateIndication,
    CloseTransport,
    DataIndication,
    Effect,
    PDUIgnored,
    ReleaseConfirmation,
    ReleaseIndication,
    SendPDU,
    StartARTIM,
    StopARTIM,
)
from dicomecho.association.negotiation import Acceptance, Rejection
from dicomecho.association.outcome import NOTHING_SENT, Outcome, abnormalOutcome
from dicomecho.association.responses import Slot
from dicomecho.association.timers import Timer, Timers
from dicomecho.wire.errors import AbortSource, LocalProtocolError, RemoteProtocolError
from dicomecho.wire.framer import PDUFramer
from dicomecho.wire.pdu import Abort, AssociateRQ, PDUType, decodePDU

__all__ = ["Association"]

_P_DATA_TF = PDUType.P_DATA_TF.value
_A_ASSOCIATE_RQ = PDUType.A_ASSOCIATE_RQ.value
_NO_CONTEXTS: Mapping[int, Any] = {}
# Enum members read per PDU, as module constants: on Python 3.11 reading one
# from its class (State.STA6) runs EnumType's attribute hook, as dear as two
# function calls.
_STA1, _STA3, _STA6, _STA8 = State.STA1, State.STA3, State.STA6, State.STA8
_ARTIM, _NETWORK, _DIMSE = Timer.ARTIM, Timer.NETWORK, Timer.DIMSE
_NO_ASSOCIATION, _ESTABLISHED = Outcome.NO_ASSOCIATION, Outcome.ESTABLISHED
_RELEASED_OUTCOME = Outcome.RELEASED
_ASSOCIATED = (_STA6, _STA8)
_CLOSE = CloseTransport()
_ENDED = AssociationEnded()
_RELEASED = AssociationReleased()


class Association:
    """
    One association's state; see the module docstring.

    @ivar outcome: how the connection ended, so far, and C{reason} why.
    @ivar answer: the acceptance or rejection sent, once sent.
    @ivar messages: DIMSE requests answered.
    @ivar framer: its L{PDUFramer}; C{framer.bufferedLength} is what waits
        to be handled.
    @ivar transfer: its P-DATA side, once accepted (L{DataTransfer}).
    @ivar timers: its timers; C{timers.deadline} is when L{timerExpired}
        is next due.
    """

    __slots__ = (
        "_host", "_peer", "_machine", "framer", "transfer", "_releasing", "timers",
        "outcome", "reason", "messages", "titles", "acceptedAt", "answer",
    )

    def __init__(self, host: AssociationHost, peer: PeerAddress) -> None:
        self._host = host
        self._peer: PeerAddress | None = peer
        self._machine = AcceptorStateMachine()
        self.framer = PDUFramer(
            maxAssociateLength=host.maxAssociateLength,
            maxPDataLength=host.policy.maxPDULength,
        )
        # Of its negotiation the association keeps what P-DATA needs, not the
        # decoded request (a 1 MiB request decodes to many objects).
        self.transfer: DataTransfer | None = None
        self._releasing = False
        self.timers = Timers()
        self.outcome = _NO_ASSOCIATION
        self.reason = NOTHING_SENT
        self.messages = 0
        self.titles: tuple[str, str] | None = None
        self.acceptedAt: float | None = None
        self.answer: Acceptance | Rejection | None = None

    @property
    def state(self) -> State:
        """The PS3.8 state."""
        return self._machine.state

    @property
    def contexts(self) -> Mapping[int, Any]:
        """
        The accepted presentation contexts by ID; none before acceptance.
        """
        return self.transfer.contexts if self.transfer is not None else _NO_CONTEXTS

    @property
    def established(self) -> bool:
        """
        Whether an association is being negotiated or holds (Sta3, 6, 8).
        """
        return self._machine.state in (_STA3, _STA6, _STA8)

    def noteOutcome(self, outcome: Outcome, reason: str) -> None:
        """
        Record how the connection ended, when the server knows better (a
        refused source, a failed TLS handshake).
        """
        self.outcome = outcome
        self.reason = reason

    # --- inputs -----------------------------------------------------------

    def connected(self, now: float) -> list[AssociationEffect]:
        """
        Evt5: the transport connection is open.
        """
        return self._run(self._machine.transportConnected(), [], now)

    def receiveData(self, data: bytes, now: float) -> list[AssociationEffect] | None:
        """
        Buffer C{data} and handle the first complete PDU as L{nextEffects}
        does; call that for the next ones.
        """
        self.timers.lastReceived = now
        self.framer.receiveData(data)
        return self.nextEffects(now)

    def bufferData(self, data: bytes, now: float) -> None:
        """
        Buffer C{data} without handling it, for a server that cannot send
        now; L{nextEffects} handles it later.
        """
        self.timers.lastReceived = now
        self.framer.receiveData(data)

    def nextEffects(self, now: float) -> list[AssociationEffect] | None:
        """
        Handle the next complete PDU received; C{None} when more bytes are
        needed or nothing more will be handled.
        """
        framer = self.framer
        if framer.failed or self._machine.state is _STA1:
            return None
        try:
            frame = framer.nextFrame()
            if frame is None:
                return None
            pduType, body = frame
            if (
                pduType == _P_DATA_TF
                and self._machine.state is _STA6
                and self.transfer.replayable(self._host)  # type: ignore[union-attr]
            ):
                response = self.transfer.replayer.respond(body)  # type: ignore[union-attr]
                if response is not None:
                    self.messages += 1
                    return [SendPDU(response)]
            if pduType == _A_ASSOCIATE_RQ:
                pdu, known = readRequest(body, self._host, self._peer)  # type: ignore[arg-type]
            else:
                pdu, known = decodePDU(pduType, body), None
        except RemoteProtocolError as error:
            return self._run(self._machine.invalidPDUReceived(error), [InvalidPDU(error)], now)
        return self._run(self._machine.pduReceived(pdu), [], now, body, known)

    def timerExpired(self, now: float) -> list[AssociationEffect]:
        """
        C{timers.deadline} has passed: handle the timer that is due (the
        DIMSE timer first). Called early, or when none runs, it does nothing.
        """
        out: list[AssociationEffect] = []
        timer = self.timers.expired(now, self._host.networkTimeout)
        if timer is _ARTIM:
            self._run(self._machine.artimExpired(), out, now)
        elif timer is _DIMSE or (timer is _NETWORK and self._machine.state in _ASSOCIATED):
            out.append(TimedOut(timer))
            self._localAbort(Abort(), f"{timer.value} timeout", out, now)
            # Nothing more is expected from a peer that went quiet: close now
            # rather than wait out ARTIM in Sta13.
            out.append(_CLOSE)
        return out

    def answerRequest(
        self, outcome: Acceptance | Rejection, now: float
    ) -> list[AssociationEffect]:
        """
        Answer the A-ASSOCIATE-RQ held in Sta3 (after L{CheckIdentity});
        nothing if the peer aborted or went away meanwhile.
        """
        if self._machine.state is not _STA3:
            return []
        return self._answer(outcome, [], now)

    def responseReady(
        self, slot: Slot, response: Any, request: DIMSEMessage, now: float
    ) -> list[AssociationEffect]:
        """
        The responder's later answer for the request that reserved C{slot}.
        """
        try:
            ready = self.transfer.answerLater(slot, response, request)  # type: ignore[union-attr]
        except Exception as error:
            return self.responseFailed(slot, error, now)
        out: list[AssociationEffect] = []
        self._send(ready, out, now)
        self._releaseIfIdle(out, now)
        return out

    def responseFailed(
        self, slot: Slot, error: BaseException, now: float, record: object = None
    ) -> list[AssociationEffect]:
        """
        The responder failed: a DIMSE error aborts with its reason (PS3.8
        §9.3.8), anything else with source 0, reason 0 (and
        L{ResponderFailed}, carrying C{record}).
        """
        out: list[AssociationEffect] = []
        if isinstance(error, DIMSEError):
            self._localAbort(Abort(error.abortSource, error.abortReason), str(error), out, now)
        else:
            out.append(ResponderFailed(error, record))
            self._localAbort(Abort(), "the service responder failed", out, now)
        return out

    def abort(self, why: str, now: float) -> list[AssociationEffect]:
        """
        Evt15: abort the association (source 0, reason 0), if one holds.
        """
        return self._localAbort(Abort(), why, [], now)

    def connectionLost(self, now: float) -> list[AssociationEffect]:
        """
        Evt17: the transport closed. The peer is forgotten: the server's
        object for it refers to this association, and the cycle would
        otherwise be left to the garbage collector (as Twisted's transports
        drop their protocol).
        """
        self._peer = None
        if self._machine.state is _STA1:
            return []
        return self._run(self._machine.transportClosed(), [], now)

    # --- the state machine's effects ----------------------------------------

    def _run(
        self,
        effects: list[Effect],
        out: list[AssociationEffect],
        now: float,
        body: bytes | None = None,
        known: tuple[Acceptance, bytes, object] | Rejection | None = None,
    ) -> list[AssociationEffect]:
        """
        Carry out the state machine's C{effects}; C{body} is the PDU being
        handled, and C{known} its acceptance cache entry if it is a known
        A-ASSOCIATE-RQ.
        """
        for effect in effects:
            kind = type(effect)
            if kind is SendPDU or kind is CloseTransport:
                out.append(effect)  # type: ignore[arg-type]
            elif kind is DataIndication:
                self._dataIndication(effect, out, now, body)  # type: ignore[arg-type]
            elif kind is StartARTIM:
                self.timers.startPhase(_ARTIM, now + self._host.acseTimeout)
            elif kind is StopARTIM:
                self.timers.stopPhase(_ARTIM)
            elif kind is AssociateIndication:
                self._associateIndication(effect.rq, out, now, body, known)  # type: ignore[union-attr]
            elif kind is ReleaseIndication:
                self._releasing = True
                self._releaseIfIdle(out, now)
            elif kind is AbortIndication:
                self._abortIndication(effect, out)  # type: ignore[arg-type]
            elif kind is not PDUIgnored and kind is not ReleaseConfirmation:
                raise LocalProtocolError(f"unhandled state machine effect {effect!r}")
        return out

    # --- data transfer (PS3.8 §9.3.5) -----------------------------------------------

    def _dataIndication(
        self, indication: DataIndication, out: list[AssociationEffect], now: float, body: bytes | None
    ) -> None:
        transfer = self.transfer
        assert transfer is not None
        host = self._host
        pdvs = indication.pdata.pdvs
        # A response may be recorded for replay only for a P-DATA-TF of a
        # single PDV, received where it could have been replayed.
        replayable = len(pdvs) == 1 and self._machine.state is _STA6 and transfer.replayable(host)
        requestBody = body if replayable else None
        assembler = transfer.assembler
        for pdv in pdvs:
            try:
                message = assembler.receive(pdv)
            except DIMSEError as error:
                self._localAbort(Abort(error.abortSource, error.abortReason), str(error), out, now)
                return
            if message is None:
                continue
            self.messages += 1
            if host.reportsProgress():
                out.append(MessageReceived(message))
            try:
                ready = transfer.answer(message, requestBody, host.responders, out)
            except Exception as error:
                out.extend(self.responseFailed([None], error, now))
                return
            self._send(ready, out, now)
            self._releaseIfIdle(out, now)
            if self._machine.state not in _ASSOCIATED:
                return
        self.timers.trackMessage(assembler.inProgress, now + host.dimseTimeout)

    def _send(self, ready: Iterable[list[bytes]], out: list[AssociationEffect], now: float) -> None:
        """
        Send the responses C{ready}, in order (Evt9), while associated.
        """
        for pdus in ready:
            if pdus and self._machine.state in _ASSOCIATED:
                self._run(self._machine.dataRequest(pdus), out, now)

    def _releaseIfIdle(self, out: list[AssociationEffect], now: float) -> None:
        """
        Answer the peer's A-RELEASE-RQ (Evt14) once no response is pending.
        """
        if (
            self._releasing
            and not self.transfer.responses  # type: ignore[union-attr]
            and self._machine.state is _STA8
        ):
            self._releasing = False
            self._run(self._machine.releaseResponse(), out, now)
            if self._host.reportsProgress():
                out.append(_RELEASED)
            self.outcome, self.reason = _RELEASED_OUTCOME, "A-RELEASE completed"
            if self._host.draining:
                # Shutting down: do not wait in Sta13 for the peer to close.
                out.append(_CLOSE)
            self._endAssociation(out)

    # --- establishment ----------------------------------------------------------

    def _associateIndication(
        self,
        rq: AssociateRQ,
        out: list[AssociationEffect],
        now: float,
        body: bytes | None,
        known: tuple[Acceptance, bytes, object] | Rejection | None,
    ) -> None:
        self.titles = (rq.callingAETitle, rq.calledAETitle)
        if self._host.reportsRequests():
            out.append(AssociateRequested(rq))
        decision = decideRequest(rq, self._host, self._peer, known)  # type: ignore[arg-type]
        if decision.invalid is not None:
            error = decision.invalid
            out.append(InvalidPDU(error))
            self.noteOutcome(Outcome.ABORTED, str(error))
            abort = Abort(AbortSource.SERVICE_PROVIDER, error.abortReason)
            self._run(self._machine.abortRequest(abort, str(error)), out, now)
        elif decision.identity is not None:
            out.append(CheckIdentity(decision.outcome, decision.identity))  # type: ignore[arg-type]
        elif decision.cached is not None:
            self._answer(decision.outcome, out, now, *decision.cached)  # type: ignore[arg-type]
        else:
            self._answer(decision.outcome, out, now, body=body)  # type: ignore[arg-type]

    def _answer(
        self,
        outcome: Acceptance | Rejection,
        out: list[AssociationEffect],
        now: float,
        acBytes: bytes | None = None,
        replayer: object = None,
        body: bytes | None = None,
    ) -> list[AssociationEffect]:
        """
        Send the A-ASSOCIATE response for C{outcome}: C{acBytes} and
        C{replayer} come with a cached acceptance, C{body} is the request's,
        to remember a new acceptance by.
        """
        self.answer = outcome
        if isinstance(outcome, Rejection):
            out.append(AssociationRejected(outcome))
            self.noteOutcome(Outcome.REJECTED, outcome.reason)
            self._run(self._machine.associateResponse(outcome.rj), out, now)
            # Nothing can follow a rejection: close once the RJ is flushed
            # (Sta13 still runs ARTIM until the close completes).
            out.append(_CLOSE)
            return out
        self.acceptedAt = now
        out.append(AssociationAccepted(outcome))
        self.outcome, self.reason = _ESTABLISHED, "association not yet ended"
        if acBytes is None:
            host = self._host
            acBytes = outcome.ac.encode()
            replayer = ResponseReplayer()
            if body is not None:
                host.acceptances.remember(body, host.policy, outcome, acBytes, replayer)
        # Associations accepted alike answer alike: they share what the
        # replayer learns, so an SCU's first echo can be replayed too.
        assert isinstance(replayer, ResponseReplayer)
        # The contexts are read only, and shared with associations accepted alike.
        self.transfer = DataTransfer(outcome.contexts, outcome.peerMaxPDULength, replayer)
        self._run(self._machine.associateResponse(outcome.ac, acBytes), out, now)
        self.timers.lastReceived = now
        self.timers.startPhase(_NETWORK, now + self._host.networkTimeout)
        return out

    # --- aborts and timers ------------------------------------------------------

    def _localAbort(
        self, abort: Abort, why: str, out: list[AssociationEffect], now: float
    ) -> list[AssociationEffect]:
        """
        Send C{abort} (Evt15, AA-1) for a fault found after the association
        was established; in Sta1, Sta2 and Sta13 there is none to abort.
        """
        if (self._machine.state, Event.EVT15) in TRANSITIONS:
            if self.transfer is not None:
                self.transfer.clear()
            self._run(self._machine.abortRequest(abort, why), out, now)
        return out

    def _abortIndication(self, indication: AbortIndication, out: list[AssociationEffect]) -> None:
        self._endAssociation(out)
        outcome = abnormalOutcome(indication.byPeer, indication.reason)
        self.outcome, self.reason = outcome, indication.detail
        if outcome is _NO_ASSOCIATION:
            # ARTIM expired before any A-ASSOCIATE-RQ: closed, no PDU sent.
            out.append(RequestNeverCame(indication.detail))
        else:
            out.append(AssociationAborted(indication))

    def _endAssociation(self, out: list[AssociationEffect]) -> None:
        """
        The association is over (released or aborted): its slot is free and
        the timers of an established association stop.
        """
        out.append(_ENDED)
        self.timers.stopAssociationTimers()
