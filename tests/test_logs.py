"""
Tests for L{dicomecho.observability.logs}' renderings: echoscp's C{I:}/C{D:} lines and
C{-d} blocks (reference §1.3, §9), checked against the reference capture
and against pynetdicom's own handlers on the captured requests; escaping of
peer strings; passwords never shown; the console and JSON observers.
"""

from __future__ import annotations

import io
import json
import struct
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from pynetdicom import _handlers as pynetdicomHandlers
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.utils import pretty_bytes
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from dicomecho.association.dimse import DIMSEMessage, MessageAssembler, tag
from dicomecho.wire.errors import AbortReason, AbortSource
from dicomecho.wire.items import (
    PresentationContextRQ,
    SOPClassExtendedNegotiation,
    UnknownItem,
    UserIdentityRQ,
    UserInformation,
)
from dicomecho.observability.logs import (
    consoleObserver,
    jsonObserver,
    log,
    logLevel,
    renderEcho,
    setLogLevel,
    logStartup,
)
from dicomecho.association.negotiation import (
    Acceptance,
    AssociationPolicy,
    Rejection,
    negotiate,
)
from dicomecho.wire.pdu import Abort, AssociateRQ, PDataTF, decodePDU
from tests.support.helpers import SESSIONS, fixtureBytes, logLevelSet, splitStream

PEER = "127.0.0.1:50000"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

#: Reference §9.2, the A-ASSOCIATE-RQ block of DCMTK's default request.
REFERENCE_RQ_BLOCK = """\
D: Request Parameters:
D: ======================= INCOMING A-ASSOCIATE-RQ PDU ========================
D: Their Implementation Class UID:      1.2.276.0.7230010.3.0.3.6.7
D: Their Implementation Version Name:   OFFIS_DCMTK_367
D: Application Context Name:    1.2.840.10008.3.1.1.1
D: Calling Application Name:    MYSCU
D: Called Application Name:     ECHOSCP
D: Their Max PDU Receive Size:  16384
D: Presentation Context:
D:   Context ID:        1 (Proposed)
D:     Abstract Syntax: =Verification SOP Class
D:     Proposed SCP/SCU Role: Default
D:     Proposed Transfer Syntax:
D:       =Implicit VR Little Endian
D: Requested Extended Negotiation: None
D: Requested Common Extended Negotiation: None
D: Requested Asynchronous Operations Window Negotiation: None
D: Requested User Identity Negotiation: None
D: ========================== END A-ASSOCIATE-RQ PDU ==========================
""".splitlines()

#: Reference §9.2, the accept lines, with pynetdicom's identity and the
#: "resp. AE Title" placeholder left in: tests replace those three lines.
REFERENCE_AC_BLOCK = """\
I: Accepting Association
D: Accept Parameters:
D: ======================= OUTGOING A-ASSOCIATE-AC PDU ========================
D: Our Implementation Class UID:      1.2.826.0.1.3680043.9.3811.3.0.4
D: Our Implementation Version Name:   PYNETDICOM_304
D: Application Context Name:    1.2.840.10008.3.1.1.1
D: Responding Application Name: resp. AE Title
D: Our Max PDU Receive Size:    16382
D: Presentation Contexts:
D:   Context ID:        1 (Accepted)
D:     Abstract Syntax: =Verification SOP Class
D:     Accepted SCP/SCU Role: Default
D:     Accepted Transfer Syntax: =Implicit VR Little Endian
D: Accepted Extended Negotiation: None
D: Accepted Asynchronous Operations Window Negotiation: None
D: User Identity Negotiation Response: None
D: ========================== END A-ASSOCIATE-AC PDU ==========================
""".splitlines()

#: Reference §9.2, the C-ECHO-RQ lines (without the read_dataset() line).
REFERENCE_ECHO_BLOCK = """\
I: Received Echo Request (MsgID 1)
D: ========================== INCOMING DIMSE MESSAGE ==========================
D: Message Type                  : C-ECHO RQ
D: Presentation Context ID       : 1
D: Message ID                    : 1
D: Data Set                      : None
D: ============================ END DIMSE MESSAGE =============================
""".splitlines()

