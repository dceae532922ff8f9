"""
Tests for L{dicomecho.observability.logblocks}: echoscp's C{-d} blocks for
A-ASSOCIATE-RQ/AC/RJ, A-ABORT and DIMSE messages, checked against the
reference capture and pynetdicom's own handlers; escaping of peer strings.
"""

from __future__ import annotations

import pytest
from dicomecho.association.dimse import DIMSEMessage
from dicomecho.association.commandset import tag
from dicomecho.association.negotiation import AssociationPolicy
from dicomecho.observability.logs import renderEcho
from dicomecho.observability.levels import setLogLevel
from dicomecho.wire.errors import AbortReason, AbortSource
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.userinfo import SOPClassExtendedNegotiation, UserIdentityRQ, UserInformation
from dicomecho.wire.itemcodec import UnknownItem
from dicomecho.wire.pdu import Abort, AssociateRQ, decodePDU
from pynetdicom.utils import pretty_bytes
from tests.support.helpers import SESSIONS, fixtureBytes, splitStream
from twisted.logger import LogLevel
from tests.support.logevents import (  # noqa: F401 (debugLevel: an autouse fixture)
    CT_IMAGE_STORAGE,
    EXTENDED_RQ_BLOCK,
    REFERENCE_AC_BLOCK,
    REFERENCE_ECHO_BLOCK,
    REFERENCE_RQ_BLOCK,
    accept,
    acceptedEvent,
    capturedEcho,
    capturedRQ,
    debugLevel,
    dimseEvent,
    event,
    pynetdicomACLines,
    pynetdicomRQLines,
    reject,
    rejectedEvent,
    rqEvent,
)

# --- the A-ASSOCIATE-RQ block --------------------------------------------------------


def test_rqBlockIsTheReferences() -> None:
    """
    DCMTK's default request renders exactly as echoscp printed it in the
    reference capture (§9.2).
    """
    assert (
        renderEcho(rqEvent(capturedRQ("dcmtk_echoscu_default"))) == REFERENCE_RQ_BLOCK
    )


@pytest.mark.parametrize("session", SESSIONS)
def test_rqBlockIsPynetdicoms(session: str) -> None:
    """
    For every captured request the block is line for line what pynetdicom's
    own handler prints, except that a password is never shown.
    """
    ours = renderEcho(rqEvent(capturedRQ(session)))
    theirs = [
        "D:   Password: [6 bytes hidden]" if line == "D:   Password: [s3cret]" else line
        for line in pynetdicomRQLines(session)
    ]
    assert ours == theirs


def test_extendedRQBlock() -> None:
    """
    pynetdicom's request with every optional sub-item shows the role
    selection, the asynchronous operations window, the (common) extended
    negotiation with its hex dump, and the user identity without the
    password.
    """
    lines = renderEcho(rqEvent(capturedRQ("pynetdicom_extended")))
    assert lines == EXTENDED_RQ_BLOCK
    assert not any("s3cret" in line for line in lines)


def test_manyContextsArePlural() -> None:
    """
    With DCMTK's 128 contexts of 16 transfer syntaxes, the headings are
    plural and every context is listed in ID order.
    """
    lines = renderEcho(rqEvent(capturedRQ("dcmtk_echoscu_propose_pc")))
    assert "D: Presentation Contexts:" in lines
    contextLines = [line for line in lines if "(Proposed)" in line]
    assert len(contextLines) == 128
    assert contextLines[0] == "D:   Context ID:        1 (Proposed)"
    assert contextLines[-1] == "D:   Context ID:        255 (Proposed)"
    assert lines.count("D:     Proposed Transfer Syntaxes:") == 128
    assert "D:     Proposed Transfer Syntax:" not in lines


