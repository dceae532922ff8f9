"""
Hostile peers against a running server: every class of malformed input of
reference §3.3 (users-security-scale.md), sent by a raw-socket client to a
L{DICOMServerFactory} in a C{tests.support.serve} subprocess on loopback.

Each case checks four things:
 (a) the peer gets the PS3.8 answer: the exact A-ABORT or A-ASSOCIATE-RJ
     bytes, the DIMSE response, or a close within the configured timeout
     (measured);
 (b) the server logged it, naming the peer (our C{127.0.0.1:port}) and the
     reason: the connection's association-summary (outcome, reason) and the
     invalid-pdu / association-rejected / association-aborting event where
     one applies;
 (c) the next client is served normally: DCMTK echoscu's captured session,
     replayed, gets an AC, C-ECHO-RSP status 0 and A-RELEASE-RP;
 (d) for the classes that could make the server allocate (1-3, 18, 20, and
     the flood of 21), the server's VmRSS stays within a few MiB.

Class 8 (TLS) does not apply: dicomecho has no TLS port. Class 23 (shutdown
with associations in every state) is tested with the shutdown code, not
here. Class 10 (every state x event) is covered at unit level by
C{tests/test_fsm.py}; here only the cells a peer can reach over the wire.

One server with short timers is shared by the module; tests whose options or
counts matter start their own. Every wait is bounded (socket timeouts ≤ 10 s,
deadlines on every read loop).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any, Iterator, Sequence

import pytest

from dicomecho.wire.items import (
    AsyncOperationsWindow,
    PresentationContextRQ,
    UserIdentityRQ,
    UserInformation,
)
from dicomecho.wire.pdu import AssociateAC, AssociateRQ, decodePDU
from tests.support.helpers import fixtureBytes
from tests.support.hostile import (
    AFFECTED_SOP_CLASS,
    AFFECTED_SOP_INSTANCE,
    COMMAND_FIELD,
    CT_IMAGE_STORAGE,
    DATA_SET_TYPE,
    EXPLICIT_BE,
    IMPLICIT,
    MESSAGE_ID,
    MESSAGE_ID_RESPONDED,
    PRIORITY,
    RELEASE_RP,
    RELEASE_RQ,
    STATUS,
    VERIFICATION,
    Client,
    HostileServer,
    abortBytes,
    command,
    echoCommand,
    echoPDU,
    expectAbort,
    hostileServer,
    item,
    makeRQ,
    normalEcho,
    pdata,
    pdu,
    pdv,
    raiseFileLimit,
    rawRQ,
    rjBytes,
    waitAllEOF,
)
from tests.support.peers import requireEchoscu
from tests.test_items import MALFORMED, REPEATED

#: The shared server's timers, in seconds: short so that the cases where a
#: timer must fire stay fast, and distinct so the log says which one fired.
ACSE = 2.0
DIMSE = 3.0
NETWORK = 4.0

#: How late a timer may close a connection: timeout + this.
SLACK = 1.5

#: RSS growth allowed where the peer sent many MiB the server must not keep.
RSS_SLACK_KIB = 4 * 1024

MiB = 1024 * 1024


# --- fixtures and shared checks ---------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    """
    One server with short timers, shared by the tests whose options do
    not matter.
    """
    with hostileServer(acseTimeout=ACSE, networkTimeout=NETWORK, dimseTimeout=DIMSE) as s:
        yield s


def logged(
    server: HostileServer,
    peer: str,
    outcome: str,
    reason: str | None = None,
    events: Sequence[str] = (),
) -> dict[str, list[dict[str, Any]]]:
    """
    (b): the connection of C{peer} ended with an association-summary naming
    the peer, with this C{outcome} and a reason containing C{reason}, and
    the peer's events include C{events}. Return the peer's events by name.
    """
    all_ = server.peerEvents(peer)
    summary = all_[-1].fields
    host, port = peer.rsplit(":", 1)
    assert (summary["peer"], summary["peerHost"], summary["peerPort"]) == (
        peer,
        host,
        int(port),
    ), summary
    assert summary["outcome"] == outcome, summary
    assert summary["reason"], summary
    if reason is not None:
        assert reason in summary["reason"], summary
    byName: dict[str, list[dict[str, Any]]] = {}
    for event in all_:
        byName.setdefault(event.name, []).append(event.fields)
    for name in events:
        assert name in byName, f"no {name} event for {peer}: {[e.name for e in all_]}"
    return byName


def abortedFor(
    server: HostileServer,
    peer: str,
    source: int,
    reason: int,
    why: str,
    invalid: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """
    (b) for a connection we aborted: one association-aborting event with
    this source and reason, a summary "aborted" whose reason contains
    C{why}, and, for an undecodable PDU, one invalid-pdu event with the
    same reason that contains C{why}.
    """
    byName = logged(server, peer, "aborted", why, ["association-aborting"])
    aborting = byName["association-aborting"][0]
    assert (aborting["source"], aborting["reason"]) == (source, reason), aborting
    assert len(byName["association-aborting"]) == 1, byName["association-aborting"]
    if invalid:
        invalids = byName["invalid-pdu"]
        assert len(invalids) == 1, f"{len(invalids)} invalid-pdu events, expected 1"
        (event,) = invalids
        assert event["abortReason"] == reason, event
        assert why in event["error"], event
        summary = server.summaryOf(peer)
        assert event["error"] in summary["reason"], (event, summary)
    return byName


def served(server: HostileServer) -> None:
    """
    (c): the next client gets AC, C-ECHO-RSP (status 0) and RP, and its
    summary says released.
    """
    peer = normalEcho(server.port)["peer"]
    logged(server, peer, "released", "A-RELEASE")


def abortCase(
    server: HostileServer,
    send: Sequence[bytes],
    source: int,
    reason: int,
    why: str,
    *,
    associate: bool = False,
    invalid: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """
    Send C{send} (after associating, if C{associate}); expect exactly
    A-ABORT (source, reason) and then nothing; check the log; check that the
    next client is served.
    """
    with Client(server.port) as client:
        if associate:
            client.associate()
        client.send(*send)
        expectAbort(client, source, reason)
    byName = abortedFor(server, client.peer, source, reason, why, invalid)
    served(server)
    return byName


def closedWithin(client: Client, limit: float, expected: bytes = b"") -> float:
    """
    (a) for a timer: the server sends exactly C{expected} and closes the
    connection within C{limit} seconds (without our FIN). Return the
    seconds it took.
    """
    data, eof, elapsed = client.readToEOF(limit + 3)
    assert data == expected, f"expected {expected.hex() or 'nothing'}, got {data.hex()}"
    assert eof, f"server did not close within {limit + 3:.1f}s"
    assert elapsed <= limit, f"closed after {elapsed:.2f}s, limit {limit:.2f}s"
    client.close()
    return elapsed


def warm(server: HostileServer) -> int:
    """
    Run a few normal associations so that the first-use allocations are
    done, then return the server's VmRSS (KiB).
    """
    for _ in range(3):
        server.peerEvents(normalEcho(server.port)["peer"])
    time.sleep(0.1)
    return server.rssKiB()


def junk(n: int) -> bytes:
    """
    C{n} bytes that are not DICOM.
    """
    return (b"\xa5\x5a\x00\xff" * (n // 4 + 1))[:n]


# --- class 1: 6-byte header only, huge declared lengths -----------------------

HUGE = [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000]


@pytest.mark.parametrize("length", HUGE, ids=hex)
@pytest.mark.parametrize("pduType", [0x01, 0x04, 0x07], ids=lambda t: f"type{t:02x}")
def test_class01_hugeDeclaredLength(server, pduType, length):
    """
    §3.3 class 1: a bare 6-byte header declaring 2 or 4 GiB is refused
    from the header: A-ABORT (2, 6) (invalid-PDU-parameter-value), logged
    with the declared length, and nothing is buffered.
    """
    abortCase(server, [pdu(pduType, b"", declared=length)], 2, 6, str(length), invalid=True)


def test_class01_oneAbortForTrailingBytes(server):
    """
    §3.3 class 1: after a header declaring 0xFFFFFFFF is refused, the
    megabyte that follows it is discarded: the peer gets one A-ABORT
    (2, 6), not one per read, and the server logs one invalid-pdu event.
    """
    with Client(server.port) as client:
        client.send(pdu(0x01, b"", declared=0xFFFFFFFF), junk(MiB))
        expectAbort(client, 2, 6)
    abortedFor(server, client.peer, 2, 6, str(0xFFFFFFFF), invalid=True)
    served(server)


def test_class01_memoryBounded(server):
    """
    §3.3 class 1 (d): headers declaring huge lengths, each followed by
    8 MiB of junk, leave the server's RSS within a few MiB: the body is
    never buffered.
    """
    before = warm(server)
    for pduType in (0x01, 0x04, 0x07):
        for length in HUGE:
            with Client(server.port) as client:
                client.send(pdu(pduType, b"", declared=length), junk(8 * MiB))
                assert client.recvExactly(10) == abortBytes(2, 6)
            server.peerEvents(client.peer)
    after = server.rssKiB()
    assert after - before < RSS_SLACK_KIB, (before, after)
    served(server)


# --- class 2: A-ASSOCIATE-RQ above the cap, and large legitimate ones -------


def test_class02_associateAboveCap(server):
    """
    §3.3 class 2: an A-ASSOCIATE-RQ declaring 1 MiB + 1 (our cap is 1 MiB)
    is refused from its header with A-ABORT (2, 6), whatever follows; the
    1 MiB of body sent is not kept.
    """
    before = warm(server)
    declared = MiB + 1
    with Client(server.port) as client:
        client.send(pdu(0x01, b"", declared=declared))
        client.send(junk(declared))
        assert client.recvExactly(10) == abortBytes(2, 6)
        client.finish()
    abortedFor(server, client.peer, 2, 6, "above the cap of 1048576", invalid=True)
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
    §3.3 class 2: legitimate large requests are accepted: DCMTK's largest
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
    with Client(server.port) as client:
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
    §3.3 class 3: a P-DATA-TF declaring more than the 16382 bytes we
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
def unlimitedServer() -> Iterator[HostileServer]:
    """
    A server advertising Maximum Length 0 (no limit; capped at 4 MiB).
    """
    with hostileServer(maxPDULength=0, acseTimeout=ACSE) as s:
        yield s


def test_class03_unlimitedMaximum(unlimitedServer):
    """
    §3.3 class 3 with Maximum Length 0: the AC advertises 0; a 100 KiB
    P-DATA-TF (a C-STORE-RQ with its data set, on the Verification
    context) is handled (status 0x0211); a P-DATA-TF declaring 4 MiB + 1 or
    0xFFFFFFFF is refused with A-ABORT (2, 6) and its body is not kept.
    """
    server = unlimitedServer
    before = warm(server)
    with Client(server.port) as client:
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
        with Client(server.port) as client:
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
    §3.3 class 4: A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT are always 4
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
    §3.3 class 4 in Sta6: the same PDUs with a wrong length while
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


# --- class 5: truncated PDUs, silence (see also the stalled-peer tests) ------


def test_class05_truncatedRequestThenFIN(server):
    """
    §3.3 class 5: half an A-ASSOCIATE-RQ and then FIN: the server closes at
    once (no ARTIM wait), sends nothing, and logs no association.
    """
    with Client(server.port) as client:
        rq = makeRQ()
        client.send(rq[: len(rq) // 2])
        client.sock.shutdown(socket.SHUT_WR)
        closedWithin(client, SLACK)
    logged(server, client.peer, "no-association")
    served(server)


def test_class05_truncatedPDataThenFIN(server):
    """
    §3.3 class 5: while associated, half a P-DATA-TF and then FIN: the
    server closes at once, sends nothing, logs the connection as lost and
    frees the association.
    """
    with Client(server.port) as client:
        client.associate()
        echo = echoPDU(1)
        client.send(echo[:20])
        client.sock.shutdown(socket.SHUT_WR)
        closedWithin(client, SLACK)
    logged(server, client.peer, "connection-lost", events=["association-aborted"])
    served(server)


# --- class 6: chunking ---------------------------------------------------------


def test_class06_byteAtATime(server):
    """
    §3.3 class 6: DCMTK's whole session delivered one byte per send (with
    TCP_NODELAY): AC, C-ECHO-RSP status 0, RP, exactly as in one piece.
    """
    data = fixtureBytes("dcmtk_echoscu_default", "c2s")
    with Client(server.port) as client:
        for i in range(len(data)):
            client.send(data[i : i + 1])
            time.sleep(0.0005)
        got = client.recvPDU()
        assert got is not None and got[0] == 0x02
        rsp = client.response()
        assert (rsp[MESSAGE_ID_RESPONDED], rsp[STATUS]) == (1, 0)
        assert client.recvPDU() == (0x06, bytes(4))
    logged(server, client.peer, "released")
    served(server)


def test_class06_manyPDUsInOneSegment(server):
    """
    §3.3 class 6: an A-ASSOCIATE-RQ, 20 P-DATA-TF (one holding five
    C-ECHO-RQ PDVs) and an A-RELEASE-RQ in one send are all answered, in
    order: AC, 24 C-ECHO-RSP (message IDs 1-24), RP.
    """
    burst = makeRQ() + b"".join(echoPDU(i) for i in range(1, 20))
    burst += pdata(*[pdv(1, echoCommand(i)) for i in range(20, 25)])
    burst += RELEASE_RQ
    with Client(server.port) as client:
        client.send(burst)
        got = client.recvPDU()
        assert got is not None and got[0] == 0x02
        ids = [client.response()[MESSAGE_ID_RESPONDED] for _ in range(24)]
        assert ids == list(range(1, 25))
        assert client.recvPDU() == (0x06, bytes(4))
    assert server.summaryOf(client.peer)["messages"] == 24
    served(server)


# --- class 7: not DICOM at all ----------------------------------------------

TLS_CLIENT_HELLO = bytes.fromhex(
    "16030100c4010000c00303" + "11" * 32 + "00" + "0004130113020100" + "0093" + "00" * 0x93
)

FOREIGN = {
    "type00": (pdu(0x00, b"\0\0\0\0"), 0x00, None),
    "type08": (pdu(0x08, b"\0\0\0\0"), 0x08, None),
    "type53": (pdu(0x53, b"\0\0\0\0"), 0x53, None),
    "type80": (pdu(0x80, b""), 0x80, None),
    "typeFF": (pdu(0xFF, b"\xff" * 8), 0xFF, None),
    "http": (b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n", 0x47, "an HTTP request"),
    "tls": (TLS_CLIENT_HELLO, 0x16, "a TLS handshake"),
    "ssh": (b"SSH-2.0-OpenSSH_9.6\r\n", 0x53, "SSH"),
}


@pytest.mark.parametrize("name", list(FOREIGN))
def test_class07_unknownPDUType(server, name):
    """
    §3.3 class 7: an unknown PDU type before association (0x00, 0x08-0xFF,
    an HTTP request, a TLS ClientHello, an SSH banner) is A-ABORT (2, 1)
    (unrecognized-PDU), and the log names the type and, when it is one, the
    foreign protocol.
    """
    data, pduType, looksLike = FOREIGN[name]
    byName = abortCase(server, [data], 2, 1, f"0x{pduType:02X}", invalid=True)
    (invalid,) = byName["invalid-pdu"]
    assert invalid["looksLike"] == looksLike
    if looksLike is not None:
        assert looksLike in invalid["error"]


def test_class07_unknownPDUTypeWhileAssociated(server):
    """
    §3.3 class 7 in Sta6: an unknown PDU type while associated is A-ABORT
    (2, 1) too (AA-8).
    """
    abortCase(server, [pdu(0x08, b"\0\0\0\0")], 2, 1, "0x08", associate=True, invalid=True)


# --- class 9: first PDU not an A-ASSOCIATE-RQ; second RQ ----------------------

AC_BYTES = AssociateAC("ECHOSCP", "HOSTILE", presentationContexts=()).encode()

NOT_FIRST = {
    "P-DATA-TF": echoPDU(1),
    "A-RELEASE-RQ": RELEASE_RQ,
    "A-RELEASE-RP": RELEASE_RP,
    "A-ASSOCIATE-AC": AC_BYTES,
    "A-ASSOCIATE-RJ": rjBytes(1, 1, 1),
}


@pytest.mark.parametrize("name", list(NOT_FIRST))
def test_class09_firstPDUNotRequest(server, name):
    """
    §3.3 class 9: a valid PDU other than A-ASSOCIATE-RQ (or A-ABORT) as
    the first PDU is A-ABORT (2, 2) (unexpected-PDU, AA-1), logged as
    "unexpected <PDU>".
    """
    abortCase(server, [NOT_FIRST[name]], 2, 2, f"unexpected {name}")


def test_class09_secondRequestWhileAssociated(server):
    """
    §3.3 class 9: a second A-ASSOCIATE-RQ while associated is A-ABORT
    (2, 2) (AA-8), and the association's slot is freed.
    """
    abortCase(server, [makeRQ()], 2, 2, "unexpected A-ASSOCIATE-RQ", associate=True)


# --- class 10: the state x event cells reachable over the wire --------------


def test_class10_dataAfterRelease(server):
    """
    §3.3 class 10: a P-DATA-TF after the A-RELEASE-RP (Sta13) is ignored
    (AA-6): the peer gets the RP and nothing else, and the server closes by
    ARTIM without waiting for the peer.
    """
    with Client(server.port) as client:
        client.associate()
        client.send(RELEASE_RQ)
        assert client.recvPDU() == (0x06, bytes(4))
        client.send(echoPDU(2))
        closedWithin(client, ACSE + SLACK)
    byName = logged(server, client.peer, "released", events=["association-released"])
    assert "dimse-received" not in byName
    served(server)


def test_class10_abortInSta2(server):
    """
    §3.3 class 10: A-ABORT as the first PDU (Sta2, AA-2): the server closes
    at once and sends nothing.
    """
    with Client(server.port) as client:
        client.send(abortBytes(0, 0))
        closedWithin(client, SLACK)
    logged(server, client.peer, "aborted-by-peer", "A-ABORT")
    served(server)


def test_class10_abortInSta6(server):
    """
    §3.3 class 10: A-ABORT while associated (Sta6, AA-3): the server closes
    at once, sends nothing, logs association-aborted with the peer's source
    and reason.
    """
    with Client(server.port) as client:
        client.associate()
        client.send(abortBytes(2, 0))
        closedWithin(client, SLACK)
    byName = logged(server, client.peer, "aborted-by-peer", "A-ABORT", ["association-aborted"])
    (aborted,) = byName["association-aborted"]
    assert (aborted["source"], aborted["reason"]) == (2, 0)
    served(server)


def test_class10_abortInSta13(server):
    """
    §3.3 class 10: A-ABORT after the A-RELEASE-RP (Sta13, AA-2): the server
    closes at once rather than waiting out ARTIM.
    """
    with Client(server.port) as client:
        client.associate()
        client.send(RELEASE_RQ)
        assert client.recvPDU() == (0x06, bytes(4))
        client.send(abortBytes(0, 0))
        closedWithin(client, 1.0)
    logged(server, client.peer, "released")
    served(server)


def test_class10_closeWithoutRelease(server):
    """
    §3.3 class 10: the peer closes (FIN) while associated (AA-4): A-P-ABORT
    indication, the server closes, the association is logged as lost.
    """
    with Client(server.port) as client:
        client.associate()
        assert client.echo(1)[STATUS] == 0
        client.sock.shutdown(socket.SHUT_WR)
        closedWithin(client, SLACK)
    byName = logged(server, client.peer, "connection-lost", events=["association-aborted"])
    (aborted,) = byName["association-aborted"]
    assert aborted["reason"] is None
    served(server)


def test_class10_resetWhileAssociated(server):
    """
    §3.3 class 10: the peer resets the connection (RST, SO_LINGER 0) while
    associated: logged as lost, and the server carries on.
    """
    client = Client(server.port)
    client.associate()
    client.reset()
    logged(server, client.peer, "connection-lost", events=["association-aborted"])
    served(server)


def test_class10_releaseRPWhileAssociated(server):
    """
    §3.3 class 10: A-RELEASE-RP while associated (Sta6, Evt13) is A-ABORT
    (2, 2).
    """
    abortCase(server, [RELEASE_RP], 2, 2, "unexpected A-RELEASE-RP", associate=True)


# --- class 11: fixed fields of the A-ASSOCIATE-RQ ----------------------------


@pytest.mark.parametrize("length", [0, 10, 67])
def test_class11_shorterThanFixedPart(server, length):
    """
    §3.3 class 11: an A-ASSOCIATE-RQ shorter than its 68-byte fixed part
    is A-ABORT (2, 6).
    """
    body = makeRQ()[6 : 6 + length]
    abortCase(server, [pdu(0x01, body)], 2, 6, "shorter than its 68-byte fixed part", invalid=True)


REJECTIONS = {
    "version-0": (rawRQ(b"", version=0), (1, 2, 2), "protocol version 0x0000"),
    "version-2": (rawRQ(b"", version=2), (1, 2, 2), "protocol version 0x0002"),
    "wrong-app-context": (
        rawRQ(item(0x10, b"1.2.3.4"), appContext=False),
        (1, 1, 2),
        "'1.2.3.4' is not DICOM's",
    ),
    "no-app-context": (rawRQ(b"", appContext=False), (1, 1, 2), "no application context"),
}


@pytest.mark.parametrize("name", list(REJECTIONS))
def test_class11_rejected(server, name):
    """
    §3.3 class 11: protocol version without bit 0 is RJ (1, 2, 2); a wrong
    or missing application context name is RJ (1, 1, 2). The exact RJ
    bytes, then nothing; the rejection and its reason are logged.
    """
    rq, (result, source, diagnostic), why = REJECTIONS[name]
    with Client(server.port) as client:
        client.send(rq)
        assert client.recvExactly(10) == rjBytes(result, source, diagnostic)
        assert client.finish() == b""
    byName = logged(server, client.peer, "rejected", why, ["association-rejected"])
    (rejected,) = byName["association-rejected"]
    assert (rejected["result"], rejected["source"], rejected["diagnostic"]) == (
        result,
        source,
        diagnostic,
    )
    assert why in rejected["reason"]
    served(server)


def test_class11_rejectionThenClose(server):
    """
    §3.3 class 11/22: after an A-ASSOCIATE-RJ the server closes the
    connection as soon as the RJ is flushed (within 1 s), without waiting
    for the peer.
    """
    with Client(server.port) as client:
        client.send(rawRQ(b"", version=2))
        assert client.recvExactly(10) == rjBytes(1, 2, 2)
        closedWithin(client, 1.0)
    logged(server, client.peer, "rejected")
    served(server)


def test_class11_protocolVersion3Accepted(server):
    """
    §3.3 class 11: only bit 0 of the protocol version is tested, so 3 is
    accepted and the echo works.
    """
    rq = bytearray(makeRQ())
    rq[6:8] = b"\x00\x03"
    with Client(server.port) as client:
        client.associate(bytes(rq))
        assert client.echo(1)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")


# --- class 12: item and sub-item lengths that lie --------------------------

#: A representative set from tests/test_items.py, at least one per item type.
LYING_ITEMS = [
    "app context longer than PDU",
    "pc longer than PDU",
    "pc length 2",
    "abstract syntax longer than pc",
    "transfer syntax longer than pc",
    "trailing bytes in pc",
    "user info longer than PDU",
    "trailing bytes in user info",
    "max length 2 bytes",
    "max length 5 bytes",
    "impl UID longer than user info",
    "async window 3 bytes",
    "role UID longer than item",
    "version name longer than user info",
    "ext neg UID longer than item",
    "common ext service UID too long",
    "identity primary longer than item",
    "identity secondary longer than item",
    "1 trailing byte",
]


@pytest.mark.parametrize("name", LYING_ITEMS)
def test_class12_lyingItemLength(server, name):
    """
    §3.3 class 12: an item or sub-item length that runs past its container,
    or is shorter or longer than its fixed part, is A-ABORT (2, 6), logged
    with the decoder's reason.
    """
    abortCase(server, [rawRQ(MALFORMED[name], appContext=False)], 2, 6, "", invalid=True)


# --- class 13: unknown, repeated and missing items -------------------------


def test_class13_unknownItemsSkipped(server):
    """
    §3.3 class 13: unknown item types (0x60 in the PDU, 0x99 inside a
    presentation context, 0x5A in the user information) are skipped and the
    association works.
    """
    pc = item(
        0x20,
        b"\x01\0\0\0" + item(0x99, b"junk") + item(0x30, VERIFICATION.encode()) + item(0x40, IMPLICIT.encode()),
    )
    info = item(0x50, item(0x5A, b"future") + item(0x51, struct.pack(">I", 16384)))
    with Client(server.port) as client:
        ac = client.associate(rawRQ(item(0x60, b"later") + pc + info))
        assert [(pc.contextID, pc.result) for pc in ac.presentationContexts] == [(1, 0)]
        assert client.echo(1)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")


@pytest.mark.parametrize(
    "name", ["maximum length", "application context", "user information", "AC context in RQ"]
)
def test_class13_repeatedOrMisplacedItem(server, name):
    """
    §3.3 class 13: a repeated single-valued item (maximum length,
    application context, user information) or an AC's context item in an
    RQ is A-ABORT (2, 5) (unexpected-PDU-parameter).
    """
    abortCase(server, [rawRQ(REPEATED[name], appContext=False)], 2, 5, "", invalid=True)


@pytest.mark.parametrize(
    "name, info",
    [
        ("no-max-length", UserInformation(implementationClassUID="1.2.3")),
        ("max-length-0", UserInformation(maximumLength=0, implementationClassUID="1.2.3")),
        ("max-length-8", UserInformation(maximumLength=8, implementationClassUID="1.2.3")),
        ("max-length-13", UserInformation(maximumLength=13, implementationClassUID="1.2.3")),
    ],
)
def test_class13_maximumLengthAccepted(server, name, info):
    """
    §3.3 class 13: a missing Maximum Length, Maximum Length 0 (no limit),
    and the smallest usable ones (8, odd 13) are accepted; the C-ECHO-RSP
    comes in fragments that fit the peer's maximum.
    """
    limit = info.maximumLength or 0
    with Client(server.port) as client:
        client.associate(makeRQ(userInformation=info))
        client.send(echoPDU(5))
        rsp = client.response()
        assert (rsp[MESSAGE_ID_RESPONDED], rsp[STATUS]) == (5, 0)
        lengths = [length for pduType, length in client.received if pduType == 0x04]
        client.release()
    logged(server, client.peer, "released")
    if limit:
        # Fragments of (limit - 6) rounded down to even: 2 (8) or 6 (13).
        assert max(lengths) <= limit, lengths
        assert len(lengths) == -(-78 // ((limit - 6) & ~1)), lengths
    else:
        assert len(lengths) == 1, lengths


def test_class13_noUserInformation(server):
    """
    §3.3 class 13: a request without a user information item is accepted
    (treated as no limit) and the echo works.
    """
    with Client(server.port) as client:
        client.associate(
            AssociateRQ(
                "ECHOSCP",
                "HOSTILE",
                presentationContexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),),
                userInformation=None,
            ).encode()
        )
        assert client.echo(1)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")


@pytest.mark.parametrize("maximum", [1, 7])
def test_class13_maximumLengthTooSmall(server, maximum):
    """
    §3.3 class 13: a Maximum Length of 1-7 cannot carry a PDV: A-ABORT
    (2, 6), logged with the reason.
    """
    info = UserInformation(maximumLength=maximum, implementationClassUID="1.2.3")
    abortCase(server, [makeRQ(userInformation=info)], 2, 6, "too small", invalid=True)


def test_class13_unknownItemsMemory(server):
    """
    §3.3 classes 2 and 13 (d): a request within the 1 MiB cap made of
    262,000 empty unknown items is accepted, but holding its association
    must not cost more than a few MiB each (the skipped items are not all
    kept as objects).
    """
    before = warm(server)
    count = (MiB - 200) // 4
    rq = rawRQ(item(0x60, b"") * count + item(0x20, b"\x01\0\0\0" + item(0x30, VERIFICATION.encode()) + item(0x40, IMPLICIT.encode())))
    clients = []
    try:
        for _ in range(3):
            client = Client(server.port)
            clients.append(client)
            client.associate(rq)
        held = server.rssKiB() - before
        assert clients[-1].echo(1)[STATUS] == 0
    finally:
        for client in clients:
            client.close()
    for client in clients:
        server.peerEvents(client.peer)
    assert held < 3 * RSS_SLACK_KIB, f"3 held associations cost {held} KiB"
    served(server)


# --- class 14: presentation contexts -------------------------------------------


@pytest.mark.parametrize(
    "name, contexts, why",
    [
        ("duplicate", [(1, VERIFICATION, [IMPLICIT]), (1, VERIFICATION, [IMPLICIT])], "more than once"),
        ("even", [(2, VERIFICATION, [IMPLICIT])], "ID 2 is not an odd number"),
        ("zero", [(0, VERIFICATION, [IMPLICIT])], "ID 0 is not an odd number"),
        (
            "129-contexts",
            [(2 * i + 1, VERIFICATION, [IMPLICIT]) for i in range(128)] + [(1, VERIFICATION, [IMPLICIT])],
            "more than once",
        ),
    ],
)
def test_class14_invalidContextIDs(server, name, contexts, why):
    """
    §3.3 class 14: duplicate, even or zero presentation context IDs, and
    more than 128 contexts (which must repeat an ID), are A-ABORT (2, 6);
    the log gives the reason.
    """
    abortCase(server, [makeRQ(contexts)], 2, 6, why, invalid=True)


def test_class14_perContextResults(server):
    """
    §3.3 class 14: a context with an unknown abstract syntax gets result 3,
    one without transfer syntaxes result 4, one without an abstract syntax
    result 3; the good one is accepted and works.
    """
    contexts = [
        (1, CT_IMAGE_STORAGE, [IMPLICIT]),
        (3, VERIFICATION, []),
        (5, None, [IMPLICIT]),
        (7, VERIFICATION, [IMPLICIT]),
    ]
    with Client(server.port) as client:
        ac = client.associate(makeRQ(contexts))
        results = {pc.contextID: pc.result for pc in ac.presentationContexts}
        assert results == {1: 3, 3: 4, 5: 3, 7: 0}
        assert client.echo(1, contextID=7)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")


def test_class14_noContexts(server):
    """
    §3.3 class 14: no presentation context at all (or none accepted) still
    gives an AC; a P-DATA-TF on context 1 is then A-ABORT (2, 6), and the
    association's slot is freed.
    """
    with Client(server.port) as client:
        ac = client.associate(makeRQ([]))
        assert ac.presentationContexts == ()
        client.send(echoPDU(1))
        expectAbort(client, 2, 6)
    abortedFor(server, client.peer, 2, 6, "unaccepted context 1")
    with Client(server.port) as client:
        ac = client.associate(makeRQ([(1, CT_IMAGE_STORAGE, [IMPLICIT])]))
        assert [pc.result for pc in ac.presentationContexts] == [3]
        client.release()
    logged(server, client.peer, "released")
    served(server)


# --- class 15: AE titles -----------------------------------------------------

AE_TITLES = {
    "all-spaces": (b" " * 16, ""),
    "empty-nul": (b"\0" * 16, ""),
    "leading-trailing-spaces": (b"  LEAD  ", "LEAD"),
    "backslash": (b"A\\B", "A\\B"),
    "control": (b"A\nI: forged\x1b[31m", "A\nI: forged\x1b[31m"),
    "high-bytes": (b"\xff\xfe\x80\xe9", "\xff\xfe\x80\xe9"),
    "path": (b"../../etc/passwd", "../../etc/passwd"),
    "nul-inside": (b"A\0B", "A\0B"),
}


@pytest.mark.parametrize("name", list(AE_TITLES))
def test_class15_aeTitles(server, name):
    """
    §3.3 class 15: odd calling AE titles (blank, NULs, spaces, backslash,
    control characters, bytes ≥ 0x80, a path) are accepted by the default
    policy and logged as data: the summary carries the decoded title, and
    no output line of the server was forged by it.
    """
    raw, expected = AE_TITLES[name]
    rq = bytearray(makeRQ())
    rq[6 + 20 : 6 + 36] = raw.ljust(16, b" ")
    with Client(server.port) as client:
        client.associate(bytes(rq))
        assert client.echo(1)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")
    assert server.summaryOf(client.peer)["callingAETitle"] == expected
    for line in server.outputLines():
        assert line.startswith(("EVENT ", "PORT ")), line
    served(server)


# --- class 16: user identity -------------------------------------------------

SECRET = b"hunter2-Secret-Passcode"


@pytest.mark.parametrize(
    "name, identity",
    [
        ("type-0", UserIdentityRQ(0, 0, b"who")),
        ("type-6", UserIdentityRQ(6, 1, b"who")),
        ("type-255", UserIdentityRQ(255, 1, b"who", b"x")),
        ("type-1-positive-response", UserIdentityRQ(1, 1, b"alice")),
        ("type-2-password", UserIdentityRQ(2, 1, b"alice", SECRET)),
        ("largest-primary", UserIdentityRQ(1, 0, b"u" * (0xFFFF - 4 - 6 - 48))),
    ],
)
def test_class16_userIdentity(server, name, identity):
    """
    §3.3 class 16: user identity of unknown types, asking for a positive
    response, carrying a passcode, or a near-65,535-byte primary field is
    accepted (dicomecho does not authenticate and sends no 0x59 response);
    the passcode never appears in the server's output.
    """
    info = UserInformation(
        maximumLength=16384, implementationClassUID="1.2.3", userIdentity=identity
    )
    with Client(server.port) as client:
        ac = client.associate(makeRQ(userInformation=info))
        assert ac.userInformation is not None
        assert ac.userInformation.userIdentityResponse is None
        assert client.echo(1)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")
    assert SECRET.decode() not in server.output()
    served(server)


def test_class16_primaryFieldOverrunsItem(server):
    """
    §3.3 class 16: a primary field declaring 65,535 bytes in a short
    sub-item is A-ABORT (2, 6).
    """
    abortCase(
        server,
        [rawRQ(MALFORMED["identity primary longer than item"])],
        2,
        6,
        "declares 65535 bytes",
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
    §3.3 class 17: a PDV item length below 2, one longer than what is left
    of the PDU, PDV lengths that do not add up to the PDU length, and a
    P-DATA-TF without any PDV are A-ABORT (2, 6).
    """
    body, why = PDV_LIES[name]
    abortCase(server, [pdu(0x04, body)], 2, 6, why, associate=True, invalid=True)


