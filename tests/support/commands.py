"""
DIMSE commands the command-set and message tests share
(C{tests.test_commandset}, C{tests.test_dimse}): captured C-ECHO commands,
the command tags by name, element encoders, and a hypothesis strategy for
any command set.
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st
from pydicom.datadict import DicomDictionary

from dicomecho.association.commandset import NO_DATA_SET, CommandField, tag
from dicomecho.wire.pdu import PDataTF, PDUType, decodePDU
from tests.support.helpers import fixtureBytes, splitStream

VERIFICATION = "1.2.840.10008.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

AFFECTED_CLASS = tag("AffectedSOPClassUID")
REQUESTED_CLASS = tag("RequestedSOPClassUID")
COMMAND_FIELD = tag("CommandField")
MESSAGE_ID = tag("MessageID")
RESPONDED_TO = tag("MessageIDBeingRespondedTo")
PRIORITY = tag("Priority")
DATA_SET_TYPE = tag("CommandDataSetType")
STATUS = tag("Status")
AFFECTED_INSTANCE = tag("AffectedSOPInstanceUID")
REQUESTED_INSTANCE = tag("RequestedSOPInstanceUID")

#: pynetdicom's C-ECHO-RSP command for MsgID 1.
ECHO_RSP = bytes.fromhex(
    "0000000004000000420000000000020012000000"
    "312e322e3834302e31303030382e312e3100"
    "00000001020000003080"
    "00002001020000000100"
    "00000008020000000101"
    "00000009020000000000"
)

#: DCMTK's C-ECHO-RQ command for MsgID 1 (68 bytes).
ECHO_RQ = bytes.fromhex(
    "0000000004000000380000000000020012000000"
    "312e322e3834302e31303030382e312e3100"
    "00000001020000003000"
    "00001001020000000100"
    "00000008020000000101"
)


def echoRequest(messageID: int = 1, **extra: object) -> dict[int, object]:
    command: dict[int, object] = {
        AFFECTED_CLASS: VERIFICATION,
        COMMAND_FIELD: CommandField.C_ECHO_RQ,
        MESSAGE_ID: messageID,
        DATA_SET_TYPE: NO_DATA_SET,
    }
    command.update({tag(k): v for k, v in extra.items()})
    return command


def echoResponse(messageID: int) -> dict[int, object]:
    return {
        AFFECTED_CLASS: VERIFICATION,
        COMMAND_FIELD: 0x8030,
        RESPONDED_TO: messageID,
        DATA_SET_TYPE: NO_DATA_SET,
        STATUS: 0,
    }


def capturedPDataPDUs(session: str, direction: str) -> list[tuple[bytes, PDataTF]]:
    """
    Every P-DATA-TF of a captured stream: its whole bytes and its value.
    """
    result = []
    for frame in splitStream(fixtureBytes(session, direction)):
        if frame.pduType == PDUType.P_DATA_TF:
            raw = struct.pack(">BBI", frame.pduType, 0, len(frame.body)) + frame.body
            pdu = decodePDU(frame.pduType, frame.body)
            assert isinstance(pdu, PDataTF)
            result.append((raw, pdu))
    return result


def element(t: int, value: bytes) -> bytes:
    """
    One group 0000 element, Implicit VR Little Endian.
    """
    return struct.pack("<HHI", t >> 16, t & 0xFFFF, len(value)) + value


def commandSet(*elements: bytes) -> bytes:
    """
    C{elements} after their CommandGroupLength.
    """
    body = b"".join(elements)
    return element(0, struct.pack("<I", len(body))) + body


# --- any command set, for hypothesis -------------------------------------------

latin1 = st.characters(min_codepoint=0, max_codepoint=0xFF)
text = st.text(latin1, max_size=24).map(lambda s: s.rstrip("\0 "))
TEXT_VRS = {"UI", "AE", "CS", "SH", "LO", "ST", "LT", "IS", "DS"}


def valueFor(vr: str, vm: str) -> st.SearchStrategy[object]:
    if vr in ("US", "UL"):
        one = st.integers(0, 0xFFFF if vr == "US" else 0xFFFFFFFF)
        return one if vm == "1" else st.lists(one, max_size=4).map(tuple)
    if vr == "AT":
        return st.lists(st.integers(0, 0xFFFFFFFF), max_size=4).map(tuple)
    assert vr in TEXT_VRS
    return text


KNOWN = {
    t: valueFor(entry[0], entry[1])
    for t, entry in DicomDictionary.items()
    if t >> 16 == 0 and t != 0
}
UNKNOWN = st.integers(1, 0xFFFF).filter(lambda t: t not in DicomDictionary)


@st.composite
def commandSets(draw: st.DrawFn) -> dict[int, object]:
    """
    A command set of known and unknown tags, with a CommandField and a
    CommandDataSetType.
    """
    tags = draw(st.lists(st.sampled_from(sorted(KNOWN)), unique=True, max_size=8))
    result = {t: draw(KNOWN[t]) for t in tags}
    for t in draw(st.lists(UNKNOWN, unique=True, max_size=2)):
        result[t] = draw(st.binary(max_size=10).map(lambda b: b[: len(b) & ~1]))
    result[COMMAND_FIELD] = draw(st.sampled_from(list(CommandField)))
    result[DATA_SET_TYPE] = draw(st.sampled_from([NO_DATA_SET, 0, 0xFEFE]))
    return result
