"""
systemd socket activation: the unit files in C{examples/systemd/}, and
dicomecho serving from an inherited socket via Twisted's C{systemd:}
endpoint.

The peer tests do what systemd does for C{dicomecho.socket} and
C{dicomecho@N.service}, with a launcher of a few lines (L{LAUNCHER}): the
test binds and listens, then starts each server with the socket as
descriptor 3, C{LISTEN_FDS=1}, C{LISTEN_FDNAMES=dicom} and C{LISTEN_PID}
set to the server's own PID. The launcher sets that last one, since only
after the fork is the PID known. It then C{exec}s the server, which keeps
that PID. Several servers started this way share the one socket, as the
instances of the template unit do.

The unit files are always checked by parsing them, here and under CI. When
C{systemd-analyze} is installed, it verifies them too.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.peers import requireEchoscu
from tests.support.processes import BIN, ROOT, TIMEOUT, Server, servers  # noqa: F401 (fixture)
from tests.support.reuse import ACCEPTING, countAccepted, runEchoes

UNITS = ROOT / "examples" / "systemd"
SOCKET_UNIT = UNITS / "dicomecho.socket"
SERVICE_UNIT = UNITS / "dicomecho@.service"

DESCRIPTION = "systemd:domain=INET:name=dicom"

#: Run as C{python -c LAUNCHER FD PROGRAM ARGS...}: make descriptor C{FD}
#: descriptor 3, set C{LISTEN_PID} to our PID, and exec the program.
LAUNCHER = """\
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def cleanEnvironment() -> dict[str, str]:
    """
    Our environment without any socket-activation variables.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def launch(listener: socket.socket, argv: list[str]) -> Server:
    """
    Start C{argv} the way systemd starts a service of a socket unit with
    C{FileDescriptorName=dicom}: C{listener} as descriptor 3, named
    C{dicom}.
    """
    env = cleanEnvironment()
    env.update(LISTEN_FDS="1", LISTEN_FDNAMES="dicom")
    fd = listener.fileno()
    return Server(
        [sys.executable, "-c", LAUNCHER, str(fd), *argv], env, inherit=False, passFds=[fd]
    )


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """
    The socket systemd would bind for C{dicomecho.socket}, on loopback.
    The test keeps it open all along, as systemd does.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield sock


def listeningPort(server: Server) -> int:
    """
    The port of the server's "Listening on systemd:..." line.
    """
    match = server.waitFor(rf"Listening on {re.escape(DESCRIPTION)} \(127\.0\.0\.1:(\d+)\)")
    return int(match.group(1))


# --- the unit files ------------------------------------------------------------


def readUnit(path: Path) -> configparser.ConfigParser:
    """
    A unit file as sections of settings (a later duplicate setting wins;
    none of ours repeats one).
    """
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";")
    )
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(path.read_text())
    return parser


def domainOf(listenStream: str) -> str:
    """
    The C{systemd:} endpoint domain that matches a C{ListenStream=} value:
    a path is UNIX, an IPv4 address INET; an IPv6 address and a bare port
    (an IPv6 socket, dual-stack by default) are INET6.
    """
    if listenStream.startswith(("/", "@")):
        return "UNIX"
    if listenStream.startswith("[") or listenStream.isdigit():
        return "INET6"
    return "INET"


def execStart(service: configparser.ConfigParser) -> list[str]:
    return shlex.split(service["Service"]["ExecStart"])


