"""
Tests for L{dicomecho.association.association}: the I/O-free Association,
driven with bytes and a number for "now", no transport, no clock, no
reactor. What it returns is all there is to check.
"""

from __future__ import annotations

from typing import Any


from dicomecho.association.association import Association
from dicomecho.association.commandset import decodeCommandSet
from dicomecho.association.timers import Timer
from dicomecho.association.effects import (
    AssociateRequested,
    AssociationAborted,
    AssociationAccepted,
    AssociationEnded,
    AssociationRejected,
    AssociationReleased,
    AwaitResponse,
    CheckIdentity,
    InvalidPDU,
    MessageReceived,
    RequestNeverCame,
    ResponderFailed,
    TimedOut,
)
from dicomecho.association.fsm import CloseTransport, SendPDU
from dicomecho.association.transitions import State
from dicomecho.association.negotiation import AssociationPolicy
from dicomecho.association.outcome import Outcome
from dicomecho.association.dimse import DIMSEResponse
from dicomecho.services.verification import VerificationResponder
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.pdu import (
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    ReleaseRP,
    ReleaseRQ,
    encode,
)
from dicomecho.wire.userinfo import UserIdentityRQ, UserInformation
from tests.support.harness import IMPLICIT, VERIFICATION, echo, rq
from tests.support.purehost import ECHO_TIMEOUT, Host, Peer, sent

def kinds(effects: list[Any]) -> list[type]:
    return [type(e) for e in effects]


def feed(association: Association, data: bytes, now: float) -> list[Any]:
    """
    Everything C{data} causes, as one list.
    """
    effects = association.receiveData(data, now)
    out: list[Any] = []
    while effects is not None:
        out.extend(effects)
        effects = association.nextEffects(now)
    return out


def established(host: Host | None = None, now: float = 0.0) -> Association:
    association = Association(host or Host(), Peer())
    association.connected(now)
    feed(association, encode(rq()), now)
    assert association.state is State.STA6
    return association


def test_connectedStartsARTIM() -> None:
    """
    Evt5 starts ARTIM with the ACSE timeout (PS3.8 §9.1.5), nothing else:
    no effect, a deadline.
    """
    association = Association(Host(), Peer())
    assert association.timers.deadline is None
    assert association.connected(5.0) == []
    assert association.timers.deadline == 5.0 + ECHO_TIMEOUT
    assert association.state is State.STA2


def test_acceptEchoRelease() -> None:
    """
    A whole association as effects: the request is reported, ARTIM stops,
    the AC goes out and the network timer starts; an echo is answered;
    the release is answered and the association ends.
    """
    host = Host(reporting=True)
    association = Association(host, Peer())
    association.connected(0.0)
    effects = feed(association, encode(rq()), 1.0)
    assert kinds(effects) == [AssociateRequested, AssociationAccepted, SendPDU]
    # ARTIM stopped; the network timer runs from the acceptance.
    assert association.timers.deadline == 1.0 + 60.0
    assert isinstance(sent(effects)[0], AssociateAC)
    assert (association.outcome, association.acceptedAt) == (Outcome.ESTABLISHED, 1.0)
    (response,) = sent(feed(association, encode(echo(7)), 2.0))
    assert isinstance(response, PDataTF)
    assert decodeCommandSet(response.pdvs[0].data)[0x00000120] == 7
    effects = feed(association, encode(ReleaseRQ()), 3.0)
    assert [type(p) for p in sent(effects)] == [ReleaseRP]
    assert AssociationReleased() in effects and AssociationEnded() in effects
    # The network timer stopped; ARTIM runs in Sta13 until the peer closes.
    assert association.state is State.STA13
    assert association.timers.deadline == 3.0 + ECHO_TIMEOUT
    assert association.connectionLost(4.0) == []
    assert association.timers.deadline is None
    assert (association.outcome, association.messages) == (Outcome.RELEASED, 1)


def test_quietHostGetsOnlyWhatItActsOn() -> None:
    """
    When the host reports nothing, the request, the messages and the
    release are not reported; the acceptance and the end still are (they
    hold and free a slot).
    """
    association = Association(Host(), Peer())
    association.connected(0.0)
    effects = feed(association, encode(rq()), 1.0)
    assert kinds(effects) == [AssociationAccepted, SendPDU]
    effects = feed(association, encode(echo(1)), 2.0) + feed(association, encode(ReleaseRQ()), 3.0)
    assert AssociationEnded in kinds(effects)
    assert not {AssociateRequested, MessageReceived, AssociationReleased} & set(kinds(effects))


