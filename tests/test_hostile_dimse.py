"""
Hostile peers against a running server, messages on an established
association: PDVs on contexts not accepted and fragments out of order or
never finished (class 18), and command sets that are malformed, lack an
element or ask for another service (class 19). A raw-socket client sends
them to a L{DICOMServerFactory} in a C{tests.support.serve} subprocess on
loopback.

Each case checks (a) the peer's PS3.8 answer, (b) the server's log of it,
(c) that the next client is served, and, where the input could make the
server allocate, (d) its memory: see L{tests.support.hostile}. Hostile
input is numbered by class, as in the test names. One server with short
timers (the C{server} fixture) is shared by the module; tests whose
options or counts matter start their own. Every wait is bounded (socket
timeouts of at most 10 s, deadlines on every read loop).
"""

from __future__ import annotations

import struct
import time
from typing import Iterator

import pytest

from tests.support.hostile import (
    AFFECTED_SOP_CLASS,
    AFFECTED_SOP_INSTANCE,
    COMMAND_FIELD,
    CT_IMAGE_STORAGE,
    DATA_SET_TYPE,
    DIMSE,
    EXPLICIT_BE,
    MESSAGE_ID,
    MESSAGE_ID_RESPONDED,
    PRIORITY,
    RSS_SLACK_KIB,
    SLACK,
    STATUS,
    VERIFICATION,
    Client,
    MiB,
    abortBytes,
    abortCase,
    abortedFor,
    closedWithin,
    command,
    echoCommand,
    echoPDU,
    expectAbort,
    logged,
    makeRQ,
    pdata,
    pdv,
    served,
    server,  # noqa: F401 (fixture)
    warm,
)


# --- class 18: contexts and fragments ----------------------------------------------


@pytest.mark.parametrize("contextID", [3, 2, 255])
def test_class18_unacceptedContext(server, contextID):
    """
    Class 18: a PDV on a presentation context that was not accepted is
    A-ABORT (2, 6).
    """
    abortCase(
        server,
        [echoPDU(1, contextID)],
        2,
        6,
        f"unaccepted context {contextID}",
        associate=True,
    )


STORE_WITH_DATA = command(
    {
        AFFECTED_SOP_CLASS: CT_IMAGE_STORAGE,
        COMMAND_FIELD: 0x0001,
        MESSAGE_ID: 9,
        PRIORITY: 0,
        DATA_SET_TYPE: 0x0000,
        AFFECTED_SOP_INSTANCE: "1.2.3.4",
    }
)

FRAGMENT_ORDER = {
    "data-set-first": pdata(pdv(1, b"\0\0", isCommand=False)),
    "data-set-not-last": pdata(pdv(1, b"\0\0", isCommand=False, last=False)),
    "command-while-data-expected": pdata(pdv(1, STORE_WITH_DATA), pdv(1, echoCommand(2))),
    "command-after-partial-data": pdata(
        pdv(1, STORE_WITH_DATA), pdv(1, b"\0\0", isCommand=False, last=False), pdv(1, echoCommand(2))
    ),
}


@pytest.mark.parametrize("name", list(FRAGMENT_ORDER))
def test_class18_fragmentOrder(server, name):
    """
    Class 18: a data-set fragment before (or without) its command, or
    a command fragment while the data set is expected, is A-ABORT (2, 5)
    (unexpected-PDU-parameter).
    """
    abortCase(server, [FRAGMENT_ORDER[name]], 2, 5, "fragment on context 1", associate=True)


def test_class18_commandInManyFragments(server):
    """
    Class 18: a C-ECHO-RQ command split into 2-byte PDVs, some in one
    P-DATA-TF and the rest one per P-DATA-TF, is reassembled and answered.
    """
    data = echoCommand(11)
    pieces = [data[i : i + 2] for i in range(0, len(data), 2)]
    pdvs = [pdv(1, p, last=i == len(pieces) - 1) for i, p in enumerate(pieces)]
    with Client(server.port()) as client:
        client.associate()
        client.send(pdata(*pdvs[:10]))
        for one in pdvs[10:]:
            client.send(pdata(one))
        rsp = client.response()
        assert (rsp[MESSAGE_ID_RESPONDED], rsp[STATUS]) == (11, 0)
        client.release()
    logged(server, client.peer, "released")


def _fragments(isCommand: bool, total: int, size: int = 16000) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield pdata(pdv(1, b"\0" * n, isCommand=isCommand, last=False))
        sent += n


