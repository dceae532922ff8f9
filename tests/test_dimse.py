"""
Tests for L{dicomecho.association.dimse}: reassembly of PDVs into messages,
fragmentation to the peer's maximum PDU length, refusal responses, and
hypothesis properties. The command-set codec is tested in
C{tests.test_commandset}.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomecho.association.commandset import (
    NO_DATA_SET,
    CommandField,
    CommandSetError,
    DIMSEError,
    Status,
    decodeCommandSet,
    encodeCommandSet,
    tag,
)
from dicomecho.association.dimse import (
    DIMSEMessage,
    FragmentError,
    MessageAssembler,
    MessageTooLargeError,
    PresentationContextError,
    fragment,
    refusalResponse,
)
from dicomecho.wire.errors import AbortReason, AbortSource, LocalProtocolError
from dicomecho.wire.pdu import PDataTF, PresentationDataValue, decode
from tests.support.commands import (
    AFFECTED_CLASS,
    AFFECTED_INSTANCE,
    COMMAND_FIELD,
    CT_STORAGE,
    DATA_SET_TYPE,
    ECHO_RQ,
    ECHO_RSP,
    REQUESTED_CLASS,
    REQUESTED_INSTANCE,
    RESPONDED_TO,
    STATUS,
    VERIFICATION,
    capturedPDataPDUs,
    commandSets,
    echoRequest,
)
from tests.support.helpers import SESSIONS

def pdvsOf(raw: bytes) -> tuple[PresentationDataValue, ...]:
    """
    The PDVs of one encoded P-DATA-TF.
    """
    pdu = decode(raw)
    assert isinstance(pdu, PDataTF)
    return pdu.pdvs

def pdv(
    data: bytes, isCommand: bool = True, last: bool = True, ctx: int = 1
) -> PresentationDataValue:
    return PresentationDataValue(ctx, isCommand, last, data)


# --- reassembly -----------------------------------------------------------------


def test_singlePDVMessage() -> None:
    """
    A whole command in one PDV is a complete message with no data set, and
    nothing stays in progress.
    """
    assembler = MessageAssembler([1])
    message = assembler.receive(pdv(ECHO_RQ))
    assert message == DIMSEMessage(1, decodeCommandSet(ECHO_RQ), None)
    assert message.commandField == CommandField.C_ECHO_RQ
    assert message.messageID == 1
    assert message.affectedSOPClassUID == VERIFICATION
    assert not message.hasDataSet
    assert not assembler.inProgress


def test_oneByteFragments() -> None:
    """
    A command split into 1-byte PDVs (odd fragments, as pynetdicom sends
    for peer max 7) completes on the last one, in progress until then.
    """
    assembler = MessageAssembler([1])
    for byte in ECHO_RQ[:-1]:
        assert assembler.receive(pdv(bytes([byte]), last=False)) is None
        assert assembler.inProgress
    message = assembler.receive(pdv(ECHO_RQ[-1:]))
    assert message is not None and message.command == decodeCommandSet(ECHO_RQ)
    assert not assembler.inProgress


def test_commandSpanningPDUs() -> None:
    """
    A command fragmented over several P-DATA-TF PDUs, decoded as PDUs,
    reassembles.
    """
    assembler = MessageAssembler([5])
    pdus = fragment(5, ECHO_RQ, None, 20)
    assert len(pdus) == 5
    results = [assembler.receive(p) for raw in pdus for p in pdvsOf(raw)]
    assert results[:-1] == [None] * 4
    assert results[-1] == DIMSEMessage(5, decodeCommandSet(ECHO_RQ), None)


def test_commandAndDataSet() -> None:
    """
    A command announcing a data set waits for the data-set fragments and
    returns their concatenation.
    """
    command = encodeCommandSet(echoRequest(CommandDataSetType=0))
    assembler = MessageAssembler([1])
    assert assembler.receive(pdv(command)) is None
    assert assembler.inProgress
    assert assembler.receive(pdv(b"ab", isCommand=False, last=False)) is None
    message = assembler.receive(pdv(b"cd", isCommand=False))
    assert message is not None
    assert message.dataSet == b"abcd" and message.hasDataSet
    assert not assembler.inProgress


def test_emptyDataSet() -> None:
    """
    A single empty last data-set fragment gives an empty data set, not None.
    """
    assembler = MessageAssembler([1])
    assembler.receive(pdv(encodeCommandSet(echoRequest(CommandDataSetType=0xFEFE))))
    message = assembler.receive(pdv(b"", isCommand=False))
    assert message is not None and message.dataSet == b""


def test_interleavedContexts() -> None:
    """
    Fragments of messages on contexts 1 and 3 interleave; each message is
    reassembled from its own context's fragments.
    """
    one = encodeCommandSet(echoRequest(7))
    three = encodeCommandSet(echoRequest(8, CommandDataSetType=0))
    assembler = MessageAssembler([1, 3])
    assert assembler.receive(pdv(one[:10], last=False)) is None
    assert assembler.receive(pdv(three[:20], last=False, ctx=3)) is None
    assert assembler.receive(pdv(three[20:], ctx=3)) is None
    first = assembler.receive(pdv(one[10:]))
    assert first is not None and first.contextID == 1 and first.messageID == 7
    assert assembler.inProgress
    second = assembler.receive(pdv(b"DS", isCommand=False, ctx=3))
    assert second is not None and second.contextID == 3 and second.dataSet == b"DS"
    assert not assembler.inProgress


def test_twoMessagesInOnePData() -> None:
    """
    Two complete messages in one P-DATA-TF (pynetdicom drops the second)
    are both returned, one per PDV.
    """
    raw = PDataTF(
        (pdv(encodeCommandSet(echoRequest(1))), pdv(encodeCommandSet(echoRequest(2))))
    ).encode()
    assembler = MessageAssembler([1])
    messages = [assembler.receive(p) for p in pdvsOf(raw)]
    assert [m.messageID for m in messages if m is not None] == [1, 2]


def test_errorAbortCodes() -> None:
    """
    Each error class names the A-ABORT to send (PS3.8 Table 9-26).
    """
    assert issubclass(CommandSetError, DIMSEError)
    assert (CommandSetError.abortSource, CommandSetError.abortReason) == (0, 0)
    context = PresentationContextError
    assert (context.abortSource, context.abortReason) == (
        AbortSource.SERVICE_PROVIDER,
        AbortReason.INVALID_PDU_PARAMETER_VALUE,
    )
    assert (FragmentError.abortSource, FragmentError.abortReason) == (
        AbortSource.SERVICE_PROVIDER,
        AbortReason.UNEXPECTED_PDU_PARAMETER,
    )
    assert (MessageTooLargeError.abortSource, MessageTooLargeError.abortReason) == (
        AbortSource.SERVICE_PROVIDER,
        AbortReason.INVALID_PDU_PARAMETER_VALUE,
    )


def test_unacceptedContext() -> None:
    """
    A PDV on a context that was not accepted raises PresentationContextError.
    """
    with pytest.raises(PresentationContextError):
        MessageAssembler([1]).receive(pdv(ECHO_RQ, ctx=3))


@pytest.mark.parametrize(
    "sequence",
    [
        # data before any command
        [pdv(b"DS", isCommand=False)],
        # data while the command is still partial
        [pdv(ECHO_RQ[:10], last=False), pdv(b"DS", isCommand=False)],
        # a new command while the data set is expected
        [pdv(encodeCommandSet(echoRequest(CommandDataSetType=0))), pdv(ECHO_RQ)],
    ],
    ids=["data-first", "data-mid-command", "command-mid-data"],
)
def test_fragmentOrder(sequence: list[PresentationDataValue]) -> None:
    """
    Out-of-order fragments raise FragmentError and leave nothing buffered.
    """
    assembler = MessageAssembler([1])
    for p in sequence[:-1]:
        assert assembler.receive(p) is None
    with pytest.raises(FragmentError):
        assembler.receive(sequence[-1])
    assert not assembler.inProgress


def test_commandTooLarge() -> None:
    """
    A command above maxCommandLength raises MessageTooLargeError, whether
    in one PDV or accumulated from several.
    """
    with pytest.raises(MessageTooLargeError):
        MessageAssembler([1], maxCommandLength=67).receive(pdv(ECHO_RQ))
    assembler = MessageAssembler([1], maxCommandLength=67)
    assembler.receive(pdv(ECHO_RQ[:60], last=False))
    with pytest.raises(MessageTooLargeError):
        assembler.receive(pdv(ECHO_RQ[60:]))
    assert not assembler.inProgress
    assert MessageAssembler([1], maxCommandLength=68).receive(pdv(ECHO_RQ))


def test_dataSetTooLarge() -> None:
    """
    A data set above maxDataSetLength raises MessageTooLargeError before
    the fragment that would exceed it is kept.
    """
    assembler = MessageAssembler([1], maxDataSetLength=4)
    assembler.receive(pdv(encodeCommandSet(echoRequest(CommandDataSetType=0))))
    assembler.receive(pdv(b"abcd", isCommand=False, last=False))
    with pytest.raises(MessageTooLargeError):
        assembler.receive(pdv(b"ef", isCommand=False))


def test_totalAcrossContextsBounded() -> None:
    """
    Partial messages on many contexts together may not buffer more than
    one command plus one data set.
    """
    assembler = MessageAssembler([1, 3, 5], maxCommandLength=100, maxDataSetLength=100)
    assembler.receive(pdv(b"x" * 100, last=False, ctx=1))
    assembler.receive(pdv(b"x" * 90, last=False, ctx=3))
    with pytest.raises(MessageTooLargeError):
        assembler.receive(pdv(b"x" * 20, last=False, ctx=5))


def test_badCommandSetInPDVs() -> None:
    """
    A completed command that does not decode raises CommandSetError.
    """
    assembler = MessageAssembler([1])
    assembler.receive(pdv(b"\xff" * 4, last=False))
    with pytest.raises(CommandSetError):
        assembler.receive(pdv(b"\xff" * 4))


# --- fragmentation --------------------------------------------------------------

ECHO_RSP_PDU = bytes.fromhex("040000000054" "0000005001" "03") + ECHO_RSP


def pdvLayout(pdus: list[bytes]) -> list[tuple[int, int]]:
    """
    (data length, control header) of each single-PDV PDU.
    """
    layout = []
    for raw in pdus:
        pdu = decode(raw)
        assert isinstance(pdu, PDataTF) and len(pdu.pdvs) == 1
        one = pdu.pdvs[0]
        assert raw == PDataTF((one,)).encode()
        layout.append((len(one.data), one.isCommand | one.isLastFragment << 1))
    return layout


@pytest.mark.parametrize("session", SESSIONS)
def test_fragmentMatchesCapturedPDU(session: str) -> None:
    """
    Our whole C-ECHO-RSP P-DATA-TF for the peer's max PDU equals the one
    pynetdicom sent.
    """
    for raw, pdu in capturedPDataPDUs(session, "s2c"):
        command = pdu.pdvs[0].data
        assert fragment(1, command, None, 16382) == [raw]
    assert fragment(1, ECHO_RSP, None, 16382) == [ECHO_RSP_PDU]


@pytest.mark.parametrize(
    "peerMax, layout",
    [
        (0, [(78, 3)]),
        (8, [(2, 1)] * 38 + [(2, 3)]),
        (20, [(14, 1)] * 5 + [(8, 3)]),
        (21, [(14, 1)] * 5 + [(8, 3)]),
        (9, [(2, 1)] * 38 + [(2, 3)]),
        (84, [(78, 3)]),
        (83, [(76, 1), (2, 3)]),
        (4096, [(78, 3)]),
    ],
)
def test_fragmentLayout(peerMax: int, layout: list[tuple[int, int]]) -> None:
    """
    PDV data is at most peerMax - 6 rounded down to even; 0 is unlimited;
    with peer max 20 the 78-byte response is 14×5 + 8 as pynetdicom sends.
    """
    pdus = fragment(1, ECHO_RSP, None, peerMax)
    assert pdvLayout(pdus) == layout
    if peerMax:
        assert all(len(raw) - 6 <= peerMax for raw in pdus)


def test_fragmentDataSet() -> None:
    """
    The data set follows the command in its own PDVs, control 0x00/0x02;
    with peer max 0 it is one PDV; an empty data set is one empty PDV.
    """
    assert pdvLayout(fragment(1, ECHO_RSP, b"x" * 30, 20)) == (
        [(14, 1)] * 5 + [(8, 3)] + [(14, 0), (14, 0), (2, 2)]
    )
    assert pdvLayout(fragment(1, ECHO_RSP, b"x" * 30, 0)) == [(78, 3), (30, 2)]
    assert pdvLayout(fragment(1, ECHO_RSP, b"", 0)) == [(78, 3), (0, 2)]


@pytest.mark.parametrize("peerMax", [-1, 1, 6, 7])
def test_fragmentRefusesTinyMaximum(peerMax: int) -> None:
    """
    A peer maximum of 1-7 cannot carry even fragments: ValueError.
    """
    with pytest.raises(ValueError):
        fragment(1, ECHO_RSP, None, peerMax)


def test_fragmentRefusesBadContextID() -> None:
    """
    A context ID that does not fit a byte raises LocalProtocolError.
    """
    with pytest.raises(LocalProtocolError):
        fragment(256, ECHO_RSP, None, 0)


@pytest.mark.parametrize("peerMax", [0, 8, 9, 20, 21, 100, 16382])
def test_fragmentReassembles(peerMax: int) -> None:
    """
    Feeding fragment()'s output to the assembler gives back the message.
    """
    command = encodeCommandSet(echoRequest(3, CommandDataSetType=0))
    dataSet = bytes(range(256)) * 3
    assembler = MessageAssembler([7])
    results = [
        assembler.receive(p)
        for raw in fragment(7, command, dataSet, peerMax)
        for p in pdvsOf(raw)
    ]
    assert results[-1] == DIMSEMessage(7, decodeCommandSet(command), dataSet)
    assert all(r is None for r in results[:-1])


# --- refusal responses ------------------------------------------------------------


def message(**command: object) -> DIMSEMessage:
    values = {DATA_SET_TYPE: NO_DATA_SET, **{tag(k): v for k, v in command.items()}}
    return DIMSEMessage(1, values, None)


def test_refuseCStore() -> None:
    """
    C-STORE-RQ → C-STORE-RSP with the class and instance UIDs copied.
    """
    request = message(
        CommandField=CommandField.C_STORE_RQ,
        MessageID=9,
        AffectedSOPClassUID=CT_STORAGE,
        AffectedSOPInstanceUID="1.2.3",
        Priority=0,
        CommandDataSetType=0,
    )
    assert refusalResponse(request, Status.UNRECOGNIZED_OPERATION) == {
        COMMAND_FIELD: 0x8001,
        RESPONDED_TO: 9,
        DATA_SET_TYPE: NO_DATA_SET,
        STATUS: 0x0211,
        AFFECTED_CLASS: CT_STORAGE,
        AFFECTED_INSTANCE: "1.2.3",
    }


def test_refuseCFind() -> None:
    """
    C-FIND-RQ → C-FIND-RSP with the status given; it encodes.
    """
    request = message(
        CommandField=CommandField.C_FIND_RQ,
        MessageID=2,
        AffectedSOPClassUID="1.2.840.10008.5.1.4.1.2.1.1",
        CommandDataSetType=0,
    )
    response = refusalResponse(request, Status.SOP_CLASS_NOT_SUPPORTED)
    assert response is not None
    assert response[COMMAND_FIELD] == CommandField.C_FIND_RSP
    assert response[STATUS] == 0x0122
    assert decodeCommandSet(encodeCommandSet(response)) == response


def test_refuseNGet() -> None:
    """
    N-GET-RQ's Requested SOP Class/Instance UIDs become the response's
    Affected ones (PS3.7 §10.3.2).
    """
    request = message(
        CommandField=CommandField.N_GET_RQ,
        MessageID=4,
        RequestedSOPClassUID="1.2.840.10008.5.1.1.16",
        RequestedSOPInstanceUID="1.2.840.10008.5.1.1.17",
    )
    response = refusalResponse(request, Status.UNRECOGNIZED_OPERATION)
    assert response is not None
    assert response[COMMAND_FIELD] == CommandField.N_GET_RSP
    assert response[AFFECTED_CLASS] == "1.2.840.10008.5.1.1.16"
    assert response[AFFECTED_INSTANCE] == "1.2.840.10008.5.1.1.17"
    assert REQUESTED_CLASS not in response and REQUESTED_INSTANCE not in response


def test_refuseNEventReport() -> None:
    """
    N-EVENT-REPORT-RQ → N-EVENT-REPORT-RSP with Affected UIDs copied.
    """
    request = message(
        CommandField=CommandField.N_EVENT_REPORT_RQ,
        MessageID=5,
        AffectedSOPClassUID="1.2.840.10008.1.20.1",
        AffectedSOPInstanceUID="1.2.840.10008.1.20.1.1",
        EventTypeID=1,
    )
    response = refusalResponse(request, Status.UNRECOGNIZED_OPERATION)
    assert response is not None
    assert response[COMMAND_FIELD] == 0x8100 and response[RESPONDED_TO] == 5
    assert response[AFFECTED_INSTANCE] == "1.2.840.10008.1.20.1.1"
    assert tag("EventTypeID") not in response


def test_noResponseToCancelOrResponses() -> None:
    """
    C-CANCEL-RQ has no response; a response message is never answered.
    """
    cancel = message(CommandField=CommandField.C_CANCEL_RQ, MessageIDBeingRespondedTo=3)
    assert refusalResponse(cancel, Status.UNRECOGNIZED_OPERATION) is None
    for field in CommandField:
        if field & 0x8000:
            response = message(CommandField=field, MessageIDBeingRespondedTo=1)
            assert refusalResponse(response, Status.UNRECOGNIZED_OPERATION) is None


@pytest.mark.parametrize(
    "command",
    [
        {"CommandField": 0x0777, "MessageID": 1},
        {"CommandField": CommandField.C_STORE_RQ},
    ],
    ids=["unknown-field", "no-message-id"],
)
def test_refusalNeedsKnownRequest(command: dict[str, object]) -> None:
    """
    An unknown CommandField or a request without MessageID cannot be
    answered: CommandSetError (service-user abort).
    """
    with pytest.raises(CommandSetError):
        refusalResponse(message(**command), Status.UNRECOGNIZED_OPERATION)


# --- properties ---------------------------------------------------------------------


@given(
    commandSets(),
    st.binary(max_size=100),
    st.lists(st.integers(0, 400), max_size=10),
    st.lists(st.integers(0, 200), max_size=10),
)
def test_anySplitReassembles(
    command: dict[int, object], dataSet: bytes, cuts: list[int], dataCuts: list[int]
) -> None:
    """
    Any split of a valid message (command and, if announced, data set)
    into PDVs reassembles to the same message, completing on the last PDV.
    """
    encoded = encodeCommandSet(command)
    hasData = command[DATA_SET_TYPE] != NO_DATA_SET

    def split(
        data: bytes, points: list[int], isCommand: bool
    ) -> list[PresentationDataValue]:
        bounds = sorted({0, len(data), *(p for p in points if p < len(data))})
        pieces = [data[a:b] for a, b in zip(bounds, bounds[1:])] or [b""]
        return [
            pdv(piece, isCommand, i == len(pieces) - 1)
            for i, piece in enumerate(pieces)
        ]

    pdvs = split(encoded, cuts, True)
    if hasData:
        pdvs += split(dataSet, dataCuts, False)
    assembler = MessageAssembler([1])
    results = [assembler.receive(p) for p in pdvs]
    assert all(r is None for r in results[:-1])
    assert results[-1] == DIMSEMessage(1, command, dataSet if hasData else None)
    assert not assembler.inProgress