def test_unitFiles(tmp_path: Path) -> None:
    """
    The socket unit binds IPv4 port 11112 once and passes it on
    (C{Accept=no}) as C{dicom}. Traffic starts instance 1. Each instance of
    the template inherits that same socket (C{Sockets=}) and reads it with
    the matching C{systemd:} description. The service restarts on failure,
    runs unprivileged and hardened, and never forks or writes a PID file.

    When C{systemd-analyze} is installed, C{verify} must pass silently on
    copies in which the install path of twistd is ours. Without it the
    checks above stand alone, so this test is never skipped.
    """
    sock = readUnit(SOCKET_UNIT)
    service = readUnit(SERVICE_UNIT)

    listen = sock["Socket"]
    assert listen["ListenStream"] == "0.0.0.0:11112"
    assert listen["FileDescriptorName"] == "dicom"
    assert listen.get("Accept", "no") == "no"
    assert listen["Service"] == "dicomecho@1.service"
    assert listen.get("ReusePort", "no") == "no"
    assert sock["Install"]["WantedBy"] == "sockets.target"

    unit, run = service["Unit"], service["Service"]
    assert run["Sockets"] == "dicomecho.socket"
    assert "dicomecho.socket" in unit["Requires"].split()
    assert "dicomecho.socket" in unit["After"].split()
    argv = execStart(service)
    assert Path(argv[0]).name == "twistd" and Path(argv[0]).is_absolute()
    assert argv[1:] == ["--nodaemon", "--pidfile=", "dicomecho", "--listen", DESCRIPTION]
    fields = dict(part.split("=", 1) for part in DESCRIPTION.split(":")[1:])
    assert fields["name"] == listen["FileDescriptorName"]
    assert fields["domain"] == domainOf(listen["ListenStream"])
    assert run["Restart"] == "on-failure"
    for setting, value in {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "SystemCallFilter": "@system-service",
    }.items():
        assert run[setting] == value, setting
    assert set(run["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert service["Install"]["WantedBy"] == "multi-user.target"

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    shutil.copy(SOCKET_UNIT, tmp_path)
    text = SERVICE_UNIT.read_text().replace(argv[0], str(BIN / "twistd"))
    (tmp_path / SERVICE_UNIT.name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", SOCKET_UNIT.name, SERVICE_UNIT.name, "dicomecho@2.service"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if "dicomecho" in line
    ]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_execStartOptions() -> None:
    """
    twistd accepts the service's command line as it stands, dicomecho's
    options included, in the environment systemd gives it. (A subprocess:
    Twisted reads the LISTEN_* variables once, when
    L{twisted.internet.endpoints} is first imported.)
    """
    code = (
        "import os, sys\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        "from twisted.scripts.twistd import ServerOptions\n"
        "options = ServerOptions()\n"
        "options.parseOptions(sys.argv[1:])\n"
        "print(options['nodaemon'], repr(options['pidfile']), options.subCommand,\n"
        "      options.subOptions['endpoints'])\n"
    )
    env = cleanEnvironment()
    env.update(LISTEN_FDS="1", LISTEN_FDNAMES="dicom")
    result = subprocess.run(
        [sys.executable, "-c", code, *execStart(readUnit(SERVICE_UNIT))[1:]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == f"1 '' dicomecho ['{DESCRIPTION}']"


# --- serving from an inherited socket -----------------------------------------


@pytest.mark.peer
def test_inheritedSocket(listener: socket.socket, servers: list[Server]) -> None:
    """
    C{python -m dicomecho --listen systemd:domain=INET:name=dicom} serves
    on the socket it inherits: it reports the socket's address, and DCMTK
    echoscu's C-ECHO succeeds.
    """
    requireEchoscu()
    server = launch(listener, [sys.executable, "-m", "dicomecho", "-v", "--listen", DESCRIPTION])
    servers.append(server)
    assert listeningPort(server) == listener.getsockname()[1]
    runEchoes(listener.getsockname()[1], 1)
    server.waitFor("Association Released")
    assert server.count(ACCEPTING) == 1
    assert server.stop() == 0, server.output()


@pytest.mark.peer
def test_instancesShareOneSocket(listener: socket.socket, servers: list[Server]) -> None:
    """
    Two instances run from the template's C{ExecStart} (with our twistd,
    and C{-v}) inherit the same socket and both serve associations from
    it. When one stops, the socket stays open for the other, which goes on
    serving every association.
    """
    requireEchoscu()
    argv = execStart(readUnit(SERVICE_UNIT))
    argv = [str(BIN / "twistd"), *argv[1:], "-v"]
    port = listener.getsockname()[1]
    for _ in range(2):
        servers.append(launch(listener, argv))
    for server in servers:
        assert listeningPort(server) == port
    counts = countAccepted(servers, port)
    print(f"associations per instance: {counts}")
    assert all(counts), counts

    first, second = servers
    assert first.stop() == 0, first.output()
    assert countAccepted([second], port, batch=20, limit=20) == [20]
    assert second.stop() == 0, second.output()


@pytest.mark.peer
@pytest.mark.parametrize(
    "environment",
    [{}, {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "dicom", "LISTEN_PID": "1"}],
    ids=["unset", "other-pid"],
)
def test_noInheritedSocket(environment: dict[str, str]) -> None:
    """
    Without an inherited socket, whether no LISTEN_* variables are set or
    they name another process, C{--listen systemd:...} is a usage error
    (exit status 2) that says what is missing.
    """
    env = cleanEnvironment()
    env.update(environment)
    result = subprocess.run(
        [sys.executable, "-m", "dicomecho", "--listen", DESCRIPTION],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stderr
    assert "no such socket was inherited from systemd" in result.stderr
    assert "LISTEN_FDS" in result.stderr and "Traceback" not in result.stderr