def test_missingFieldsRequest() -> None:
    """
    A request without user information or application context shows
    C{unknown} implementation fields, C{None} for the context name and the
    maximum length, C{None} for a context without abstract syntax, and
    plural headings for zero transfer syntaxes.
    """
    rq = AssociateRQ(
        calledAETitle="ECHOSCP",
        callingAETitle="X",
        applicationContextName=None,
        presentationContexts=(PresentationContextRQ(1, None, ()),),
    )
    lines = renderEcho(rqEvent(rq))
    assert "D: Their Implementation Class UID:      unknown" in lines
    assert "D: Their Implementation Version Name:   unknown" in lines
    assert "D: Application Context Name:    None" in lines
    assert "D: Their Max PDU Receive Size:  None" in lines
    assert "D:     Abstract Syntax: None" in lines
    assert "D:     Proposed Transfer Syntaxes:" in lines


@pytest.mark.parametrize(
    "kind, line",
    [
        (1, "D:   Username: [bob]"),
        (3, "D:   Kerberos Service Ticket (not dumped) length: 3"),
        (4, "D:   SAML Assertion (not dumped) length: 3"),
        (5, "D:   JSON Web Token (not dumped) length: 3"),
    ],
)
def test_otherUserIdentities(kind: int, line: str) -> None:
    """
    Username-only identities show the name; tickets, assertions and tokens
    show only their length, like pynetdicom; the secondary field never
    appears.
    """
    identity = UserIdentityRQ(kind, 0, b"bob", b"hunter2")
    rq = AssociateRQ(
        "ECHOSCP", "X", userInformation=UserInformation(userIdentity=identity)
    )
    lines = renderEcho(rqEvent(rq))
    assert line in lines
    assert "D:   Positive Response Requested: None" in lines
    assert not any("hunter2" in line for line in lines)


def test_longExtendedNegotiationIsCut() -> None:
    """
    Extended negotiation data is dumped as pynetdicom's C{pretty_bytes}
    does, at most 512 bytes after an "Only dumping" line.
    """
    data = bytes(range(256)) * 3
    info = UserInformation(
        sopClassExtendedNegotiations=(
            SOPClassExtendedNegotiation(CT_IMAGE_STORAGE, data),
        )
    )
    lines = renderEcho(rqEvent(AssociateRQ("ECHOSCP", "X", userInformation=info)))
    start = lines.index("D: Requested Extended Negotiation:") + 2
    dump = lines[start : start + 33]
    assert dump == [f"D:   {line}" for line in pretty_bytes(data)]
    assert dump[0] == "D:     Only dumping 512 bytes."


def test_unknownItemsAreNamed() -> None:
    """
    Items PS3.8 says to skip are listed by type and length (pynetdicom
    cannot decode such a request at all).
    """
    rq = AssociateRQ(
        "ECHOSCP",
        "X",
        userInformation=UserInformation(unknownSubItems=(UnknownItem(0x5F, b"ab"),)),
        unknownItems=(UnknownItem(0x70, b"abcd"),),
    )
    lines = renderEcho(rqEvent(rq))
    assert "D: Ignored Unknown Item: type 0x70, 4 bytes" in lines
    assert "D: Ignored Unknown User Information Sub-item: type 0x5F, 2 bytes" in lines


# --- escaping ------------------------------------------------------------------------


def test_controlCharactersAreEscaped() -> None:
    """
    A calling AE title carrying a line break and control characters cannot
    forge a log line: every character that is not printable is escaped, and
    a literal backslash is doubled so escapes cannot be faked either.
    """
    rq = AssociateRQ(
        "ECHOSCP", "A\nI: Association Released\x01\\x", presentationContexts=()
    )
    lines = renderEcho(rqEvent(rq))
    assert (
        "D: Calling Application Name:    A\\nI: Association Released\\x01\\\\x" in lines
    )
    assert all(line.startswith("D: ") for line in lines)
    assert not any("\n" in line or "\x01" in line for line in lines)


def test_rejectReasonIsEscaped() -> None:
    """
    The human reason of a rejection, which quotes the peer's AE title, is
    rendered on one line.
    """
    rejection = reject(
        AssociateRQ("ECHOSCP", "BAD\r\nE: x", presentationContexts=()),
        AssociationPolicy(allowedCallingAETitles=frozenset({"GOOD"})),
    )
    lines = renderEcho(rejectedEvent(rejection))
    assert lines[1].startswith("D: calling AE title 'BAD")
    assert not any("\r" in line or "\n" in line for line in lines)