# --- class 18: contexts and fragments ----------------------------------------------


@pytest.mark.parametrize("contextID", [3, 2, 255])
def test_class18_unacceptedContext(server, contextID):
    """
    §3.3 class 18: a PDV on a presentation context that was not accepted is
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
    §3.3 class 18: a data-set fragment before (or without) its command, or
    a command fragment while the data set is expected, is A-ABORT (2, 5)
    (unexpected-PDU-parameter).
    """
    abortCase(server, [FRAGMENT_ORDER[name]], 2, 5, "fragment on context 1", associate=True)


def test_class18_commandInManyFragments(server):
    """
    §3.3 class 18: a C-ECHO-RQ command split into 2-byte PDVs, some in one
    P-DATA-TF and the rest one per P-DATA-TF, is reassembled and answered.
    """
    data = echoCommand(11)
    pieces = [data[i : i + 2] for i in range(0, len(data), 2)]
    pdvs = [pdv(1, p, last=i == len(pieces) - 1) for i, p in enumerate(pieces)]
    with Client(server.port) as client:
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
    §3.3 class 18 (d): fragments that never set the last-fragment bit are
    capped: a command beyond 64 KiB or a data set beyond 4 MiB is A-ABORT
    (2, 6), and the fragments are not kept (RSS back within a few MiB).
    """
    before = warm(server)
    with Client(server.port) as client:
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
    §3.3 class 18: a command whose last fragment never comes, from a peer
    that stays connected and silent, is ended by the DIMSE timeout: A-ABORT
    (0, 0) and close within the timeout.
    """
    with Client(server.port) as client:
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
    §3.3 class 19: a command set that cannot be decoded or lacks a required
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
    §3.3 class 19: C-STORE-RQ, C-FIND-RQ or N-GET-RQ on the Verification
    context is answered with its response, status 0x0211 (unrecognized
    operation); the association stays up and the next C-ECHO works.
    """
    cmd, dataSet, responseField, messageID = OTHER_REQUESTS[name]
    pdvs = [pdv(1, cmd)]
    if dataSet is not None:
        pdvs.append(pdv(1, dataSet, isCommand=False))
    with Client(server.port) as client:
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
    §3.3 class 19: a C-CANCEL-RQ and a C-ECHO-RSP sent to us get no answer
    and do not end the association; the next C-ECHO is answered.
    """
    cancel = command({COMMAND_FIELD: 0x0FFF, MESSAGE_ID_RESPONDED: 1, DATA_SET_TYPE: 0x0101})
    rsp = command(
        {AFFECTED_SOP_CLASS: VERIFICATION, COMMAND_FIELD: 0x8030, MESSAGE_ID_RESPONDED: 1, DATA_SET_TYPE: 0x0101, STATUS: 0}
    )
    with Client(server.port) as client:
        client.associate()
        client.send(pdata(pdv(1, cancel)), pdata(pdv(1, rsp)))
        reply = client.echo(3)
        assert (reply[MESSAGE_ID_RESPONDED], reply[STATUS]) == (3, 0)
        client.release()
    logged(server, client.peer, "released")


