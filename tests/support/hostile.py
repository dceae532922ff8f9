"""
What the hostile-peer tests (C{tests.test_hostile_*}) share: a raw-socket
DICOM client that sends arbitrary bytes and reads exactly what comes back,
the encoders of what it sends, the module-wide C{server} fixture (a
L{FactoryServer} with short timers) and the checks every case makes.

Each case checks four things:
 (a) the peer gets the PS3.8 answer: the exact A-ABORT or A-ASSOCIATE-RJ
     bytes, the DIMSE response, or a close within the configured timeout
     (measured; L{closedWithin}, L{expectAbort});
 (b) the server logged it, naming the peer (our C{127.0.0.1:port}) and the
     reason: the connection's association-summary (outcome, reason) and the
     invalid-pdu / association-rejected / association-aborting event where
     one applies (L{logged}, L{abortedFor});
 (c) the next client is served normally: DCMTK echoscu's captured session,
     replayed, gets an AC, C-ECHO-RSP status 0 and A-RELEASE-RP
     (L{served});
 (d) where the input could make the server allocate, its VmRSS stays
     within a few MiB (L{warm}, L{RSS_SLACK_KIB}).

Everything here is bounded in time. Every socket has a timeout, and every
read loop has a deadline, so a server that hangs fails the test instead of
hanging it.
"""

from __future__ import annotations

import errno
import os
import resource
import select
import socket
import struct
import time
from typing import Any, Iterator, Sequence

import pytest

from dicomecho.association.commandset import decodeCommandSet, encodeCommandSet, tag
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.userinfo import UserInformation
from dicomecho.wire.pdu import (
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    PresentationDataValue,
    ReleaseRQ,
    decodePDU,
)
from tests.support.helpers import fixtureBytes
from tests.support.processes import FactoryServer, runningServer

__all__ = [
    "ACSE",
    "DIMSE",
    "NETWORK",
    "SLACK",
    "RSS_SLACK_KIB",
    "MiB",
    "Client",
    "server",
    "logged",
    "abortedFor",
    "served",
    "abortCase",
    "closedWithin",
    "warm",
    "junk",
    "connectFresh",
    "abortBytes",
    "rjBytes",
    "pdu",
    "item",
    "rawRQ",
    "makeRQ",
    "command",
    "echoCommand",
    "pdv",
    "pdata",
    "echoPDU",
    "dcmtkSession",
    "expectAbort",
    "normalEcho",
    "raiseFileLimit",
    "waitAllEOF",
]

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

#: Seconds any single socket operation may take.
SOCKET_TIMEOUT = 10.0

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

# Tags used by the command sets below.
AFFECTED_SOP_CLASS = tag("AffectedSOPClassUID")
AFFECTED_SOP_INSTANCE = tag("AffectedSOPInstanceUID")
COMMAND_FIELD = tag("CommandField")
MESSAGE_ID = tag("MessageID")
MESSAGE_ID_RESPONDED = tag("MessageIDBeingRespondedTo")
DATA_SET_TYPE = tag("CommandDataSetType")
STATUS = tag("Status")
PRIORITY = tag("Priority")


# --- encoding ----------------------------------------------------------------


def pdu(pduType: int, body: bytes, declared: int | None = None) -> bytes:
    """
    A PDU with any type; C{declared} overrides the length field.
    """
    length = len(body) if declared is None else declared
    return struct.pack(">BBI", pduType, 0, length) + body


def abortBytes(source: int, reason: int) -> bytes:
    return Abort(source, reason).encode()


def rjBytes(result: int, source: int, reason: int) -> bytes:
    return AssociateRJ(result, source, reason).encode()


RELEASE_RQ = ReleaseRQ().encode()
RELEASE_RP = bytes.fromhex("06000000000400000000")


def item(itemType: int, body: bytes, declared: int | None = None) -> bytes:
    length = len(body) if declared is None else declared
    return struct.pack(">BBH", itemType, 0, length) + body