# --- the A-ASSOCIATE-AC block -----------------------------------------------------------


def test_acBlockIsTheReferences() -> None:
    """
    The accept lines are the reference's, except that we identify as
    dicomecho and name the AE title the AC carries instead of echoscp's
    C{resp. AE Title} placeholder.
    """
    acceptance = accept(capturedRQ("dcmtk_echoscu_default"))
    info = acceptance.ac.userInformation
    assert info is not None
    expected = list(REFERENCE_AC_BLOCK)
    expected[3] = f"D: Our Implementation Class UID:      {info.implementationClassUID}"
    expected[4] = (
        f"D: Our Implementation Version Name:   {info.implementationVersionName}"
    )
    expected[6] = "D: Responding Application Name: ECHOSCP"
    assert renderEcho(acceptedEvent(acceptance)) == expected


@pytest.mark.parametrize("session", SESSIONS)
def test_acBlockIsPynetdicoms(session: str) -> None:
    """
    For every captured request, the block for our AC is what pynetdicom's
    handler prints for the same AC, but for the responding name.
    """
    acceptance = accept(capturedRQ(session))
    ours = renderEcho(acceptedEvent(acceptance))
    theirs = pynetdicomACLines(session, acceptance)
    placeholder = "D: Responding Application Name: resp. AE Title"
    assert ours[0] == "I: Accepting Association"
    assert ours[1:] == [
        (
            f"D: Responding Application Name: {acceptance.rq.calledAETitle}"
            if line == placeholder
            else line
        )
        for line in theirs
    ]


def test_acRejectedContexts() -> None:
    """
    Rejected contexts show their result and abstract syntax only: no role
    and no transfer syntax line.
    """
    lines = renderEcho(acceptedEvent(accept(capturedRQ("pynetdicom_extended"))))
    at = lines.index(
        "D:   Context ID:        3 (Rejected - Abstract Syntax Not Supported)"
    )
    assert lines[at + 1] == "D:     Abstract Syntax: =CT Image Storage"
    assert lines[at + 2] == "D: Accepted Extended Negotiation: None"
    rq = AssociateRQ(
        "ECHOSCP",
        "X",
        presentationContexts=(
            PresentationContextRQ(1, "1.2.840.10008.1.1", ("1.2.3.4",)),
        ),
    )
    lines = renderEcho(acceptedEvent(accept(rq)))
    assert (
        "D:   Context ID:        1 (Rejected - Transfer Syntax Not Supported)" in lines
    )


def test_acNoContexts() -> None:
    """
    An AC without context items says so, as pynetdicom does.
    """
    lines = renderEcho(acceptedEvent(accept(AssociateRQ("ECHOSCP", "X"))))
    assert "D: Presentation Contexts: None" in lines


# --- rejections -----------------------------------------------------------------------


def test_rejectBlock() -> None:
    """
    A rejection is C{I: Rejecting Association}, the human reason, and the
    RJ block with echoscp's strings.
    """
    rejection = reject(capturedRQ("dcmtk_echoscu_default"), atCapacity=True)
    assert renderEcho(rejectedEvent(rejection)) == [
        "I: Rejecting Association",
        "D: the limit on concurrent associations is reached",
        "D: Reject Parameters:",
        "D: ======================= OUTGOING A-ASSOCIATE-RJ PDU ========================",
        "D: Result:    Rejected (Transient)",
        "D: Source:    DUL service-provider (presentation related)",
        "D: Reason:    Local limit exceeded",
        "D: ========================== END A-ASSOCIATE-RJ PDU ==========================",
    ]


