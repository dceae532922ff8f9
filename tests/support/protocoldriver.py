"""
The system under fuzz: a protocol on an in-memory transport with a bounded
clock, the checks on what it sends and logs, and the hypothesis state
machine that drives it (used by tests/test_fuzz_protocol.py and fuzz/).
"""

from __future__ import annotations

import functools
import json
import traceback
from typing import Any, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure

from dicomecho.association.commandset import CommandSetError, decodeCommandSet, tag
from dicomecho.wire.errors import RemoteProtocolError
from dicomecho.association.transitions import State
from dicomecho.wire.framer import HEADER_LENGTH, UNLIMITED_PDATA_CEILING, PDUFramer
from dicomecho.observability.logs import jsonRecord, renderEcho
from dicomecho.observability.levels import logLevel, setLogLevel
from dicomecho.wire.pdu import Abort, AssociateAC, AssociateRJ, PDataTF, ReleaseRP, decodePDU
from dicomecho.server.factory import DICOMServerFactory
from dicomecho.services.verification import VerificationResponder

from tests.support.peerbytes import STATS, addresses, budgets, chunkSizes, dataSegments, delays, graces, nextCallExtras, openBudgets, openingSegments, openings, segments

# --- the system under test --------------------------------------------------------


@st.composite
def configs(draw: Any) -> dict[str, Any]:
    """
    A factory's options: small timeouts, a small association limit, small
    caps, sometimes a responder that answers through Deferreds.
    """
    acse, dimse, network = draw(st.sampled_from([(5, 5, 5)] * 5 + [(1, 2, 3), (3, 1, 2), (0, 0, 0)]))
    return dict(
        acseTimeout=acse,
        dimseTimeout=dimse,
        networkTimeout=network,
        maxAssociations=draw(st.sampled_from([2, 2, 1])),
        maxPDULength=draw(st.sampled_from([16382] * 5 + [256, 0, 8])),
        maxAssociateLength=draw(st.sampled_from([1024 * 1024, 4096, 512])),
        requireCalledAETitle=draw(st.booleans()),
        allowedCallingAETitles=draw(st.sampled_from([(), (), ("SCU", "ALLOWED")])),
        deferredResponses=draw(st.booleans()),
        # Where the clock starts: time.time()-like epochs and values whose
        # sums with the timeouts round, as real clocks' values do.
        clockStart=draw(st.sampled_from([0, 3.2, 2.3, 12.703278851713621, 1_700_000_000.123456])),
    )


class BoundedClock(Clock):
    """
    A C{Clock} that fails instead of hanging when something keeps
    scheduling itself at the instant being run: C{Clock.advance} runs
    every call due at or before the new time, so a call that re-arms with
    a delay too small to move a float time (or with 0) would loop forever.
    """

    LIMIT = 1000

    def __init__(self) -> None:
        super().__init__()
        self.sameInstant = 0

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        now = self.seconds()
        if now + delay <= now:
            self.sameInstant += 1
            assert self.sameInstant <= self.LIMIT, (
                f"{getattr(f, '__qualname__', f)} re-armed itself {self.LIMIT} times at "
                f"t={now!r} with delay {delay!r}: Clock.advance would never return"
            )
        return super().callLater(delay, f, *args, **kw)

    def advance(self, amount: float) -> None:
        self.sameInstant = 0
        super().advance(amount)


class DeferredVerification(VerificationResponder):
    """
    The Verification responder, answering requests with an even message
    ID through a L{Deferred} the driver fires later (or fails).
    """

    def __init__(self, pending: list[Deferred[Any]]) -> None:
        self.pending = pending

    def handle(self, request: Any, context: Any) -> Any:
        response = super().handle(request, context)
        if request.messageID is not None and request.messageID % 2 == 0:
            d: Deferred[Any] = Deferred()
            d.addCallback(lambda _: response)
            self.pending.append(d)
            return d
        return response


class ResponderCrash(Exception):
    """
    A failure injected into a responder's Deferred.
    """


VALID_RJ = {(1, 2, 2), (1, 1, 2), (1, 1, 3), (1, 1, 7), (2, 3, 2)}
PROVIDER_ABORT_REASONS = {0, 1, 2, 4, 5, 6}
COMMAND_FIELD = tag("CommandField")
RESPONDED_TO = tag("MessageIDBeingRespondedTo")


