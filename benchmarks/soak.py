"""
Soak test: flood a dicomecho server and check that its RSS and open file
descriptors stay flat.

Usage::

    .venv/bin/python -m benchmarks.soak [--probes 100000] [--aborts 20000]
        [--associations 20000] [--concurrency 32] [--max-seconds 600]
        [--json PATH]

It starts C{python -m dicomecho -ba 127.0.0.1 --listen
tcp:0:interface=127.0.0.1 -v} as a subprocess (pinned to CPU 0 with
C{taskset} when there are two CPUs; this process pins itself to CPU 1), reads
the port from its C{I: Listening on ...} line, and runs three phases against
it, one after the other, on the same server process:

 1. C{probes}: TCP connect, then close without sending anything (a load
    balancer's health probe);
 2. C{aborts}: connect, send the A-ASSOCIATE-RQ, read the A-ASSOCIATE-AC,
    send an A-ABORT, close;
 3. C{associations}: a full association: RQ, C-ECHO-RQ, A-RELEASE-RQ; read
    the AC, the C-ECHO-RSP and the A-RELEASE-RP; close.

The requests are DCMTK echoscu's, captured in
C{tests/fixtures/dcmtk_echoscu_default.c2s.bin}; each C-ECHO-RQ gets its own
MessageID. Every reply is checked: the AC must accept presentation context
1, the C-ECHO-RSP must be a C-ECHO-RSP with status 0x0000 answering that
MessageID, the RP must be an RP, and after our close the server must close
too without sending anything more. Anything else (a refused or reset
connection, an RJ, an A-ABORT, a malformed or unexpected PDU, a timeout) is
counted as an error with its kind, and reported.

The load generator is one thread of non-blocking sockets on C{epoll}
(C{selectors}), with C{--concurrency} connections in flight at all times.

How a connection ends
=====================

The client always closes first, so TIME_WAIT stays on the client side.
Instead of C{close()} it calls C{shutdown(SHUT_WR)}: the server sees exactly
what a C{close()} sends (a FIN, never an RST), and the client then waits for
the server's own FIN before closing its socket. So a connection counts as
done only once the server has closed it: the concurrency limit bounds the
server's connections too, the probes cannot overflow the listen backlog
(Twisted's default is 50, which with a fire-and-forget flood drops SYNs and
stalls for the 1 s SYN retransmit), and we check that the server does close.

Ephemeral ports
===============

With the client closing first, every connection leaves a client-side socket
in TIME_WAIT for 60 s. 100,000 connections from 127.0.0.1 alone would need
more than the 28,232 ports of the default C{ip_local_port_range} whenever
the rate exceeds ~470/s (Linux's C{tcp_tw_reuse=2} default lets loopback
connects reuse them, but that is a sysctl we do not rely on). So each
connection binds a source address first, in rotation over 127.0.0.2 to
127.0.0.(1 + C{--sources}) (default 16, all loopback), with
C{IP_BIND_ADDRESS_NO_PORT} so the kernel still picks the port at
C{connect()} from the full 4-tuple. That gives 16 times the port space. No
SO_LINGER tricks: a probe ends with a FIN, as a real probe's does. The
number of TIME_WAIT sockets is reported per phase.

Measurement
===========

After the first C{--warmup} fraction (default 5%) of a phase, the client
stops starting connections, lets the ones in flight finish and waits until
the server's fd count is stable (up to C{--settle} seconds); then it reads
the server's VmRSS (C{/proc/PID/status}) and open fd count
(C{/proc/PID/fd}): the baseline. It samples both every
C{--sample-interval} seconds during the phase, and at the end of the phase
it settles again and reads them a last time. A phase passes when it did
every operation without a client error or a server C{E:} line, and the
final RSS and fd count are at most C{--tolerance} percent (default 5) above
the baseline. The duration and ops/s exclude the warm-up pause. The table
also gives the CPU the server and this process used during the load, as a
percentage of one CPU (the server near 100% means the load generator kept it
busy), and the notes the kernel's TcpExt ListenOverflows, ListenDrops and
TCPTimeWaitOverflow deltas (for the whole network namespace, so other
processes' floods count too).

Only loopback is used, and only the server this script started is stopped,
by its PID.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import re
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "dcmtk_echoscu_default.c2s.bin"

#: A-ABORT, source 0 (service-user), reason 0.
ABORT = bytes.fromhex("07000000000400000000")

PHASES = ("probes", "aborts", "associations")

_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_PDU_HEADER = struct.Struct(">BBI")
_ELEMENT = struct.Struct("<HHI")
_MAX_REPLY_PDU = 1 << 20

_PDU_NAMES = {
    1: "A-ASSOCIATE-RQ",
    2: "A-ASSOCIATE-AC",
    3: "A-ASSOCIATE-RJ",
    4: "P-DATA-TF",
    5: "A-RELEASE-RQ",
    6: "A-RELEASE-RP",
    7: "A-ABORT",
}

C_ECHO_RSP = 0x8030
VERIFICATION_UID = b"1.2.840.10008.1.1"


# --- the requests ---------------------------------------------------------------


def splitPDUs(data: bytes) -> list[bytes]:
    """
    Split a whole byte stream into PDUs (header included).
    """
    pdus = []
    pos = 0
    while pos < len(data):
        _, _, length = _PDU_HEADER.unpack_from(data, pos)
        pdus.append(data[pos : pos + 6 + length])
        pos += 6 + length
    return pdus


def commandElements(command: bytes) -> dict[tuple[int, int], tuple[int, bytes]]:
    """
    The elements of an Implicit VR Little Endian command set:
    C{(group, element) -> (offset of the value, value)}.

    @raise ValueError: if an element overruns the set or bytes trail it.
    """
    elements = {}
    pos = 0
    while pos + 8 <= len(command):
        group, element, length = _ELEMENT.unpack_from(command, pos)
        start = pos + 8
        if start + length > len(command):
            raise ValueError(f"element ({group:04X},{element:04X}) overruns the command set")
        elements[(group, element)] = (start, command[start : start + length])
        pos = start + length
    if pos != len(command):
        raise ValueError("trailing bytes after the last command element")
    return elements


@dataclass(frozen=True)
class Requests:
    """
    The pre-encoded requests, from a captured DCMTK echoscu stream.
    """

    associateRQ: bytes
    echoRQ: bytes
    releaseRQ: bytes
    messageIDOffset: int
    contextID: int

    @classmethod
    def fromCapture(cls, path: Path = FIXTURE) -> Requests:
        rq, pdata, release = splitPDUs(path.read_bytes())
        if (rq[0], pdata[0], release[0]) != (1, 4, 5):
            raise ValueError(f"{path}: expected RQ, P-DATA-TF, RELEASE-RQ")
        # P-DATA-TF header (6), PDV length (4), context ID (1), control (1).
        contextID, control = pdata[10], pdata[11]
        if control != 0x03:
            raise ValueError(f"{path}: the C-ECHO-RQ is not one command PDV")
        offset, _ = commandElements(pdata[12:])[(0x0000, 0x0110)]
        return cls(rq, pdata, release, 12 + offset, contextID)

    def echo(self, messageID: int) -> bytes:
        """
        The captured C-ECHO-RQ P-DATA-TF with MessageID C{messageID}.
        """
        data = bytearray(self.echoRQ)
        struct.pack_into("<H", data, self.messageIDOffset, messageID)
        return bytes(data)


# --- reply checks -----------------------------------------------------------------


class ReplyError(Exception):
    """
    The server's reply was not the one expected.

    @ivar kind: a short category, for counting.
    @ivar detail: the specifics, for the samples.
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


