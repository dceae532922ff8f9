"""
Hostile peers against a running server, lengths that lie: bare headers
declaring gigabytes (class 1), an A-ASSOCIATE-RQ above the length cap and
large legitimate ones (class 2), a P-DATA-TF above our maximum or with
maximum 0 (class 3), fixed-size PDUs of another length (class 4) and PDV
lengths that do not add up (class 17). A raw-socket client sends them to a
L{DICOMServerFactory} in a C{tests.support.serve} subprocess on loopback.

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
from typing import Iterator

import pytest

from dicomecho.wire.framer import DEFAULT_MAX_ASSOCIATE_LENGTH
from dicomecho.wire.pdu import AssociateRQ, decodePDU
from tests.support.helpers import fixtureBytes
from tests.support.hostile import (
    ACSE,
    AFFECTED_SOP_CLASS,
    AFFECTED_SOP_INSTANCE,
    COMMAND_FIELD,
    CT_IMAGE_STORAGE,
    DATA_SET_TYPE,
    MESSAGE_ID,
    MESSAGE_ID_RESPONDED,
    PRIORITY,
    RSS_SLACK_KIB,
    STATUS,
    VERIFICATION,
    Client,
    MiB,
    abortBytes,
    abortCase,
    abortedFor,
    command,
    echoCommand,
    expectAbort,
    junk,
    logged,
    makeRQ,
    pdata,
    pdu,
    pdv,
    served,
    server,  # noqa: F401 (fixture)
    warm,
)
from tests.support.processes import FactoryServer, runningServer


# --- class 1: 6-byte header only, huge declared lengths -----------------------

HUGE = [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000]


@pytest.mark.parametrize("length", HUGE, ids=hex)
@pytest.mark.parametrize("pduType", [0x01, 0x04, 0x07], ids=lambda t: f"type{t:02x}")
def test_class01_hugeDeclaredLength(server, pduType, length):
    """
    Class 1: a bare 6-byte header declaring 2 or 4 GiB is refused
    from the header: A-ABORT (2, 6) (invalid-PDU-parameter-value), logged
    with the declared length, and nothing is buffered.
    """
    abortCase(server, [pdu(pduType, b"", declared=length)], 2, 6, str(length), invalid=True)


def test_class01_oneAbortForTrailingBytes(server):
    """
    Class 1: after a header declaring 0xFFFFFFFF is refused, the
    megabyte that follows it is discarded: the peer gets one A-ABORT
    (2, 6), not one per read, and the server logs one invalid-pdu event.
    """
    with Client(server.port()) as client:
        client.send(pdu(0x01, b"", declared=0xFFFFFFFF), junk(MiB))
        expectAbort(client, 2, 6)
    abortedFor(server, client.peer, 2, 6, str(0xFFFFFFFF), invalid=True)
    served(server)


def test_class01_memoryBounded(server):
    """
    Class 1 (d): headers declaring huge lengths, each followed by
    8 MiB of junk, leave the server's RSS within a few MiB: the body is
    never buffered.
    """
    before = warm(server)
    for pduType in (0x01, 0x04, 0x07):
        for length in HUGE:
            with Client(server.port()) as client:
                client.send(pdu(pduType, b"", declared=length), junk(8 * MiB))
                assert client.recvExactly(10) == abortBytes(2, 6)
            server.peerEvents(client.peer)
    after = server.rssKiB()
    assert after - before < RSS_SLACK_KIB, (before, after)
    served(server)


# --- class 2: A-ASSOCIATE-RQ above the cap, and large legitimate ones -------


def test_class02_associateAboveCap(server):
    """
    Class 2: an A-ASSOCIATE-RQ declaring one byte more than our cap is
    refused from its header with A-ABORT (2, 6), whatever follows; the
    body sent is not kept.
    """
    before = warm(server)
    declared = DEFAULT_MAX_ASSOCIATE_LENGTH + 1
    with Client(server.port()) as client:
        client.send(pdu(0x01, b"", declared=declared))
        client.send(junk(declared))
        assert client.recvExactly(10) == abortBytes(2, 6)
        client.finish()
    abortedFor(
        server, client.peer, 2, 6, f"above the cap of {DEFAULT_MAX_ASSOCIATE_LENGTH}", invalid=True
    )
    assert server.rssKiB() - before < RSS_SLACK_KIB
    served(server)


def _manyContexts(count: int, syntaxes: int) -> bytes:
    from dicomecho.association.negotiation import ALL_TRANSFER_SYNTAXES

    return makeRQ(
        [(2 * i + 1, VERIFICATION, ALL_TRANSFER_SYNTAXES[:syntaxes]) for i in range(count)]
    )


@pytest.mark.parametrize(
    "name",
    ["dcmtk-128x16", "120x19", "40x16"],
)
def test_class02_largeLegitimateRequest(server, name):
    """
    Class 2: legitimate large requests are accepted: DCMTK's largest
    (128 contexts x 16 transfer syntaxes, 55 KiB, captured), one of about
    64 KiB with 120 contexts, and one of about 17.5 KiB; every context is
    accepted and an echo on the last one succeeds.
    """
    if name == "dcmtk-128x16":
        data = fixtureBytes("dcmtk_echoscu_propose_pc", "c2s")
        rq = data[: 6 + struct.unpack_from(">I", data, 2)[0]]
    elif name == "120x19":
        rq = _manyContexts(120, 19)
    else:
        rq = _manyContexts(40, 16)
    decoded = decodePDU(rq[0], rq[6:])
    assert isinstance(decoded, AssociateRQ)
    count = len(decoded.presentationContexts)
    assert 17 * 1024 < len(rq) <= 65 * 1024, len(rq)
    with Client(server.port()) as client:
        ac = client.associate(rq)
        assert [pc.result for pc in ac.presentationContexts] == [0] * count
        last = ac.presentationContexts[-1].contextID
        rsp = client.echo(7, contextID=last)
        assert (rsp[MESSAGE_ID_RESPONDED], rsp[STATUS]) == (7, 0)
        client.release()
    byName = logged(server, client.peer, "released", events=["association-accepted"])
    assert byName["dimse-received"][0]["contextID"] == last
    served(server)


# --- class 3: P-DATA-TF above our maximum; maximum 0 ("unlimited") -------------


@pytest.mark.parametrize("declared", [16383, 0x10000, 0xFFFFFFFF], ids=hex)
def test_class03_pdataAboveMaximum(server, declared):
    """
    Class 3: a P-DATA-TF declaring more than the 16382 bytes we
    advertise is refused from its header: A-ABORT (2, 6).
    """
    abortCase(
        server,
        [pdu(0x04, b"\0" * 16, declared=declared)],
        2,
        6,
        "above the maximum of 16382",
        associate=True,
        invalid=True,
    )


@pytest.fixture(scope="module")
def unlimitedServer() -> Iterator[FactoryServer]:
    """
    A server advertising Maximum Length 0 (no limit; capped at 4 MiB).
    """
    with runningServer(maxPDULength=0, acseTimeout=ACSE) as s:
        yield s


def test_class03_unlimitedMaximum(unlimitedServer):
    """
    Class 3 with Maximum Length 0: the AC advertises 0; a 100 KiB
    P-DATA-TF (a C-STORE-RQ with its data set, on the Verification
    context) is handled (status 0x0211); a P-DATA-TF declaring 4 MiB + 1 or
    0xFFFFFFFF is refused with A-ABORT (2, 6) and its body is not kept.
    """
    server = unlimitedServer
    before = warm(server)
    with Client(server.port()) as client:
        ac = client.associate()
        assert ac.userInformation is not None
        assert ac.userInformation.maximumLength == 0
        store = command(
            {
                AFFECTED_SOP_CLASS: CT_IMAGE_STORAGE,
                COMMAND_FIELD: 0x0001,
                MESSAGE_ID: 3,
                PRIORITY: 0,
                DATA_SET_TYPE: 0x0000,
                AFFECTED_SOP_INSTANCE: "1.2.3.4",
            }
        )
        big = pdata(pdv(1, store), pdv(1, b"\0" * (100 * 1024), isCommand=False))
        assert len(big) > 100 * 1024
        client.send(big)
        rsp = client.response()
        assert (rsp[COMMAND_FIELD], rsp[STATUS], rsp[MESSAGE_ID_RESPONDED]) == (0x8001, 0x0211, 3)
        assert client.echo(4)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")
    for declared in (4 * MiB + 1, 0xFFFFFFFF):
        with Client(server.port()) as client:
            client.associate()
            client.send(pdu(0x04, b"", declared=declared), junk(4 * MiB))
            assert client.recvExactly(10) == abortBytes(2, 6)
            client.finish()
        abortedFor(server, client.peer, 2, 6, f"above the maximum of {4 * MiB}", invalid=True)
    assert server.rssKiB() - before < RSS_SLACK_KIB
    served(server)


# --- class 4: fixed-size PDUs with a length other than 4 --------------------


@pytest.mark.parametrize("length", [0, 3, 5, 0xFFFFFFFF], ids=hex)
@pytest.mark.parametrize(
    "pduType", [0x03, 0x05, 0x06, 0x07], ids=["RJ", "RELEASE-RQ", "RELEASE-RP", "ABORT"]
)
def test_class04_fixedSizeLength(server, pduType, length):
    """
    Class 4: A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT are always 4
    bytes long; any other declared length is A-ABORT (2, 6) from the header
    (before association here).
    """
    body = b"\0" * min(length, 8)
    abortCase(
        server,
        [pdu(pduType, body, declared=length)],
        2,
        6,
        "always 4 bytes",
        invalid=True,
    )


@pytest.mark.parametrize("pduType, length", [(0x05, 5), (0x07, 0), (0x06, 8)])
def test_class04_fixedSizeLengthWhileAssociated(server, pduType, length):
    """
    Class 4 in Sta6: the same PDUs with a wrong length while
    associated are A-ABORT (2, 6) too (AA-8).
    """
    abortCase(
        server,
        [pdu(pduType, b"\0" * length)],
        2,
        6,
        "always 4 bytes",
        associate=True,
        invalid=True,
    )


# --- class 17: PDV lengths -------------------------------------------------------

PDV_LIES = {
    "length-0": (struct.pack(">IBB", 0, 1, 3), "shorter than 2"),
    "length-1": (struct.pack(">IBB", 1, 1, 3) + b"\0\0", "shorter than 2"),
    "longer-than-remaining": (struct.pack(">IBB", 200, 1, 3) + echoCommand(1), "only"),
    "trailing-3-bytes": (pdv(1, echoCommand(1)) + b"\0\0\0", "trailing byte"),
    "no-pdv": (b"", "no PDV"),
}


@pytest.mark.parametrize("name", list(PDV_LIES))
def test_class17_pdvLengths(server, name):
    """
    Class 17: a PDV item length below 2, one longer than what is left
    of the PDU, PDV lengths that do not add up to the PDU length, and a
    P-DATA-TF without any PDV are A-ABORT (2, 6).
    """
    body, why = PDV_LIES[name]
    abortCase(server, [pdu(0x04, body)], 2, 6, why, associate=True, invalid=True)
