"""
Tests for L{dicomecho.server.services}: listening (and failing to) on a
L{MemoryReactor}, the events that say where, stopping; the signal
handling and the drain of L{DICOMEchoService}; L{ThreadPoolService}.
The services as L{makeService} builds them are tested in L{tests.test_tap}.
"""

from __future__ import annotations

import signal
from typing import Any, Iterator

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from dicomecho.security.access import AccessList, parseNetwork
from dicomecho.server.services import (
    DICOMEchoService,
    DICOMListeningService,
    MetricsListeningService,
    ThreadPoolService,
)


class PolicyFactory(Factory):
    """
    A factory with the C{policy.access} the start-up warning looks at, and
    a C{drain} that records its grace period.
    """

    protocol = Protocol

    def __init__(self, access: AccessList | None = None) -> None:
        self.policy = self
        self.access = access or AccessList.build([], [])
        self.drained: list[float] = []

    def drain(self, grace: float) -> Deferred[None]:
        self.drained.append(grace)
        return succeed(None)


class FailingEndpoint:
    """
    An endpoint whose C{listen} result is L{result}.
    """

    def __init__(self, result: Deferred[IListeningPort]) -> None:
        self.result = result

    def listen(self, factory: object) -> Deferred[IListeningPort]:
        return self.result


class Port:
    """
    A listening port at C{host}:104 that records being stopped.
    """

    def __init__(self, host: str) -> None:
        self.address = IPv6Address("TCP", host, 104) if ":" in host else IPv4Address("TCP", host, 104)
        self.stopped = False

    def getHost(self) -> IPv4Address | IPv6Address:
        return self.address

    def stopListening(self) -> None:
        self.stopped = True


