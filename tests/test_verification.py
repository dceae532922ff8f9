"""
Tests for L{dicomecho.services.verification}: the C-ECHO responder against requests
captured from DCMTK and pynetdicom, its status rules, and what it refuses.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass

import pytest
from zope.interface.verify import verifyClass, verifyObject

from dicomecho.association.commandset import (
    NO_DATA_SET,
    CommandField,
    CommandSetError,
    Status,
    decodeCommandSet,
    encodeCommandSet,
    tag,
)
from dicomecho.association.dimse import DIMSEMessage, DIMSEResponse, MessageAssembler, fragment
from dicomecho.wire.pdu import PDataTF, PDUType, decodePDU
from dicomecho.services.verification import (
    VERIFICATION_SOP_CLASS,
    IServiceResponder,
    VerificationResponder,
)
from tests.support.helpers import SESSIONS, fixtureBytes, splitStream

AFFECTED_CLASS = tag("AffectedSOPClassUID")
COMMAND_FIELD = tag("CommandField")
MESSAGE_ID = tag("MessageID")
RESPONDED_TO = tag("MessageIDBeingRespondedTo")
DATA_SET_TYPE = tag("CommandDataSetType")
STATUS = tag("Status")
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class Context:
    """
    Stands in for the protocol's accepted presentation context.
    """

    contextID: int = 1
    abstractSyntax: str = VERIFICATION_SOP_CLASS
    transferSyntax: str = "1.2.840.10008.1.2"


def echo(
    messageID: int = 1, drop: str | None = None, **overrides: object
) -> DIMSEMessage:
    """
    A C-ECHO-RQ message; C{overrides} replace elements by keyword and
    C{drop} names one to leave out.
    """
    command: dict[int, object] = {
        AFFECTED_CLASS: VERIFICATION_SOP_CLASS,
        COMMAND_FIELD: CommandField.C_ECHO_RQ,
        MESSAGE_ID: messageID,
        DATA_SET_TYPE: NO_DATA_SET,
    }
    command.update({tag(keyword): value for keyword, value in overrides.items()})
    if drop is not None:
        del command[tag(drop)]
    return DIMSEMessage(1, command, None)


def pDataPDUs(session: str, direction: str) -> list[tuple[bytes, PDataTF]]:
    """
    The whole bytes and the value of each P-DATA-TF in a captured stream.
    """
    result = []
    for frame in splitStream(fixtureBytes(session, direction)):
        if frame.pduType == PDUType.P_DATA_TF:
            raw = bytes([frame.pduType, 0]) + len(frame.body).to_bytes(4, "big")
            pdu = decodePDU(frame.pduType, frame.body)
            assert isinstance(pdu, PDataTF)
            result.append((raw + frame.body, pdu))
    return result


def test_providesInterface() -> None:
    """
    VerificationResponder implements IServiceResponder and serves exactly
    the Verification SOP Class.
    """
    assert verifyClass(IServiceResponder, VerificationResponder)
    assert verifyObject(IServiceResponder, VerificationResponder())
    assert VerificationResponder.abstractSyntaxes == ("1.2.840.10008.1.1",)


@pytest.mark.parametrize("session", SESSIONS)
def test_capturedRoundTrip(session: str) -> None:
    """
    Each captured C-ECHO-RQ, reassembled, answered and fragmented for the
    peer's maximum PDU, gives byte-for-byte the P-DATA-TF pynetdicom sent.
    """
    responder = VerificationResponder()
    assembler = MessageAssembler([1])
    requests = pDataPDUs(session, "c2s")
    responses = pDataPDUs(session, "s2c")
    assert len(requests) == len(responses) >= 1
    for (_, rq), (raw, _) in zip(requests, responses):
        message = assembler.receive(rq.pdvs[0])
        assert message is not None
        response = responder.handle(message, Context())
        assert response is not None and response.dataSet is None
        assert fragment(1, encodeCommandSet(response.command), None, 16382) == [raw]


def test_responseFields() -> None:
    """
    The C-ECHO-RSP carries exactly the fields pynetdicom's does: class UID
    copied, 0x8030, the MessageID answered, no data set, status 0; no
    MessageID of its own (PS3.7 Table 9.3-13).
    """
    response = VerificationResponder().handle(echo(65535), Context())
    assert response == DIMSEResponse(
        {
            AFFECTED_CLASS: VERIFICATION_SOP_CLASS,
            COMMAND_FIELD: 0x8030,
            RESPONDED_TO: 65535,
            DATA_SET_TYPE: NO_DATA_SET,
            STATUS: Status.SUCCESS,
        }
    )
    assert decodeCommandSet(encodeCommandSet(response.command)) == response.command


def test_wrongSOPClass() -> None:
    """
    A C-ECHO-RQ whose AffectedSOPClassUID is not the context's abstract
    syntax gets status 0x0122 (SOP class not supported), UID still copied.
    """
    response = VerificationResponder().handle(
        echo(AffectedSOPClassUID=CT_STORAGE), Context()
    )
    assert response is not None
    assert response.command[STATUS] == 0x0122
    assert response.command[AFFECTED_CLASS] == CT_STORAGE
    assert response.command[COMMAND_FIELD] == CommandField.C_ECHO_RSP


def test_contextDecides() -> None:
    """
    The status follows the context the request arrived on, not the UID
    alone: Verification on a context negotiated for CT is refused.
    """
    context = Context(abstractSyntax=CT_STORAGE)
    response = VerificationResponder().handle(echo(), context)
    assert response is not None and response.command[STATUS] == 0x0122


@pytest.mark.parametrize("missing", ["AffectedSOPClassUID", "MessageID"])
def test_missingRequiredElement(missing: str) -> None:
    """
    A C-ECHO-RQ without a required element (PS3.7 Table 9.3-12) raises
    CommandSetError, which asks for a service-user abort.
    """
    with pytest.raises(CommandSetError):
        VerificationResponder().handle(echo(drop=missing), Context())


def test_dataSetIgnored() -> None:
    """
    A data set attached to a C-ECHO-RQ is ignored: the response is the same
    as without it and carries no data set.
    """
    plain = VerificationResponder().handle(echo(4), Context())
    request = echo(4, CommandDataSetType=0)
    withData = DIMSEMessage(1, request.command, b"\x08\x00\x16\x00")
    assert VerificationResponder().handle(withData, Context()) == plain


@pytest.mark.parametrize(
    "field",
    [
        CommandField.C_STORE_RQ,
        CommandField.C_ECHO_RSP,
        CommandField.C_CANCEL_RQ,
        0x0777,
    ],
)
def test_otherMessagesNotServed(field: int) -> None:
    """
    Anything but a C-ECHO-RQ returns None, so the protocol answers with
    a refusal (or nothing, for responses and C-CANCEL).
    """
    assert VerificationResponder().handle(echo(CommandField=field), Context()) is None


def test_dimseResponseIsFrozen() -> None:
    """
    DIMSEResponse is an immutable value whose data set defaults to None.
    """
    response = DIMSEResponse({STATUS: 0})
    assert response.dataSet is None
    with pytest.raises(FrozenInstanceError):
        response.dataSet = b""  # type: ignore[misc]
