# -*- test-case-name: tests.test_serverservices -*-
"""
The services L{dicomecho.server.tap.makeService} builds, for twistd or
any L{MultiService}:

 - L{DICOMEchoService}: the parent; stopping it stops listening, then
   drains the factory;
 - L{DICOMListeningService}: one endpoint, which says where it listens
   and fails start-up if it cannot;
 - L{MetricsListeningService}: the Prometheus endpoint;
 - L{ThreadPoolService}: the threads that check user identities.

Importing this module does not import the reactor.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import TYPE_CHECKING, Callable, Union

from twisted.application.service import MultiService, Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from dicomecho.observability.events import EventName
from dicomecho.observability.logs import listeningAddress
from dicomecho.observability.levels import log
from dicomecho.security.access import peerAddress
from dicomecho.server.listen import TLS_PREFIXES

if TYPE_CHECKING:
    from dicomecho.server.factory import DICOMServerFactory

__all__ = [
    "DICOMEchoService",
    "DICOMListeningService",
    "MetricsListeningService",
    "ThreadPoolService",
]

#: What C{signal.getsignal} returns: a handler, C{SIG_DFL}, C{SIG_IGN} ...
SignalHandler = Union[Callable[[int, Union[FrameType, None]], object], int, None]

#: The signals on which the reactor stops, and its handler for each.
EXIT_SIGNALS = (("SIGINT", "sigInt"), ("SIGTERM", "sigTerm"), ("SIGBREAK", "sigBreak"))

#: Where the reactor's own signal handlers log "Received SIGTERM ...".
reactorLog = Logger(namespace="twisted.internet.base")


class DICOMListeningService(Service):
    """
    Listens on one endpoint, logs the address it is bound to, and fails
    start-up (rather than logging and carrying on) if it cannot listen.

    The "listening" event is emitted once the reactor runs, i.e. once its
    SIGINT/SIGTERM handlers are installed, so whoever waits for that line
    may signal the process straight away.

    This is Twisted's C{StreamServerEndpointService} made of public parts:
    that one fails start-up on a listen error, and gives its port, only
    through private attributes.

    @ivar port: the port, once listening.
    @ivar listening: the result of C{endpoint.listen} while the service
        runs (C{None} after a listen error).
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        description: str,
        reactor: IReactorCore,
    ) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.description = description
        self.reactor = reactor
        self.port: IListeningPort | None = None
        self.listening: Deferred[IListeningPort | None] | None = None

    def privilegedStartService(self) -> None:
        """
        Listen now (before twistd sheds privileges).

        @raise Exception: what the endpoint failed with, if it failed at
            once; a later failure is logged.
        """
        super().privilegedStartService()
        starting, early = True, []

        def failed(failure: Failure) -> None:
            if starting:
                early.append(failure)
            elif not failure.check(CancelledError):
                log.failure(
                    "Cannot listen on {description}", failure,
                    dicomEvent=EventName.LISTEN_FAILED.value, peer="", description=self.description,
                )

        self.listening = self.endpoint.listen(self.factory).addCallbacks(self.listened, failed)
        starting = False
        if early:
            self.listening = None
            early[0].raiseException()

    def startService(self) -> None:
        super().startService()
        if self.listening is None:
            self.privilegedStartService()

    def stopService(self) -> Deferred[None]:
        """
        Stop listening (or trying to).
        """
        super().stopService()
        listening, self.listening = self.listening, None
        if listening is None:
            return succeed(None)
        listening.cancel()
        return listening.addCallback(self.stopListening)

    def stopListening(self, port: IListeningPort | None) -> Deferred[None] | None:
        self.port = None
        return None if port is None else port.stopListening()

    def listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        self.reactor.callWhenRunning(self.logListening, port)
        return port

    def logListening(self, port: IListeningPort) -> None:
        address = port.getHost()
        host = str(getattr(address, "host", None) or getattr(address, "name", ""))
        portNumber = getattr(address, "port", None)
        self.announce(address, host, portNumber, listeningAddress(host, portNumber))

    def announce(self, address: IAddress, host: str, portNumber: int | None, where: str) -> None:
        """
        Say where this service listens (the C{listening} event), and warn
        if that is open to all.
        """
        log.info(
            "Listening on {description} ({where})",
            dicomEvent=EventName.LISTENING.value,
            peer="",
            description=self.description,
            address=repr(address),
            host=host,
            port=portNumber,
            where=where,
        )
        if portNumber is not None:
            self.warnIfOpen(host, where)

    def warnIfOpen(self, host: str, where: str) -> None:
        """
        Warn (at any level but quiet) when this port takes plain DICOM
        from beyond this host and no allow-list narrows who may use it.
        """
        address = peerAddress(host)
        if address is None or address.is_loopback:
            return
        if any(p in self.description for p in TLS_PREFIXES):
            return
        if not self.factory.policy.access.empty:
            return
        log.warn(
            "Listening on {where} without TLS or an allow-list: any host that "
            "can reach it may associate (see 'Securing dicomecho' in README.rst)",
            dicomEvent=EventName.INSECURE_LISTENER.value,
            dicomAlways=True,
            peer="",
            where=where,
            description=self.description,
        )