def rawRQ(
    items: bytes,
    *,
    version: int = 1,
    called: bytes = b"ECHOSCP",
    calling: bytes = b"HOSTILE",
    appContext: bool = True,
) -> bytes:
    """
    An A-ASSOCIATE-RQ from raw variable items; by default an application
    context item is put first.
    """
    fixed = struct.pack(
        ">HH16s16s32x", version, 0, called.ljust(16, b" "), calling.ljust(16, b" ")
    )
    if appContext:
        items = item(0x10, APPLICATION_CONTEXT.encode()) + items
    return pdu(0x01, fixed + items)


def makeRQ(
    contexts: Sequence[tuple[int, str | None, Sequence[str]]] = ((1, VERIFICATION, (IMPLICIT,)),),
    *,
    maxLength: int | None = 16384,
    calling: str = "HOSTILE",
    called: str = "ECHOSCP",
    userInformation: UserInformation | None = None,
    **kw: Any,
) -> bytes:
    """
    An encoded A-ASSOCIATE-RQ (by default: Verification, Implicit VR LE, on
    context 1).
    """
    if userInformation is None:
        userInformation = UserInformation(
            maximumLength=maxLength, implementationClassUID="1.2.826.0.1.3680043.2.1"
        )
    return AssociateRQ(
        called,
        calling,
        presentationContexts=tuple(
            PresentationContextRQ(cid, abstract, tuple(ts)) for cid, abstract, ts in contexts
        ),
        userInformation=userInformation,
        **kw,
    ).encode()


def command(elements: dict[int, object]) -> bytes:
    return encodeCommandSet(elements)


def echoCommand(messageID: int, sopClass: str = VERIFICATION) -> bytes:
    return encodeCommandSet(
        {
            AFFECTED_SOP_CLASS: sopClass,
            COMMAND_FIELD: 0x0030,
            MESSAGE_ID: messageID,
            DATA_SET_TYPE: 0x0101,
        }
    )


def pdv(contextID: int, data: bytes, *, isCommand: bool = True, last: bool = True) -> bytes:
    return PresentationDataValue(contextID, isCommand, last, data).encode()


def pdata(*pdvs: bytes) -> bytes:
    return pdu(0x04, b"".join(pdvs))


def echoPDU(messageID: int, contextID: int = 1) -> bytes:
    return pdata(pdv(contextID, echoCommand(messageID)))


def dcmtkSession() -> list[bytes]:
    """
    DCMTK echoscu's captured requests (RQ, C-ECHO-RQ, A-RELEASE-RQ), one
    encoded PDU each.
    """
    data = fixtureBytes("dcmtk_echoscu_default", "c2s")
    out = []
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos + 2)
        out.append(data[pos : pos + 6 + length])
        pos += 6 + length
    return out


# --- the client --------------------------------------------------------------

#: Local ports for our clients: below the kernel's ephemeral range, so a
#: port is never reused within a run. A reused port would make two
#: connections the same peer in the server's log (the server names a peer by
#: host and port), and one test could read another's events.
_LOCAL_PORTS = range(20000, 32000)
_nextLocalPort = _LOCAL_PORTS.start + (os.getpid() * 7919) % len(_LOCAL_PORTS)


def connectFresh(port: int, timeout: float = SOCKET_TIMEOUT, source: str = "127.0.0.1") -> socket.socket:
    """
    Connect to 127.0.0.1:C{port} from C{source} (another loopback address
    is another source) and a local port not used before in this process. SO_REUSEADDR lets a port still in TIME_WAIT from an earlier run
    be bound; a port that cannot be bound or connected from is skipped.
    """
    global _nextLocalPort
    for _ in range(len(_LOCAL_PORTS)):
        local = _nextLocalPort
        _nextLocalPort = local + 1 if local + 1 < _LOCAL_PORTS.stop else _LOCAL_PORTS.start
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.settimeout(timeout)
        try:
            sock.bind((source, local))
            sock.connect(("127.0.0.1", port))
        except OSError as e:
            sock.close()
            if e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                continue
            raise
        return sock
    raise AssertionError("no free local port for a client")


