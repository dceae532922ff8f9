"""
Tests for L{dicomecho.server.listen}: the descriptions the port, bind
address and C{--tls-*} options make, and the check that parses every
description without listening (the same rules through L{Options} are in
L{tests.test_tap}).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from twisted.internet.endpoints import TCP4ServerEndpoint, serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.python.usage import UsageError

from dicomecho.server.listen import (
    ParseOnlyReactor,
    TLSFiles,
    checkEndpoints,
    endpointDescriptions,
    portDescription,
    tlsDescription,
)
from tests.support.processes import ROOT

NO_TLS = TLSFiles()


@pytest.mark.parametrize(
    "port, bind, backlog, expected",
    [
        ("104", "", 128, "tcp:104:interface=0.0.0.0:backlog=128"),
        ("0", "127.0.0.1", 5, "tcp:0:interface=127.0.0.1:backlog=5"),
        ("104", "::", 128, "tcp6:104:interface=\\:\\::backlog=128"),
        ("104", "fe80::1%eth0", 1, "tcp6:104:interface=fe80\\:\\:1%eth0:backlog=1"),
        ("65535", "localhost", 50, "tcp:65535:interface=localhost:backlog=50"),
        ("unix:/tmp/d.sock", "", 128, "unix:/tmp/d.sock"),
    ],
)
def test_portDescription(port: str, bind: str, backlog: int, expected: str) -> None:
    """
    A port number is TCP on the bind address (IPv6 for an address with a
    colon, escaped), all IPv4 interfaces by default, with the backlog; a
    description passes through as it is.
    """
    assert portDescription(port, bind, backlog, NO_TLS) == expected


@pytest.mark.parametrize(
    "port, bind, tls, message",
    [
        ("65536", "", NO_TLS, "port 65536 is not in the range 0-65535"),
        ("tcp:0", "127.0.0.1", NO_TLS, "--bind-address goes with a port number"),
        ("tcp:0", "", TLSFiles(key="k.pem"), "--tls-key/--tls-cert/--tls-ca go with a port number"),
        ("2762", "", TLSFiles(key="k.pem"), "--tls-key and --tls-cert go together"),
        ("2762", "", TLSFiles(cert="c.pem"), "--tls-key and --tls-cert go together"),
        ("2762", "", TLSFiles("k.pem", "c.pem", clientCert="optional"), "--tls-client-cert needs --tls-ca"),
    ],
)
def test_portDescriptionErrors(port: str, bind: str, tls: TLSFiles, message: str) -> None:
    """
    Options that do not go together are usage errors saying why.
    """
    with pytest.raises(UsageError, match=re.escape(message)):
        portDescription(port, bind, 128, tls)


@pytest.mark.parametrize(
    "tls, expected",
    [
        (TLSFiles("k.pem", "c.pem"), "dicomtls:2762:interface=0.0.0.0:privateKey=k.pem:certKey=c.pem"),
        (
            TLSFiles("k.pem", "c.pem", "ca.pem"),
            "dicomtls:2762:interface=0.0.0.0:privateKey=k.pem:certKey=c.pem"
            ":caCerts=ca.pem:requireClientCert=yes",
        ),
        (
            TLSFiles("k.pem", "c.pem", "ca.pem", "required"),
            "dicomtls:2762:interface=0.0.0.0:privateKey=k.pem:certKey=c.pem"
            ":caCerts=ca.pem:requireClientCert=yes",
        ),
        (
            TLSFiles("k.pem", "c.pem", "ca.pem", "optional"),
            "dicomtls:2762:interface=0.0.0.0:privateKey=k.pem:certKey=c.pem"
            ":caCerts=ca.pem:requireClientCert=no",
        ),
        (
            TLSFiles("C:\\k.pem", "/a:b/c.pem"),
            "dicomtls:2762:interface=0.0.0.0:privateKey=C\\:\\\\k.pem:certKey=/a\\:b/c.pem",
        ),
    ],
)
def test_tlsDescription(tls: TLSFiles, expected: str) -> None:
    """
    The C{--tls-*} options become a C{dicomtls:} description, file names
    escaped; with a CA, client certificates are required unless
    C{--tls-client-cert optional}.
    """
    assert tlsDescription(tls, 2762, "0.0.0.0") == expected


def test_tlsOnThePortNumber() -> None:
    """
    With the C{--tls-*} options a port number is C{dicomtls:} on the bind
    address (all IPv4 interfaces by default), with the backlog.
    """
    tls = TLSFiles("k.pem", "c.pem")
    assert portDescription("2762", "", 9, tls) == (
        "dicomtls:2762:interface=0.0.0.0:privateKey=k.pem:certKey=c.pem:backlog=9"
    )
    assert portDescription("2762", "::1", 9, tls).startswith("dicomtls:2762:interface=\\:\\:1:")


def test_tlsFilesGiven() -> None:
    """
    L{TLSFiles.given} is whether any C{--tls-*} option was given.
    """
    assert not TLSFiles().given
    assert TLSFiles(key="k").given and TLSFiles(clientCert="optional").given


@pytest.mark.parametrize(
    "listen, portGiven, expected",
    [
        ([], False, ["tcp:11112:interface=0.0.0.0:backlog=128"]),
        (["tcp:0", "unix:/tmp/d.sock"], False, ["tcp:0", "unix:/tmp/d.sock"]),
        (["tcp:0"], True, ["tcp:0", "tcp:11112:interface=0.0.0.0:backlog=128"]),
    ],
)
def test_endpointDescriptions(listen: list[str], portGiven: bool, expected: list[str]) -> None:
    """
    C{--listen} descriptions, then the port's; C{--listen} without a port
    replaces the default port.
    """
    assert endpointDescriptions(listen, portGiven, "11112", "", 128, NO_TLS) == expected


def test_listenAloneChecksNoPortOptions() -> None:
    """
    When C{--listen} replaces the port, the port's options are not looked
    at (as before: only the port's description uses them).
    """
    assert endpointDescriptions(["tcp:0"], False, "99999", "::1", 1, TLSFiles(key="k")) == ["tcp:0"]


@pytest.mark.parametrize(
    "description",
    [
        "tcp:0",
        "tcp6:0:interface=\\:\\:1",
        "unix:/tmp/dicomecho-check.sock",
        "reuseport:11112:interface=127.0.0.1",
        "haproxy:tcp:0",
        "tcp:104:interface=0.0.0.0:backlog=128",
    ],
)
def test_checkEndpointsAccepts(description: str) -> None:
    """
    Good descriptions of every kind pass.
    """
    checkEndpoints([description])


@pytest.mark.parametrize(
    "description, message",
    [
        ("bogus:1", "Unknown endpoint type"),
        ("tcp:notaport", "invalid endpoint description 'tcp:notaport'"),
        ("reuseport:1:backlog=0", "backlog='0'"),
        ("systemd:domain=INET:index=0", "no such socket was inherited from systemd"),
        ("systemd:domain=INET:name=nothere", "LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID"),
    ],
)
def test_checkEndpointsRefuses(description: str, message: str) -> None:
    """
    A description that does not parse is a usage error naming it and what
    is wrong, never another exception.
    """
    with pytest.raises(UsageError, match=re.escape(message)):
        checkEndpoints(["tcp:0", description])


def test_parseOnlyReactor() -> None:
    """
    Endpoint parsers take the stand-in and keep it; listening with it
    fails, since it is no reactor.
    """
    reactor = ParseOnlyReactor()
    endpoint = serverFromString(reactor, "tcp:0")
    assert isinstance(endpoint, TCP4ServerEndpoint)
    with pytest.raises(AttributeError, match="listenTCP"):
        endpoint.listen(Factory.forProtocol(Protocol))


def test_importsNoReactor() -> None:
    """
    Importing the module and checking descriptions imports no reactor.
    """
    code = (
        "import sys\n"
        "from dicomecho.server.listen import checkEndpoints\n"
        "checkEndpoints(['tcp:0', 'haproxy:tcp:0', 'reuseport:1'])\n"
        "print('twisted.internet.reactor' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "False", out.stderr