class MetricsListeningService(DICOMListeningService):
    """
    Listens for Prometheus scrapes; says where once the reactor runs.
    """

    #: What it serves, for its line, and that line's event.
    serving = "metrics"
    event = EventName.METRICS_LISTENING

    def announce(self, address: IAddress, host: str, portNumber: int | None, where: str) -> None:
        log.info(
            "Serving {serving} on {description} ({where})",
            dicomEvent=self.event.value,
            peer="",
            serving=self.serving,
            description=self.description,
            host=host,
            port=portNumber,
            where=where,
        )


class WebListeningService(MetricsListeningService):
    """
    Serves the live page (C{--web}); says where once the reactor runs, and
    warns when it is reachable beyond this host without TLS or credentials.
    """

    serving = "the live page"
    #: Whether visitors must give credentials (--web-credentials).
    authenticated = False

    event = EventName.WEB_LISTENING

    def announce(self, address: IAddress, host: str, portNumber: int | None, where: str) -> None:
        super().announce(address, host, portNumber, where)
        address = peerAddress(host)
        if address is None or address.is_loopback:
            return
        if self.authenticated and any(p in self.description for p in TLS_PREFIXES):
            return
        missing = " or ".join(
            what for what, present in (
                ("TLS", any(p in self.description for p in TLS_PREFIXES)),
                ("--web-credentials", self.authenticated),
            ) if not present
        )
        log.warn(
            "Serving the live page on {where} without {missing}: any host that "
            "can reach it may read who called (see 'The live page' in README.rst)",
            dicomEvent=EventName.INSECURE_LISTENER.value,
            dicomAlways=True,
            peer="",
            where=where,
            missing=missing,
            description=self.description,
        )


class ThreadPoolService(Service):
    """
    Runs a thread pool while the service runs.
    """

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()


class DICOMEchoService(MultiService):
    """
    The listening services of one factory. Stopping it stops listening at
    once, then drains the factory: established associations get the grace
    period to finish, the rest are aborted (L{DICOMServerFactory.drain}).

    A shutdown asked for by SIGTERM or SIGINT that completes in order is a
    success: while this service runs, those signals stop the reactor as
    its own handlers do, but without recording the signal, which twistd
    would re-raise once the reactor stops (the process would die by it
    instead of exiting 0).

    @ivar replaced: the reactor's signal handlers, by signal number, that
        ours stand in for.
    """

    def __init__(self, factory: DICOMServerFactory, grace: float, reactor: IReactorCore) -> None:
        super().__init__()
        self.factory = factory
        self.grace = grace
        self.reactor = reactor
        self.replaced: dict[int, SignalHandler] = {}

    def startService(self) -> None:
        # The reactor installs its handlers as it starts running: take them
        # before the listeners announce themselves ("Listening on" is when
        # a user or a test may send SIGTERM), so registered first.
        self.reactor.callWhenRunning(self.takeSignals)
        super().startService()

    def stopService(self) -> Deferred[None]:
        stopped = super().stopService()
        stopped.addCallback(lambda _: self.factory.drain(self.grace))
        stopped.addCallback(self.giveBackSignals)
        return stopped

    def takeSignals(self) -> None:
        """
        Put L{stopOnSignal} in place of the reactor's own handler of each
        exit signal it handles.
        """
        if not self.running:
            return
        for signalName, handlerName in EXIT_SIGNALS:
            number = getattr(signal, signalName, None)
            reactorHandler = getattr(self.reactor, handlerName, None)
            if number is None or reactorHandler is None:
                continue
            if signal.getsignal(number) == reactorHandler:
                self.replaced[number] = reactorHandler
                signal.signal(number, self.stopOnSignal)

    def stopOnSignal(self, number: int, frame: FrameType | None) -> None:
        """
        What the reactor's handler does (log, stop the reactor), except
        recording the signal.
        """
        reactorLog.info("Received {signal}, shutting down.", signal=signal.Signals(number).name)
        self.reactor.callFromThread(self.reactor.stop)

    def giveBackSignals(self, _: object = None) -> None:
        """
        Put the reactor's handlers back.
        """
        for number, handler in self.replaced.items():
            if signal.getsignal(number) == self.stopOnSignal:
                signal.signal(number, handler)
        self.replaced.clear()