def _unexpected(pdu: bytes, expected: str) -> ReplyError:
    pduType = pdu[0]
    name = _PDU_NAMES.get(pduType, f"PDU type 0x{pduType:02X}")
    detail = f"expected {expected}, got {name} ({len(pdu)} bytes)"
    if pduType == 3 and len(pdu) == 10:
        detail += f" result/source/reason {pdu[7]}/{pdu[8]}/{pdu[9]}"
    elif pduType == 7 and len(pdu) == 10:
        detail += f" source/reason {pdu[8]}/{pdu[9]}"
    return ReplyError(f"{name} instead of {expected}", detail)


def checkAC(pdu: bytes, contextID: int = 1) -> None:
    """
    @raise ReplyError: unless C{pdu} is an A-ASSOCIATE-AC that accepts
        presentation context C{contextID}.
    """
    if pdu[0] != 2:
        raise _unexpected(pdu, "A-ASSOCIATE-AC")
    pos = 6 + 68  # header, fixed part
    while pos + 4 <= len(pdu):
        itemType, _, length = struct.unpack_from(">BBH", pdu, pos)
        body = pdu[pos + 4 : pos + 4 + length]
        if itemType == 0x21 and len(body) >= 4 and body[0] == contextID:
            if body[2] != 0:
                raise ReplyError("context not accepted", f"context {contextID} result {body[2]}")
            return
        pos += 4 + length
    raise ReplyError("context missing from AC", f"no result for context {contextID}")


def checkEchoRSP(pdu: bytes, messageID: int, contextID: int = 1) -> None:
    """
    @raise ReplyError: unless C{pdu} is a P-DATA-TF holding one whole
        C-ECHO-RSP with status 0x0000 that answers C{messageID}.
    """
    if pdu[0] != 4:
        raise _unexpected(pdu, "P-DATA-TF (C-ECHO-RSP)")
    if len(pdu) < 12:
        raise ReplyError("malformed P-DATA-TF", f"{len(pdu)} bytes")
    pdvLength, pdvContext, control = struct.unpack_from(">IBB", pdu, 6)
    if 6 + 4 + pdvLength != len(pdu):
        raise ReplyError("not one PDV", f"PDV length {pdvLength} in a {len(pdu)}-byte PDU")
    if pdvContext != contextID or control != 0x03:
        raise ReplyError(
            "not one command PDV", f"context {pdvContext}, control header 0x{control:02X}"
        )
    try:
        elements = commandElements(pdu[12:])
    except ValueError as e:
        raise ReplyError("malformed command set", str(e)) from None

    def us(tag: tuple[int, int]) -> int | None:
        value = elements.get(tag, (0, b""))[1]
        return struct.unpack("<H", value)[0] if len(value) == 2 else None

    field_ = us((0x0000, 0x0100))
    if field_ != C_ECHO_RSP:
        raise ReplyError("not a C-ECHO-RSP", f"CommandField {field_!r}")
    answered = us((0x0000, 0x0120))
    if answered != messageID:
        raise ReplyError(
            "wrong MessageIDBeingRespondedTo", f"{answered!r}, expected {messageID}"
        )
    status = us((0x0000, 0x0900))
    if status != 0:
        raise ReplyError("C-ECHO-RSP status not 0x0000", f"status {status!r}")
    sopClass = elements.get((0x0000, 0x0002), (0, b""))[1].rstrip(b"\0 ")
    if sopClass != VERIFICATION_UID:
        raise ReplyError("wrong AffectedSOPClassUID", repr(sopClass))