@pytest.mark.parametrize(
    "policy, called, result, source, reason",
    [
        (
            AssociationPolicy(allowedCallingAETitles=frozenset({"OTHER"})),
            "ECHOSCP",
            "Rejected (Permanent)",
            "DUL service-user",
            "Calling AE title not recognised",
        ),
        (
            AssociationPolicy(requireCalledAETitle=True),
            "NOTUS",
            "Rejected (Permanent)",
            "DUL service-user",
            "Called AE title not recognised",
        ),
    ],
)
def test_rejectStrings(
    policy: AssociationPolicy, called: str, result: str, source: str, reason: str
) -> None:
    """
    The RJ block names result, source and reason as pynetdicom does.
    """
    rejection = reject(AssociateRQ(called, "MYSCU"), policy)
    lines = renderEcho(rejectedEvent(rejection))
    assert lines[0] == "I: Rejecting Association"
    assert lines[4:7] == [
        f"D: Result:    {result}",
        f"D: Source:    {source}",
        f"D: Reason:    {reason}",
    ]


def test_protocolVersionRejection() -> None:
    """
    A protocol version rejection is echoscp's error line with the version
    in four hex digits, and no C{Rejecting Association} line (§3.1).
    """
    rejection = reject(AssociateRQ("ECHOSCP", "MYSCU", protocolVersion=2))
    lines = renderEcho(rejectedEvent(rejection))
    assert lines[0] == "E: A-ASSOCIATE-RQ: Unsupported protocol version '0x0002'"
    assert "I: Rejecting Association" not in lines
    assert "D: Source:    DUL service-provider (ACSE related)" in lines
    assert "D: Reason:    Protocol version not supported" in lines
    setLogLevel(LogLevel.info)
    assert renderEcho(rejectedEvent(rejection)) == [
        "E: A-ASSOCIATE-RQ: Unsupported protocol version '0x0002'"
    ]


# --- aborts -----------------------------------------------------------------------------


def test_incomingAbortFromUser() -> None:
    """
    DCMTK's A-ABORT (source 0) shows the incoming block, then
    C{Association Aborted}, in the order echoscp prints them.
    """
    frame = splitStream(fixtureBytes("dcmtk_echoscu_abort", "c2s"))[-1]
    abort = decodePDU(frame.pduType, frame.body)
    assert isinstance(abort, Abort)
    lines = renderEcho(
        event(
            "association-aborted",
            source=abort.source,
            reason=abort.reason,
            detail="peer",
        )
    )
    assert lines == [
        "D: Abort Parameters:",
        "D: =========================== INCOMING A-ABORT PDU ===========================",
        "D: Abort Source: DUL service-user",
        "D: Abort Reason: (no value available)",
        "D: ============================= END A-ABORT PDU ==============================",
        "I: Association Aborted",
    ]


@pytest.mark.parametrize(
    "reason, text",
    [
        (0, "No reason given"),
        (1, "Unrecognised PDU"),
        (2, "Unexpected PDU"),
        (4, "Unrecognised PDU parameter"),
        (5, "Unexpected PDU parameter"),
        (6, "Invalid PDU parameter value"),
    ],
)
def test_incomingProviderAbort(reason: int, text: str) -> None:
    """
    A provider abort is C{(A-P-ABORT)} and names its reason.
    """
    lines = renderEcho(
        event("association-aborted", source=2, reason=reason, detail="x")
    )
    assert lines[2:4] == [
        "D: Abort Source: DUL service-provider",
        f"D: Abort Reason: {text}",
    ]
    assert lines[-1] == "I: Association Aborted (A-P-ABORT)"


def test_connectionLostIsAProviderAbort() -> None:
    """
    A transport closed without an A-ABORT is C{(A-P-ABORT)}, with no block.
    """
    lost = event("association-aborted", source=2, reason=None, detail="connection lost")
    assert renderEcho(lost) == ["I: Association Aborted (A-P-ABORT)"]


