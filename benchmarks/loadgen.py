"""
The benchmark's load generator: many DICOM associations multiplexed on raw
non-blocking sockets and one C{select.epoll}, sending pre-encoded PDUs and
checking every reply.

Modes (C{--mode}):

 - C{associations}: C{--concurrency} clients, each running associations back
   to back: connect, A-ASSOCIATE-RQ, one C-ECHO-RQ, A-RELEASE-RQ, close. One
   operation is one whole association.
 - C{echoes}: C{--concurrency} associations, each sending C-ECHO-RQs back
   to back, one outstanding at a time, MessageIDs 1, 2, ... One operation
   is one echo.
 - C{idle}: open C{--concurrency} associations (C{--open-concurrency} at a
   time), hold them for C{--hold} seconds, then one echo on each, then
   release them all. Reports how many were held, the server's RSS growth per
   association and its CPU time during the hold. An A-ASSOCIATE-RJ here
   counts as "rejected", not as an error.

The throughput modes run C{--warmup} seconds, then measure for C{--duration}
seconds or C{--max-ops} operations, whichever ends first, then stop
starting work, let what is in flight finish and release every association.
Latency is per echo, from the C-ECHO-RQ's send to its whole reply, for the
echoes answered in the window. With C{--server-pid}, the server's CPU
seconds (utime+stime from C{/proc/PID/stat}) over the window and its RSS
at the end of it are reported too.

Replies are checked with L{ReplyChecker}. Connections close the way
L{benchmarks.soak} closes them (after the A-RELEASE-RP the client shuts
down its side and waits for the server's FIN), bound in rotation to source
addresses 127.0.0.2 .. 127.0.0.17. Errors are counted by kind: refused,
reset, RJ, abort, bad reply, closed (the server closed early), timeout,
other.

The result is one JSON object on stdout (or C{--json PATH}).
"""

from __future__ import annotations

import argparse
import errno
import json
import select
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from benchmarks import soak
from benchmarks._common import (
    IP_BIND_ADDRESS_NO_PORT,
    BadReply,
    ReplyChecker,
    Requests,
    cpuSeconds,
    machineCPU,
    replyKind,
    rssKB,
)

__all__ = ["LoadGenerator", "ReplyChecker", "BadReply", "MODES", "percentile", "main"]

MODES = ("associations", "echoes", "idle")

MAX_REPLY_PDU = 1 << 20

CONNECTING, AWAIT_AC, AWAIT_RSP, AWAIT_RP, AWAIT_EOF, HELD = range(6)
STATE_NAMES = ("connecting", "waiting for the AC", "waiting for the C-ECHO-RSP",
               "waiting for the RP", "waiting for the server to close", "holding")

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_NEVER = 1 << 62


# --- connections ---------------------------------------------------------------------


