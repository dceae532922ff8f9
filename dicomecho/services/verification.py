# -*- test-case-name: tests.test_verification -*-
"""
Service responders, and the first of them: the Verification SOP Class
(PS3.4 Annex A), which answers C-ECHO-RQ with C-ECHO-RSP (PS3.7 §9.1.5,
§9.3.5).

A responder is pure: it gets a decoded L{DIMSEMessage} and the presentation
context it arrived on, and returns the response to send. The protocol owns
the wire, the fragmentation and the refusals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Union

from zope.interface import Attribute, Interface, implementer

from dicomecho.association.commandset import (
    NO_DATA_SET,
    CommandField,
    CommandSetError,
    Status,
    tag,
)
from dicomecho.association.dimse import DIMSEMessage, DIMSEResponse

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

__all__ = [
    "VERIFICATION_SOP_CLASS",
    "PresentationContextLike",
    "IServiceResponder",
    "VerificationResponder",
]

#: The Verification SOP Class UID (PS3.4 Annex A, PS3.6 Annex A).
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

_AFFECTED_SOP_CLASS = tag("AffectedSOPClassUID")
_COMMAND_FIELD = tag("CommandField")
_MESSAGE_ID_RESPONDED = tag("MessageIDBeingRespondedTo")
_DATA_SET_TYPE = tag("CommandDataSetType")
_STATUS = tag("Status")


class PresentationContextLike(Protocol):
    """
    What a responder needs to know of the accepted presentation context a
    message arrived on.
    """

    @property
    def contextID(self) -> int: ...

    @property
    def abstractSyntax(self) -> str: ...

    @property
    def transferSyntax(self) -> str: ...


ResponderResult = Union[DIMSEResponse, "Deferred[DIMSEResponse]", None]


class IServiceResponder(Interface):
    """
    Serves DIMSE requests for some SOP classes.
    """

    abstractSyntaxes = Attribute(
        "tuple[str, ...]: the SOP class UIDs (abstract syntaxes) served"
    )

    repeatable = Attribute(
        "bool, optional (default False): handle() answers synchronously, its"
        " response depends only on the request and its context, and it copies"
        " the request's MessageID into MessageIDBeingRespondedTo. The protocol"
        " may then answer a request that repeats the previous one but for its"
        " MessageID with the previous response, patched (dicomecho.association.replay)."
    )

    def handle(
        request: DIMSEMessage, context: PresentationContextLike
    ) -> ResponderResult:
        """
        Answer C{request}, received on C{context}.

        @return: the response, a L{Deferred} firing with it, or C{None} if
            this is not a request the responder serves; the protocol then
            answers with status 0x0211 (unrecognized operation).
        @raise CommandSetError: if the request lacks a required element.
        """


@implementer(IServiceResponder)
class VerificationResponder:
    """
    The Verification SCP: C-ECHO-RQ → C-ECHO-RSP (PS3.7 §9.1.5, §9.3.5),
    shaped exactly like pynetdicom's echoscp reply.
    """

    abstractSyntaxes: tuple[str, ...] = (VERIFICATION_SOP_CLASS,)
    repeatable = True

    def handle(
        self, request: DIMSEMessage, context: PresentationContextLike
    ) -> DIMSEResponse | None:
        """
        Answer a C-ECHO-RQ; C{None} for any other message.

        The response copies the request's AffectedSOPClassUID. Status is
        0x0000, or 0x0122 (SOP class not supported) when that UID is not
        the context's abstract syntax. A data set sent with the request is
        ignored.

        @raise CommandSetError: if the request lacks AffectedSOPClassUID or
            MessageID, both required (PS3.7 Table 9.3-12).
        """
        if request.commandField != CommandField.C_ECHO_RQ:
            return None
        command = request.command
        sopClass = command.get(_AFFECTED_SOP_CLASS)
        if sopClass is None:
            raise CommandSetError("C-ECHO-RQ has no AffectedSOPClassUID (0000,0002)")
        messageID = request.messageID
        if messageID is None:
            raise CommandSetError("C-ECHO-RQ has no MessageID (0000,0110)")
        status = (
            Status.SUCCESS
            if sopClass == context.abstractSyntax
            else Status.SOP_CLASS_NOT_SUPPORTED
        )
        # PS3.7 Table 9.3-13: C-ECHO-RSP fields; no MessageID, no data set.
        return DIMSEResponse(
            {
                _AFFECTED_SOP_CLASS: sopClass,
                _COMMAND_FIELD: CommandField.C_ECHO_RSP,
                _MESSAGE_ID_RESPONDED: messageID,
                _DATA_SET_TYPE: NO_DATA_SET,
                _STATUS: status,
            }
        )