def test_class19_wrongSOPClass(server):
    """
    §3.3 class 19: a C-ECHO-RQ whose AffectedSOPClassUID is not
    Verification gets status 0x0122 (SOP class not supported).
    """
    with Client(server.port) as client:
        client.associate()
        client.send(pdata(pdv(1, echoCommand(6, CT_IMAGE_STORAGE))))
        rsp = client.response()
        assert (rsp[STATUS], rsp[AFFECTED_SOP_CLASS]) == (0x0122, CT_IMAGE_STORAGE)
        client.release()
    logged(server, client.peer, "released")


def test_class19_bigEndianOnlyContext(server):
    """
    §3.3 class 19: Verification proposed with Explicit VR Big Endian only
    is accepted with it under the default preference; the command set is
    still Implicit VR Little Endian (PS3.7 §6.3.1) and the echo works.
    """
    with Client(server.port) as client:
        ac = client.associate(makeRQ([(1, VERIFICATION, [EXPLICIT_BE])]))
        ((pc),) = ac.presentationContexts
        assert (pc.result, pc.transferSyntax) == (0, EXPLICIT_BE)
        rsp = client.echo(1)
        assert (rsp[STATUS], rsp[MESSAGE_ID_RESPONDED]) == (0, 1)
        client.release()
    logged(server, client.peer, "released")


