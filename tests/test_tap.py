"""
Tests for L{dicomecho.server.tap} and the twistd plugin: every option and its
echoscp alias, every usage error (the values of L{dicomecho.server.optionvalues}
among them), the services built, plugin discovery.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactor
from twisted.logger import LogLevel
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError

from dicomecho.observability.levels import logLevel, setLogLevel
from dicomecho.association.negotiation import TransferSyntaxPreference, transferSyntaxOrder
from dicomecho.server.factory import DICOMServerFactory
from dicomecho.server.commandline import translateAliases
from dicomecho.server.services import DICOMEchoService, DICOMListeningService, ThreadPoolService
from dicomecho.server.tap import IDENTITY_THREADS, Options, makeService


@pytest.fixture(autouse=True)
def restoreLogLevel() -> Any:
    previous = logLevel()
    yield
    setLogLevel(previous)


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_defaults() -> None:
    """
    With no options: echoscp's defaults (AE ECHOSCP, 30 s timeouts, max PDU
    16382, all IPv4 interfaces, errors only) on port 11112.
    """
    o = parse()
    assert o["ae-title"] == "ECHOSCP"
    assert (o["acse-timeout"], o["dimse-timeout"], o["network-timeout"]) == (30.0, 30.0, 30.0)
    assert o["max-pdu"] == 16382
    assert o["max-associations"] == 500
    assert o["max-associate-length"] == 262144
    assert (o["max-pending-per-source"], o["max-associations-per-source"]) == (64, 100)
    assert o["connection-rate-per-source"] == 5000
    assert o["max-pending"] == 1024
    assert o["transferSyntaxes"] is TransferSyntaxPreference.DEFAULT
    assert o["logLevelValue"] == LogLevel.error
    assert o["endpoints"] == ["tcp:11112:interface=0.0.0.0:backlog=128"]
    assert not o["require-called-aet"] and o["allow-calling-aet"] == []


@pytest.mark.parametrize(
    "short, long, value, key, expected",
    [
        ("-aet", "--ae-title", "MYAE", "ae-title", "MYAE"),
        ("-ta", "--acse-timeout", "5", "acse-timeout", 5.0),
        ("-td", "--dimse-timeout", "6.5", "dimse-timeout", 6.5),
        ("-tn", "--network-timeout", "0", "network-timeout", 0.0),
        ("-pdu", "--max-pdu", "0", "max-pdu", 0),
        ("-pdu", "--max-pdu", "4096", "max-pdu", 4096),
        ("-ll", "--log-level", "warning", "logLevelValue", LogLevel.warn),
        ("-ll", "--log-level", "warn", "logLevelValue", LogLevel.warn),
        ("-ll", "--log-level", "DEBUG", "logLevelValue", LogLevel.debug),
        ("-ll", "--log-level", "critical", "logLevelValue", LogLevel.critical),
    ],
)
def test_parametersAndAliases(short: str, long: str, value: str, key: str, expected: Any) -> None:
    """
    Each echoscp parameter works in its long form, in echoscp's single-dash
    spelling, and as -alias=value.
    """
    for args in ([long, value], [short, value], [f"{short}={value}"], [f"{long}={value}"]):
        assert parse(*args)[key] == expected, args


@pytest.mark.parametrize(
    "short, long, preference",
    [
        ("-x=", "--prefer-uncompr", TransferSyntaxPreference.PREFER_UNCOMPRESSED),
        ("-xe", "--prefer-little", TransferSyntaxPreference.PREFER_LITTLE),
        ("-xb", "--prefer-big", TransferSyntaxPreference.PREFER_BIG),
        ("-xi", "--implicit", TransferSyntaxPreference.IMPLICIT_ONLY),
    ],
)
def test_preferenceFlags(short: str, long: str, preference: TransferSyntaxPreference) -> None:
    """
    The transfer syntax flags select echoscp's preference orders, by
    either spelling.
    """
    assert parse(short)["transferSyntaxes"] is preference
    assert parse(long)["transferSyntaxes"] is preference


@pytest.mark.parametrize(
    "args, level",
    [
        (["-q"], None),
        (["-v"], LogLevel.info),
        (["-d"], LogLevel.debug),
        (["--verbose"], LogLevel.info),
        (["--verb"], LogLevel.info),
        (["-v", "-ll", "error"], LogLevel.error),
        (["-q", "-ll", "debug"], None),
    ],
)
def test_verbosity(args: list[str], level: LogLevel | None) -> None:
    """
    -q prints nothing, -v info, -d debug, -ll overrides except under -q;
    long options may be abbreviated as argparse allows.
    """
    assert parse(*args)["logLevelValue"] == level


@pytest.mark.parametrize(
    "args, message",
    [
        (["-v", "-d"], "argument -d/--debug: not allowed with argument -v/--verbose"),
        (["-q", "-v"], "not allowed with"),
        (["-xe", "-xb"], "argument -xb/--prefer-big: not allowed with argument -xe/--prefer-little"),
        (["-x=", "-xi"], "not allowed with"),
        (["-aet", ""], "empty"),
        (["-aet", "    "], "empty"),
        (["-aet", "A" * 17], "longer than 16"),
        (["-aet", "A\\B"], "backslash"),
        (["-aet", "A\x01B"], "printable"),
        (["-aet", "ÉCHO"], "printable"),
        (["--allow-calling-aet", "A\\B"], "backslash"),
        (["-ta", "-1"], ">= 0"),
        (["-ta", "soon"], "could not convert"),
        (["-tn", "nan"], ">= 0"),
        (["-pdu", "-1"], "unlimited"),
        (["-pdu", "7"], "unlimited"),
        (["-pdu", str(2**32)], "unlimited"),
        (["-pdu", "big"], "invalid literal"),
        (["-ll", "loud"], "is not one of"),
        (["--max-associations", "0"], ">= 1"),
        (["--max-associate-length", "1023"], "not a size from 1024 to 16777216"),
        (["--max-associate-length", str(16 * 1024 * 1024 + 1)], "not a size from 1024"),
        (["--max-associate-length", "big"], "invalid literal"),
        (["--max-pending-per-source", "-1"], ">= 0 (0: no limit)"),
        (["--max-associations-per-source", "many"], "invalid literal"),
        (["--connection-rate-per-source", "nan"], "not a rate >= 0"),
        (["70000"], "0-65535"),
        (["--port", "bogus:1"], "Unknown endpoint type"),
        (["--port", "tcp:notaport"], "invalid endpoint"),
        (["--listen", "systemd:domain=INET:index=0"], "inherited from systemd"),
        (["--port", "tcp:0", "-ba", "127.0.0.1"], "--bind-address goes with a port number"),
        (["--no-such-option"], "no-such-option"),
        (["1", "2"], "unrecognized arguments: 2"),
    ],
)
def test_usageErrors(args: list[str], message: str) -> None:
    """
    Bad values and conflicting options are usage errors with a message
    that says what is wrong, never another exception.
    """
    with pytest.raises(UsageError, match=re.escape(message)):
        parse(*args)


@pytest.mark.parametrize(
    "args, endpoints",
    [
        (["104"], ["tcp:104:interface=0.0.0.0:backlog=128"]),
        (["--port", "0"], ["tcp:0:interface=0.0.0.0:backlog=128"]),
        (["-ba", "::", "104"], ["tcp6:104:interface=\\:\\::backlog=128"]),
        (["-ba", "127.0.0.1", "104"], ["tcp:104:interface=127.0.0.1:backlog=128"]),
        (["-ba", "localhost", "104"], ["tcp:104:interface=localhost:backlog=128"]),
        (["--port", "tcp6:0:interface=\\:\\:1"], ["tcp6:0:interface=\\:\\:1"]),
        (["--listen", "tcp:0", "--listen", "unix:/tmp/d.sock"], ["tcp:0", "unix:/tmp/d.sock"]),
        (["--listen", "tcp:0", "--port", "5"], ["tcp:0", "tcp:5:interface=0.0.0.0:backlog=128"]),
        (["--backlog", "1024", "104"], ["tcp:104:interface=0.0.0.0:backlog=1024"]),
    ],
)
def test_endpoints(args: list[str], endpoints: list[str]) -> None:
    """
    A port number becomes a TCP endpoint on the bind address (IPv6 when the
    address has a colon); descriptions pass through; --listen repeats and
    replaces the default port unless --port is also given.
    """
    assert parse(*args)["endpoints"] == endpoints


def test_translateAliasesStopsAtDoubleDash() -> None:
    """
    Aliases after C{--} are arguments, not options.
    """
    assert translateAliases(["-aet", "X", "--", "-xe"]) == ["--ae-title", "X", "--", "-xe"]


def test_makeService() -> None:
    """
    makeService returns one listening service per endpoint, all sharing one
    factory configured from the options, and sets the log level.
    """
    reactor = MemoryReactor()
    options = parse(
        "-aet", "PACS", "-ta", "3", "-td", "4", "-tn", "5", "-pdu", "0", "-xi", "-d",
        "--require-called-aet", "--allow-calling-aet", "MOD1", "--max-associations", "7",
        "--max-associate-length", "131072", "--listen", "tcp:0", "--listen", "tcp:1",
        "--max-pending-per-source", "8", "--max-associations-per-source", "0",
        "--connection-rate-per-source", "2.5", "--max-pending", "99",
    )
    top = makeService(options, reactor)
    services = list(top)
    assert len(services) == 2
    assert all(isinstance(s, DICOMListeningService) for s in services)
    factory = services[0].factory
    assert services[1].factory is factory
    assert isinstance(factory, DICOMServerFactory)
    policy = factory.policy
    assert policy.aeTitle == "PACS" and policy.requireCalledAETitle
    assert policy.allowedCallingAETitles == frozenset({"MOD1"})
    assert policy.maxPDULength == 0
    assert policy.transferSyntaxes == transferSyntaxOrder(TransferSyntaxPreference.IMPLICIT_ONLY)
    assert (factory.acseTimeout, factory.dimseTimeout, factory.networkTimeout) == (3, 4, 5)
    assert factory.maxAssociations == 7
    assert factory.maxAssociateLength == 131072
    limits = factory.sources.policy
    assert (limits.maxPending, limits.maxAssociations) == (8, 0)
    assert (limits.connectionRate, limits.connectionBurst) == (2.5, 5)
    assert factory.pending.limit == 99
    assert factory.clock is reactor
    assert logLevel() == LogLevel.debug
    top.privilegedStartService()
    top.startService()
    assert [port[0] for port in reactor.tcpServers] == [0, 1]
    top.stopService()


def test_makeServiceParentAndIdentityThreads(tmp_path: Any) -> None:
    """
    The parent is a L{DICOMEchoService} with the shutdown grace and the
    reactor; with user identities checked, a L{ThreadPoolService} of
    IDENTITY_THREADS threads comes first, then the listening services.
    """
    users = tmp_path / "users.txt"
    done = subprocess.run(
        [sys.executable, "-m", "dicomecho.passwd", "--no-passcode", str(users), "modality"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    reactor = MemoryReactor()
    options = parse(
        "--shutdown-grace", "7", "--user-identity", "required", "--credentials", str(users),
        "--listen", "tcp:0",
    )
    top = makeService(options, reactor)
    assert isinstance(top, DICOMEchoService)
    assert (top.grace, top.reactor) == (7.0, reactor)
    threads, listener = list(top)
    assert isinstance(threads, ThreadPoolService) and isinstance(listener, DICOMListeningService)
    assert (threads.pool.max, threads.pool.name) == (IDENTITY_THREADS, "dicomecho-identity")
    assert listener.factory is top.factory
    plain = makeService(parse("--listen", "tcp:0"), reactor)
    assert not any(isinstance(s, ThreadPoolService) for s in plain)


def test_pluginDiscovered() -> None:
    """
    twisted.plugin finds the dicomecho service maker, pointing at
    dicomecho.server.tap.
    """
    makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
    assert makers["dicomecho"].module == "dicomecho.server.tap"
    assert makers["dicomecho"].options is Options


def test_pluginImportsNothingHeavy() -> None:
    """
    Importing the plugin module (as twistd and trial do for every plugin)
    imports neither the reactor nor dicomecho.
    """
    code = (
        "import sys, importlib.util, pathlib\n"
        "import twisted.plugins\n"
        "import twisted.plugins.dicomecho_plugin\n"
        "bad = [m for m in ('twisted.internet.reactor', 'dicomecho', 'pydicom') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_readmeDocumentsEveryOption() -> None:
    """
    README.rst's options table names every long option Options accepts, so
    the documentation cannot fall behind the code.
    """
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.rst").read_text()
    options = Options()
    names = set(options.longOpt) - {"help"}
    missing = sorted(n.rstrip("=") for n in names if f"``--{n.rstrip('=')}" not in readme)
    assert missing == []