def checkRP(pdu: bytes) -> None:
    """
    @raise ReplyError: unless C{pdu} is an A-RELEASE-RP.
    """
    if pdu[0] != 6:
        raise _unexpected(pdu, "A-RELEASE-RP")
    if len(pdu) != 10:
        raise ReplyError("malformed A-RELEASE-RP", f"{len(pdu)} bytes")


# --- the load generator -----------------------------------------------------------

# Steps of a connection's script.
SEND_RQ, SEND_ECHO, SEND_RELEASE, SEND_ABORT, SEND_ALL = range(5)
EXPECT_AC, EXPECT_RSP, EXPECT_RP = range(10, 13)
FINISH, EOF = 20, 21

_STEP_NAMES = {
    SEND_RQ: "sending the RQ",
    SEND_ECHO: "sending the C-ECHO-RQ",
    SEND_RELEASE: "sending the RELEASE-RQ",
    SEND_ABORT: "sending the A-ABORT",
    SEND_ALL: "sending RQ+C-ECHO-RQ+RELEASE-RQ",
    EXPECT_AC: "waiting for the AC",
    EXPECT_RSP: "waiting for the C-ECHO-RSP",
    EXPECT_RP: "waiting for the RP",
    FINISH: "closing",
    EOF: "waiting for the server to close",
}


def phaseScript(phase: str, pipelined: bool = False) -> tuple[int, ...]:
    """
    The steps of one connection of C{phase}, after the connect.
    """
    if phase == "probes":
        return (FINISH, EOF)
    if phase == "aborts":
        return (SEND_RQ, EXPECT_AC, SEND_ABORT, FINISH, EOF)
    if phase == "associations":
        if pipelined:
            return (SEND_ALL, EXPECT_AC, EXPECT_RSP, EXPECT_RP, FINISH, EOF)
        return (SEND_RQ, EXPECT_AC, SEND_ECHO, EXPECT_RSP, SEND_RELEASE, EXPECT_RP, FINISH, EOF)
    raise ValueError(f"unknown phase {phase!r}")