#: pynetdicom's block for the pynetdicom_extended request, but with the
#: password hidden.
EXTENDED_RQ_BLOCK = """\
D: Request Parameters:
D: ======================= INCOMING A-ASSOCIATE-RQ PDU ========================
D: Their Implementation Class UID:      1.2.826.0.1.3680043.9.3811.3.0.4
D: Their Implementation Version Name:   PYNETDICOM_304
D: Application Context Name:    1.2.840.10008.3.1.1.1
D: Calling Application Name:    PYEXTSCU
D: Called Application Name:     ECHOSCP
D: Their Max PDU Receive Size:  16382
D: Presentation Contexts:
D:   Context ID:        1 (Proposed)
D:     Abstract Syntax: =Verification SOP Class
D:     Proposed SCP/SCU Role: SCU
D:     Proposed Transfer Syntaxes:
D:       =Implicit VR Little Endian
D:       =Explicit VR Little Endian
D:       =Deflated Explicit VR Little Endian
D:       =Explicit VR Big Endian
D:   Context ID:        3 (Proposed)
D:     Abstract Syntax: =CT Image Storage
D:     Proposed SCP/SCU Role: Default
D:     Proposed Transfer Syntaxes:
D:       =Implicit VR Little Endian
D:       =Explicit VR Little Endian
D:       =Deflated Explicit VR Little Endian
D:       =Explicit VR Big Endian
D: Requested Extended Negotiation:
D:   SOP Class: =1.2.840.10008.5.1.4.1.1.2
D:     02  00  03  00  01  00
D: Requested Common Extended Negotiation:
D:   SOP Class: =CT Image Storage
D:     Service Class: =Storage Service Class
D:     Related General SOP Class(es):
D:       =Enhanced CT Image Storage
D: Requested Asynchronous Operations Window Negotiation:
D:   Maximum Invoked Operations:     5
D:   Maximum Performed Operations:   5
D: Requested User Identity Negotiation:
D:   Authentication Mode: 2 - Username/Password
D:   Username: [alice]
D:   Password: [6 bytes hidden]
D:   Positive Response Requested: Yes
D: ========================== END A-ASSOCIATE-RQ PDU ==========================
""".splitlines()


@pytest.fixture(autouse=True)
def debugLevel() -> Iterator[None]:
    """
    Run each test at debug level (echoscp's C{-d}) unless it sets another,
    and restore the level afterwards.
    """
    previous = logLevel()
    setLogLevel(LogLevel.debug)
    yield
    setLogLevel(previous)


# --- helpers -----------------------------------------------------------------


def event(dicomEvent: str, level: LogLevel = LogLevel.info, **fields: Any) -> dict:
    """
    An event as C{dicomecho.observability.logs.log} would emit it.
    """
    fields.setdefault("peer", PEER)
    return dict(
        log_level=level,
        log_namespace="dicomecho",
        log_format=fields.pop("log_format", dicomEvent),
        log_time=1795000000.25,
        dicomEvent=dicomEvent,
        **fields,
    )


def capturedRQ(session: str) -> AssociateRQ:
    frame = splitStream(fixtureBytes(session, "c2s"))[0]
    rq = decodePDU(frame.pduType, frame.body)
    assert isinstance(rq, AssociateRQ)
    return rq


def accept(rq: AssociateRQ, policy: AssociationPolicy | None = None) -> Acceptance:
    outcome = negotiate(rq, policy or AssociationPolicy())
    assert isinstance(outcome, Acceptance)
    return outcome


def reject(
    rq: AssociateRQ, policy: AssociationPolicy | None = None, **kw: Any
) -> Rejection:
    outcome = negotiate(rq, policy or AssociationPolicy(), **kw)
    assert isinstance(outcome, Rejection)
    return outcome


def rqEvent(rq: AssociateRQ) -> dict:
    return event("associate-rq", LogLevel.debug, rq=rq)


def acceptedEvent(acceptance: Acceptance) -> dict:
    return event(
        "association-accepted",
        rq=acceptance.rq,
        ac=acceptance.ac,
        contexts=acceptance.contexts,
        log_format="Accepting Association",
    )