class _Conn:
    __slots__ = ("sock", "fd", "state", "buffer", "out", "events", "messageID",
                 "sentAt", "openedAt", "deadline")

    def __init__(self, sock: socket.socket, now: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.state = CONNECTING
        self.buffer = b""
        self.out = b""
        self.events = 0
        self.messageID = 0
        self.sentAt = 0
        self.openedAt = now
        self.deadline = _NEVER


class _Failed(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


def errorKind(code: int) -> str:
    """
    The error kind of a socket error number.
    """
    if code == errno.ECONNREFUSED:
        return "refused"
    if code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return "reset"
    if code == errno.ETIMEDOUT:
        return "timeout"
    return "other"


def percentile(sortedValues: Sequence[int], fraction: float) -> int:
    """
    Nearest-rank percentile of already sorted values (0 if there are none).
    """
    if not sortedValues:
        return 0
    rank = max(1, -(-int(fraction * 1_000_000) * len(sortedValues) // 1_000_000))
    return sortedValues[min(rank, len(sortedValues)) - 1]


def sourceAddresses(count: int = 16) -> list[str]:
    """
    Loopback source addresses 127.0.0.2 .. 127.0.0.(count + 1).
    """
    return soak.defaultSources(count)


class LoadGenerator:
    """
    One run of one mode against C{host:port}; L{run} returns the result.
    """

    def __init__(self, host: str, port: int, mode: str, concurrency: int, *,
                 warmup: float = 0.5, duration: float = 3.0, maxOps: int = 10_000_000,
                 hold: float = 3.0, openConcurrency: int = 64, opTimeout: float = 10.0,
                 timeout: float = 120.0, serverPID: int | None = None,
                 sources: Sequence[str] = (), busyPoll: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.address = (host, port)
        self.mode = mode
        self.concurrency = concurrency
        self.warmup, self.duration, self.maxOps, self.hold = warmup, duration, maxOps, hold
        self.openConcurrency = openConcurrency
        self.opTimeoutNs = int(opTimeout * 1e9)
        self.timeoutNs = int(timeout * 1e9)
        self.serverPID = serverPID
        self.sources = list(sources)
        # Poll without sleeping: the reply is seen without a wake-up of this
        # process, so a one-at-a-time round trip measures the server more
        # than this process's scheduling (costs this process a whole CPU).
        self.busyPoll = busyPoll
        requests = Requests.fromCapture()
        self.associateRQ = requests.associateRQ
        self.releaseRQ = requests.releaseRQ
        offset = requests.messageIDOffset
        self.echoPrefix, self.echoSuffix = requests.echoRQ[:offset], requests.echoRQ[offset + 2 :]
        self.checker = ReplyChecker(requests.contextID)
        self.epoll = select.epoll()
        self.conns: dict[int, _Conn] = {}
        self.running = False      # start new work (echoes, associations)
        self.measuring = False    # inside the measured window
        self.opened = 0
        self.toReopen = 0         # failed clients to replace (associations mode)
        self.opening = 0          # connections not yet associated (idle mode)
        self.held = 0
        self.rejected = 0
        self.completedAssociations = 0
        self.echoesSent = 0
        self.echoesOK = 0
        self.windowOps = 0
        self.latencies: list[int] = []
        self.associationTimes: list[int] = []
        self.errors: Counter[str] = Counter()
        self.errorSamples: list[str] = []
        self._nextScan = 0

    # -- opening and sending

    def _open(self) -> None:
        self.opened += 1
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:
            self._error(errorKind(e.errno or 0), f"socket(): {e}")
            return
        sock.setblocking(False)
        conn = _Conn(sock, time.perf_counter_ns())
        conn.deadline = conn.openedAt + self.opTimeoutNs
        if self.mode == "associations":
            conn.messageID = self.opened % 0xFFFF
        try:
            if self.sources:
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((self.sources[self.opened % len(self.sources)], 0))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex(self.address)
        except OSError as e:
            sock.close()
            self._error(errorKind(e.errno or 0), f"connect: {e}")
            return
        self.conns[conn.fd] = conn
        self.opening += 1
        if code in (0, errno.EINPROGRESS, errno.EAGAIN):
            self._want(conn, _EPOLLOUT)  # writable at once if already connected
        else:
            self._fail(conn, errorKind(code), f"connect: {errno.errorcode.get(code, code)}")

    def _connected(self, conn: _Conn) -> None:
        code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise _Failed(errorKind(code), f"connect: {errno.errorcode.get(code, code)}")
        conn.state = AWAIT_AC
        self._want(conn, _EPOLLIN)
        self._send(conn, self.associateRQ)

    def _send(self, conn: _Conn, data: bytes) -> None:
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            conn.out = data[sent:]
            self._want(conn, _EPOLLIN | _EPOLLOUT)

    def _flush(self, conn: _Conn) -> None:
        sent = conn.sock.send(conn.out)
        conn.out = conn.out[sent:]
        if not conn.out:
            self._want(conn, _EPOLLIN)

    def _sendEcho(self, conn: _Conn) -> None:
        messageID = conn.messageID % 0xFFFF + 1
        conn.messageID = messageID
        conn.state = AWAIT_RSP
        now = time.perf_counter_ns()
        conn.sentAt = now
        conn.deadline = now + self.opTimeoutNs
        self.echoesSent += 1
        self._send(conn, self.echoPrefix + messageID.to_bytes(2, "little") + self.echoSuffix)

    def _sendRelease(self, conn: _Conn) -> None:
        conn.state = AWAIT_RP
        conn.deadline = time.perf_counter_ns() + self.opTimeoutNs
        self._send(conn, self.releaseRQ)

    def _want(self, conn: _Conn, events: int) -> None:
        if conn.events != events:
            if conn.events:
                self.epoll.modify(conn.fd, events)
            else:
                self.epoll.register(conn.fd, events)
            conn.events = events

    # -- receiving

    def _readable(self, conn: _Conn) -> None:
        data = conn.sock.recv(65536)
        if not data:
            if conn.state != AWAIT_EOF or conn.buffer:
                raise _Failed("closed", f"server closed while {STATE_NAMES[conn.state]}")
            self._close(conn)
            self._associationDone(conn)
            return
        if conn.buffer:
            data = conn.buffer + data
            conn.buffer = b""
        while len(data) >= 6:
            end = 6 + int.from_bytes(data[2:6], "big")
            if end > MAX_REPLY_PDU:
                raise _Failed("bad reply", f"PDU type 0x{data[0]:02X} of {end} bytes")
            if len(data) < end:
                break
            if len(data) == end:
                pdu, data = data, b""
            else:
                pdu, data = data[:end], data[end:]
            self._onPDU(conn, pdu)
            if conn.sock is None:
                return
        conn.buffer = data

    def _onPDU(self, conn: _Conn, pdu: bytes) -> None:
        state = conn.state
        if state == AWAIT_RSP:
            now = time.perf_counter_ns()
            self.checker.checkEchoRSP(pdu, conn.messageID)
            self.echoesOK += 1
            if self.measuring:
                self.latencies.append(now - conn.sentAt)
                if self.mode == "echoes":
                    self.windowOps += 1
            if self.mode == "echoes" and self.running:
                self._sendEcho(conn)
            else:
                self._sendRelease(conn)
        elif state == AWAIT_AC:
            try:
                self.checker.checkAC(pdu)
            except BadReply as e:
                if e.kind == "RJ" and self.mode == "idle":
                    self.opening -= 1
                    self.rejected += 1
                    self._close(conn)
                    return
                raise
            self.opening -= 1
            if self.mode == "idle":
                conn.state = HELD
                conn.deadline = _NEVER
                self.held += 1
            elif self.running:
                self._sendEcho(conn)
            else:
                self._sendRelease(conn)
        elif state == AWAIT_RP:
            self.checker.checkRP(pdu)
            conn.state = AWAIT_EOF
            conn.sock.shutdown(socket.SHUT_WR)
        else:
            kind = replyKind(pdu)
            raise _Failed(kind, f"{len(pdu)}-byte PDU type 0x{pdu[0]:02X} while {STATE_NAMES[state]}")

    def _associationDone(self, conn: _Conn) -> None:
        self.completedAssociations += 1
        if self.mode == "associations":
            if self.measuring:
                self.windowOps += 1
                self.associationTimes.append(time.perf_counter_ns() - conn.openedAt)
            if self.running:
                self._open()

    # -- closing and failing

    def _close(self, conn: _Conn) -> None:
        del self.conns[conn.fd]
        conn.sock.close()  # also removes it from the epoll set
        conn.sock = None  # type: ignore[assignment]

    def _fail(self, conn: _Conn, kind: str, detail: str) -> None:
        if conn.state in (CONNECTING, AWAIT_AC):
            self.opening -= 1
        elif conn.state == HELD:
            self.held -= 1
        self._close(conn)
        self._error(kind, detail)
        if self.mode == "associations":
            self.toReopen += 1  # by the loop, so that a refusing server cannot recurse

    def _error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.errorSamples) < 10:
            self.errorSamples.append(f"{kind}: {detail}")

    # -- the loop

    def _poll(self, timeout: float) -> None:
        conns = self.conns
        for fd, events in self.epoll.poll(timeout):
            conn = conns.get(fd)
            if conn is None:
                continue
            try:
                if conn.state == CONNECTING:
                    self._connected(conn)
                elif events & _EPOLLOUT and conn.out:
                    self._flush(conn)
                else:
                    self._readable(conn)
            except _Failed as e:
                self._fail(conn, e.kind, e.detail)
            except BadReply as e:
                self._fail(conn, e.kind, e.detail)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                self._fail(conn, errorKind(e.errno or 0), f"{e} while {STATE_NAMES[conn.state]}")

    def _scanTimeouts(self, now: int) -> None:
        if now < self._nextScan:
            return
        self._nextScan = now + 250_000_000
        for conn in [c for c in self.conns.values() if c.deadline <= now]:
            self._fail(conn, "timeout", STATE_NAMES[conn.state])

    def _loopUntil(self, deadline: int, done: Any) -> bool:
        """
        Poll until C{done()} or C{deadline} (perf_counter_ns); True if done.
        """
        while not done():
            if self.toReopen:
                count, self.toReopen = self.toReopen, 0
                for _ in range(count if self.running else 0):
                    self._open()
            now = time.perf_counter_ns()
            if now >= deadline:
                return False
            self._poll(0 if self.busyPoll else min(0.05, (deadline - now) / 1e9))
            self._scanTimeouts(time.perf_counter_ns())
        return True

    def _serverCPU(self) -> float | None:
        return cpuSeconds(self.serverPID) if self.serverPID else None

    def _serverRSS(self) -> int | None:
        return rssKB(self.serverPID) if self.serverPID else None

    def run(self) -> dict[str, Any]:
        """
        Run the mode and return its figures; see the module docstring.
        """
        start = time.perf_counter_ns()
        hardDeadline = start + self.timeoutNs
        result: dict[str, Any] = {"mode": self.mode, "concurrency": self.concurrency,
                                  "busyPoll": self.busyPoll}
        try:
            if self.mode == "idle":
                self._runIdle(result, hardDeadline)
            else:
                self._runThroughput(result, start, hardDeadline)
            # Whatever is left in flight: release it, then give up on it.
            self.running = False
            for conn in list(self.conns.values()):
                if conn.state == HELD:
                    self._sendEcho(conn)
            finished = self._loopUntil(min(hardDeadline, time.perf_counter_ns() + self.opTimeoutNs),
                                       lambda: not self.conns)
            if not finished:
                for conn in list(self.conns.values()):
                    self._fail(conn, "timeout", f"{STATE_NAMES[conn.state]} (at the end)")
        finally:
            for conn in list(self.conns.values()):
                self._close(conn)
            self.epoll.close()
        result.update({
            "wallSeconds": round((time.perf_counter_ns() - start) / 1e9, 3),
            "echoesSent": self.echoesSent,
            "echoesOK": self.echoesOK,
            "associationsCompleted": self.completedAssociations,
            "repliesMatched": self.checker.matched,
            "repliesParsed": self.checker.parsed,
            "errors": sum(self.errors.values()),
            "errorKinds": dict(self.errors),
            "errorSamples": self.errorSamples,
            "templates": self.checker.templates(),
        })
        return result

    def _runThroughput(self, result: dict[str, Any], start: int, hardDeadline: int) -> None:
        self.running = True
        for _ in range(self.concurrency):
            self._open()
        windowStart = start + int(self.warmup * 1e9)
        windowEnd = windowStart + int(self.duration * 1e9)
        self._loopUntil(min(windowStart, hardDeadline), lambda: not self.conns)
        t0 = time.perf_counter_ns()
        cpu0, client0, machine0 = self._serverCPU(), time.process_time(), machineCPU()
        self.measuring = True
        self.windowOps = 0
        maxOps = self.maxOps
        self._loopUntil(min(windowEnd, hardDeadline),
                        lambda: self.windowOps >= maxOps or not self.conns)
        t1 = time.perf_counter_ns()
        cpu1, client1, machine1 = self._serverCPU(), time.process_time(), machineCPU()
        self.measuring = False
        self.running = False
        seconds = (t1 - t0) / 1e9
        ops = self.windowOps
        result.update(self._windowFigures(seconds, ops, cpu0, cpu1, client1 - client0))
        result.update(_otherCPU(machine0, machine1, result["serverCPUSeconds"], client1 - client0,
                                seconds))
        result["serverRSSKB"] = self._serverRSS()
        if self.associationTimes:
            times = sorted(self.associationTimes)
            result["associationP50us"] = round(percentile(times, 0.50) / 1e3, 1)
            result["associationP99us"] = round(percentile(times, 0.99) / 1e3, 1)

    def _windowFigures(self, seconds: float, ops: int, cpu0: float | None, cpu1: float | None,
                       clientCPU: float) -> dict[str, Any]:
        latencies = sorted(self.latencies)
        serverCPU = None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 3)
        return {
            "windowSeconds": round(seconds, 4),
            "ops": ops,
            "opsPerSecond": round(ops / seconds, 1) if seconds > 0 else 0.0,
            "echoesInWindow": len(latencies),
            "latencyP50us": round(percentile(latencies, 0.50) / 1e3, 1),
            "latencyP99us": round(percentile(latencies, 0.99) / 1e3, 1),
            "serverCPUSeconds": serverCPU,
            "serverCPUPer1000": (round(1000 * serverCPU / ops, 4)
                                 if serverCPU is not None and ops else None),
            "serverCPUPercent": (round(100 * serverCPU / seconds, 1)
                                 if serverCPU is not None and seconds > 0 else None),
            "loadgenCPUPercent": round(100 * clientCPU / seconds, 1) if seconds > 0 else None,
        }

    def _runIdle(self, result: dict[str, Any], hardDeadline: int) -> None:
        rssBefore = self._serverRSS()
        openStart = time.perf_counter_ns()
        target = self.concurrency

        def opened() -> bool:
            while self.opened < target and self.opening < self.openConcurrency:
                self._open()
            return self.opened >= target and self.opening == 0

        self._loopUntil(hardDeadline, opened)
        openSeconds = (time.perf_counter_ns() - openStart) / 1e9
        holdStart = time.perf_counter_ns()
        cpu0, client0, machine0 = self._serverCPU(), time.process_time(), machineCPU()
        self._loopUntil(min(hardDeadline, holdStart + int(self.hold * 1e9)), lambda: False)
        holdSeconds = (time.perf_counter_ns() - holdStart) / 1e9
        cpu1, client1, machine1 = self._serverCPU(), time.process_time(), machineCPU()
        rssHeld = self._serverRSS()
        held = self.held
        # Then one echo on each, released as it is answered (the caller's drain).
        self.measuring = True
        echoStart = time.perf_counter_ns()
        for conn in list(self.conns.values()):
            if conn.state == HELD:
                self._sendEcho(conn)
        self._loopUntil(min(hardDeadline, echoStart + self.opTimeoutNs), lambda: not self.conns)
        self.measuring = False
        growth = None if rssBefore is None or rssHeld is None else rssHeld - rssBefore
        result.update({
            "requested": target,
            "held": held,
            "rejected": self.rejected,
            "openSeconds": round(openSeconds, 3),
            "opsPerSecond": round(held / openSeconds, 1) if openSeconds > 0 else 0.0,
            "holdSeconds": round(holdSeconds, 3),
            "holdServerCPUSeconds": None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 3),
            "holdLoadgenCPUSeconds": round(client1 - client0, 3),
            **_otherCPU(machine0, machine1, None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
                        client1 - client0, holdSeconds),
            "serverRSSBeforeKB": rssBefore,
            "serverRSSKB": rssHeld,
            "rssGrowthPerAssociationKiB": round(growth / held, 3) if growth is not None and held else None,
            "echoedAfterHold": self.echoesOK,
            "echoSeconds": round((time.perf_counter_ns() - echoStart) / 1e9, 3),
            "latencyP50us": round(percentile(sorted(self.latencies), 0.50) / 1e3, 1),
            "latencyP99us": round(percentile(sorted(self.latencies), 0.99) / 1e3, 1),
        })


def _otherCPU(before: tuple[float, float], after: tuple[float, float], serverCPU: float | None,
              loadgenCPU: float, seconds: float) -> dict[str, float | None]:
    """
    The CPU the rest of the machine used during a window (all CPUs busy
    time minus the server's and the load generator's), and the time stolen
    by the hypervisor, both as percent of one CPU: a sign of noise.
    """
    if seconds <= 0:
        return {"otherCPUPercent": None, "stealPercent": None}
    busy, steal = after[0] - before[0], after[1] - before[1]
    other = None if serverCPU is None else max(0.0, busy - serverCPU - loadgenCPU)
    return {"otherCPUPercent": None if other is None else round(100 * other / seconds, 1),
            "stealPercent": round(100 * steal / seconds, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen",
                                     description="DICOM C-ECHO load generator (one mode, one run).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--concurrency", type=int, default=1,
                        help="clients (associations), associations (echoes, idle)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before the window")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of the window")
    parser.add_argument("--max-ops", type=int, default=10_000_000, help="window ends after this many ops")
    parser.add_argument("--hold", type=float, default=3.0, help="idle: seconds to hold")
    parser.add_argument("--open-concurrency", type=int, default=64,
                        help="idle: connections being associated at once")
    parser.add_argument("--op-timeout", type=float, default=10.0,
                        help="seconds one step (connect, reply) may take")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the whole run may take")
    parser.add_argument("--server-pid", type=int, help="read this process's CPU and RSS")
    parser.add_argument("--sources", type=int, default=16,
                        help="rotate over 127.0.0.2..127.0.0.(1+N) as source addresses; 0: none")
    parser.add_argument("--busy-poll", action="store_true",
                        help="poll without sleeping (one CPU at 100%%) so replies need no wake-up")
    parser.add_argument("--json", type=Path, help="write the result here instead of stdout")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    generator = LoadGenerator(
        args.host, args.port, args.mode, args.concurrency, warmup=args.warmup,
        duration=args.duration, maxOps=args.max_ops, hold=args.hold,
        openConcurrency=args.open_concurrency, opTimeout=args.op_timeout, timeout=args.timeout,
        serverPID=args.server_pid, sources=sourceAddresses(args.sources) if args.sources else (),
        busyPoll=args.busy_poll,
    )
    result = generator.run()
    text = json.dumps(result)
    if args.json:
        args.json.write_text(text)
    else:
        print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
