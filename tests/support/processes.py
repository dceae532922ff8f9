"""
Server subprocesses for the real-peer tests: L{Server} (its output lines
collected by a thread, every wait bounded, stopped by PID, its memory and
descriptors measurable), L{FactoryServer} (a L{DICOMServerFactory} run by
C{tests.support.serve}, read through its EVENT lines) with
L{runningServer}, the C{servers} fixture that stops whatever a test
started, L{freePort} and L{waitListening}.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import pytest

__all__ = [
    "ROOT",
    "BIN",
    "TIMEOUT",
    "LISTENING",
    "EVENT_TIMEOUT",
    "SUMMARY",
    "Server",
    "Event",
    "FactoryServer",
    "runningServer",
    "servers",
    "start",
    "freePort",
    "waitListening",
    "tcpSockets",
]

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
#: Seconds any one wait may take.
TIMEOUT = 20.0
#: dicomecho's "Listening on" line; group 1 is the port.
LISTENING = re.compile(r"Listening on .*\(\S*:(\d+)\)")
#: Seconds to wait for an expected EVENT line of a L{FactoryServer}.
EVENT_TIMEOUT = 10.0
#: The event that ends every connection in a L{FactoryServer}'s log: it is
#: logged when the connection closes, after any release, abort or
#: rejection.
SUMMARY = "association-summary"


class Server:
    """
    A server subprocess (run from the checkout) whose stdout and stderr
    lines a thread collects.

    @param env: variables added to this process's environment; with
        C{inherit=False}, the whole environment.
    @param passFds: descriptors the child inherits (as systemd passes its
        sockets).
    @param keepStdin: give the child a pipe as stdin, held open until
        L{stop} (instead of C{/dev/null}).
    """

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        inherit: bool = True,
        passFds: Sequence[int] = (),
        keepStdin: bool = False,
    ) -> None:
        self.args = list(args)
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"} if inherit else {}
        environment.update(env or {})
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            stdin=subprocess.PIPE if keepStdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
            pass_fds=passFds,
        )
        self._reader = threading.Thread(
            target=self._read, name=f"output:{self.process.pid}", daemon=True
        )
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lineReceived(line.rstrip("\n"))
        self.outputEnded()

    def lineReceived(self, line: str) -> None:
        """
        One output line, in the reader thread.
        """
        self.lines.append(line)

    def outputEnded(self) -> None:
        """
        The output is closed (the process exited), in the reader thread.
        """

    def output(self) -> str:
        return "\n".join(self.lines)

    def waitFor(
        self, pattern: re.Pattern[str] | str, timeout: float = TIMEOUT, since: int = 0
    ) -> re.Match[str]:
        """
        Wait (bounded) for a line matching C{pattern}, or the end of the
        output; return the match.

        @param since: look only at lines from this index on (C{len(lines)}
            taken before the event awaited).
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[since:]:
                match = regex.search(line)
                if match:
                    return match
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no line matching {regex.pattern!r} in:\n{self.output()}")

    def port(self) -> int:
        """
        The port of the server's "Listening on" line (needs C{-v}).
        """
        return int(self.waitFor(LISTENING).group(1))

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def wait(self, timeout: float = TIMEOUT) -> int:
        """
        Wait (bounded) for the process to exit by itself and its output to
        be read; return its exit status.
        """
        status = self.process.wait(timeout)
        self._reader.join(timeout)
        return status

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """
        Send C{sig} by PID, wait (bounded), SIGKILL if still running;
        return the exit status.
        """
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=TIMEOUT)
            self._reader.join(timeout=TIMEOUT)
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:
                        pass

    def rssKiB(self) -> int:
        """
        VmRSS of the process, in KiB (from C{/proc/<pid>/status}).
        """
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def fdCount(self) -> int:
        """
        Open file descriptors of the process.
        """
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def waitForFds(self, target: int, slack: int, timeout: float) -> int:
        """
        Wait until the fd count is within C{slack} of C{target}; return the
        last count seen (the caller asserts on it).
        """
        deadline = time.monotonic() + timeout
        count = self.fdCount()
        while abs(count - target) > slack and time.monotonic() < deadline:
            time.sleep(0.05)
            count = self.fdCount()
        return count