def rejectedEvent(rejection: Rejection) -> dict:
    rj = rejection.rj
    return event(
        "association-rejected",
        rq=rejection.rq,
        rj=rj,
        result=rj.result,
        source=rj.source,
        diagnostic=rj.reason,
        reason=rejection.reason,
        log_format="Rejecting Association",
    )


def capturedEcho(session: str = "dcmtk_echoscu_default") -> DIMSEMessage:
    frame = splitStream(fixtureBytes(session, "c2s"))[1]
    pdata = decodePDU(frame.pduType, frame.body)
    assert isinstance(pdata, PDataTF)
    message = MessageAssembler([1]).receive(pdata.pdvs[0])
    assert message is not None
    return message


def dimseEvent(message: DIMSEMessage, name: str = "Echo Request") -> dict:
    return event(
        "dimse-received",
        message=message,
        commandName=name,
        commandField=message.commandField,
        messageID=message.messageID,
        contextID=message.contextID,
        log_format="Received {commandName} (MsgID {messageID})",
    )


def sessionEvents(session: str = "dcmtk_echoscu_default") -> list[dict]:
    """
    The events of an associate, echo, release session.
    """
    rq = capturedRQ(session)
    return [
        rqEvent(rq),
        acceptedEvent(accept(rq)),
        dimseEvent(capturedEcho(session)),
        event("association-released", log_format="Association Released"),
    ]


def renderAll(events: list[dict]) -> list[str]:
    return [line for e in events for line in renderEcho(e)]


def pynetdicomRQLines(session: str) -> list[str]:
    """
    What pynetdicom's own handler logs for the captured request.
    """
    frame = splitStream(fixtureBytes(session, "c2s"))[0]
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(struct.pack(">BBI", frame.pduType, 0, len(frame.body)) + frame.body)
    fake: Any = SimpleNamespace(pdu=pdu)
    lines = pynetdicomHandlers._receive_associate_rq(fake)
    return [f"D: {line}" for line in lines]


def pynetdicomACLines(session: str, acceptance: Acceptance) -> list[str]:
    """
    What pynetdicom's own handler logs for sending our AC.
    """
    frame = splitStream(fixtureBytes(session, "c2s"))[0]
    rq = A_ASSOCIATE_RQ()
    rq.decode(struct.pack(">BBI", frame.pduType, 0, len(frame.body)) + frame.body)
    ac = A_ASSOCIATE_AC()
    ac.decode(acceptance.ac.encode())
    requestor = SimpleNamespace(get_contexts=lambda _: rq.presentation_context)
    fake: Any = SimpleNamespace(pdu=ac, assoc=SimpleNamespace(requestor=requestor))
    return [f"D: {line}" for line in pynetdicomHandlers._send_associate_ac(fake)]


def isPlain(value: object) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, (str, int, float, bool, type(None))) for v in value)
    return isinstance(value, (str, int, float, bool, type(None)))


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


# --- levels ------------------------------------------------------------------------------------


def test_debugSession() -> None:
    """
    Under C{-d} a whole DCMTK session renders as the reference's capture,
    but for our identity and responding name.
    """
    lines = renderAll(sessionEvents())
    assert lines[: len(REFERENCE_RQ_BLOCK)] == REFERENCE_RQ_BLOCK
    assert lines[-len(REFERENCE_ECHO_BLOCK) - 1 : -1] == REFERENCE_ECHO_BLOCK
    assert lines[-1] == "I: Association Released"
    assert [line for line in lines if line.startswith("I:")] == [
        "I: Accepting Association",
        "I: Received Echo Request (MsgID 1)",
        "I: Association Released",
    ]


def test_verboseHasNoDebugLines() -> None:
    """
    Under C{-v} a session is exactly echoscp's three lines (§9.1).
    """
    setLogLevel(LogLevel.info)
    assert renderAll(sessionEvents()) == [
        "I: Accepting Association",
        "I: Received Echo Request (MsgID 1)",
        "I: Association Released",
    ]