# --- class 20: bursts --------------------------------------------------------------


@pytest.mark.parametrize("window", [None, (5, 5)], ids=["no-window", "async-5-5"])
def test_class20_pipelinedBurst(server, window):
    """
    §3.3 class 20: 500 C-ECHO-RQ and an A-RELEASE-RQ sent in one burst
    before reading anything, with or without an asynchronous operations
    window negotiated, are all answered in order, then released.
    """
    info = UserInformation(
        maximumLength=16384,
        implementationClassUID="1.2.3",
        asyncOperationsWindow=AsyncOperationsWindow(*window) if window else None,
    )
    with Client(server.port) as client:
        client.associate(makeRQ(userInformation=info))
        client.send(b"".join(echoPDU(i) for i in range(1, 501)) + RELEASE_RQ)
        ids = [client.response()[MESSAGE_ID_RESPONDED] for _ in range(500)]
        assert ids == list(range(1, 501))
        assert client.recvPDU() == (0x06, bytes(4))
    assert server.summaryOf(client.peer)["messages"] == 500
    served(server)


#: C-ECHO-RQs the peer that never reads pipelines.
BURST = 5000


def test_class20_peerThatNeverReads(server):
    """
    §3.3 class 20 (d), transport backpressure: a peer pipelines 5,000
    C-ECHO-RQ from a thread and reads nothing for about 2 s: the server's
    RSS grows by less than 20 MiB. Then the peer reads: every response
    arrives, in order, and the association is released normally.
    """
    # On Linux loopback the kernel's socket buffers (several MiB each way)
    # hold 5,000 requests and their responses, so this burst alone does not
    # fill the server's transport buffer; tests/test_protocol.py checks the
    # pausing itself. Here: the whole path, memory, order and release.
    before = warm(server)
    client = Client(server.port)
    try:
        client.associate()
        burst = b"".join(echoPDU(i) for i in range(1, BURST + 1))
        sent = []

        def send() -> None:
            sock = client.sock.dup()
            sock.settimeout(30)
            try:
                sock.sendall(burst)
                sent.append(BURST)
            finally:
                sock.close()

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        time.sleep(2.0)
        grown = server.rssKiB() - before
        ids = [client.response(timeout=10)[MESSAGE_ID_RESPONDED] for _ in range(BURST)]
        sender.join(10)
        assert sent == [BURST]
        assert ids == list(range(1, BURST + 1))
        client.release()
    finally:
        client.close()
    assert grown < 20 * 1024, f"RSS grew {grown} KiB"
    logged(server, client.peer, "released")
    served(server)


