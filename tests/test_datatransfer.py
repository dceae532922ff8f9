"""
Tests for L{dicomecho.association.datatransfer}: the P-DATA side of an
accepted association, without the state machine; and
L{dicomecho.association.outcome.abnormalOutcome}.
"""

from __future__ import annotations

from typing import Any

import pytest

from dicomecho.association.commandset import decodeCommandSet
from dicomecho.association.datatransfer import DataTransfer
from dicomecho.association.dimse import DIMSEMessage
from dicomecho.association.effects import AwaitResponse
from dicomecho.association.fastpaths import ResponseReplayer
from dicomecho.association.negotiation import AcceptedContext
from dicomecho.association.outcome import Outcome, abnormalOutcome
from dicomecho.services.verification import VerificationResponder
from dicomecho.wire.pdu import PresentationDataValue, decodePDU
from tests.support.harness import IMPLICIT, VERIFICATION, echo
from tests.support.helpers import splitStream
from tests.support.purehost import Host

CONTEXTS = {1: AcceptedContext(1, VERIFICATION, IMPLICIT)}


def transfer() -> DataTransfer:
    return DataTransfer(CONTEXTS, 16384, ResponseReplayer())


def message(transfer: DataTransfer, messageID: int) -> DIMSEMessage:
    (pdv,) = echo(messageID).pdvs
    result = transfer.assembler.receive(pdv)
    assert result is not None
    return result


def answered(ready: Any) -> list[int]:
    """
    The MessageIDs answered by the ready responses C{ready}.
    """
    ids = []
    for pdus in ready:
        for frame in splitStream(b"".join(pdus), maxPDataLength=0):
            ids.append(decodeCommandSet(decodePDU(*frame).pdvs[0].data)[0x00000120])
    return ids


class Later:
    """
    A responder that answers later: it returns a token to wait for.
    """

    def handle(self, request: Any, context: Any) -> object:
        return object()


def test_oneAssembler() -> None:
    """
    Nothing is in progress before the first PDV; the reassembler, made for
    the first message, is the same for the next.
    """
    data = transfer()
    assert not data.inProgress
    assembler = data.assembler
    assembler.receive(echo(1).pdvs[0])
    assert data.assembler is assembler and not data.inProgress


def test_answerNow() -> None:
    data = transfer()
    out: list[Any] = []
    ready = data.answer(message(data, 7), None, {VERIFICATION: VerificationResponder()}, out)
    assert answered(ready) == [7] and out == []
    assert not data.responses


def test_laterAnswerKeepsOrder() -> None:
    """
    A response that comes later holds back the ones after it; when it comes,
    both are ready, in request order.
    """
    data = transfer()
    out: list[Any] = []
    first = message(data, 1)
    assert list(data.answer(first, None, {VERIFICATION: Later()}, out)) == []
    (waiting,) = out
    assert isinstance(waiting, AwaitResponse) and waiting.request is first
    assert answered(data.answer(message(data, 2), None, {VERIFICATION: VerificationResponder()}, out)) == []
    assert data.responses
    response = VerificationResponder().handle(first, CONTEXTS[1])
    assert answered(data.answerLater(waiting.slot, response, first)) == [1, 2]
    assert not data.responses


def test_responderErrorPropagates() -> None:
    class Broken:
        def handle(self, request: Any, context: Any) -> Any:
            raise ZeroDivisionError("broken")

    data = transfer()
    with pytest.raises(ZeroDivisionError):
        data.answer(message(data, 1), None, {VERIFICATION: Broken()}, [])


def test_repeatableResponseIsRecorded() -> None:
    """
    A response to a whole message in one P-DATA-TF, from a repeatable
    responder, teaches the replayer: a repeat is then answered from it.
    """
    data = transfer()
    body = echo(1).encode()[6:]
    data.answer(message(data, 1), body, {VERIFICATION: VerificationResponder()}, [])
    repeat = echo(2).encode()[6:]
    response = data.replayer.respond(repeat)
    assert response is not None
    assert answered([[response]]) == [2]


def test_replayable() -> None:
    """
    Replay only with replay on, nothing pending, no message half received
    and nothing to report.
    """
    data = transfer()
    assert data.replayable(Host())
    assert not data.replayable(Host(replaysResponses=False))
    assert not data.replayable(Host(reporting=True))
    (pdv,) = echo(1).pdvs
    data.assembler.receive(PresentationDataValue(1, True, False, pdv.data[:10]))
    assert data.inProgress and not data.replayable(Host())


def test_clearForgetsPending() -> None:
    data = transfer()
    out: list[Any] = []
    data.answer(message(data, 1), None, {VERIFICATION: Later()}, out)
    data.clear()
    assert not data.responses and list(data.ready()) == []


@pytest.mark.parametrize(
    "byPeer, reason, outcome",
    [
        (False, 0, Outcome.ABORTED),
        (False, None, Outcome.NO_ASSOCIATION),
        (True, 0, Outcome.ABORTED_BY_PEER),
        (True, None, Outcome.CONNECTION_LOST),
    ],
)
def test_abnormalOutcome(byPeer: bool, reason: int | None, outcome: Outcome) -> None:
    assert abnormalOutcome(byPeer, reason) is outcome
