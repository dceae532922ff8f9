"""
Tests for L{dicomecho.server.reuseport} and the C{reuseport:} endpoint plugin: the
parser and the listening socket it makes (on a L{MemoryReactor}), then two
real C{twistd dicomecho} processes sharing one port.

L{runEchoes} and L{countAccepted} are in L{tests.support.reuse}, shared with
L{tests.test_systemd}.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import subprocess
import sys
from typing import Any

import pytest
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError

from dicomecho.server.reuseport import ReusePortListenError, ReusePortServerEndpoint
from tests.support.peers import requireEchoscu
from tests.support.processes import BIN, ROOT, TIMEOUT, Server, freePort, servers  # noqa: F401 (fixture)
from tests.support.reuse import countAccepted

# --- the parser ---------------------------------------------------------------


def test_pluginFound() -> None:
    """
    The C{reuseport} parser is an installed endpoint plugin.
    """
    parsers = [
        p for p in getPlugins(IStreamServerEndpointStringParser) if p.prefix == "reuseport"
    ]
    assert len(parsers) == 1


def test_serverFromString() -> None:
    """
    C{reuseport:PORT} defaults to C{tcp:}'s interface (all IPv4) and
    backlog (50).
    """
    reactor = MemoryReactor()
    endpoint = serverFromString(reactor, "reuseport:11112")
    assert isinstance(endpoint, ReusePortServerEndpoint)
    assert (endpoint.port, endpoint.interface, endpoint.backlog) == (11112, "", 50)
    assert endpoint.addressFamily == socket.AF_INET


@pytest.mark.parametrize(
    "description, port, interface, backlog, family",
    [
        ("reuseport:0:interface=127.0.0.1", 0, "127.0.0.1", 50, socket.AF_INET),
        ("reuseport:port=104:backlog=128", 104, "", 128, socket.AF_INET),
        ("reuseport:11112:interface=\\:\\:", 11112, "::", 50, socket.AF_INET6),
        ("reuseport:1:interface=fe80\\:\\:1%eth0", 1, "fe80::1%eth0", 50, socket.AF_INET6),
    ],
)
def test_serverFromStringArguments(
    description: str, port: int, interface: str, backlog: int, family: int
) -> None:
    """
    The port (positional or C{port=}), interface and backlog arguments; an
    IPv6 interface means an IPv6 socket, as with C{tcp6:}.
    """
    endpoint = serverFromString(MemoryReactor(), description)
    assert (endpoint.port, endpoint.interface, endpoint.backlog) == (port, interface, backlog)
    assert endpoint.addressFamily == family


@pytest.mark.parametrize(
    "description, message",
    [
        ("reuseport:", "port='' is not a number from 0 to 65535"),
        ("reuseport:http", "port='http' is not a number"),
        ("reuseport:65536", "port='65536' is not a number from 0 to 65535"),
        ("reuseport:interface=127.0.0.1", "needs exactly one port number"),
        ("reuseport:1:port=2", "needs exactly one port number, e.g. reuseport:11112"),
        ("reuseport:1:2", "needs exactly one port number"),
        ("reuseport:1:backlog=0", "backlog='0' is not a number from 1"),
        ("reuseport:1:backlog=many", "backlog='many'"),
        ("reuseport:1:interface=localhost", "interface='localhost' is not an IPv4 or IPv6"),
        ("reuseport:1:reusePort=yes", "unknown argument 'reusePort'; known: port, interface, backlog"),
    ],
)
def test_parserErrors(description: str, message: str) -> None:
    """
    A malformed description is a L{ValueError} that says what is wrong.
    """
    with pytest.raises(ValueError, match=re.escape(message)):
        serverFromString(MemoryReactor(), description)


def test_listenOption() -> None:
    """
    C{--listen reuseport:...} is accepted, and a broken one is a usage
    error naming the problem. Parsing binds nothing.
    """
    from dicomecho.server.tap import Options

    options = Options()
    options.parseOptions(["--listen", "reuseport:11112:interface=0.0.0.0"])
    assert options["endpoints"] == ["reuseport:11112:interface=0.0.0.0"]
    with pytest.raises(UsageError, match="backlog='0'"):
        Options().parseOptions(["--listen", "reuseport:11112:backlog=0"])


def test_pluginModuleImportLight() -> None:
    """
    Importing the plugin module (as every getPlugins() call may) imports
    neither the reactor nor L{dicomecho.server.reuseport}.
    """
    code = (
        "import sys, twisted.plugins.dicomecho_reuseport as m; "
        "print(sorted(n for n in ('twisted.internet.reactor', 'dicomecho.server.reuseport') "
        "if n in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- the listening socket ------------------------------------------------------


class InspectingReactor(MemoryReactor):
    """
    A L{MemoryReactor} that records, for every adopted descriptor, what the
    socket looks like at that moment (the endpoint closes its descriptor
    right after).
    """

    def __init__(self) -> None:
        super().__init__()
        self.sockets: list[dict[str, Any]] = []

    def adoptStreamPort(self, fileno: int, addressFamily: Any, factory: Any) -> Any:
        with socket.socket(fileno=os.dup(fileno)) as adopted:
            self.sockets.append(
                {
                    "fileno": fileno,
                    "family": adopted.family,
                    "type": adopted.type,
                    "address": adopted.getsockname()[:2],
                    "reusePort": adopted.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT),
                    "reuseAddress": adopted.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR),
                    "listening": adopted.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
                    "blocking": os.get_blocking(fileno),
                }
            )
        return super().adoptStreamPort(fileno, addressFamily, factory)


def _reusePortHolder(host: str = "127.0.0.1") -> socket.socket:
    """
    A listening socket with C{SO_REUSEPORT} on a port the kernel picks.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, 0))
    holder.listen()
    return holder