# --- class 21: floods -------------------------------------------------------------


def test_class21_flood():
    """
    §3.3 class 21, small: 500 TCP connect+close probes and 200
    associate+abort: every connection gets its association-summary, the
    server's open file descriptors return to their baseline (±2) within a
    few seconds, its RSS stays within a few MiB, and a real echo works.
    """
    with hostileServer(acseTimeout=ACSE) as server:
        before = warm(server)
        fds = server.fdCount()
        mark = server.mark()
        # In batches smaller than the listen backlog (Twisted's default, 50),
        # each handled before the next: a dropped SYN costs a 1 s retry.
        for done in range(40, 540, 40):
            for _ in range(min(done, 500) - (done - 40)):
                socket.create_connection(("127.0.0.1", server.port), timeout=10).close()
            server.waitForCount(mark, "association-summary", min(done, 500), 5)
        rq = makeRQ()
        for _ in range(200):
            with Client(server.port) as client:
                client.associate(rq)
                client.send(abortBytes(0, 0))
        assert server.waitForCount(mark, "association-summary", 700, 10) == 700
        assert abs(server.waitForFds(fds, 2, 5) - fds) <= 2
        assert server.rssKiB() - before < RSS_SLACK_KIB
        served(server)


# --- class 22: over the association limit ------------------------------------------