class ServerOutput:
    """
    Decodes everything one protocol wrote and checks it is whole, valid
    PDUs in an order PS3.8 allows an acceptor: AC, RJ or A-ABORT first;
    P-DATA-TF (responses, on accepted contexts, within the peer's maximum
    length) only after an AC; after an RJ, RP or A-ABORT only A-ABORT.
    """

    def __init__(self) -> None:
        self.framer = PDUFramer(maxAssociateLength=0xFFFFFFFF, maxPDataLength=0)
        self.phase = "start"
        self.accepted: set[int] = set()
        self.partial: dict[int, bytes] = {}
        self.pdus = 0
        #: The server is draining: it accepts no new association.
        self.draining = False

    def feed(self, data: bytes, peerMax: int | None) -> None:
        self.framer.receiveData(data)
        while True:
            try:
                frame = self.framer.nextFrame()
                if frame is None:
                    break
                pdu = decodePDU(*frame)
            except RemoteProtocolError as error:
                raise AssertionError(f"the server wrote an invalid PDU: {error}") from error
            self.pdus += 1
            self._check(pdu, len(frame.body), peerMax)
        assert self.framer.bufferedLength == 0, "the server wrote part of a PDU"

    def _check(self, pdu: Any, length: int, peerMax: int | None) -> None:
        name = type(pdu).__name__
        if isinstance(pdu, Abort):
            assert (pdu.source, pdu.reason) == (0, 0) or (
                pdu.source == 2 and pdu.reason in PROVIDER_ABORT_REASONS
            ), f"A-ABORT with source {pdu.source}, reason {pdu.reason}"
            self.phase = "ended"
        elif self.phase == "start" and isinstance(pdu, AssociateAC):
            assert not self.draining, "an association accepted while draining"
            self.phase = "associated"
            self.accepted = {c.contextID for c in pdu.presentationContexts if c.result == 0}
        elif self.phase == "start" and isinstance(pdu, AssociateRJ):
            assert (pdu.result, pdu.source, pdu.reason) in VALID_RJ, f"unexpected {pdu}"
            self.phase = "ended"
        elif self.phase == "associated" and isinstance(pdu, ReleaseRP):
            self.phase = "ended"
        elif self.phase == "associated" and isinstance(pdu, PDataTF):
            if peerMax:
                assert length <= peerMax, f"P-DATA-TF of {length} bytes above the peer's {peerMax}"
            for pdv in pdu.pdvs:
                assert pdv.contextID in self.accepted, f"response on context {pdv.contextID}"
                assert pdv.isCommand, "a data-set PDV in a response"
                assert len(pdv.data) % 2 == 0, "an odd-length fragment"
                data = self.partial.pop(pdv.contextID, b"") + pdv.data
                if pdv.isLastFragment:
                    rsp = decodeCommandSet(data)
                    assert rsp[COMMAND_FIELD] & 0x8000, "the server sent a request"  # type: ignore[operator]
                    assert RESPONDED_TO in rsp
                else:
                    self.partial[pdv.contextID] = data
        else:
            raise AssertionError(f"the server sent {name} in phase {self.phase}")