@pytest.mark.parametrize("what", ["command", "data set"])
def test_class18_lastFragmentNeverSet(server, what):
    """
    Class 18 (d): fragments that never set the last-fragment bit are
    capped: a command beyond 64 KiB or a data set beyond 4 MiB is A-ABORT
    (2, 6), and the fragments are not kept (RSS back within a few MiB).
    """
    before = warm(server)
    with Client(server.port()) as client:
        client.associate()
        if what == "command":
            client.send(*_fragments(True, 70 * 1024))
        else:
            client.send(pdata(pdv(1, STORE_WITH_DATA)))
            client.send(*_fragments(False, 4 * MiB + 32 * 1024))
        expectAbort(client, 2, 6)
    abortedFor(server, client.peer, 2, 6, f"{what} of at least")
    time.sleep(0.2)
    assert server.rssKiB() - before < RSS_SLACK_KIB
    served(server)


def test_class18_partialMessageDIMSETimeout(server):
    """
    Class 18: a command whose last fragment never comes, from a peer
    that stays connected and silent, is ended by the DIMSE timeout: A-ABORT
    (0, 0) and close within the timeout.
    """
    with Client(server.port()) as client:
        client.associate()
        client.send(pdata(pdv(1, echoCommand(1)[:20], last=False)))
        elapsed = closedWithin(client, DIMSE + SLACK, abortBytes(0, 0))
    assert elapsed >= DIMSE - 0.2
    byName = logged(server, client.peer, "aborted", "DIMSE timeout", ["timeout"])
    assert byName["timeout"][0]["what"] == "DIMSE"
    served(server)


# --- class 19: command sets on the Verification context ------------------------


def _echoWithout(*missing: int) -> bytes:
    elements: dict[int, object] = {
        AFFECTED_SOP_CLASS: VERIFICATION,
        COMMAND_FIELD: 0x0030,
        MESSAGE_ID: 1,
        DATA_SET_TYPE: 0x0101,
    }
    for key in missing:
        del elements[key]
    return command(elements)


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0, element, len(value)) + value


def _rawCommand(*elements: bytes, groupLength: int | None = None) -> bytes:
    body = b"".join(elements)
    length = len(body) if groupLength is None else groupLength
    return _element(0x0000, struct.pack("<I", length)) + body


_UID = _element(0x0002, b"1.2.840.10008.1.1\0")
_FIELD = _element(0x0100, b"\x30\x00")
_ID = _element(0x0110, b"\x01\x00")
_TYPE = _element(0x0800, b"\x01\x01")

BAD_COMMANDS = {
    "no-AffectedSOPClassUID": (_echoWithout(AFFECTED_SOP_CLASS), "no AffectedSOPClassUID"),
    "no-MessageID": (_echoWithout(MESSAGE_ID), "no MessageID"),
    "no-CommandDataSetType": (_echoWithout(DATA_SET_TYPE), "no CommandDataSetType"),
    "no-CommandField": (_echoWithout(COMMAND_FIELD), "no CommandField"),
    "group-length-off-by-2": (_rawCommand(_UID, _FIELD, _ID, _TYPE, groupLength=54), "CommandGroupLength"),
    "no-group-length": (_UID + _FIELD + _ID + _TYPE, "not CommandGroupLength"),
    "odd-length-uid": (
        _rawCommand(_element(0x0002, b"1.2.840.10008.1.1"), _FIELD, _ID, _TYPE),
        "odd length 17",
    ),
    "undefined-length": (
        _rawCommand(_UID, _FIELD, _ID, struct.pack("<HHI", 0, 0x0700, 0xFFFFFFFF), _TYPE),
        "odd length",
    ),
    "overrun": (_rawCommand(_UID, _FIELD, _ID, struct.pack("<HHI", 0, 0x0800, 40) + b"\x01\x01"), "overruns"),
    "wrong-group": (_rawCommand(_UID, _FIELD, _ID, _TYPE, struct.pack("<HHI", 8, 0x0016, 2) + b"12"), "not in group 0000"),
    "out-of-order": (_rawCommand(_FIELD, _UID, _ID, _TYPE), "after"),
    "message-id-4-bytes": (_rawCommand(_UID, _FIELD, _element(0x0110, b"\1\0\0\0"), _TYPE), "US value of 4 bytes"),
    "unknown-CommandField": (
        _rawCommand(_UID, _element(0x0100, b"\x99\x00"), _ID, _TYPE),
        "unknown CommandField 0x0099",
    ),
}