class Client:
    """
    A raw-socket DICOM peer on loopback.

    @ivar peer: C{"127.0.0.1:<our port>"}, as the server names us.
    """

    def __init__(self, port: int, timeout: float = SOCKET_TIMEOUT, source: str = "127.0.0.1") -> None:
        self.sock = connectFresh(port, timeout, source)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.peer = "%s:%d" % (source, self.sock.getsockname()[1])
        self._buffer = bytearray()
        self.eof = False
        #: (type, length) of every PDU read with L{recvPDU}.
        self.received: list[tuple[int, int]] = []

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.sock.sendall(chunk)

    def _fill(self, deadline: float) -> bool:
        """
        Read once into the buffer; C{False} at EOF or when the deadline
        passed.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.eof:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            return False
        except ConnectionResetError:
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self._buffer += data
        return True

    def recvExactly(self, n: int, timeout: float = SOCKET_TIMEOUT) -> bytes:
        """
        The next C{n} bytes; fewer only if the stream ends or the time runs
        out.
        """
        deadline = time.monotonic() + timeout
        while len(self._buffer) < n and self._fill(deadline):
            pass
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def recvPDU(self, timeout: float = SOCKET_TIMEOUT) -> tuple[int, bytes] | None:
        """
        The next whole PDU as C{(type, body)}, or C{None} at EOF/timeout.
        """
        deadline = time.monotonic() + timeout
        while len(self._buffer) < 6 and self._fill(deadline):
            pass
        if len(self._buffer) < 6:
            return None
        pduType, length = struct.unpack_from(">BxI", self._buffer)
        while len(self._buffer) < 6 + length and self._fill(deadline):
            pass
        if len(self._buffer) < 6 + length:
            return None
        body = bytes(self._buffer[6 : 6 + length])
        del self._buffer[: 6 + length]
        self.received.append((pduType, length))
        return pduType, body

    def readToEOF(self, timeout: float) -> tuple[bytes, bool, float]:
        """
        Everything until the server closes, for at most C{timeout} seconds.

        @return: the bytes, whether EOF was seen, and the seconds it took.
        """
        start = time.monotonic()
        deadline = start + timeout
        while self._fill(deadline):
            pass
        data = bytes(self._buffer)
        self._buffer.clear()
        return data, self.eof, time.monotonic() - start

    def finish(self, timeout: float = 5.0) -> bytes:
        """
        Half-close (FIN) and read whatever the server still sends until it
        closes too; the bytes not yet read are returned.
        """
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        data, eof, _ = self.readToEOF(timeout)
        assert eof, f"server did not close within {timeout}s after our FIN"
        self.close()
        return data

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """
        Close with an RST (SO_LINGER 0).
        """
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    # --- DICOM steps ------------------------------------------------------

    def associate(self, rq: bytes | None = None) -> AssociateAC:
        """
        Send C{rq} (default: Verification/Implicit LE) and return the AC.
        """
        self.send(rq if rq is not None else makeRQ())
        got = self.recvPDU()
        assert got is not None, "no answer to the A-ASSOCIATE-RQ"
        pduType, body = got
        assert pduType == 0x02, f"expected A-ASSOCIATE-AC, got {pduType:#x} {body.hex()}"
        ac = decodePDU(pduType, body)
        assert isinstance(ac, AssociateAC)
        return ac

    def response(self, timeout: float = SOCKET_TIMEOUT) -> dict[int, object]:
        """
        The next DIMSE response command set, reassembled from its command
        fragments (one or more P-DATA-TF PDUs).
        """
        fragments = []
        while True:
            got = self.recvPDU(timeout)
            assert got is not None, "no response (EOF or timeout)"
            pduType, body = got
            assert pduType == 0x04, f"expected P-DATA-TF, got {pduType:#x} {body.hex()}"
            for value in PDataTF.decode(body).pdvs:
                assert value.isCommand, "a data-set fragment in a response"
                fragments.append(value.data)
                if value.isLastFragment:
                    return decodeCommandSet(b"".join(fragments))

    def echo(self, messageID: int = 1, contextID: int = 1) -> dict[int, object]:
        self.send(echoPDU(messageID, contextID))
        return self.response()

    def release(self) -> None:
        """
        A-RELEASE-RQ, expect A-RELEASE-RP, then close.
        """
        self.send(RELEASE_RQ)
        got = self.recvPDU()
        assert got == (0x06, bytes(4)), f"expected A-RELEASE-RP, got {got!r}"
        self.close()


def expectAbort(client: Client, source: int, reason: int) -> None:
    """
    The next bytes are exactly A-ABORT (source, reason); after our FIN,
    nothing else arrives and the server closes.
    """
    got = client.recvExactly(10)
    assert got == abortBytes(source, reason), (
        f"expected A-ABORT ({source}, {reason}) = {abortBytes(source, reason).hex()}, "
        f"got {got.hex() or 'nothing'} (eof={client.eof})"
    )
    rest = client.finish()
    assert rest == b"", rest.hex()


def normalEcho(port: int) -> dict[str, Any]:
    """
    Replay DCMTK echoscu's captured session: AC with context 1 accepted,
    C-ECHO-RSP status 0 for message 1, A-RELEASE-RP; raise on any
    difference. Return C{{"peer": <our host:port>}}.
    """
    rq, echo, release = dcmtkSession()
    with Client(port) as client:
        ac = client.associate(rq)
        assert [(pc.contextID, pc.result) for pc in ac.presentationContexts] == [(1, 0)]
        client.send(echo)
        rsp = client.response()
        assert (rsp[COMMAND_FIELD], rsp[MESSAGE_ID_RESPONDED], rsp[STATUS]) == (
            0x8030,
            1,
            0,
        ), rsp
        client.send(release)
        got = client.recvPDU()
        assert got == (0x06, bytes(4)), got
        return {"peer": client.peer}


# --- file descriptors ---------------------------------------------------------


def raiseFileLimit(minimum: int) -> int:
    """
    Raise this process's RLIMIT_NOFILE soft limit to its hard limit (a
    subprocess started afterwards inherits it); return the new soft limit.
    Return the hard limit without changing anything if it is below
    C{minimum}.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < minimum:
        return hard
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def waitAllEOF(socks: Sequence[socket.socket], timeout: float) -> int:
    """
    Wait until every socket in C{socks} has seen EOF (or a reset); return
    how many did within C{timeout}. No data is expected on them: any data is
    read and ignored.
    """
    open_ = {s.fileno(): s for s in socks}
    closed = 0
    deadline = time.monotonic() + timeout
    poller = select.poll()
    for fd in open_:
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    while open_ and time.monotonic() < deadline:
        remaining = max(0.0, deadline - time.monotonic())
        for fd, _ in poller.poll(min(remaining, 0.5) * 1000):
            sock = open_.get(fd)
            if sock is None:
                continue
            try:
                sock.setblocking(False)
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                poller.unregister(fd)
                del open_[fd]
                closed += 1
    return closed


# --- the shared server and the checks of every case ---------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FactoryServer]:
    """
    One server with short timers, shared by the tests of a module whose
    options do not matter.
    """
    with runningServer(acseTimeout=ACSE, networkTimeout=NETWORK, dimseTimeout=DIMSE) as s:
        yield s


def logged(
    server: FactoryServer,
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
    server: FactoryServer,
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


def served(server: FactoryServer) -> None:
    """
    (c): the next client gets AC, C-ECHO-RSP (status 0) and RP, and its
    summary says released.
    """
    peer = normalEcho(server.port())["peer"]
    logged(server, peer, "released", "A-RELEASE")


def abortCase(
    server: FactoryServer,
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
    with Client(server.port()) as client:
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


def warm(server: FactoryServer) -> int:
    """
    Run a few normal associations so that the first-use allocations are
    done, then return the server's VmRSS (KiB).
    """
    for _ in range(3):
        server.peerEvents(normalEcho(server.port())["peer"])
    time.sleep(0.1)
    return server.rssKiB()


def junk(n: int) -> bytes:
    """
    C{n} bytes that are not DICOM.
    """
    return (b"\xa5\x5a\x00\xff" * (n // 4 + 1))[:n]
