"""
Hostile peers against a running server, PDUs in the wrong order or left
unfinished: truncated PDUs then FIN (class 5), a session cut into single
bytes or packed into one segment (class 6), bytes that are not DICOM
(class 7), a first PDU other than A-ASSOCIATE-RQ (class 9), the state x
event cells a peer can reach over the wire (class 10; every cell is
covered at unit level by C{tests/test_fsm.py}), and stalled peers closed by
their timers. A raw-socket client sends them to a L{DICOMServerFactory} in
a C{tests.support.serve} subprocess on loopback.

Class 8 (TLS) does not apply here: the server under test has no TLS port.

Each case checks (a) the peer's PS3.8 answer, (b) the server's log of it,
(c) that the next client is served, and, where the input could make the
server allocate, (d) its memory: see L{tests.support.hostile}. Hostile
input is numbered by class, as in the test names. One server with short
timers (the C{server} fixture) is shared by the module; tests whose
options or counts matter start their own. Every wait is bounded (socket
timeouts of at most 10 s, deadlines on every read loop).
"""

from __future__ import annotations

import socket
import time

import pytest

from dicomecho.wire.pdu import AssociateAC
from tests.support.helpers import fixtureBytes
from tests.support.hostile import (
    ACSE,
    MESSAGE_ID_RESPONDED,
    RELEASE_RP,
    RELEASE_RQ,
    SLACK,
    STATUS,
    Client,
    abortBytes,
    abortCase,
    closedWithin,
    echoCommand,
    echoPDU,
    logged,
    makeRQ,
    pdata,
    pdu,
    pdv,
    rjBytes,
    served,
    server,  # noqa: F401 (fixture)
)
from tests.support.processes import runningServer


# --- class 5: truncated PDUs, silence (see also the stalled-peer tests) ------