class LogChecker:
    """
    A log observer: renders every event as the console (with the debug
    blocks) and the JSON observers would, and records any exception, any
    rendered line that is not a single printable line, and any failure
    logged other than an injected responder crash.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            namespace = event.get("log_namespace") or ""
            if namespace.startswith("dicomecho"):
                for line in renderEcho(event):
                    if not line.isprintable():
                        self.errors.append(f"log line not a single printable line: {line!r}")
                record = jsonRecord(event)
                if record is not None:
                    json.dumps(record, allow_nan=False)
            failure = event.get("log_failure")
            if failure is not None and not (
                event.get("dicomEvent") == "responder-failed" and failure.check(ResponderCrash)
            ):
                self.errors.append("a failure was logged:\n" + failure.getTraceback())
        except Exception:
            self.errors.append("rendering a log event raised:\n" + traceback.format_exc())


class ReactorTransport(StringTransport):
    """
    A C{StringTransport} as lenient as Twisted's TCP transport about
    producers: unregistering with none registered, pausing or resuming
    after the connection closed, registering after it was lost (the
    producer is stopped at once) are not errors.
    """

    lost = False
    #: Bytes the send buffer takes before it is full; C{None}: never full.
    writeBudget: int | None = None
    producerPaused = False

    def write(self, data: bytes) -> None:
        """
        Like a real transport, pause a streaming producer from within the
        write that fills the send buffer.
        """
        super().write(data)
        if self.writeBudget is not None and self.producer is not None and self.streaming:
            self.writeBudget -= len(data)
            if self.writeBudget < 0:
                self.writeBudget = None
                self.producerPaused = True
                self.producer.pauseProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError("Cannot register two producers")
        if self.lost:
            producer.stopProducing()
        else:
            super().registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None

    def pauseProducing(self) -> None:
        if self.producerState != "stopped":
            self.producerState = "paused"

    def resumeProducing(self) -> None:
        if self.producerState != "stopped":
            self.producerState = "producing"


class Peer:
    """
    One connection: the protocol, its transport and what the peer has
    queued but not yet delivered.
    """

    def __init__(self, protocol: Any, transport: ReactorTransport, lazyClose: bool) -> None:
        self.protocol = protocol
        self.transport = transport
        self.lazyClose = lazyClose
        self.pending = bytearray()
        self.lost = False
        self.lastChunk = 0
        self.output = ServerOutput()

    @property
    def canReceive(self) -> bool:
        # A reactor stops reading a transport that is closing, and does not
        # read one paused (by the protocol, for backpressure).
        t = self.transport
        return not self.lost and not t.disconnecting and t.producerState == "producing"


AWAITING_REQUEST = frozenset({State.STA2})
ASSOCIATED = frozenset({State.STA6, State.STA8})


class ProtocolDriver:
    """
    Drives one factory's protocols the way a reactor would; see the module
    docstring. Every public method is one fuzzing step and leaves the
    invariants checkable with L{check}; L{finish} runs the clock until
    everything is closed and checks the end state.
    """

    MAX_LIVE = 3
    MAX_OPENED = 5

    def __init__(self, config: dict[str, Any]) -> None:
        config = dict(config)
        self.clock = BoundedClock()
        self.clock.advance(config.pop("clockStart", 0))
        self.responses: list[Deferred[Any]] = []
        responders = [DeferredVerification(self.responses)] if config.pop("deferredResponses") else None
        self.factory = DICOMServerFactory(
            "ECHOSCP", clock=self.clock, responders=responders, **config
        )
        self.peers: list[Peer] = []
        self.drained: Deferred[None] | None = None
        self.logs = LogChecker()
        self.previousLevel = logLevel()
        self.finished = False
        setLogLevel(LogLevel.debug)
        globalLogPublisher.addObserver(self.logs)

    # --- steps --------------------------------------------------------------

    def live(self) -> list[Peer]:
        return [p for p in self.peers if not p.lost]

    def pick(self, index: int) -> Peer | None:
        live = self.live()
        return live[index % len(live)] if live else None

    def pickIn(self, index: int, states: frozenset[State]) -> int | None:
        """
        The index (for L{pick}) of a live protocol in one of C{states}.
        """
        live = self.live()
        candidates = [i for i, p in enumerate(live) if p.protocol.state in states and p.canReceive]
        return candidates[index % len(candidates)] if candidates else None

    def open(
        self,
        address: Any,
        lazyClose: bool,
        opening: bytes | None = None,
        sizes: list[int] = [1 << 20],
        budget: int | None = None,
    ) -> None:
        """
        A peer connects, and perhaps sends C{opening} at once. If
        C{budget} is not C{None}, the peer does not read: the send buffer
        is full after that many bytes (see L{backpressure}).
        """
        if len(self.live()) >= self.MAX_LIVE or len(self.peers) >= self.MAX_OPENED:
            return
        transport = ReactorTransport(peerAddress=address)
        transport.writeBudget = budget
        protocol = self.factory.buildProtocol(address)
        peer = Peer(protocol, transport, lazyClose)
        peer.output.draining = self.drained is not None
        self.peers.append(peer)
        protocol.makeConnection(transport)
        self.settle()
        if opening is not None:
            self.send(len(self.live()) - 1, opening, sizes)

    def queue(self, index: int, data: bytes) -> None:
        peer = self.pick(index)
        if peer is not None:
            peer.pending += data

    def deliver(self, index: int, sizes: list[int], everything: bool = False) -> None:
        peer = self.pick(index)
        if peer is None:
            return
        chunks = 0
        while peer.pending and peer.canReceive and chunks < 64:
            size = sizes[chunks % len(sizes)] if everything or chunks < len(sizes) else 0
            if not size:
                break
            chunk = bytes(peer.pending[:size])
            del peer.pending[:size]
            chunks += 1
            peer.lastChunk = len(chunk)
            peer.protocol.dataReceived(chunk)
            self._checkFramer(peer)
            self.settle()
        if everything and peer.pending and peer.canReceive:
            chunk = bytes(peer.pending)
            peer.pending.clear()
            peer.lastChunk = len(chunk)
            peer.protocol.dataReceived(chunk)
            self._checkFramer(peer)
            self.settle()

    def send(self, index: int, data: bytes, sizes: list[int]) -> None:
        self.queue(index, data)
        self.deliver(index, sizes, everything=True)

    def sendFirst(self, index: int, data: bytes, sizes: list[int]) -> None:
        """
        L{send} to a connection still waiting for its A-ASSOCIATE-RQ.
        """
        found = self.pickIn(index, AWAITING_REQUEST)
        if found is not None:
            self.send(found, data, sizes)

    def sendAssociated(self, index: int, data: bytes, sizes: list[int]) -> None:
        """
        L{send} to an established association.
        """
        found = self.pickIn(index, ASSOCIATED)
        if found is not None:
            self.send(found, data, sizes)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.settle()

    def advanceToNextCall(self, extra: float) -> None:
        """
        Advance exactly to the next scheduled call (plus C{extra}), where
        timer edge cases live.
        """
        calls = self.clock.getDelayedCalls()
        if calls:
            due = min(call.getTime() for call in calls)
            self.clock.advance(max(due - self.clock.seconds(), 0) + extra)
            self.settle()

    def peerClose(self, index: int) -> None:
        peer = self.pick(index)
        if peer is not None:
            self._lose(peer)
            self.settle()

    def completeClose(self, index: int) -> None:
        peer = self.pick(index)
        if peer is not None and peer.transport.disconnecting:
            self._lose(peer)
            self.settle()

    def backpressure(self, index: int, budget: int) -> None:
        """
        The peer stops reading: the send buffer will be full after
        C{budget} more bytes, and the write that fills it pauses a
        registered streaming producer. If it is paused already, the buffer
        drains instead and the producer is resumed, as a reactor does
        (no-ops while the protocol registers no producer).
        """
        peer = self.pick(index)
        if peer is None:
            return
        t = peer.transport
        if t.producerPaused:
            t.producerPaused = False
            if t.producer is not None:
                t.producer.resumeProducing()
        else:
            t.writeBudget = budget
        self.settle()

    def drain(self, grace: float | None) -> None:
        """
        Shut the server down gracefully (when the factory can), unless
        C{grace} is C{None}.
        """
        drain = getattr(self.factory, "drain", None)
        if grace is not None and drain is not None and self.drained is None:
            self.drained = drain(grace)
            for peer in self.peers:
                peer.output.draining = True
            self.settle()

    def fireResponses(self, count: int, outcome: str) -> None:
        for _ in range(min(count, len(self.responses))):
            d = self.responses.pop(0)
            if outcome == "ok":
                d.callback(None)
            elif outcome == "commandSetError":
                d.errback(Failure(CommandSetError("injected")))
            else:
                d.errback(Failure(ResponderCrash("injected")))
            result = getattr(d, "result", None)
            if isinstance(result, Failure):
                d.addErrback(lambda _: None)
                raise AssertionError(
                    "a responder's Deferred ended in an unhandled failure:\n" + result.getTraceback()
                )
        self.settle()

    # --- the reactor's part -------------------------------------------------------

    def _lose(self, peer: Peer) -> None:
        """
        The connection is gone: stop a registered producer and forget it,
        then tell the protocol, as Twisted's TCP transport does.
        """
        self._readOutput(peer)
        t = peer.transport
        t.connected = False
        t.disconnecting = True
        t.lost = True
        peer.lost = True
        producer = t.producer
        if producer is not None:
            producer.stopProducing()
            t.producer = None
        peer.protocol.connectionLost(Failure(ConnectionDone()))

    def settle(self, force: bool = False) -> None:
        """
        Read what every protocol wrote, and complete the closes a reactor
        would complete now (all of them if C{force}).
        """
        changed = True
        while changed:
            changed = False
            for peer in self.peers:
                self._readOutput(peer)
                if not peer.lost and peer.transport.disconnecting and (force or not peer.lazyClose):
                    self._lose(peer)
                    changed = True

    def _readOutput(self, peer: Peer) -> None:
        data = peer.transport.value()
        if peer.lost:
            assert data == b"", f"the server wrote {data[:40]!r} during or after connectionLost"
            return
        peer.transport.clear()
        transfer = peer.protocol.association.transfer
        peerMax = (transfer.peerMaxPDULength or None) if transfer is not None else None
        peer.output.feed(data, peerMax)

    # --- invariants -----------------------------------------------------------------

    def _checkFramer(self, peer: Peer) -> None:
        framer = peer.protocol.association.framer
        config = self.factory
        pdataCap = config.policy.maxPDULength or UNLIMITED_PDATA_CEILING
        cap = max(config.maxAssociateLength, pdataCap)
        assert framer.bufferedLength <= HEADER_LENGTH + cap + peer.lastChunk, (
            f"the framer holds {framer.bufferedLength} bytes (cap {cap}, last read {peer.lastChunk})"
        )

    def check(self) -> None:
        assert not self.logs.errors, self.logs.errors[0]
        associated = 0
        for peer in self.peers:
            state = peer.protocol.state
            if peer.lost:
                assert state is State.STA1, f"{state} after connectionLost"
            elif state in (State.STA6, State.STA8):
                associated += 1
            self._checkFramer(peer)
        active = self.factory.activeAssociations
        assert active == associated, f"activeAssociations {active}, {associated} associated"
        connections = getattr(self.factory, "openConnections", None)
        if connections is not None:
            live = len(self.live())
            assert connections == live, f"openConnections {connections}, {live} open"
        assert 0 <= active <= self.factory.maxAssociations

    def finish(self) -> None:
        """
        Answer every pending response, run the clock until every connection
        has closed, and check nothing is left: no DelayedCall, no
        association, every protocol in Sta1.
        """
        self.finished = True
        try:
            self.fireResponses(len(self.responses), "ok")
            for _ in range(10):
                self.settle(force=True)
                if not self.live():
                    break
                self.clock.advance(1000)
            stuck = [(p.protocol.state, p.transport.producerState) for p in self.live()]
            assert not stuck, f"connections never closed: {stuck}"
            assert self.clock.getDelayedCalls() == [], (
                f"DelayedCalls left behind: {self.clock.getDelayedCalls()}"
            )
            assert all(p.protocol.state is State.STA1 for p in self.peers)
            assert self.factory.activeAssociations == 0
            if self.drained is not None:
                assert self.drained.called, "drain() never fired once everything closed"
            self.check()
        finally:
            self.close()

    def close(self) -> None:
        """
        Remove the log observer and restore the log level.
        """
        globalLogPublisher.removeObserver(self.logs)
        setLogLevel(self.previousLevel)


# --- the stateful test --------------------------------------------------------------


def _step(method: Callable[..., None]) -> Callable[..., None]:
    """
    Count a step; remember a failure so teardown only cleans up.
    """

    @functools.wraps(method)
    def wrapper(self: ProtocolMachine, *args: Any, **kwargs: Any) -> None:
        STATS["steps"] += 1
        try:
            method(self, *args, **kwargs)
        except BaseException:
            self.broken = True
            raise

    return wrapper


indices = st.integers(0, 4)


class ProtocolMachine(RuleBasedStateMachine):
    """
    The rules are L{ProtocolDriver}'s steps.
    """

    def __init__(self) -> None:
        super().__init__()
        STATS["examples"] += 1
        self.driver: ProtocolDriver | None = None
        self.broken = False

    @initialize(
        config=configs(), address=addresses, lazy=st.booleans(), opening=openings, sizes=chunkSizes, budget=openBudgets
    )
    @_step
    def start(
        self, config: dict[str, Any], address: Any, lazy: bool, opening: bytes | None, sizes: list[int], budget: int | None
    ) -> None:
        self.driver = ProtocolDriver(config)
        self.driver.open(address, lazy, opening, sizes, budget)

    @rule(address=addresses, lazy=st.booleans(), opening=openings, sizes=chunkSizes, budget=openBudgets)
    @_step
    def openConnection(
        self, address: Any, lazy: bool, opening: bytes | None, sizes: list[int], budget: int | None
    ) -> None:
        self.driver.open(address, lazy, opening, sizes, budget)  # type: ignore[union-attr]

    @rule(index=indices, data=segments, sizes=chunkSizes)
    @_step
    def send(self, index: int, data: bytes, sizes: list[int]) -> None:
        self.driver.send(index, data, sizes)  # type: ignore[union-attr]

    @precondition(lambda self: self.driver.pickIn(0, AWAITING_REQUEST) is not None)
    @rule(index=indices, data=openingSegments, sizes=chunkSizes)
    @_step
    def sendFirst(self, index: int, data: bytes, sizes: list[int]) -> None:
        self.driver.sendFirst(index, data, sizes)  # type: ignore[union-attr]

    @precondition(lambda self: self.driver.pickIn(0, ASSOCIATED) is not None)
    @rule(index=indices, data=dataSegments, sizes=chunkSizes)
    @_step
    def sendAssociated(self, index: int, data: bytes, sizes: list[int]) -> None:
        self.driver.sendAssociated(index, data, sizes)  # type: ignore[union-attr]

    @rule(index=indices, data=segments)
    @_step
    def queue(self, index: int, data: bytes) -> None:
        self.driver.queue(index, data)  # type: ignore[union-attr]

    @rule(index=indices, sizes=chunkSizes)
    @_step
    def deliver(self, index: int, sizes: list[int]) -> None:
        self.driver.deliver(index, sizes)  # type: ignore[union-attr]

    @rule(seconds=delays)
    @_step
    def advance(self, seconds: float) -> None:
        self.driver.advance(seconds)  # type: ignore[union-attr]

    @rule(extra=nextCallExtras)
    @_step
    def advanceToNextCall(self, extra: float) -> None:
        self.driver.advanceToNextCall(extra)  # type: ignore[union-attr]

    @rule(index=indices)
    @_step
    def peerClose(self, index: int) -> None:
        self.driver.peerClose(index)  # type: ignore[union-attr]

    @rule(index=indices)
    @_step
    def completeClose(self, index: int) -> None:
        self.driver.completeClose(index)  # type: ignore[union-attr]

    @rule(index=indices, budget=budgets)
    @_step
    def backpressure(self, index: int, budget: int) -> None:
        self.driver.backpressure(index, budget)  # type: ignore[union-attr]

    @rule(grace=graces)
    @_step
    def drain(self, grace: float | None) -> None:
        self.driver.drain(grace)  # type: ignore[union-attr]

    @rule(count=st.integers(1, 3), outcome=st.sampled_from(["ok", "ok", "commandSetError", "crash"]))
    @_step
    def fireResponses(self, count: int, outcome: str) -> None:
        self.driver.fireResponses(count, outcome)  # type: ignore[union-attr]

    @invariant()
    def invariants(self) -> None:
        if self.driver is not None and not self.broken:
            try:
                self.driver.check()
            except BaseException:
                self.broken = True
                raise

    def teardown(self) -> None:
        driver = self.driver
        if driver is None or driver.finished:
            return
        if self.broken:
            driver.close()
        else:
            driver.finish()


#: One driver run as a plain @given test, for coverage-guided engines
#: (atheris through C{protocolScenario.hypothesis.fuzz_one_input}).
STEP_STRATEGIES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "open": dict(address=addresses, lazyClose=st.booleans(), opening=openings, sizes=chunkSizes, budget=openBudgets),
    "send": dict(index=indices, data=segments, sizes=chunkSizes),
    "sendFirst": dict(index=indices, data=openingSegments, sizes=chunkSizes),
    "sendAssociated": dict(index=indices, data=dataSegments, sizes=chunkSizes),
    "queue": dict(index=indices, data=segments),
    "deliver": dict(index=indices, sizes=chunkSizes),
    "advance": dict(seconds=delays),
    "advanceToNextCall": dict(extra=nextCallExtras),
    "peerClose": dict(index=indices),
    "completeClose": dict(index=indices),
    "backpressure": dict(index=indices, budget=budgets),
    "drain": dict(grace=graces),
    "fireResponses": dict(count=st.integers(1, 3), outcome=st.sampled_from(["ok", "commandSetError", "crash"])),
}


@settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def protocolScenario(data: st.DataObject) -> None:
    """
    One example: a driver and up to 40 steps, invariants after each.
    """
    STATS["examples"] += 1
    driver = ProtocolDriver(data.draw(configs()))
    try:
        driver.open(
            data.draw(addresses), data.draw(st.booleans()), data.draw(openings), data.draw(chunkSizes), data.draw(openBudgets)
        )
        for _ in range(data.draw(st.integers(1, 40))):
            name = data.draw(st.sampled_from(sorted(STEP_STRATEGIES)))
            kwargs = {k: data.draw(s) for k, s in STEP_STRATEGIES[name].items()}
            STATS["steps"] += 1
            getattr(driver, name)(**kwargs)
            driver.check()
        driver.finish()
    finally:
        if not driver.finished:
            driver.close()


