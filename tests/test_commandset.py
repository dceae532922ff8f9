"""
Tests for L{dicomecho.association.commandset}: the command-set codec on
commands captured from DCMTK and pynetdicom, agreement with pydicom, every
malformation it refuses, and hypothesis properties.
"""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from dicomecho.association.commandset import (
    NO_DATA_SET,
    CommandField,
    CommandSetError,
    decodeCommandSet,
    encodeCommandSet,
    tag,
)
from dicomecho.wire.errors import AbortSource, LocalProtocolError
from tests.support.commands import (
    AFFECTED_CLASS,
    COMMAND_FIELD,
    CT_STORAGE,
    DATA_SET_TYPE,
    ECHO_RQ,
    ECHO_RSP,
    MESSAGE_ID,
    VERIFICATION,
    capturedPDataPDUs,
    commandSet,
    commandSets,
    echoRequest,
    echoResponse,
    element,
)
from tests.support.helpers import SESSIONS

# --- the codec on captured bytes ----------------------------------------------

EXPECTED_MESSAGE_IDS = {
    "dcmtk_echoscu_maxpdu": [1, 2, 3],
}


@pytest.mark.parametrize("session", SESSIONS)
def test_decodeCapturedEchoRequests(session: str) -> None:
    """
    Every C-ECHO-RQ captured from DCMTK and pynetdicom decodes to the
    expected fields; the maxpdu session carries MsgIDs 1, 2, 3.
    """
    pdus = capturedPDataPDUs(session, "c2s")
    ids = []
    for _, pdu in pdus:
        (one,) = pdu.pdvs
        assert one.contextID == 1 and one.isCommand and one.isLastFragment
        command = decodeCommandSet(one.data)
        assert command[COMMAND_FIELD] == CommandField.C_ECHO_RQ
        assert command[AFFECTED_CLASS] == VERIFICATION
        assert command[DATA_SET_TYPE] == NO_DATA_SET
        expected = [AFFECTED_CLASS, COMMAND_FIELD, MESSAGE_ID, DATA_SET_TYPE]
        assert sorted(command) == expected
        ids.append(command[MESSAGE_ID])
    assert ids == EXPECTED_MESSAGE_IDS.get(session, [1])


@pytest.mark.parametrize("session", SESSIONS)
def test_encodeMatchesCapturedResponses(session: str) -> None:
    """
    Our C-ECHO-RSP command for each captured request's MessageID is
    byte-for-byte pynetdicom's captured response, and decodes back.
    """
    requests = capturedPDataPDUs(session, "c2s")
    responses = capturedPDataPDUs(session, "s2c")
    assert len(requests) == len(responses)
    for (_, rq), (_, rsp) in zip(requests, responses):
        messageID = decodeCommandSet(rq.pdvs[0].data)[MESSAGE_ID]
        assert isinstance(messageID, int)
        ours = encodeCommandSet(echoResponse(messageID))
        assert ours == rsp.pdvs[0].data
        assert decodeCommandSet(ours) == echoResponse(messageID)


def test_referenceBytes() -> None:
    """
    pynetdicom's C-ECHO-RSP for MsgID 1 is reproduced exactly, and the
    DCMTK request round-trips.
    """
    assert encodeCommandSet(echoResponse(1)) == ECHO_RSP
    assert encodeCommandSet(decodeCommandSet(ECHO_RQ)) == ECHO_RQ


def test_tag() -> None:
    """
    Keywords map to tags through pydicom's dictionary; unknown ones raise.
    """
    assert tag("MessageID") == 0x00000110
    assert tag("CommandGroupLength") == 0
    with pytest.raises(KeyError):
        tag("NoSuchKeyword")


def test_valueShapes() -> None:
    """
    AT values decode to tuples of tags, US with VM 1-n to tuples, unknown
    tags to bytes, and text loses its trailing padding; encoding restores
    the padding (space for text, NUL for UI).
    """
    command = echoRequest(
        OffendingElement=(0x00100010, 0x7FE00010),
        ErrorComment="bad ",
        MoveDestination="STORESCP",
    )
    command[tag("Overlays")] = (1, 2, 3)
    command[0x0000_0005] = b"\x01\x02"
    encoded = encodeCommandSet(command)
    assert b"\x10\x00\x10\x00\xe0\x7f\x10\x00" in encoded
    decoded = decodeCommandSet(encoded)
    assert decoded[tag("OffendingElement")] == (0x00100010, 0x7FE00010)
    assert decoded[tag("ErrorComment")] == "bad"
    assert decoded[tag("Overlays")] == (1, 2, 3)
    assert decoded[0x0000_0005] == b"\x01\x02"
    assert element(tag("ErrorComment"), b"bad ") in encoded
    odd = encodeCommandSet({**echoRequest(), tag("MoveDestination"): "ABC"})
    assert element(tag("MoveDestination"), b"ABC ") in odd


