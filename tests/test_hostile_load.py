"""
Hostile peers against a running server, load: pipelined bursts and a peer
that never reads (class 20), floods of connections (class 21), requests
over the association limit (class 22) and a thousand stalled connections
at once. A raw-socket client sends them to a L{DICOMServerFactory} in a
C{tests.support.serve} subprocess on loopback.

Class 23 (shutdown with associations in every state) is tested with the
shutdown code (drain, SIGTERM), not here.

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
import threading
import time

import pytest

from dicomecho.wire.userinfo import AsyncOperationsWindow, UserInformation
from tests.support.hostile import (
    ACSE,
    MESSAGE_ID_RESPONDED,
    RELEASE_RQ,
    RSS_SLACK_KIB,
    STATUS,
    Client,
    abortBytes,
    closedWithin,
    echoPDU,
    logged,
    makeRQ,
    raiseFileLimit,
    rjBytes,
    served,
    server,  # noqa: F401 (fixture)
    waitAllEOF,
    warm,
)
from tests.support.peers import requireEchoscu
from tests.support.processes import runningServer


# --- class 20: bursts --------------------------------------------------------------


@pytest.mark.parametrize("window", [None, (5, 5)], ids=["no-window", "async-5-5"])
def test_class20_pipelinedBurst(server, window):
    """
    Class 20: 500 C-ECHO-RQ and an A-RELEASE-RQ sent in one burst
    before reading anything, with or without an asynchronous operations
    window negotiated, are all answered in order, then released.
    """
    info = UserInformation(
        maximumLength=16384,
        implementationClassUID="1.2.3",
        asyncOperationsWindow=AsyncOperationsWindow(*window) if window else None,
    )
    with Client(server.port()) as client:
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
    Class 20 (d), transport backpressure: a peer pipelines 5,000
    C-ECHO-RQ from a thread and reads nothing for about 2 s: the server's
    RSS grows by less than 20 MiB. Then the peer reads: every response
    arrives, in order, and the association is released normally.
    """
    # On Linux loopback the kernel's socket buffers (several MiB each way)
    # hold 5,000 requests and their responses, so this burst alone does not
    # fill the server's transport buffer; tests/test_protocol.py checks the
    # pausing itself. Here: the whole path, memory, order and release.
    before = warm(server)
    client = Client(server.port())
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
    Class 21, small: 500 TCP connect+close probes and 200
    associate+abort: every connection gets its association-summary, the
    server's open file descriptors return to their baseline (±2) within a
    few seconds, its RSS stays within a few MiB, and a real echo works.
    """
    with runningServer(acseTimeout=ACSE) as server:
        before = warm(server)
        fds = server.fdCount()
        mark = server.mark()
        # In batches smaller than the listen backlog (Twisted's default, 50),
        # each handled before the next: a dropped SYN costs a 1 s retry.
        for done in range(40, 540, 40):
            for _ in range(min(done, 500) - (done - 40)):
                socket.create_connection(("127.0.0.1", server.port()), timeout=10).close()
            server.waitForCount(mark, "association-summary", min(done, 500), 5)
        rq = makeRQ()
        for _ in range(200):
            with Client(server.port()) as client:
                client.associate(rq)
                client.send(abortBytes(0, 0))
        assert server.waitForCount(mark, "association-summary", 700, 10) == 700
        assert abs(server.waitForFds(fds, 2, 5) - fds) <= 2
        assert server.rssKiB() - before < RSS_SLACK_KIB
        served(server)


# --- class 22: over the association limit ------------------------------------------


def test_class22_overLimit():
    """
    Class 22: with maxAssociations 2 and two associations held, a
    third request gets exactly A-ASSOCIATE-RJ (2, 3, 2) and the server then
    closes the connection by itself within 1 s. Slots come back when a held
    association is released, and when one is aborted.
    """
    with runningServer(maxAssociations=2, acseTimeout=ACSE) as server:
        held = [Client(server.port()), Client(server.port())]
        try:
            for client in held:
                client.associate()
            with Client(server.port()) as third:
                third.send(makeRQ())
                assert third.recvExactly(10) == rjBytes(2, 3, 2)
                closedWithin(third, 1.0)
            byName = logged(server, third.peer, "rejected", "limit", ["association-rejected"])
            (rejected,) = byName["association-rejected"]
            assert (rejected["result"], rejected["source"], rejected["diagnostic"]) == (2, 3, 2)
            # Released: one slot back.
            held[0].release()
            with Client(server.port()) as again:
                again.associate()
                assert again.echo(1)[STATUS] == 0
                # Both slots taken again: still rejected.
                with Client(server.port()) as extra:
                    extra.send(makeRQ())
                    assert extra.recvExactly(10) == rjBytes(2, 3, 2)
                again.release()
            # Aborted: the other slot back too.
            held[1].send(abortBytes(0, 0))
            held[1].readToEOF(5)
            logged(server, held[1].peer, "aborted-by-peer")
            served(server)
            with Client(server.port()) as a, Client(server.port()) as b:
                a.associate()
                b.associate()
                a.release()
                b.release()
        finally:
            for client in held:
                client.close()


# --- stalled peers, many at once (classes 5 and 21) ----------------------------


STALLED = 1000


@pytest.mark.peer
def test_stalled_thousandConnections():
    """
    Classes 5 and 21: 1000 stalled connections (half sending nothing,
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

    # One source opens all 1000: the per-source limits, off here, are
    # tested on their own (tests/test_sourcelimits_peers.py).
    unlimited = {"maxPending": 0, "connectionRate": 0}
    with runningServer(maxAssociations=5, acseTimeout=acse, sourceLimits=unlimited) as server:
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
                sock = socket.create_connection(("127.0.0.1", server.port()), timeout=10)
                if i % 2:
                    sock.sendall(half)
                stalled.append(sock)
                if len(stalled) % 40 == 0 or len(stalled) == STALLED:
                    target = baseline + len(stalled)
                    assert server.waitForFds(target, 0, 2) >= target
            opened = time.monotonic()
            assert opened - started < acse, "opening the connections took too long"
            completed = subprocess.run(
                [echoscu, "-to", "5", "-ts", "10", "-ta", "5", "-td", "5", "127.0.0.1", str(server.port())],
                capture_output=True,
                text=True,
                timeout=20,
                stdin=subprocess.DEVNULL,
            )
            assert completed.returncode == 0, completed.stdout + completed.stderr
            real = [Client(server.port()) for _ in range(5)]
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