class Endpoint:
    """
    An endpoint that listens on a L{Port} at C{host}, and counts listens.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self.ports: list[Port] = []

    def listen(self, factory: object) -> Deferred[Port]:
        self.ports.append(Port(self.host))
        return succeed(self.ports[-1])


def listening(description: str = "tcp:0", host: str = "127.0.0.1", **kw: Any) -> tuple[
    MemoryReactor, DICOMListeningService
]:
    reactor = MemoryReactor()
    return reactor, DICOMListeningService(Endpoint(host), PolicyFactory(**kw), description, reactor)


def test_listensAndAnnouncesWhenRunning(events: list[dict[str, Any]]) -> None:
    """
    privilegedStartService listens at once; the C{listening} event comes
    when the reactor runs.
    """
    reactor, service = listening()
    service.privilegedStartService()
    assert service.port is service.endpoint.ports[0]  # type: ignore[attr-defined]
    assert not [e for e in events if e.get("dicomEvent") == "listening"]
    service.startService()
    assert len(service.endpoint.ports) == 1  # type: ignore[attr-defined]
    reactor.run()
    (event,) = [e for e in events if e.get("dicomEvent") == "listening"]
    assert (event["description"], event["host"], event["port"]) == ("tcp:0", "127.0.0.1", 104)
    assert event["where"] == "127.0.0.1:104"


def test_startServiceListens() -> None:
    """
    Started without privilegedStartService (added to a running parent),
    the service listens then.
    """
    reactor, service = listening()
    service.startService()
    assert len(service.endpoint.ports) == 1 and service.running  # type: ignore[attr-defined]


def test_listenErrorFailsStart() -> None:
    """
    A listen error at start is raised, not just logged.
    """
    error = CannotListenError("127.0.0.1", 104, OSError(13, "Permission denied"))
    service = DICOMListeningService(FailingEndpoint(fail(error)), PolicyFactory(), "tcp:104", MemoryReactor())
    with pytest.raises(CannotListenError):
        service.privilegedStartService()
    assert service.listening is None and service.port is None


def test_laterListenErrorLogged(events: list[dict[str, Any]]) -> None:
    """
    An endpoint that fails after start-up gets its failure logged.
    """
    later: Deferred[IListeningPort] = Deferred()
    service = DICOMListeningService(FailingEndpoint(later), PolicyFactory(), "slow:1", MemoryReactor())
    service.privilegedStartService()
    later.errback(CannotListenError("", 1, OSError(98, "in use")))
    (event,) = [e for e in events if e.get("dicomEvent") == "listen-failed"]
    assert event["description"] == "slow:1"
    assert event["log_failure"].check(CannotListenError)
    assert service.stopService().called


def test_stopListens() -> None:
    """
    stopService stops listening; stopping a service never started is fine.
    """
    reactor, service = listening()
    service.privilegedStartService()
    service.startService()
    port = service.port
    stopped = service.stopService()
    assert stopped.called and service.port is None and not service.running
    assert port is not None and port.stopped  # type: ignore[attr-defined]
    assert listening()[1].stopService().called


@pytest.mark.parametrize(
    "host, description, networks, warned",
    [
        ("0.0.0.0", "tcp:0", [], True),
        ("::", "tcp6:0", [], True),
        ("127.0.0.1", "tcp:0", [], False),
        ("::1", "tcp6:0", [], False),
        ("0.0.0.0", "dicomtls:0", [], False),
        ("0.0.0.0", "haproxy:ssl:0", [], False),
        ("0.0.0.0", "tcp:0", ["10.0.0.0/8"], False),
    ],
)
def test_insecureListenerWarning(
    events: list[dict[str, Any]], host: str, description: str, networks: list[str], warned: bool
) -> None:
    """
    Plain DICOM on more than loopback, with no allow-list, is warned of.
    """
    access = AccessList.build([parseNetwork(n) for n in networks], [])
    reactor, service = listening(description, host, access=access)
    service.privilegedStartService()
    reactor.run()
    warnings = [e for e in events if e.get("dicomEvent") == "insecure-listener"]
    assert bool(warnings) is warned


def test_metricsAnnounce(events: list[dict[str, Any]]) -> None:
    """
    The metrics service says where it serves, and no DICOM warning.
    """
    reactor = MemoryReactor()
    MetricsListeningService(Endpoint("0.0.0.0"), PolicyFactory(), "tcp:9102", reactor).privilegedStartService()
    reactor.run()
    names = [e.get("dicomEvent") for e in events if e.get("dicomEvent")]
    assert names == ["metrics-listening"]


class FakePool:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")


def test_threadPoolService() -> None:
    """
    The pool runs while the service runs.
    """
    pool = FakePool()
    service = ThreadPoolService(pool)  # type: ignore[arg-type]
    service.startService()
    service.stopService()
    assert pool.calls == ["start", "stop"]


class SignalReactor(MemoryReactor):
    """
    A L{MemoryReactor} with the reactor's exit-signal handlers.
    """

    def __init__(self) -> None:
        super().__init__()
        self.signalled: list[int] = []
        self.fromThread: list[Any] = []

    def sigInt(self, number: int, frame: object = None) -> None:
        self.signalled.append(number)

    sigTerm = sigInt

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        self.fromThread.append(f)


@pytest.fixture
def savedSignals() -> Iterator[None]:
    saved = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def test_stopOnSignalInsteadOfTheReactor(savedSignals: None, events: list[dict[str, Any]]) -> None:
    """
    Once the reactor runs, SIGINT and SIGTERM stop it as its handlers do
    (same log line, reactor.stop from the signal), without the reactor
    recording the signal; stopping gives the handlers back.
    """
    reactor = SignalReactor()
    signal.signal(signal.SIGINT, reactor.sigInt)
    signal.signal(signal.SIGTERM, reactor.sigTerm)
    factory = PolicyFactory()
    top = DICOMEchoService(factory, 2.5, reactor)
    top.startService()
    assert signal.getsignal(signal.SIGTERM) == reactor.sigTerm  # not running yet
    reactor.run()
    assert signal.getsignal(signal.SIGTERM) == top.stopOnSignal
    assert signal.getsignal(signal.SIGINT) == top.stopOnSignal
    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # type: ignore[operator]
    assert reactor.signalled == [] and reactor.fromThread == [reactor.stop]
    (said,) = [e for e in events if e.get("log_namespace") == "twisted.internet.base"]
    assert said["log_format"].format(**said) == "Received SIGTERM, shutting down."
    assert top.stopService().called
    assert factory.drained == [2.5]
    assert signal.getsignal(signal.SIGTERM) == reactor.sigTerm
    assert signal.getsignal(signal.SIGINT) == reactor.sigInt


def test_otherHandlersLeftAlone(savedSignals: None) -> None:
    """
    A signal the reactor does not handle (ignored, or someone else's
    handler) is left as it is.
    """
    reactor = SignalReactor()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, reactor.sigTerm)
    top = DICOMEchoService(PolicyFactory(), 1, reactor)
    top.startService()
    reactor.run()
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert top.replaced == {signal.SIGTERM: reactor.sigTerm}
    top.stopService()
    assert signal.getsignal(signal.SIGTERM) == reactor.sigTerm and top.replaced == {}


def test_stoppedBeforeTheReactorRuns(savedSignals: None) -> None:
    """
    A service stopped before the reactor runs takes no signal.
    """
    reactor = SignalReactor()
    signal.signal(signal.SIGTERM, reactor.sigTerm)
    top = DICOMEchoService(PolicyFactory(), 1, reactor)
    top.startService()
    top.stopService()
    reactor.run()
    assert signal.getsignal(signal.SIGTERM) == reactor.sigTerm