def test_repeatedEchoIsReplayed() -> None:
    """
    The second echo that differs only in its MessageID is answered from
    the replayer: one SendPDU, the same bytes the full path gives but for
    the MessageID, and no other effect.
    """
    association = established()
    first = feed(association, encode(echo(1)), 1.0)
    half = encode(echo(2))
    assert association.receiveData(half[:10], 2.0) is None
    effects = association.receiveData(half[10:], 2.0)
    assert kinds(effects) == [SendPDU]  # type: ignore[arg-type]
    assert association.nextEffects(2.0) is None
    assert len(first[0].data) == len(effects[0].data)  # type: ignore[index]
    assert association.messages == 2


def test_messagesReportedOnlyWhenAsked() -> None:
    """
    L{MessageReceived} comes only when the host reports messages, and the
    replay path is then off.
    """
    host = Host(reporting=True)
    association = established(host)
    for messageID in (1, 2):
        effects = feed(association, encode(echo(messageID)), 1.0)
        assert kinds(effects) == [MessageReceived, SendPDU]


def test_rejectionCloses() -> None:
    """
    A request for another AE title (when required) is rejected, reported,
    and the connection closed; no slot is taken.
    """
    policy = AssociationPolicy(
        aeTitle="OTHER",
        requireCalledAETitle=True,
        transferSyntaxes=(IMPLICIT,),
        abstractSyntaxes=(VERIFICATION,),
    )
    association = Association(Host(policy=policy), Peer())
    association.connected(0.0)
    effects = feed(association, encode(rq()), 0.5)
    assert AssociationRejected in kinds(effects)
    assert AssociationAccepted not in kinds(effects)
    assert isinstance(sent(effects)[0], AssociateRJ)
    assert kinds(effects)[-1] is CloseTransport
    assert association.outcome is Outcome.REJECTED


def test_identityHeldInSta3() -> None:
    """
    A request with a user identity, when identities are checked, waits in
    Sta3 behind L{CheckIdentity}; L{Association.answerRequest} answers it.
    """
    host = Host(checksIdentity=True)
    association = Association(host, Peer())
    association.connected(0.0)
    identity = UserIdentityRQ(1, False, b"alice", b"")
    info = UserInformation(maximumLength=16384, implementationClassUID="1.2.3", userIdentity=identity)
    request = AssociateRQ(
        "ECHOSCP", "SCU",
        presentationContexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),),
        userInformation=info,
    )
    effects = feed(association, encode(request), 0.0)
    check = effects[-1]
    assert isinstance(check, CheckIdentity) and check.identity == identity
    assert association.state is State.STA3 and not sent(effects)
    effects = association.answerRequest(check.acceptance, 1.0)
    assert isinstance(sent(effects)[0], AssociateAC)
    assert association.state is State.STA6
    assert association.answerRequest(check.acceptance, 2.0) == []


def test_identityRequiredButMissing() -> None:
    association = Association(Host(checksIdentity=True, requiresIdentity=True), Peer())
    association.connected(0.0)
    effects = feed(association, encode(rq()), 0.0)
    (rj,) = sent(effects)
    assert (rj.result, rj.source, rj.reason) == (1, 2, 1)


def test_networkTimerRearmsFromLastByte() -> None:
    """
    The network timer is re-armed for what is left after the last byte
    received; when nothing came for the whole timeout, the association
    is aborted and closed.
    """
    association = established(now=0.0)
    feed(association, encode(echo(1)), 40.0)
    assert association.timers.deadline == 60.0
    assert association.timerExpired(60.0) == []
    assert association.timers.deadline == 100.0
    effects = association.timerExpired(100.0)
    assert effects[0] == TimedOut(Timer.NETWORK)
    assert [type(p) for p in sent(effects)] == [Abort]
    assert kinds(effects)[-1] is CloseTransport
    assert association.outcome is Outcome.ABORTED


def test_dimseTimerWhileAMessageIsHalfReceived() -> None:
    """
    The DIMSE timer runs only while a message is incomplete.
    """
    from dicomecho.wire.pdu import PresentationDataValue

    association = established()
    pdv = echo(1).pdvs[0]
    first = PDataTF((PresentationDataValue(1, True, False, pdv.data[:10]),))
    assert association.timers.deadline == 60.0  # the network timer's
    effects = feed(association, encode(first), 1.0)
    assert effects == []
    assert association.timers.deadline == 1.0 + 20.0
    rest = PDataTF((PresentationDataValue(1, True, True, pdv.data[10:]),))
    effects = feed(association, encode(rest), 2.0)
    assert SendPDU in kinds(effects)
    assert association.timers.deadline == 60.0


def test_dimseTimerExpires() -> None:
    """
    A message whose fragments stop arriving is aborted when the DIMSE
    timer expires, before the network timer would.
    """
    from dicomecho.wire.pdu import PresentationDataValue

    association = established()
    pdv = echo(1).pdvs[0]
    feed(association, encode(PDataTF((PresentationDataValue(1, True, False, pdv.data[:10]),))), 1.0)
    effects = association.timerExpired(21.0)
    assert effects[0] == TimedOut(Timer.DIMSE)
    assert [type(p) for p in sent(effects)] == [Abort]
    assert kinds(effects)[-1] is CloseTransport
    assert association.outcome is Outcome.ABORTED