def test_agreesWithPydicom() -> None:
    """
    For a command using US, UI, AE, AT and LO, our encoding is what
    pydicom's own Implicit VR Little Endian writer produces (plus the group
    length), and pydicom reads our bytes back to the same values.
    """
    ds = Dataset()
    ds.AffectedSOPClassUID = CT_STORAGE
    ds.CommandField = CommandField.C_STORE_RQ
    ds.MessageID = 7
    ds.Priority = 2
    ds.CommandDataSetType = 0
    ds.OffendingElement = [0x00100010, 0x00100020]
    ds.ErrorComment = "odd"
    ds.AffectedSOPInstanceUID = "1.2.3.4"
    ds.MoveOriginatorApplicationEntityTitle = "ORIG"
    ds.MoveOriginatorMessageID = 3
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    command = {
        tag(e.keyword): tuple(e.value) if e.VM > 1 else e.value for e in ds
    }
    ours = encodeCommandSet(command)
    assert ours == element(0, struct.pack("<I", len(fp.getvalue()))) + fp.getvalue()
    back = read_dataset(io.BytesIO(ours), True, True)
    assert back.CommandGroupLength == len(ours) - 12
    assert back.MoveOriginatorApplicationEntityTitle == "ORIG"
    assert decodeCommandSet(ours) == command


def test_encodeIgnoresGivenGroupLength() -> None:
    """
    A CommandGroupLength passed in is replaced by the computed one.
    """
    assert encodeCommandSet({0: 999, **echoResponse(1)}) == ECHO_RSP


@pytest.mark.parametrize(
    "elements",
    [
        {0x0001_0000: 1},
        {COMMAND_FIELD: 0x10000},
        {COMMAND_FIELD: -1},
        {COMMAND_FIELD: "x"},
        {AFFECTED_CLASS: "1.2.\u20ac"},
        {AFFECTED_CLASS: 1},
        {0x0000_0005: b"odd"},
        {0x0000_0005: "not bytes"},
    ],
)
def test_encodeRefusesUnencodable(elements: dict[int, object]) -> None:
    """
    Values that do not fit their VR, or tags outside group 0000, raise
    LocalProtocolError rather than producing wrong bytes.
    """
    with pytest.raises(LocalProtocolError):
        encodeCommandSet({**echoRequest(), **elements})


CF = element(COMMAND_FIELD, b"\x30\x00")
DST = element(DATA_SET_TYPE, b"\x01\x01")

MALFORMED = {
    "empty": b"",
    "shorter than the group length": ECHO_RQ[:11],
    "no group length first": element(COMMAND_FIELD, b"\x30\x00") + DST,
    "group length with length 2": element(0, b"\x06\x00") + CF,
    "group length too large": element(0, struct.pack("<I", 30)) + CF + DST,
    "group length too small": element(0, struct.pack("<I", 10)) + CF + DST,
    "truncated": ECHO_RQ[:-2],
    "trailing header bytes": commandSet(CF, DST, b"\x00\x00\x00\x09"),
    "odd length": commandSet(element(AFFECTED_CLASS, b"1.2"), CF, DST),
    "overrun": commandSet(CF, DST, struct.pack("<HHI", 0, 0x900, 10) + b"\0\0"),
    "undefined length": commandSet(CF, DST, struct.pack("<HHI", 0, 0x902, 0xFFFFFFFF)),
    "tag outside group 0000": commandSet(CF, DST, element(0x00080016, b"12")),
    "descending tags": commandSet(DST, CF),
    "repeated tag": commandSet(CF, CF, DST),
    "group length repeated": commandSet(element(0, b"\0\0\0\0"), CF, DST),
    "US of 4 bytes": commandSet(element(COMMAND_FIELD, b"\x30\x00\x00\x00"), DST),
    "US of 0 bytes": commandSet(CF, element(MESSAGE_ID, b""), DST),
    "AT of 6 bytes": commandSet(CF, DST, element(tag("OffendingElement"), b"\0" * 6)),
    "UL of 2 bytes": commandSet(element(tag("CommandLengthToEnd"), b"\0\0"), CF, DST),
    "no CommandField": commandSet(element(MESSAGE_ID, b"\x01\x00"), DST),
    "no CommandDataSetType": commandSet(CF, element(MESSAGE_ID, b"\x01\x00")),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_decodeRefusesMalformed(case: str) -> None:
    """
    Each malformation of PS3.7 §6.3.1 / PS3.5 §7.1 raises CommandSetError,
    which asks for a service-user A-ABORT (0, 0).
    """
    with pytest.raises(CommandSetError) as caught:
        decodeCommandSet(MALFORMED[case])
    assert caught.value.abortSource == AbortSource.SERVICE_USER
    assert caught.value.abortReason == 0



# --- properties ---------------------------------------------------------------------


@given(commandSets())
def test_roundTrip(command: dict[int, object]) -> None:
    """
    decode(encode(x)) == x for command sets of known and unknown tags.
    """
    assert decodeCommandSet(encodeCommandSet(command)) == command


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(encodeCommandSet(draw(commandSets())))
    for _ in range(draw(st.integers(1, 3))):
        if data and draw(st.booleans()):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        else:
            data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@given(st.one_of(st.binary(max_size=200), damaged()))
def test_anyBytesDecodeOrRefuse(data: bytes) -> None:
    """
    Any byte string decodes to a dict or raises CommandSetError, never
    another exception.
    """
    try:
        result = decodeCommandSet(data)
    except CommandSetError:
        return
    assert isinstance(result, dict)