class _Conn:
    __slots__ = ("sock", "fd", "steps", "index", "buffer", "out", "deadline",
                 "messageID", "connecting", "events", "op")

    def __init__(self, sock: socket.socket, steps: tuple[int, ...], deadline: float,
                 messageID: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.steps = steps
        self.index = 0
        self.buffer = b""
        self.out = b""
        self.deadline = deadline
        self.messageID = messageID
        self.connecting = True
        self.events = 0
        self.op = 0


class _Failed(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


class LoadGenerator:
    """
    Runs connections of one script against C{address}, C{concurrency} at
    a time, on non-blocking sockets and one selector.
    """

    def __init__(self, address: tuple[str, int], requests: Requests, steps: tuple[int, ...],
                 *, concurrency: int, opTimeout: float, sources: list[str]) -> None:
        self.address = address
        self.requests = requests
        self.steps = steps
        self.concurrency = concurrency
        self.opTimeout = opTimeout
        self.sources = sources
        self.selector = selectors.DefaultSelector()
        self.conns: dict[int, _Conn] = {}
        self.started = 0
        self.completed = 0
        self.errors: Counter[str] = Counter()
        self.errorSamples: list[str] = []
        self._nextTimeoutScan = 0.0

    @property
    def inFlight(self) -> int:
        return len(self.conns)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._drop(conn)
        self.selector.close()

    # starting connections

    def fill(self, limit: int) -> None:
        """
        Start connections until C{concurrency} are in flight or C{limit}
        have been started.
        """
        while len(self.conns) < self.concurrency and self.started < limit:
            self._start()

    def _start(self) -> None:
        self.started += 1
        messageID = (self.started - 1) % 0xFFFF + 1
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:
            self._error("socket()", _errname(e))
            return
        sock.setblocking(False)
        conn = _Conn(sock, self.steps, time.monotonic() + self.opTimeout, messageID)
        conn.op = self.started
        try:
            if self.sources:
                sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((self.sources[self.started % len(self.sources)], 0))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex(self.address)
        except OSError as e:
            sock.close()
            self._error("connect", _errname(e))
            return
        self.conns[conn.fd] = conn
        if code == 0:
            conn.connecting = False
            self._run(conn)
        elif code in (errno.EINPROGRESS, errno.EAGAIN):
            self._want(conn, selectors.EVENT_WRITE)
        else:
            self._fail(conn, _Failed("connect", errno.errorcode.get(code, str(code))))

    # the event loop

    def poll(self, timeout: float) -> None:
        """
        Wait up to C{timeout} for events and handle them; time out
        connections past their deadline.
        """
        if self.conns:
            for key, mask in self.selector.select(timeout):
                conn = self.conns.get(key.fd)
                if conn is not None:
                    self._ready(conn, mask)
        else:
            time.sleep(timeout)
        now = time.monotonic()
        if now >= self._nextTimeoutScan:
            self._nextTimeoutScan = now + 0.25
            for conn in [c for c in self.conns.values() if c.deadline <= now]:
                step = "connecting" if conn.connecting else _STEP_NAMES[conn.steps[conn.index]]
                self._fail(conn, _Failed(f"timeout {step}", f"after {self.opTimeout:g} s"))

    def _ready(self, conn: _Conn, mask: int) -> None:
        try:
            if conn.connecting:
                code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise _Failed("connect", errno.errorcode.get(code, str(code)))
                conn.connecting = False
            elif mask & selectors.EVENT_READ:
                data = conn.sock.recv(65536)
                if not data:
                    if conn.steps[conn.index] == EOF:
                        self._succeed(conn)
                        return
                    raise _Failed(
                        f"server closed while {_STEP_NAMES[conn.steps[conn.index]]}",
                        f"{len(conn.buffer)} bytes of a PDU buffered",
                    )
                conn.buffer += data
            elif conn.out:
                sent = conn.sock.send(conn.out)
                conn.out = conn.out[sent:]
                if conn.out:
                    return
                conn.index += 1
            self._advance(conn)
        except _Failed as failure:
            self._fail(conn, failure)
        except ReplyError as e:
            self._fail(conn, _Failed(e.kind, e.detail))
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            step = "connecting" if conn.connecting else _STEP_NAMES[conn.steps[conn.index]]
            self._fail(conn, _Failed(f"{_errname(e)} while {step}"))

    def _run(self, conn: _Conn) -> None:
        try:
            self._advance(conn)
        except _Failed as failure:
            self._fail(conn, failure)
        except ReplyError as e:
            self._fail(conn, _Failed(e.kind, e.detail))
        except OSError as e:
            self._fail(conn, _Failed(f"{_errname(e)} while {_STEP_NAMES[conn.steps[conn.index]]}"))

    def _advance(self, conn: _Conn) -> None:
        """
        Run C{conn}'s script until it must wait for the network.
        """
        requests = self.requests
        while True:
            step = conn.steps[conn.index]
            if step < 10:
                if step == SEND_RQ:
                    data = requests.associateRQ
                elif step == SEND_ECHO:
                    data = requests.echo(conn.messageID)
                elif step == SEND_RELEASE:
                    data = requests.releaseRQ
                elif step == SEND_ABORT:
                    data = ABORT
                else:
                    data = requests.associateRQ + requests.echo(conn.messageID) + requests.releaseRQ
                try:
                    sent = conn.sock.send(data)
                except BlockingIOError:
                    sent = 0
                if sent < len(data):
                    conn.out = data[sent:]
                    self._want(conn, selectors.EVENT_WRITE)
                    return
                conn.index += 1
            elif step < 20:
                pdu = self._nextPDU(conn)
                if pdu is None:
                    self._want(conn, selectors.EVENT_READ)
                    return
                if step == EXPECT_AC:
                    checkAC(pdu, requests.contextID)
                elif step == EXPECT_RSP:
                    checkEchoRSP(pdu, conn.messageID, requests.contextID)
                else:
                    checkRP(pdu)
                conn.index += 1
            elif step == FINISH:
                conn.sock.shutdown(socket.SHUT_WR)
                conn.index += 1
            else:  # EOF
                if conn.buffer:
                    raise _Failed(
                        "data instead of the server's close",
                        f"{len(conn.buffer)} bytes: {conn.buffer[:16].hex()}",
                    )
                self._want(conn, selectors.EVENT_READ)
                return

    @staticmethod
    def _nextPDU(conn: _Conn) -> bytes | None:
        buffer = conn.buffer
        if len(buffer) < 6:
            return None
        _, _, length = _PDU_HEADER.unpack_from(buffer, 0)
        if length > _MAX_REPLY_PDU:
            raise _Failed("oversized PDU", f"type 0x{buffer[0]:02X}, length {length}")
        if len(buffer) < 6 + length:
            return None
        conn.buffer = buffer[6 + length :]
        return buffer[: 6 + length]

    def _want(self, conn: _Conn, events: int) -> None:
        if conn.events == events:
            return
        if conn.events:
            self.selector.modify(conn.sock, events)
        else:
            self.selector.register(conn.sock, events)
        conn.events = events

    def _drop(self, conn: _Conn) -> None:
        if conn.events:
            self.selector.unregister(conn.sock)
        del self.conns[conn.fd]
        conn.sock.close()

    def _succeed(self, conn: _Conn) -> None:
        self._drop(conn)
        self.completed += 1

    def _fail(self, conn: _Conn, failure: _Failed) -> None:
        self._drop(conn)
        self._error(failure.kind, failure.detail, conn.op)

    def _error(self, kind: str, detail: str, op: int | None = None) -> None:
        self.errors[kind] += 1
        if len(self.errorSamples) < 10:
            op = self.started if op is None else op
            self.errorSamples.append(f"op {op}: {kind}" + (f" ({detail})" if detail else ""))


def _errname(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, type(e).__name__)


# --- the server under test ---------------------------------------------------------


def readStatus(pid: int) -> dict[str, int]:
    """
    VmRSS and VmHWM (kB) from C{/proc/PID/status}.
    """
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0])
    return values


