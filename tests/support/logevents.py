"""
Shared by the log tests: captured requests and their events, the
reference blocks, pynetdicom's renderings, and the level fixture.
"""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from pynetdicom import _handlers as pynetdicomHandlers
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from twisted.logger import LogLevel

from dicomecho.association.dimse import DIMSEMessage, MessageAssembler
from dicomecho.observability.levels import logLevel, setLogLevel
from dicomecho.observability.logs import renderEcho
from dicomecho.association.negotiation import (
    Acceptance,
    AssociationPolicy,
    Rejection,
    negotiate,
)
from dicomecho.wire.pdu import AssociateRQ, PDataTF, decodePDU
from tests.support.helpers import fixtureBytes, splitStream

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