def test_quietShowsNothing() -> None:
    """
    Under C{-q} no dicomecho event renders, errors included.
    """
    setLogLevel(None)
    events = sessionEvents() + [event("timeout", LogLevel.error, what="Network")]
    assert renderAll(events) == []


def test_defaultModeShowsErrorsOnly() -> None:
    """
    At echoscp's default level (error) normal traffic prints nothing, a
    timeout prints its error line.
    """
    setLogLevel(LogLevel.error)
    events = sessionEvents() + [event("timeout", LogLevel.error, what="Network")]
    assert renderAll(events) == ["E: Network timeout reached"]


# --- other events ------------------------------------------------------------------------------


def test_simpleEvents() -> None:
    """
    The one-line events read as the event table says.
    """
    cases = [
        (
            event(
                "listening",
                address="IPv4Address(...)",
                description="tcp:11112",
                host="0.0.0.0",
                port=11112,
            ),
            ["I: Listening on tcp:11112 (0.0.0.0:11112)"],
        ),
        (
            event("listening", description="tcp6:104", host="::1", port=104),
            ["I: Listening on tcp6:104 ([::1]:104)"],
        ),
        (
            event(
                "listening",
                description="unix:/run/d.sock",
                host="/run/d.sock",
                port=None,
            ),
            ["I: Listening on unix:/run/d.sock (/run/d.sock)"],
        ),
        (event("timeout", LogLevel.error, what="DIMSE"), ["E: DIMSE timeout reached"]),
        (
            event(
                "invalid-pdu",
                LogLevel.error,
                error="unrecognized PDU type 0x16",
                abortReason=1,
                looksLike="a TLS handshake",
            ),
            [f"E: Invalid PDU from {PEER}: unrecognized PDU type 0x16"],
        ),
        (
            event("connection-closed", LogLevel.debug, detail="no A-ASSOCIATE-RQ"),
            [f"D: Connection from {PEER} closed: no A-ASSOCIATE-RQ"],
        ),
        (event("association-summary", outcome="released"), []),
    ]
    for e, lines in cases:
        assert renderEcho(e) == lines


def test_responderFailureHasTraceback() -> None:
    """
    A failing responder is an error line followed by the traceback, its
    lines unprefixed as Python's C{logging.exception} prints them.
    """
    try:
        raise ValueError("boom")
    except ValueError:
        failure = Failure()
    lines = renderEcho(
        event("responder-failed", LogLevel.critical, log_failure=failure)
    )
    assert lines[0] == "C: Service responder failed; aborting the association"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1].endswith("ValueError: boom")


def test_unknownAndMalformedEvents() -> None:
    """
    An event the table does not know, or one missing a field, renders its
    format string; an empty message is C{D: } with its trailing space.
    """
    assert renderEcho(
        event("novel", LogLevel.warn, log_format="Hello {who}", who="you")
    ) == ["W: Hello you"]
    assert renderEcho(event("association-accepted", log_format="Accepting {peer}")) == [
        f"I: Accepting {PEER}"
    ]
    assert renderEcho(event("other", LogLevel.debug, log_format="")) == ["D: "]


def test_otherNamespaces() -> None:
    """
    Twisted's own info chatter is dropped; its warnings and errors are
    kept, with a failure's traceback.
    """
    chatter = dict(
        log_level=LogLevel.info,
        log_namespace="twisted.internet.protocol",
        log_format="Starting factory {f}",
        f="x",
    )
    assert renderEcho(chatter) == []
    setLogLevel(None)
    warning = dict(chatter, log_level=LogLevel.warn, log_format="disk full")
    assert renderEcho(warning) == ["W: disk full"]
    try:
        1 / 0
    except ZeroDivisionError:
        failure = Failure()
    error = dict(
        chatter, log_level=LogLevel.error, log_format="oops", log_failure=failure
    )
    lines = renderEcho(error)
    assert lines[:2] == ["E: oops", "Traceback (most recent call last):"]