@pytest.mark.parametrize("name", list(BAD_COMMANDS))
def test_class19_badCommandSet(server, name):
    """
    Class 19: a command set that cannot be decoded or lacks a required
    element (AffectedSOPClassUID, MessageID, CommandDataSetType,
    CommandField), has a wrong group length, odd or undefined lengths,
    elements out of order or outside group 0000, or an unknown CommandField,
    is A-ABORT (0, 0) (service-user: the fault is above the Upper Layer).
    """
    data, why = BAD_COMMANDS[name]
    abortCase(server, [pdata(pdv(1, data))], 0, 0, why, associate=True)


OTHER_REQUESTS = {
    "C-STORE-RQ": (STORE_WITH_DATA, b"\0" * 100, 0x8001, 9),
    "C-FIND-RQ": (
        command({AFFECTED_SOP_CLASS: VERIFICATION, COMMAND_FIELD: 0x0020, MESSAGE_ID: 4, PRIORITY: 0, DATA_SET_TYPE: 0}),
        b"\0" * 8,
        0x8020,
        4,
    ),
    "N-GET-RQ": (
        # RequestedSOPClassUID (0000,0003), RequestedSOPInstanceUID (0000,1001)
        command({0x0003: VERIFICATION, COMMAND_FIELD: 0x0110, MESSAGE_ID: 5, DATA_SET_TYPE: 0x0101, 0x1001: "1.2.3"}),
        None,
        0x8110,
        5,
    ),
}


@pytest.mark.parametrize("name", list(OTHER_REQUESTS))
def test_class19_otherRequestOnVerificationContext(server, name):
    """
    Class 19: C-STORE-RQ, C-FIND-RQ or N-GET-RQ on the Verification
    context is answered with its response, status 0x0211 (unrecognized
    operation); the association stays up and the next C-ECHO works.
    """
    cmd, dataSet, responseField, messageID = OTHER_REQUESTS[name]
    pdvs = [pdv(1, cmd)]
    if dataSet is not None:
        pdvs.append(pdv(1, dataSet, isCommand=False))
    with Client(server.port()) as client:
        client.associate()
        client.send(pdata(*pdvs))
        rsp = client.response()
        assert (rsp[COMMAND_FIELD], rsp[MESSAGE_ID_RESPONDED], rsp[STATUS]) == (
            responseField,
            messageID,
            0x0211,
        )
        assert client.echo(2)[STATUS] == 0
        client.release()
    assert server.summaryOf(client.peer)["messages"] == 2
    served(server)


def test_class19_messagesWithoutResponse(server):
    """
    Class 19: a C-CANCEL-RQ and a C-ECHO-RSP sent to us get no answer
    and do not end the association; the next C-ECHO is answered.
    """
    cancel = command({COMMAND_FIELD: 0x0FFF, MESSAGE_ID_RESPONDED: 1, DATA_SET_TYPE: 0x0101})
    rsp = command(
        {AFFECTED_SOP_CLASS: VERIFICATION, COMMAND_FIELD: 0x8030, MESSAGE_ID_RESPONDED: 1, DATA_SET_TYPE: 0x0101, STATUS: 0}
    )
    with Client(server.port()) as client:
        client.associate()
        client.send(pdata(pdv(1, cancel)), pdata(pdv(1, rsp)))
        reply = client.echo(3)
        assert (reply[MESSAGE_ID_RESPONDED], reply[STATUS]) == (3, 0)
        client.release()
    logged(server, client.peer, "released")


def test_class19_wrongSOPClass(server):
    """
    Class 19: a C-ECHO-RQ whose AffectedSOPClassUID is not
    Verification gets status 0x0122 (SOP class not supported).
    """
    with Client(server.port()) as client:
        client.associate()
        client.send(pdata(pdv(1, echoCommand(6, CT_IMAGE_STORAGE))))
        rsp = client.response()
        assert (rsp[STATUS], rsp[AFFECTED_SOP_CLASS]) == (0x0122, CT_IMAGE_STORAGE)
        client.release()
    logged(server, client.peer, "released")


def test_class19_bigEndianOnlyContext(server):
    """
    Class 19: Verification proposed with Explicit VR Big Endian only
    is accepted with it under the default preference; the command set is
    still Implicit VR Little Endian (PS3.7 §6.3.1) and the echo works.
    """
    with Client(server.port()) as client:
        ac = client.associate(makeRQ([(1, VERIFICATION, [EXPLICIT_BE])]))
        ((pc),) = ac.presentationContexts
        assert (pc.result, pc.transferSyntax) == (0, EXPLICIT_BE)
        rsp = client.echo(1)
        assert (rsp[STATUS], rsp[MESSAGE_ID_RESPONDED]) == (0, 1)
        client.release()
    logged(server, client.peer, "released")