class Event(NamedTuple):
    """
    One C{EVENT <dicomEvent> <json>} line of C{tests.support.serve}.
    """

    name: str
    fields: dict[str, Any]

    @property
    def peer(self) -> str | None:
        return self.fields.get("peer")


class FactoryServer(Server):
    """
    A L{DICOMServerFactory} on 127.0.0.1 in a C{python -m tests.support.serve}
    subprocess, whose EVENT lines are parsed as they come.

    @ivar options: the factory keyword arguments, as given to
        C{tests.support.serve}.
    @ivar corrupt: EVENT lines that could not be parsed (there should be
        none).
    """

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.corrupt: list[str] = []
        self._condition = threading.Condition()
        self._events: list[Event] = []
        self._port: int | None = None
        self._ended = False
        super().__init__(
            [sys.executable, "-m", "tests.support.serve", json.dumps(options)], keepStdin=True
        )
        try:
            self._waitForPort()
        except BaseException:
            self.stop()
            raise

    def lineReceived(self, line: str) -> None:
        with self._condition:
            self.lines.append(line)
            if line.startswith("PORT ") and self._port is None:
                self._port = int(line.split()[1])
            elif line.startswith("EVENT "):
                try:
                    _, name, payload = line.split(" ", 2)
                    self._events.append(Event(name, json.loads(payload)))
                except ValueError:
                    # A cut line must fail the test, not stop the reader.
                    self.corrupt.append(line)
            self._condition.notify_all()

    def outputEnded(self) -> None:
        with self._condition:
            self._ended = True
            self._condition.notify_all()

    def _waitForPort(self) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._port is not None or self._ended, TIMEOUT)
        if self._port is None:
            raise AssertionError(
                f"tests.support.serve {self.options!r} printed no PORT line within "
                f"{TIMEOUT}s:\n{self.output()}"
            )

    def port(self) -> int:
        """
        The TCP port the server listens on (its C{PORT} line).
        """
        assert self._port is not None
        return self._port

    def output(self) -> str:
        with self._condition:
            return "\n".join(self.lines)

    def outputLines(self) -> list[str]:
        with self._condition:
            return list(self.lines)

    def events(self, since: int = 0) -> list[Event]:
        """
        The EVENT lines collected so far, from index C{since}.
        """
        with self._condition:
            return self._events[since:]

    def mark(self) -> int:
        """
        The number of EVENT lines so far, for L{events}' C{since}.
        """
        with self._condition:
            return len(self._events)

    def waitForEvents(
        self,
        predicate: Callable[[list[Event]], bool],
        what: str,
        timeout: float = EVENT_TIMEOUT,
    ) -> list[Event]:
        """
        Wait until C{predicate(all events so far)} holds; return the events.

        @raise AssertionError: after C{timeout} seconds, naming C{what}.
        """
        with self._condition:
            done = self._condition.wait_for(lambda: predicate(self._events), timeout)
            events = list(self._events)
        if not done:
            raise AssertionError(
                f"server never logged {what} within {timeout}s:\n{self.output()}"
            )
        return events

    def associationEvents(self, peer: str) -> list[Event]:
        """
        Wait until the connection of C{peer} (the C{host:port} the server
        sees) has closed, then return that peer's events before its
        association-summary.
        """
        events = self.waitForEvents(
            lambda events: any(e.peer == peer and e.name == SUMMARY for e in events),
            f"the end of the connection from {peer}",
        )
        return [e for e in events if e.peer == peer and e.name != SUMMARY]

    def onlyAssociationSince(self, mark: int) -> list[Event]:
        """
        The events of the one association begun after C{mark}, once it has
        ended (for peers whose local port we cannot learn, like echoscu).
        The association is the one whose A-ASSOCIATE-RQ is the first after
        C{mark}; events of earlier connections that arrive late (such as
        their association-summary, logged when they close) are left out.
        """
        events = self.waitForEvents(
            lambda events: any(e.name == "associate-rq" for e in events[mark:]),
            f"an A-ASSOCIATE-RQ after event {mark}",
        )
        requests = [e for e in events[mark:] if e.name == "associate-rq"]
        assert len({e.peer for e in requests}) == 1, requests
        return self.associationEvents(requests[0].peer)

    def peerEvents(self, peer: str, timeout: float = EVENT_TIMEOUT) -> list[Event]:
        """
        Wait for the association-summary of C{peer}'s connection; return
        every event of that peer, the summary last. Each wake-up scans only
        the events not seen yet.
        """
        seen = 0
        found: list[Event] = []
        deadline = time.monotonic() + timeout

        def done() -> bool:
            nonlocal seen
            for event in self._events[seen:]:
                if event.peer == peer:
                    found.append(event)
            seen = len(self._events)
            return bool(found) and found[-1].name == SUMMARY

        with self._condition:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no {SUMMARY} for {peer} within {timeout}s; its events: "
                        f"{found}\n{self.output()[-4000:]}"
                    )
                self._condition.wait(remaining)
        return found

    def summaryOf(self, peer: str, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        """
        The fields of C{peer}'s association-summary, once logged.
        """
        return self.peerEvents(peer, timeout)[-1].fields

    def countSince(self, mark: int, name: str) -> int:
        """
        How many C{name} events were logged after event C{mark}.
        """
        with self._condition:
            return sum(1 for e in self._events[mark:] if e.name == name)

    def waitForCount(self, mark: int, name: str, count: int, timeout: float) -> int:
        """
        Wait until C{count} C{name} events were logged after C{mark}; return
        the last count seen (the caller asserts on it).
        """
        deadline = time.monotonic() + timeout
        seen = self.countSince(mark, name)
        while seen < count and time.monotonic() < deadline:
            with self._condition:
                self._condition.wait(0.1)
            seen = self.countSince(mark, name)
        return seen

    def failures(self) -> list[str]:
        """
        Output lines that tell of a failure in the server (a logged failure,
        a traceback), not of a peer's error; and any cut EVENT line.
        """
        with self._condition:
            return [
                line for line in self.lines if line.startswith(("FAILURE", "Traceback"))
            ] + [f"cut EVENT line: {line}" for line in self.corrupt]


@contextmanager
def runningServer(**options: Any) -> Iterator[FactoryServer]:
    """
    Run a L{FactoryServer} with these factory options for the block;
    afterwards, fail if it logged a failure of its own (a traceback, a cut
    EVENT line).
    """
    server = FactoryServer(options)
    try:
        yield server
    finally:
        server.stop()
    assert not server.failures(), server.output()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """
    Servers a test starts (with L{start}); killed after it, even when it
    fails.
    """
    started: list[Server] = []
    yield started
    for server in started:
        server.stop(signal.SIGKILL)


def start(servers: list[Server], args: Sequence[str], **kw: object) -> Server:
    server = Server(args, **kw)  # type: ignore[arg-type]
    servers.append(server)
    return server


def freePort() -> int:
    """
    A port that was free a moment ago on every IPv4 address: some servers
    listen on 0.0.0.0, and a port free on 127.0.0.1 may still be held on
    127.0.0.2 (a load generator's client in TIME_WAIT, benchmarks.abuse).
    """
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


def waitListening(port: int, server: Server | None = None, timeout: float = TIMEOUT) -> None:
    """
    Wait (bounded) until something accepts on 127.0.0.1:C{port}; give up
    early if C{server} has exited.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.process.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    output = f":\n{server.output()}" if server is not None else ""
    raise AssertionError(f"nothing listens on port {port}{output}")


def tcpSockets(pid: int) -> list[tuple[str, str, str]]:
    """
    Process C{pid}'s IPv4 TCP sockets as C{/proc/net/tcp} spells them:
    (local, remote, state), addresses as C{HEXADDR:HEXPORT} (C{0100007F}
    is 127.0.0.1), state C{0A} for listening.
    """
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    rows = [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return [(f[1], f[2], f[3]) for f in rows if f[9] in inodes]
