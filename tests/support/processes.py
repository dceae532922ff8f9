"""
Server subprocesses for the real-peer tests: L{Server} (its output lines
collected by a thread, every wait bounded, stopped by PID), the C{servers}
fixture that stops whatever a test started, L{freePort} and
L{waitListening}.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pytest

__all__ = [
    "ROOT",
    "BIN",
    "TIMEOUT",
    "LISTENING",
    "Server",
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


class Server:
    """
    A server subprocess (run from the checkout) whose stdout and stderr
    lines a thread collects.

    @param env: variables added to this process's environment; with
        C{inherit=False}, the whole environment.
    @param passFds: descriptors the child inherits (as systemd passes its
        sockets).
    """

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        inherit: bool = True,
        passFds: Sequence[int] = (),
    ) -> None:
        self.args = list(args)
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"} if inherit else {}
        environment.update(env or {})
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
            pass_fds=passFds,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

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
            if self.process.stdout is not None:
                self.process.stdout.close()


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
    A port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
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