def test_class05_truncatedRequestThenFIN(server):
    """
    Class 5: half an A-ASSOCIATE-RQ and then FIN: the server closes at
    once (no ARTIM wait), sends nothing, and logs no association.
    """
    with Client(server.port()) as client:
        rq = makeRQ()
        client.send(rq[: len(rq) // 2])
        client.sock.shutdown(socket.SHUT_WR)
        closedWithin(client, SLACK)
    logged(server, client.peer, "no-association")
    served(server)


def test_class05_truncatedPDataThenFIN(server):
    """
    Class 5: while associated, half a P-DATA-TF and then FIN: the
    server closes at once, sends nothing, logs the connection as lost and
    frees the association.
    """
    with Client(server.port()) as client:
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
    Class 6: DCMTK's whole session delivered one byte per send (with
    TCP_NODELAY): AC, C-ECHO-RSP status 0, RP, exactly as in one piece.
    """
    data = fixtureBytes("dcmtk_echoscu_default", "c2s")
    with Client(server.port()) as client:
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
    Class 6: an A-ASSOCIATE-RQ, 20 P-DATA-TF (one holding five
    C-ECHO-RQ PDVs) and an A-RELEASE-RQ in one send are all answered, in
    order: AC, 24 C-ECHO-RSP (message IDs 1-24), RP.
    """
    burst = makeRQ() + b"".join(echoPDU(i) for i in range(1, 20))
    burst += pdata(*[pdv(1, echoCommand(i)) for i in range(20, 25)])
    burst += RELEASE_RQ
    with Client(server.port()) as client:
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
    Class 7: an unknown PDU type before association (0x00, 0x08-0xFF,
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
    Class 7 in Sta6: an unknown PDU type while associated is A-ABORT
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
    Class 9: a valid PDU other than A-ASSOCIATE-RQ (or A-ABORT) as
    the first PDU is A-ABORT (2, 2) (unexpected-PDU, AA-1), logged as
    "unexpected <PDU>".
    """
    abortCase(server, [NOT_FIRST[name]], 2, 2, f"unexpected {name}")


def test_class09_secondRequestWhileAssociated(server):
    """
    Class 9: a second A-ASSOCIATE-RQ while associated is A-ABORT
    (2, 2) (AA-8), and the association's slot is freed.
    """
    abortCase(server, [makeRQ()], 2, 2, "unexpected A-ASSOCIATE-RQ", associate=True)


# --- class 10: the state x event cells reachable over the wire --------------


def test_class10_dataAfterRelease(server):
    """
    Class 10: a P-DATA-TF after the A-RELEASE-RP (Sta13) is ignored
    (AA-6): the peer gets the RP and nothing else, and the server closes by
    ARTIM without waiting for the peer.
    """
    with Client(server.port()) as client:
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
    Class 10: A-ABORT as the first PDU (Sta2, AA-2): the server closes
    at once and sends nothing.
    """
    with Client(server.port()) as client:
        client.send(abortBytes(0, 0))
        closedWithin(client, SLACK)
    logged(server, client.peer, "aborted-by-peer", "A-ABORT")
    served(server)


def test_class10_abortInSta6(server):
    """
    Class 10: A-ABORT while associated (Sta6, AA-3): the server closes
    at once, sends nothing, logs association-aborted with the peer's source
    and reason.
    """
    with Client(server.port()) as client:
        client.associate()
        client.send(abortBytes(2, 0))
        closedWithin(client, SLACK)
    byName = logged(server, client.peer, "aborted-by-peer", "A-ABORT", ["association-aborted"])
    (aborted,) = byName["association-aborted"]
    assert (aborted["source"], aborted["reason"]) == (2, 0)
    served(server)


def test_class10_abortInSta13(server):
    """
    Class 10: A-ABORT after the A-RELEASE-RP (Sta13, AA-2): the server
    closes at once rather than waiting out ARTIM.
    """
    with Client(server.port()) as client:
        client.associate()
        client.send(RELEASE_RQ)
        assert client.recvPDU() == (0x06, bytes(4))
        client.send(abortBytes(0, 0))
        closedWithin(client, 1.0)
    logged(server, client.peer, "released")
    served(server)


def test_class10_closeWithoutRelease(server):
    """
    Class 10: the peer closes (FIN) while associated (AA-4): A-P-ABORT
    indication, the server closes, the association is logged as lost.
    """
    with Client(server.port()) as client:
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
    Class 10: the peer resets the connection (RST, SO_LINGER 0) while
    associated: logged as lost, and the server carries on.
    """
    client = Client(server.port())
    client.associate()
    client.reset()
    logged(server, client.peer, "connection-lost", events=["association-aborted"])
    served(server)


def test_class10_releaseRPWhileAssociated(server):
    """
    Class 10: A-RELEASE-RP while associated (Sta6, Evt13) is A-ABORT
    (2, 2).
    """
    abortCase(server, [RELEASE_RP], 2, 2, "unexpected A-RELEASE-RP", associate=True)


# --- stalled peers (class 5) -------------------------------------------------------


@pytest.mark.parametrize("sent", ["nothing", "half-request"])
def test_stalled_beforeRequest(server, sent):
    """
    Class 5: a connection that sends nothing, or half an
    A-ASSOCIATE-RQ, and goes silent is closed by ARTIM (the ACSE timeout)
    within timeout + 1.5 s, with nothing sent (PS3.8 AA-2).
    """
    with Client(server.port()) as client:
        if sent == "half-request":
            rq = makeRQ()
            client.send(rq[: len(rq) // 2])
        elapsed = closedWithin(client, ACSE + SLACK)
    assert elapsed >= ACSE - 0.2
    logged(server, client.peer, "no-association", "ARTIM", ["connection-closed"])
    served(server)


def test_stalled_halfPData():
    """
    Class 5: an association that sends half a P-DATA-TF and goes
    silent holds its slot (a second request is rejected) until the network
    timeout: then A-ABORT (0, 0) and close within timeout + 1.5 s, and the
    slot is free again.
    """
    network = 3.0
    with runningServer(
        maxAssociations=1, acseTimeout=ACSE, networkTimeout=network, dimseTimeout=10
    ) as server:
        with Client(server.port()) as client:
            client.associate()
            client.send(echoPDU(1)[:30])
            with Client(server.port()) as other:
                other.send(makeRQ())
                assert other.recvExactly(10) == rjBytes(2, 3, 2)
            elapsed = closedWithin(client, network + SLACK, abortBytes(0, 0))
        assert elapsed >= network - 0.5
        byName = logged(server, client.peer, "aborted", "Network timeout", ["timeout"])
        assert byName["timeout"][0]["what"] == "Network"
        served(server)