def cpuSeconds(pid: int) -> float:
    """
    User plus system CPU seconds used by process C{pid} so far.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def countFDs(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def countTimeWait() -> int | None:
    """
    TCP sockets in TIME_WAIT in this network namespace (IPv4).
    """
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            return sum(1 for line in f if line.split(None, 4)[3] == "06")
    except OSError:
        return None


_KERNEL_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPTimeWaitOverflow")


def kernelCounters() -> dict[str, int]:
    """
    TcpExt counters of this network namespace that tell a flood went wrong
    in the kernel: SYNs dropped on a full listen backlog, TIME_WAIT sockets
    not kept because the bucket table was full.
    """
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return {k: int(table[k]) for k in _KERNEL_COUNTERS if k in table}
    return {}


def _twoCPUs() -> bool:
    try:
        return {0, 1} <= os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return False


class Server:
    """
    C{python -m dicomecho} on 127.0.0.1, a port chosen by the kernel,
    C{-v} lines to a log file.
    """

    def __init__(self, logPath: Path, pin: bool) -> None:
        self.logPath = logPath
        self.command = [sys.executable, "-m", "dicomecho", "-ba", "127.0.0.1",
                        "--listen", "tcp:0:interface=127.0.0.1", "-v"]
        self.pinned = None
        if pin and _twoCPUs():
            if shutil.which("taskset"):
                self.command = ["taskset", "-c", "0", *self.command]
                self.pinned = "CPU 0 (taskset)"
            else:
                self.pinned = "CPU 0 (sched_setaffinity)"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._logOffset = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with open(self.logPath, "wb") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log, close_fds=True,
            )
        if self.pinned == "CPU 0 (sched_setaffinity)":
            os.sched_setaffinity(self.proc.pid, {0})
        deadline = time.monotonic() + timeout
        pattern = re.compile(rb"I: Listening on .*\(127\.0\.0\.1:(\d+)\)")
        while time.monotonic() < deadline:
            text = self.logPath.read_bytes()
            match = pattern.search(text)
            if match:
                self.port = int(match.group(1))
                self._logOffset = text.index(b"\n", match.end()) + 1
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"server did not report its port: {self.logPath.read_bytes()[-2000:]!r}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sample(self) -> tuple[int, int]:
        """
        (VmRSS kB, open fds) now.
        """
        return readStatus(self.pid)["VmRSS"], countFDs(self.pid)

    def settle(self, limit: float, interval: float = 0.05, stable: int = 6) -> tuple[int, int, float]:
        """
        Wait until the fd count has not changed for C{stable} readings in a
        row, at most C{limit} seconds. Returns (VmRSS kB, fds, seconds
        waited).
        """
        start = time.monotonic()
        last, same = -1, 0
        while time.monotonic() - start < limit:
            fds = countFDs(self.pid)
            same = same + 1 if fds == last else 0
            last = fds
            if same >= stable:
                break
            time.sleep(interval)
        rss, fds = self.sample()
        return rss, fds, time.monotonic() - start

    def newLogLines(self) -> Counter[str]:
        """
        Counts of the log lines written since the last call, by kind.
        """
        with open(self.logPath, "rb") as f:
            f.seek(self._logOffset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._logOffset += end
        counts: Counter[str] = Counter()
        for line in data[:end].splitlines():
            if line.startswith(b"E:"):
                counts["E: lines"] += 1
            elif line.startswith(b"I: Accepting Association"):
                counts["accepted"] += 1
            elif line.startswith(b"I: Association Aborted"):
                counts["aborted by peer"] += 1
            elif line.startswith(b"I: Association Released"):
                counts["released"] += 1
            elif line.startswith(b"I: Received Echo Request"):
                counts["echo requests"] += 1
            elif line.startswith(b"I: Association from "):
                counts["summaries"] += 1
            else:
                counts["other lines"] += 1
        return counts

    def errorLines(self, limit: int = 5) -> list[str]:
        lines = []
        with open(self.logPath, "rb") as f:
            for line in f:
                if line.startswith(b"E:") and len(lines) < limit:
                    lines.append(line.decode("latin-1").rstrip())
        return lines

    def stop(self) -> int | None:
        """
        SIGTERM this server (by PID), then SIGKILL it if it is still there
        after 10 s. Returns its exit status.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


# --- a phase ------------------------------------------------------------------------


@dataclass
class PhaseResult:
    phase: str
    requested: int
    started: int = 0
    completed: int = 0
    errors: int = 0
    errorKinds: dict[str, int] = field(default_factory=dict)
    errorSamples: list[str] = field(default_factory=list)
    stoppedEarly: str | None = None
    warmupOps: int = 0
    durationSeconds: float = 0.0
    wallSeconds: float = 0.0
    opsPerSecond: float = 0.0
    rssWarmKB: int = 0
    rssEndKB: int = 0
    rssGrowthPercent: float = 0.0
    rssPeakKB: int = 0
    fdWarm: int = 0
    fdEnd: int = 0
    fdPeak: int = 0
    serverCPUPercent: float = 0.0
    clientCPUPercent: float = 0.0
    settleSeconds: list[float] = field(default_factory=list)
    timeWaitAtEnd: int | None = None
    kernelCounters: dict[str, int] = field(default_factory=dict)
    serverLog: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    rssOK: bool = False
    fdOK: bool = False
    passed: bool = False
    verdict: str = ""