def test_startupLines(events: list[dict[str, Any]]) -> None:
    """
    The C{-d} start-up lines are echoscp's with our name; the event is
    logged at debug level only.
    """
    with logLevelSet(LogLevel.debug):
        logStartup("0.1.0")
    with logLevelSet(LogLevel.info):
        logStartup("0.1.0")
    (event,) = [e for e in events if e.get("dicomEvent") == "startup"]
    with logLevelSet(LogLevel.debug):
        assert renderEcho(event) == ["D: dicomecho v0.1.0", "D: "]


# --- observers -----------------------------------------------------------------------------------


def test_consoleObserver() -> None:
    """
    The console observer is an L{ILogObserver} that writes the rendered
    lines; with no argument (as twistd calls it) it writes to the standard
    error stream of the moment.
    """
    stream = io.StringIO()
    observer = consoleObserver(stream)
    assert verifyObject(ILogObserver, observer)
    for e in sessionEvents():
        observer(e)
    assert stream.getvalue().splitlines() == renderAll(sessionEvents())
    assert stream.getvalue().endswith("\n")


def test_consoleObserverDoesNotRecurse() -> None:
    """
    A stream that logs what is written to it (as twistd's redirected
    standard error does) does not make the observer recurse.
    """
    written: list[str] = []

    class LoggingStream(io.StringIO):
        def write(self, text: str) -> int:
            written.append(text)
            observer(
                dict(
                    log_level=LogLevel.error,
                    log_namespace="stderr",
                    log_format="{t}",
                    t=text,
                )
            )
            return len(text)

    observer = consoleObserver(LoggingStream())
    observer(event("association-released"))
    assert written == ["I: Association Released\n"]