def test_listenAdoptsReusePortSocket() -> None:
    """
    listen() binds a listening, non-blocking socket with C{SO_REUSEADDR}
    and C{SO_REUSEPORT}, hands it to C{adoptStreamPort} with the factory,
    closes its own descriptor, and fires at once with the port. Two such
    endpoints (and another C{SO_REUSEPORT} socket) share one port.
    """
    reactor = InspectingReactor()
    factory = Factory.forProtocol(Protocol)
    with _reusePortHolder() as holder:
        port = holder.getsockname()[1]
        results = []
        for _ in range(2):
            endpoint = serverFromString(reactor, f"reuseport:{port}:interface=127.0.0.1")
            endpoint.listen(factory).addBoth(results.append)
    assert [type(r).__name__ for r in results] == ["_FakePort", "_FakePort"]
    assert [(f, fac) for _, f, fac in reactor.adoptedPorts] == [(socket.AF_INET, factory)] * 2
    for seen in reactor.sockets:
        assert seen["family"] == socket.AF_INET and seen["type"] == socket.SOCK_STREAM
        assert seen["address"] == ("127.0.0.1", port)
        assert (seen["reusePort"], seen["reuseAddress"], seen["listening"]) == (1, 1, 1)
        assert seen["blocking"] is False
        with pytest.raises(OSError) as closed:
            os.fstat(seen["fileno"])
        assert closed.value.errno == errno.EBADF


def test_listenIPv6() -> None:
    """
    An IPv6 interface gives an C{AF_INET6} socket bound to it.
    """
    try:
        holder = _reusePortHolder("::1")
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    reactor = InspectingReactor()
    with holder:
        port = holder.getsockname()[1]
        endpoint = serverFromString(reactor, f"reuseport:{port}:interface=\\:\\:1")
        endpoint.listen(Factory.forProtocol(Protocol))
    assert reactor.adoptedPorts[0][1] == socket.AF_INET6
    assert reactor.sockets[0]["address"] == ("::1", port)
    assert reactor.sockets[0]["reusePort"] == 1


def test_listenBesidePlainListener() -> None:
    """
    A socket without C{SO_REUSEPORT} on the port (what C{tcp:} makes: only
    C{SO_REUSEADDR}) makes listen() fail at once with
    L{ReusePortListenError}, whose message names the address, the error
    and the likely cause; nothing is adopted.
    """
    reactor = InspectingReactor()
    with socket.socket() as plain:
        plain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        port = plain.getsockname()[1]
        endpoint = serverFromString(reactor, f"reuseport:{port}:interface=127.0.0.1")
        failures: list[Any] = []
        endpoint.listen(Factory.forProtocol(Protocol)).addErrback(failures.append)
    assert len(failures) == 1 and reactor.adoptedPorts == []
    error = failures[0].value
    assert isinstance(error, ReusePortListenError)
    assert error.socketError.errno == errno.EADDRINUSE
    message = str(error)
    assert message.startswith(f"Couldn't listen on 127.0.0.1:{port}: [Errno {errno.EADDRINUSE}]")
    assert "SO_REUSEPORT" in message and "tcp: listener" in message
    assert "\n" not in message


def test_listenErrorHints() -> None:
    """
    Permission errors get their own hint; other errors none.
    """
    denied = ReusePortListenError("", 104, PermissionError(errno.EACCES, "Permission denied"))
    assert str(denied).endswith("CAP_NET_BIND_SERVICE; or let systemd bind the port "
                                "(--listen systemd:domain=INET:name=...).")
    other = ReusePortListenError("::1", 1, OSError(errno.EADDRNOTAVAIL, "not here"))
    assert str(other) == "Couldn't listen on ::1:1: [Errno 99] not here."


# --- real processes -------------------------------------------------------------


TWISTD = [str(BIN / "twistd"), "--pidfile=", "-n", "dicomecho"]


@pytest.mark.peer
def test_twoProcessesShareAPort(servers: list[Server]) -> None:
    """
    Two C{twistd dicomecho --listen reuseport:PORT} processes both listen
    on the same port, both serve associations, and between them serve
    every one; both stop cleanly on SIGTERM.
    """
    requireEchoscu()
    port = freePort()
    description = f"reuseport:{port}:interface=127.0.0.1"
    for _ in range(2):
        servers.append(Server(TWISTD + ["-v", "--listen", description]))
    for server in servers:
        server.waitFor(rf"Listening on {re.escape(description)} \(127\.0\.0\.1:{port}\)")
    counts = countAccepted(servers, port)
    print(f"associations per process: {counts}")
    assert all(counts), counts
    for server in servers:
        assert server.stop() == 0, server.output()


@pytest.mark.peer
def test_plainListenerOnThePort() -> None:
    """
    With a plain listener (C{tcp:}'s socket options) on the port,
    C{reuseport:} fails to start: C{python -m dicomecho} exits 1 with one
    line naming the port and the cause, C{twistd} exits non-zero with that
    message.
    """
    with socket.socket() as plain:
        plain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        port = plain.getsockname()[1]
        description = f"reuseport:{port}:interface=127.0.0.1"
        direct = subprocess.run(
            [sys.executable, "-m", "dicomecho", "--listen", description],
            cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        twistd = subprocess.run(
            TWISTD + ["--listen", description],
            cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    expected = f"Couldn't listen on 127.0.0.1:{port}: [Errno {errno.EADDRINUSE}]"
    assert direct.returncode == 1
    lines = direct.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"E: cannot listen: {expected}"), lines
    assert "SO_REUSEPORT" in lines[0]
    assert twistd.returncode != 0
    assert expected in twistd.stdout + twistd.stderr