def runPhase(server: Server, phase: str, count: int, requests: Requests, *,
             concurrency: int = 32, maxSeconds: float = 600.0, warmup: float = 0.05,
             opTimeout: float = 10.0, sources: list[str] | None = None,
             settle: float = 5.0, sampleInterval: float = 1.0, tolerance: float = 5.0,
             pipelined: bool = False, progress: IO[str] | None = None,
             progressInterval: float = 10.0) -> PhaseResult:
    """
    Run C{count} connections of C{phase} against C{server} and measure it.
    """
    result = PhaseResult(phase, count)
    generator = LoadGenerator(
        ("127.0.0.1", server.port), requests, phaseScript(phase, pipelined),
        concurrency=concurrency, opTimeout=opTimeout,
        sources=sources if sources is not None else defaultSources(16),
    )
    warmupOps = min(count, max(1, int(count * warmup)))
    result.warmupOps = warmupOps
    server.newLogLines()  # skip whatever came before this phase
    wallStart = time.monotonic()
    serverCPU = cpuSeconds(server.pid)
    clientCPU = time.process_time()
    countersBefore = kernelCounters()
    paused = 0.0
    limit = warmupOps
    baselineTaken = False
    nextSample = wallStart
    nextProgress = wallStart + progressInterval
    try:
        while True:
            now = time.monotonic()
            active = now - wallStart - paused
            if result.stoppedEarly is None:
                if active > maxSeconds:
                    result.stoppedEarly = f"time limit: {maxSeconds:g} s reached after {generator.started} ops"
                elif not server.alive():
                    result.stoppedEarly = f"server exited with status {server.proc.returncode}"  # type: ignore[union-attr]
                else:
                    generator.fill(limit)
            if generator.inFlight == 0:
                if not baselineTaken and result.stoppedEarly is None and generator.started >= warmupOps:
                    # Warm-up done: quiesce, then take the baseline.
                    pauseStart = time.monotonic()
                    pauseCPU = cpuSeconds(server.pid), time.process_time()
                    result.rssWarmKB, result.fdWarm, waited = server.settle(settle)
                    result.settleSeconds.append(round(waited, 3))
                    baselineTaken = True
                    limit = count
                    paused += time.monotonic() - pauseStart
                    serverCPU += cpuSeconds(server.pid) - pauseCPU[0]
                    clientCPU += time.process_time() - pauseCPU[1]
                    continue
                if generator.started >= limit or result.stoppedEarly is not None:
                    break
            generator.poll(0.05)
            now = time.monotonic()
            if now >= nextSample and server.alive():
                nextSample = now + sampleInterval
                rss, fds = server.sample()
                result.samples.append(
                    (round(now - wallStart, 3), generator.completed + generator.failed, rss, fds)
                )
            if progress is not None and now >= nextProgress:
                nextProgress = now + progressInterval
                done = generator.completed + generator.failed
                rate = done / max(1e-9, now - wallStart - paused)
                rss, fds = result.samples[-1][2:] if result.samples else (0, 0)
                print(f"  {phase}: {done}/{count} ({rate:.0f}/s), errors {generator.failed}, "
                      f"server RSS {rss / 1024:.1f} MiB, fds {fds}", file=progress, flush=True)
        result.durationSeconds = time.monotonic() - wallStart - paused
        if server.alive() and result.durationSeconds > 0:
            result.serverCPUPercent = 100 * (cpuSeconds(server.pid) - serverCPU) / result.durationSeconds
        result.clientCPUPercent = 100 * (time.process_time() - clientCPU) / max(1e-9, result.durationSeconds)
    finally:
        generator.close()
    if server.alive():
        result.rssEndKB, result.fdEnd, waited = server.settle(settle)
        result.settleSeconds.append(round(waited, 3))
    result.wallSeconds = time.monotonic() - wallStart
    result.timeWaitAtEnd = countTimeWait()
    result.kernelCounters = {
        k: v - countersBefore.get(k, 0) for k, v in kernelCounters().items()
    }
    result.serverLog = dict(server.newLogLines())
    result.started = generator.started
    result.completed = generator.completed
    result.errors = generator.failed
    result.errorKinds = dict(generator.errors)
    result.errorSamples = generator.errorSamples
    result.opsPerSecond = result.completed / result.durationSeconds if result.durationSeconds else 0.0
    if result.samples:
        result.rssPeakKB = max(s[2] for s in result.samples)
        result.fdPeak = max(s[3] for s in result.samples)
    result.rssPeakKB = max(result.rssPeakKB, result.rssEndKB, result.rssWarmKB)
    result.fdPeak = max(result.fdPeak, result.fdEnd, result.fdWarm)
    if result.rssWarmKB:
        result.rssGrowthPercent = 100.0 * (result.rssEndKB - result.rssWarmKB) / result.rssWarmKB
        result.rssOK = result.rssEndKB <= result.rssWarmKB * (1 + tolerance / 100)
        result.fdOK = result.fdEnd <= result.fdWarm * (1 + tolerance / 100)
    serverErrors = result.serverLog.get("E: lines", 0)
    reasons = []
    if not baselineTaken:
        reasons.append("no baseline")
    if result.stoppedEarly:
        reasons.append(result.stoppedEarly)
    elif result.completed != count:
        reasons.append(f"{count - result.completed} ops not completed")
    if result.errors:
        reasons.append(f"{result.errors} client errors")
    if serverErrors:
        reasons.append(f"{serverErrors} server E: lines")
    if baselineTaken and not result.rssOK:
        reasons.append(f"RSS grew {result.rssGrowthPercent:.1f}%")
    if baselineTaken and not result.fdOK:
        reasons.append(f"fds {result.fdWarm} -> {result.fdEnd}")
    result.passed = not reasons
    result.verdict = "PASS" if not reasons else "FAIL: " + "; ".join(reasons)
    return result