def test_artimBeforeRequest() -> None:
    association = Association(Host(), Peer())
    association.connected(0.0)
    assert association.timerExpired(29.0) == []
    effects = association.timerExpired(30.0)
    assert RequestNeverCame in kinds(effects)
    assert association.timers.deadline is None
    assert association.outcome is Outcome.NO_ASSOCIATION


def test_invalidBytesAreReported() -> None:
    association = Association(Host(), Peer())
    association.connected(0.0)
    effects = feed(association, b"GET / HTTP/1.1\r\n\r\n", 0.0)
    assert isinstance(effects[0], InvalidPDU)
    assert "HTTP" in str(effects[0].error)


def test_laterResponsesKeepTheirOrder() -> None:
    """
    A responder that answers later reserves a slot (L{AwaitResponse});
    a later request's response waits behind it, and a release waits for
    both.
    """

    class Later:
        def __init__(self) -> None:
            self.calls = 0

        def handle(self, request: Any, context: Any) -> Any:
            self.calls += 1
            if self.calls == 1:
                return object()  # not a response: a result that comes later
            return VerificationResponder().handle(request, context)

    association = established(Host(responders={VERIFICATION: Later()}))
    (waiting,) = feed(association, encode(echo(1)), 1.0)
    assert isinstance(waiting, AwaitResponse)
    assert sent(feed(association, encode(echo(2)), 1.0)) == []
    assert sent(feed(association, encode(ReleaseRQ()), 1.0)) == []
    response = VerificationResponder().handle(waiting.request, association.contexts[1])
    effects = association.responseReady(waiting.slot, response, waiting.request, 2.0)
    answered = [decodeCommandSet(p.pdvs[0].data)[0x00000120] for p in sent(effects) if isinstance(p, PDataTF)]
    assert answered == [1, 2]
    assert isinstance(sent(effects)[-1], ReleaseRP)


def test_responderFailureAborts() -> None:
    class Broken:
        def handle(self, request: Any, context: Any) -> DIMSEResponse:
            raise ZeroDivisionError("broken")

    association = established(Host(responders={VERIFICATION: Broken()}))
    effects = feed(association, encode(echo(1)), 1.0)
    failed = [e for e in effects if isinstance(e, ResponderFailed)]
    assert isinstance(failed[0].error, ZeroDivisionError)
    assert [type(p) for p in sent(effects)] == [Abort]
    assert AssociationAborted in kinds(effects) and AssociationEnded in kinds(effects)


def test_peerAbort() -> None:
    association = established()
    effects = feed(association, encode(Abort(0, 0)), 1.0)
    assert AssociationAborted in kinds(effects)
    assert association.outcome is Outcome.ABORTED_BY_PEER
    assert association.nextEffects(1.0) is None


def test_timerBeforeItsDeadlineDoesNothing() -> None:
    """
    A server that calls back early (or when no timer runs) changes nothing:
    no effect, the same deadline, the same state.
    """
    association = established(now=0.0)
    assert association.timerExpired(30.0) == []
    assert association.timers.deadline == 60.0 and association.state is State.STA6
    association = Association(Host(), Peer())
    assert association.timerExpired(5.0) == [] and association.timers.deadline is None


def test_noIOImported() -> None:
    """
    The association layer imports no reactor, transport or logger.
    """
    import subprocess
    import sys

    code = (
        "import sys, dicomecho.association.association; "
        "bad = sorted(m for m in sys.modules if m.startswith(('twisted.internet.reactor', "
        "'twisted.internet.tcp', 'twisted.logger', 'twisted.internet.protocol'))); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_contextsAreTheAcceptedOnes() -> None:
    """
    Before an acceptance there are no contexts; after, the accepted ones.
    """
    assert dict(Association(Host(), Peer()).contexts) == {}
    assert list(established().contexts) == [1]


def test_bufferedDataWaitsForNextEffects() -> None:
    """
    L{Association.bufferData} handles nothing (for a server that cannot
    send now): the PDUs wait, in order, for L{Association.nextEffects}, and
    their bytes count as received for the network timer.
    """
    association = established(now=0.0)
    assert association.bufferData(encode(echo(1)) + encode(echo(2)), 50.0) is None
    assert association.messages == 0
    answered = []
    while (effects := association.nextEffects(50.0)) is not None:
        answered += [decodeCommandSet(p.pdvs[0].data)[0x00000120] for p in sent(effects)]
    assert answered == [1, 2]
    assert association.timerExpired(60.0) == [] and association.timers.deadline == 110.0