def test_outgoingAbort() -> None:
    """
    Our own abort is C{Aborting Association}, why, and the outgoing block.
    """
    lines = renderEcho(
        event(
            "association-aborting",
            source=AbortSource.SERVICE_PROVIDER,
            reason=AbortReason.INVALID_PDU_PARAMETER_VALUE,
            detail="presentation context 3 was not accepted",
        )
    )
    assert lines == [
        "I: Aborting Association",
        "D: presentation context 3 was not accepted",
        "D: Abort Parameters:",
        "D: =========================== OUTGOING A-ABORT PDU ===========================",
        "D: Abort Source: DUL service-provider",
        "D: Abort Reason: Invalid PDU parameter value",
        "D: ============================= END A-ABORT PDU ==============================",
    ]
    setLogLevel(LogLevel.info)
    userAbort = event(
        "association-aborting", source=0, reason=0, detail="Network timeout"
    )
    assert renderEcho(userAbort) == ["I: Aborting Association"]


# --- DIMSE --------------------------------------------------------------------------------


def test_echoBlockIsTheReferences() -> None:
    """
    The captured C-ECHO-RQ renders as in the reference, without the
    C{pydicom.read_dataset()} line.
    """
    assert renderEcho(dimseEvent(capturedEcho())) == REFERENCE_ECHO_BLOCK


def test_storeBlock() -> None:
    """
    A C-STORE-RQ shows pynetdicom's extra lines: SOP class by name, SOP
    instance, move originator, data set presence and priority.
    """
    message = DIMSEMessage(
        3,
        {
            tag("CommandField"): 0x0001,
            tag("MessageID"): 7,
            tag("AffectedSOPClassUID"): CT_IMAGE_STORAGE,
            tag("AffectedSOPInstanceUID"): "1.2.3.4",
            tag("Priority"): 0,
            tag("MoveOriginatorApplicationEntityTitle"): "MOVER\x00",
            tag("CommandDataSetType"): 1,
        },
        b"\x08\x00",
    )
    lines = renderEcho(dimseEvent(message, "C-STORE-RQ"))
    assert lines == [
        "I: Received C-STORE-RQ (MsgID 7)",
        "D: ========================== INCOMING DIMSE MESSAGE ==========================",
        "D: Message Type                  : C-STORE RQ",
        "D: Presentation Context ID       : 3",
        "D: Message ID                    : 7",
        "D: Affected SOP Class UID        : CT Image Storage",
        "D: Affected SOP Instance UID     : 1.2.3.4",
        "D: Move Originator               : MOVER\\x00",
        "D: Data Set                      : Present",
        "D: Priority                      : Medium",
        "D: ============================ END DIMSE MESSAGE =============================",
    ]


def test_otherDIMSEBlocks() -> None:
    """
    Requests pynetdicom has blocks for are rendered with its labels;
    anything else gets a generic block, with absent elements left out.
    """
    find = DIMSEMessage(
        1,
        {
            tag("CommandField"): 0x0020,
            tag("MessageID"): 2,
            tag("Priority"): 1,
            tag("AffectedSOPClassUID"): "1.2.3",
        },
        b"\x00\x00",
    )
    assert renderEcho(dimseEvent(find, "C-FIND-RQ"))[2:7] == [
        "D: Message Type                  : C-FIND RQ",
        "D: Message ID                    : 2",
        "D: Affected SOP Class UID        : 1.2.3",
        "D: Identifier                    : Present",
        "D: Priority                      : High",
    ]
    nget = DIMSEMessage(
        1,
        {
            tag("CommandField"): 0x0110,
            tag("MessageID"): 4,
            tag("AttributeIdentifierList"): (1, 2),
        },
        None,
    )
    lines = renderEcho(dimseEvent(nget, "N-GET-RQ"))
    assert "D: Attribute Identifier List     : (2 Attribute Tag(s))" in lines
    assert "D: Requested SOP Class UID       : None" in lines
    response = DIMSEMessage(
        1,
        {
            tag("CommandField"): 0x8030,
            tag("MessageIDBeingRespondedTo"): 9,
            tag("Status"): 0x0211,
        },
        None,
    )
    assert renderEcho(dimseEvent(response, "C-ECHO-RSP"))[2:7] == [
        "D: Message Type                  : C-ECHO RSP",
        "D: Presentation Context ID       : 1",
        "D: Message ID Being Responded To : 9",
        "D: Status                        : 0x0211",
        "D: Data Set                      : None",
    ]