def test_class22_overLimit():
    """
    §3.3 class 22: with maxAssociations 2 and two associations held, a
    third request gets exactly A-ASSOCIATE-RJ (2, 3, 2) and the server then
    closes the connection by itself within 1 s. Slots come back when a held
    association is released, and when one is aborted.
    """
    with hostileServer(maxAssociations=2, acseTimeout=ACSE) as server:
        held = [Client(server.port), Client(server.port)]
        try:
            for client in held:
                client.associate()
            with Client(server.port) as third:
                third.send(makeRQ())
                assert third.recvExactly(10) == rjBytes(2, 3, 2)
                closedWithin(third, 1.0)
            byName = logged(server, third.peer, "rejected", "limit", ["association-rejected"])
            (rejected,) = byName["association-rejected"]
            assert (rejected["result"], rejected["source"], rejected["diagnostic"]) == (2, 3, 2)
            # Released: one slot back.
            held[0].release()
            with Client(server.port) as again:
                again.associate()
                assert again.echo(1)[STATUS] == 0
                # Both slots taken again: still rejected.
                with Client(server.port) as extra:
                    extra.send(makeRQ())
                    assert extra.recvExactly(10) == rjBytes(2, 3, 2)
                again.release()
            # Aborted: the other slot back too.
            held[1].send(abortBytes(0, 0))
            held[1].readToEOF(5)
            logged(server, held[1].peer, "aborted-by-peer")
            served(server)
            with Client(server.port) as a, Client(server.port) as b:
                a.associate()
                b.associate()
                a.release()
                b.release()
        finally:
            for client in held:
                client.close()