def test_observersDefaultToStandardStreams(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    C{consoleObserver()} writes to the C{sys.stderr} of its creation, as
    twistd calls it before redirecting standard I/O into the log, and
    C{jsonObserver()} to C{sys.stdout}.
    """
    stderr, stdout = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    monkeypatch.setattr("sys.stdout", stdout)
    console, records = consoleObserver(), jsonObserver()
    monkeypatch.setattr("sys.stderr", io.StringIO())
    monkeypatch.setattr("sys.stdout", io.StringIO())
    console(event("association-released"))
    records(event("association-released"))
    assert stderr.getvalue() == "I: Association Released\n"
    assert json.loads(stdout.getvalue())["text"] == "Association Released"


def test_throughTheLogger() -> None:
    """
    Emitted through L{log}, events reach an observer on the global
    publisher at or above the level only.
    """
    stream = io.StringIO()
    observer = consoleObserver(stream)
    globalLogPublisher.addObserver(observer)
    try:
        setLogLevel(LogLevel.info)
        log.debug(
            "A-ASSOCIATE-RQ",
            dicomEvent="associate-rq",
            peer=PEER,
            rq=capturedRQ("dcmtk_echoscu_default"),
        )
        log.info("Association Released", dicomEvent="association-released", peer=PEER)
        setLogLevel(None)
        log.error(
            "{what} timeout reached", dicomEvent="timeout", what="Network", peer=PEER
        )
    finally:
        globalLogPublisher.removeObserver(observer)
    assert stream.getvalue() == "I: Association Released\n"


def test_jsonObserver() -> None:
    """
    The JSON observer writes one object a line carrying the summary's
    fields and the echoscp text, never objects and never a password.
    """
    stream = io.StringIO()
    observer = jsonObserver(stream)
    assert verifyObject(ILogObserver, observer)
    events = sessionEvents("pynetdicom_extended")
    events.append(
        event(
            "association-summary",
            log_format="Association from {peer}: {outcome} ({reason})",
            peerHost="127.0.0.1",
            peerPort=50000,
            callingAETitle="PYEXTSCU",
            calledAETitle="ECHOSCP",
            contexts=["1:1.2.840.10008.1.1/1.2.840.10008.1.2"],
            outcome="released",
            reason="A-RELEASE completed",
            durationSeconds=0.012,
            messages=1,
        )
    )
    events.append(
        dict(log_level=LogLevel.info, log_namespace="twisted", log_format="hi")
    )
    events.append(
        dict(
            log_level=LogLevel.error,
            log_namespace="twisted",
            log_format="bad",
            log_time=0.0,
        )
    )
    for e in events:
        observer(e)
    output = stream.getvalue()
    assert "s3cret" not in output
    records = [json.loads(line) for line in output.splitlines()]
    assert [r.get("dicomEvent") for r in records] == [
        "associate-rq",
        "association-accepted",
        "dimse-received",
        "association-released",
        "association-summary",
        None,
    ]
    for record in records:
        assert all(isPlain(value) for value in record.values()), record
    rq, accepted, dimse, released, summary, twisted = records
    assert rq["text"] == "Request Parameters:" and "rq" not in rq
    assert accepted["text"] == "Accepting Association"
    assert "contexts" not in accepted and "ac" not in accepted
    assert dimse["text"] == "Received Echo Request (MsgID 1)"
    assert dimse["messageID"] == 1 and "message" not in dimse
    assert released == {
        "time": "2026-11-18T11:06:40.250000+00:00",
        "level": "info",
        "namespace": "dicomecho",
        "dicomEvent": "association-released",
        "peer": PEER,
        "text": "Association Released",
    }
    assert summary["text"] == f"Association from {PEER}: released (A-RELEASE completed)"
    assert summary["contexts"] == ["1:1.2.840.10008.1.1/1.2.840.10008.1.2"]
    assert (summary["peerHost"], summary["peerPort"], summary["messages"]) == (
        "127.0.0.1",
        50000,
        1,
    )
    assert summary["durationSeconds"] == 0.012
    assert twisted == {
        "time": "1970-01-01T00:00:00+00:00",
        "level": "error",
        "namespace": "twisted",
        "text": "bad",
    }


def test_jsonFailureAndQuiet() -> None:
    """
    A failure's traceback is a string field; under C{-q} nothing of ours
    is written.
    """
    try:
        raise KeyError("k")
    except KeyError:
        failure = Failure()
    stream = io.StringIO()
    observer = jsonObserver(stream)
    observer(event("responder-failed", LogLevel.critical, log_failure=failure))
    record = json.loads(stream.getvalue())
    assert record["text"] == "Service responder failed; aborting the association"
    assert "KeyError" in record["traceback"]
    setLogLevel(None)
    observer(event("association-summary", outcome="released"))
    assert len(stream.getvalue().splitlines()) == 1


def test_hostileValuesAreCutAndEscaped() -> None:
    """
    A request carrying a 5,000-character abstract syntax UID, control
    characters and line breaks in its AE titles and a 65,000-character
    implementation UID renders as short, single, printable lines: every
    peer value is escaped and cut, with the number of characters left out.
    """
    from dicomecho.wire.items import PresentationContextRQ, UserInformation
    from dicomecho.observability.logblocks import MAX_VALUE_LENGTH

    rq = AssociateRQ(
        "EVIL\nI: forged",
        "\x1b[31mRED\x00",
        presentationContexts=(PresentationContextRQ(1, "1." * 2500, ("1.2.840.10008.1.2",)),),
        userInformation=UserInformation(maximumLength=0, implementationClassUID="9" * 65000),
    )
    lines = renderAll([rqEvent(rq)])
    assert all(len(line) < 2 * MAX_VALUE_LENGTH + 100 for line in lines)
    assert all(line.isprintable() for line in lines)
    assert not any(line.startswith("I: forged") for line in lines)
    assert any("64872 more characters" in line for line in lines)
    assert any("\\n" in line and "EVIL" in line for line in lines)


def test_invalidUIDsDoNotReachPydicom() -> None:
    """
    Strings that are not UIDs (letters, too long) are printed as they are
    without asking pydicom for a name, which would warn, and remember the
    warning, once per distinct value a peer sends.
    """
    import warnings

    from dicomecho.wire.items import PresentationContextRQ

    rq = AssociateRQ(
        "ECHOSCP",
        "SCU",
        presentationContexts=tuple(
            PresentationContextRQ(2 * i + 1, f"1.2.A{i}", ("1.2.840.10008.1.2",)) for i in range(50)
        ),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lines = renderAll([rqEvent(rq)])
    assert caught == []
    assert any("=1.2.A49" in line for line in lines)
    assert any("=Verification SOP Class" in line for line in renderAll(sessionEvents()))