def defaultSources(n: int) -> list[str]:
    """
    Loopback source addresses 127.0.0.2 .. 127.0.0.(n + 1); none if C{n}
    is 0 (the kernel then uses 127.0.0.1).
    """
    if not 0 <= n <= 250:
        raise ValueError("between 0 and 250 source addresses")
    return [f"127.0.0.{2 + i}" for i in range(n)]


# --- the whole soak ------------------------------------------------------------------


def runSoak(counts: dict[str, int] | None = None, *, pin: bool = True,
            serverLog: Path | None = None, progress: IO[str] | None = None,
            sources: int = 16, **phaseOptions: Any) -> dict[str, Any]:
    """
    Start a server, run the phases in C{counts} (phase name -> number of
    connections; zero skips a phase) in order, stop the server.

    @param pin: pin the server to CPU 0 and this process to CPU 1 when both
        exist. This process's affinity is restored on return.
    @param phaseOptions: passed to L{runPhase}.
    @return: a JSON-able report: C{environment}, C{phases} (a list of
        L{PhaseResult} dicts), C{passed}.
    """
    if counts is None:
        counts = {"probes": 100_000, "aborts": 20_000, "associations": 20_000}
    requests = Requests.fromCapture()
    temporary = None
    if serverLog is None:
        temporary = tempfile.NamedTemporaryFile(prefix="dicomecho-soak-", suffix=".log", delete=False)
        temporary.close()
        serverLog = Path(temporary.name)
    server = Server(serverLog, pin)
    originalAffinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    clientPinned = None
    results: list[PhaseResult] = []
    environment: dict[str, Any] = {}
    try:
        if server.pinned:
            os.sched_setaffinity(0, {1})
            clientPinned = "CPU 1"
        server.start()
        rss, fds, _ = server.settle(2.0)
        environment = _environment(server, clientPinned, sources, rss, fds, phaseOptions)
        if progress is not None:
            print(f"server PID {server.pid} on 127.0.0.1:{server.port}, idle RSS "
                  f"{rss / 1024:.1f} MiB, {fds} fds", file=progress, flush=True)
        for phase in PHASES:
            count = counts.get(phase, 0)
            if count <= 0:
                continue
            if progress is not None:
                print(f"phase {phase}: {count} connections", file=progress, flush=True)
            result = runPhase(server, phase, count, requests,
                              sources=defaultSources(sources), progress=progress, **phaseOptions)
            results.append(result)
            if progress is not None:
                print(f"  {phase}: {result.verdict}", file=progress, flush=True)
            if not server.alive():
                break
        if server.alive():
            rss, fds = server.sample()
            environment["serverAtEnd"] = {"rssKB": rss, "fds": fds,
                                          "hwmKB": readStatus(server.pid)["VmHWM"]}
        environment["serverErrorLines"] = server.errorLines()
    finally:
        environment["serverExitStatus"] = server.stop()
        if originalAffinity is not None and clientPinned:
            os.sched_setaffinity(0, originalAffinity)
        if temporary is not None:
            os.unlink(serverLog)
        else:
            environment["serverLog"] = str(serverLog)
    return {
        "environment": environment,
        "phases": [asdict(r) for r in results],
        "passed": bool(results) and all(r.passed for r in results),
    }


def _readSysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().split("\n")[0].replace("\t", " ")
    except OSError:
        return None


def _environment(server: Server, clientPinned: str | None, sources: int, rss: int, fds: int,
                 phaseOptions: dict[str, Any]) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpuModel": _cpuModel(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "serverCommand": " ".join(server.command),
        "serverPID": server.pid,
        "serverPort": server.port,
        "serverPinned": server.pinned,
        "clientPinned": clientPinned,
        "sourceAddresses": (f"127.0.0.2-127.0.0.{1 + sources}" if sources else "127.0.0.1"),
        "ipLocalPortRange": _readSysctl("net.ipv4.ip_local_port_range"),
        "tcpTwReuse": _readSysctl("net.ipv4.tcp_tw_reuse"),
        "tcpMaxTwBuckets": _readSysctl("net.ipv4.tcp_max_tw_buckets"),
        "serverIdle": {"rssKB": rss, "fds": fds},
        "options": {k: v for k, v in phaseOptions.items() if k != "progress"},
    }