# --- stalled peers (class 5) -------------------------------------------------------


@pytest.mark.parametrize("sent", ["nothing", "half-request"])
def test_stalled_beforeRequest(server, sent):
    """
    §3.3 class 5: a connection that sends nothing, or half an
    A-ASSOCIATE-RQ, and goes silent is closed by ARTIM (the ACSE timeout)
    within timeout + 1.5 s, with nothing sent (PS3.8 AA-2).
    """
    with Client(server.port) as client:
        if sent == "half-request":
            rq = makeRQ()
            client.send(rq[: len(rq) // 2])
        elapsed = closedWithin(client, ACSE + SLACK)
    assert elapsed >= ACSE - 0.2
    logged(server, client.peer, "no-association", "ARTIM", ["connection-closed"])
    served(server)


def test_stalled_halfPData():
    """
    §3.3 class 5: an association that sends half a P-DATA-TF and goes
    silent holds its slot (a second request is rejected) until the network
    timeout: then A-ABORT (0, 0) and close within timeout + 1.5 s, and the
    slot is free again.
    """
    network = 3.0
    with hostileServer(
        maxAssociations=1, acseTimeout=ACSE, networkTimeout=network, dimseTimeout=10
    ) as server:
        with Client(server.port) as client:
            client.associate()
            client.send(echoPDU(1)[:30])
            with Client(server.port) as other:
                other.send(makeRQ())
                assert other.recvExactly(10) == rjBytes(2, 3, 2)
            elapsed = closedWithin(client, network + SLACK, abortBytes(0, 0))
        assert elapsed >= network - 0.5
        byName = logged(server, client.peer, "aborted", "Network timeout", ["timeout"])
        assert byName["timeout"][0]["what"] == "Network"
        served(server)


STALLED = 1000


@pytest.mark.peer
def test_stalled_thousandConnections():
    """
    §3.3 classes 5 and 21: 1000 stalled connections (half sending nothing,
    half sending half an A-ASSOCIATE-RQ) neither stop a real peer (DCMTK
    echoscu) from associating nor hold association slots: with
    maxAssociations 5, five associations held at once still succeed. After
    the ACSE timeout (3 s) the server has closed all 1000 (every client
    socket sees EOF) and its fd count is back to its baseline.
    """
    echoscu = requireEchoscu()
    limit = raiseFileLimit(2500)
    if limit < 2500:
        pytest.skip(f"RLIMIT_NOFILE hard limit {limit} < 2500: cannot open {STALLED} sockets")
    acse = 3.0
    import subprocess

    with hostileServer(maxAssociations=5, acseTimeout=acse) as server:
        warm(server)
        baseline = server.fdCount()
        half = makeRQ()[:100]
        stalled: list[socket.socket] = []
        try:
            started = time.monotonic()
            # In batches smaller than the listen backlog (Twisted's default,
            # 50), each accepted before the next, so no SYN is dropped and
            # retried a second later.
            for i in range(STALLED):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                if i % 2:
                    sock.sendall(half)
                stalled.append(sock)
                if len(stalled) % 40 == 0 or len(stalled) == STALLED:
                    target = baseline + len(stalled)
                    assert server.waitForFds(target, 0, 2) >= target
            opened = time.monotonic()
            assert opened - started < acse, "opening the connections took too long"
            completed = subprocess.run(
                [echoscu, "-to", "5", "-ts", "10", "-ta", "5", "-td", "5", "127.0.0.1", str(server.port)],
                capture_output=True,
                text=True,
                timeout=20,
                stdin=subprocess.DEVNULL,
            )
            assert completed.returncode == 0, completed.stdout + completed.stderr
            real = [Client(server.port) for _ in range(5)]
            try:
                for client in real:
                    client.associate()
                for client in real:
                    assert client.echo(1)[STATUS] == 0
                for client in real:
                    client.release()
            finally:
                for client in real:
                    client.close()
            during = time.monotonic() - started
            assert during < acse, f"the real peers finished after {during:.1f}s"
            closed = waitAllEOF(stalled, acse + 4 - (time.monotonic() - started))
            assert closed == STALLED, f"{closed} of {STALLED} closed by the server"
        finally:
            for sock in stalled:
                sock.close()
        assert abs(server.waitForFds(baseline, 2, 5) - baseline) <= 2
        served(server)


# Class 8 (TLS) does not apply: dicomecho has no TLS port.
# Class 23 (shutdown with associations in every state) is tested with the
# shutdown code (tests of drain/SIGTERM), not here.
