# -*- test-case-name: tests.test_association -*-
"""
The P-DATA side of an accepted association (PS3.8 §9.3.5, PS3.7 §9.1.5),
without the state machine: PDVs are reassembled into DIMSE messages, each
message goes to the responder of the presentation context it came on, and
the responses come out in request order. L{Association} sends what is
ready through the state machine, aborts on the errors raised here, and
releases when nothing is pending.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

from dicomecho.association.dimse import (
    DIMSEMessage,
    DIMSEResponse,
    MessageAssembler,
    encodeResponse,
)
from dicomecho.association.effects import AssociationEffect, AwaitResponse
from dicomecho.association.establishment import AssociationHost, ServiceResponder
from dicomecho.association.fastpaths import ResponseReplayer
from dicomecho.association.responses import ResponseQueue, Slot

__all__ = ["DataTransfer"]


class DataTransfer:
    """
    What an accepted association needs for P-DATA.

    @ivar contexts: the accepted presentation contexts by ID (read only,
        shared with the associations accepted alike).
    @ivar peerMaxPDULength: the longest P-DATA-TF the peer accepts (0: no
        limit).
    @ivar replayer: the L{ResponseReplayer} of the associations accepted
        alike.
    @ivar responses: the responses waiting behind one that comes later;
        C{None} until a responder first answers later.
    """

    __slots__ = ("contexts", "peerMaxPDULength", "replayer", "responses", "_assembler")

    def __init__(
        self, contexts: Mapping[int, Any], peerMaxPDULength: int, replayer: ResponseReplayer
    ) -> None:
        self.contexts = contexts
        self.peerMaxPDULength = peerMaxPDULength
        self.replayer = replayer
        self.responses: ResponseQueue | None = None
        # Made for the first message not answered by replay: most
        # associations never need one (and it is a third of an idle
        # association's memory).
        self._assembler: MessageAssembler | None = None

    @property
    def assembler(self) -> MessageAssembler:
        """
        The reassembler of this association's PDVs (PS3.8 Annex E).
        """
        if self._assembler is None:
            self._assembler = MessageAssembler(self.contexts.keys())
        return self._assembler

    def replayable(self, host: AssociationHost) -> bool:
        """
        Whether, in Sta6, a P-DATA-TF received now may be answered by
        replaying a response: only where the full path would do nothing but
        send that response (Evt10 then Evt9 leave Sta6 as it is). That is
        no response pending before it, no message half received (its DIMSE
        timer is off and stays off), and no message to report.
        """
        assembler = self._assembler
        return (
            host.replaysResponses
            and not self.responses
            and (assembler is None or not assembler.inProgress)
            and not host.reportsProgress()
        )

    @property
    def inProgress(self) -> bool:
        """
        Whether a message is half received.
        """
        return self._assembler is not None and self._assembler.inProgress

    def answer(
        self,
        message: DIMSEMessage,
        requestBody: bytes | None,
        responders: Mapping[str, ServiceResponder],
        out: list[AssociationEffect],
    ) -> Iterable[list[bytes]]:
        """
        Hand C{message} to its context's responder (by the context it came
        on, never by the UID inside it): the responses now ready to send,
        in order. A responder that answers later reserves a place
        (L{AwaitResponse} in C{out}). What the responder raises propagates.

        @param requestBody: the P-DATA-TF body that carried the whole
            message, if its response may be recorded for replay.
        """
        context = self.contexts[message.contextID]
        responder = responders.get(context.abstractSyntax)
        result = responder.handle(message, context) if responder else None
        if result is None or isinstance(result, DIMSEResponse):
            pdus = encodeResponse(result, message, self.peerMaxPDULength)
            if requestBody is not None and len(pdus) == 1 and getattr(responder, "repeatable", False):
                self.replayer.record(requestBody, pdus[0])
            if not self.responses:
                return (pdus,)
            self.responses.add(pdus)
            return self.responses.ready()
        if self.responses is None:
            self.responses = ResponseQueue()
        out.append(AwaitResponse(self.responses.reserve(), result, message))
        return ()

    def answerLater(self, slot: Slot, response: Any, request: DIMSEMessage) -> Iterator[list[bytes]]:
        """
        The later C{response} to C{request}, whose place is C{slot}: the
        responses now ready to send, in order. An encoding error propagates.
        """
        slot[0] = encodeResponse(response, request, self.peerMaxPDULength)
        return self.ready()

    def ready(self) -> Iterator[list[bytes]]:
        """
        The responses at the head of the queue that are ready, in order.
        """
        return self.responses.ready() if self.responses is not None else iter(())

    def clear(self) -> None:
        """
        Forget every pending response (the association was aborted).
        """
        if self.responses is not None:
            self.responses.clear()