def _cpuModel() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def formatReport(report: dict[str, Any]) -> str:
    """
    The report as a table and notes, for humans.
    """
    env = report["environment"]
    lines = [
        f"dicomecho soak: {env.get('cpus')} CPU(s) ({env.get('cpuModel')}), Linux {env.get('kernel')}, "
        f"Python {env.get('python')}",
        f"server: {env.get('serverCommand')} (PID {env.get('serverPID')}, "
        f"port {env.get('serverPort')}); pinned: server {env.get('serverPinned') or 'no'}, "
        f"client {env.get('clientPinned') or 'no'}",
        f"client sources {env.get('sourceAddresses')}; ip_local_port_range {env.get('ipLocalPortRange')}, "
        f"tcp_tw_reuse {env.get('tcpTwReuse')}; server idle: RSS "
        f"{env.get('serverIdle', {}).get('rssKB', 0) / 1024:.1f} MiB, "
        f"{env.get('serverIdle', {}).get('fds')} fds",
        "",
    ]
    header = ("phase", "done/requested", "errors", "secs", "ops/s", "CPU srv/cli %", "RSS warm MiB",
              "RSS end MiB", "growth %", "RSS peak MiB", "fds warm/end (peak)", "result")
    rows = [header]
    for p in report["phases"]:
        rows.append((
            p["phase"], f"{p['completed']}/{p['requested']}", str(p["errors"]),
            f"{p['durationSeconds']:.1f}", f"{p['opsPerSecond']:.0f}",
            f"{p['serverCPUPercent']:.0f}/{p['clientCPUPercent']:.0f}",
            f"{p['rssWarmKB'] / 1024:.2f}", f"{p['rssEndKB'] / 1024:.2f}",
            f"{p['rssGrowthPercent']:+.2f}", f"{p['rssPeakKB'] / 1024:.2f}",
            f"{p['fdWarm']}/{p['fdEnd']} ({p['fdPeak']})",
            "PASS" if p["passed"] else "FAIL",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j in (0, 11) else c.rjust(w)
                               for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for p in report["phases"]:
        log = ", ".join(f"{k} {v}" for k, v in sorted(p["serverLog"].items())) or "nothing"
        lines.append(
            f"{p['phase']}: {p['verdict']}; warm-up {p['warmupOps']} ops; wall {p['wallSeconds']:.1f} s "
            f"(settle {', '.join(f'{s:.2f}' for s in p['settleSeconds'])} s); "
            f"TIME_WAIT at end {p['timeWaitAtEnd']}; server log: {log}"
        )
        if p["kernelCounters"]:
            lines.append("    kernel (whole netns) during the phase: " + ", ".join(
                f"{k} +{v}" for k, v in p["kernelCounters"].items()))
        for kind, n in sorted(p["errorKinds"].items(), key=lambda kv: -kv[1]):
            lines.append(f"    error {n} x {kind}")
        for sample in p["errorSamples"][:5]:
            lines.append(f"    e.g. {sample}")
    atEnd = env.get("serverAtEnd")
    if atEnd:
        lines.append(f"server at end: RSS {atEnd['rssKB'] / 1024:.2f} MiB (high-water "
                     f"{atEnd['hwmKB'] / 1024:.2f} MiB), {atEnd['fds']} fds; exit status "
                     f"{env.get('serverExitStatus')}")
    for line in env.get("serverErrorLines") or []:
        lines.append(f"server: {line}")
    lines.append("overall: " + ("PASS" if report["passed"] else "FAIL"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Flood a dicomecho server over loopback and check that its RSS and "
                    "open fds stay flat.",
    )
    parser.add_argument("--probes", type=int, default=100_000, help="TCP connect/close probes")
    parser.add_argument("--aborts", type=int, default=20_000, help="associate/abort cycles")
    parser.add_argument("--associations", type=int, default=20_000, help="full associations")
    parser.add_argument("--concurrency", type=int, default=32, help="connections in flight")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop a phase after this many seconds of load")
    parser.add_argument("--warmup", type=float, default=0.05,
                        help="fraction of each phase run before the baseline")
    parser.add_argument("--op-timeout", type=float, default=10.0,
                        help="seconds one connection may take before it counts as an error")
    parser.add_argument("--sources", type=int, default=16,
                        help="rotate over 127.0.0.2..127.0.0.(1+N) as source addresses; 0: none")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="at most this many seconds to wait for the server's fds to settle")
    parser.add_argument("--sample-interval", type=float, default=1.0)
    parser.add_argument("--tolerance", type=float, default=5.0,
                        help="percent RSS/fd growth over the baseline that still passes")
    parser.add_argument("--pipelined", action="store_true",
                        help="full associations send RQ, C-ECHO-RQ and RELEASE-RQ at once")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to CPUs")
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument("--server-log", type=Path, help="keep the server's -v log here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if not os.path.isdir("/proc/self/fd"):
        parser.error("needs Linux /proc")
    started = time.monotonic()
    report = runSoak(
        {"probes": args.probes, "aborts": args.aborts, "associations": args.associations},
        pin=not args.no_pin, serverLog=args.server_log,
        progress=None if args.quiet else sys.stderr, sources=args.sources,
        concurrency=args.concurrency, maxSeconds=args.max_seconds, warmup=args.warmup,
        opTimeout=args.op_timeout, settle=args.settle, sampleInterval=args.sample_interval,
        tolerance=args.tolerance, pipelined=args.pipelined,
    )
    report["environment"]["totalSeconds"] = round(time.monotonic() - started, 1)
    print(formatReport(report))
    print(f"total {report['environment']['totalSeconds']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
