"""
In-process hot-path profile: one DICOMAssociationProtocol on a transport
that discards writes, fed captured DCMTK echoscu PDUs without any socket.

Usage::

    .venv/bin/python -m benchmarks.hotpath [--echoes 200000] [--associations 20000]
        [--profile echoes|associations]

It prints the least, over five runs, of the server-side CPU per echo (one P-DATA-TF in, one out) and per
association (connect, RQ, one echo, RQ release, close), which is the part
of a real echo's cost that dicomecho controls; the reactor and the kernel
add the rest (see benchmarks/run.py for the end-to-end figures).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import struct
import time
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionDone

from twisted.logger import LogLevel

from dicomecho.wire.framer import PDUFramer
from dicomecho.observability.levels import setLogLevel
from dicomecho.security.sourcelimits import SourceLimitsPolicy
from dicomecho.server.factory import DICOMServerFactory

FIXTURE = (
    Path(__file__).resolve().parent.parent
    / "tests"
    / "fixtures"
    / "dcmtk_echoscu_default.c2s.bin"
)


class NullTransport:
    """
    The transport calls the protocol makes, doing nothing.
    """

    disconnecting = False

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writeSequence(self, data: list[bytes]) -> None:
        for chunk in data:
            self.written += len(chunk)

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 11112)

    def registerProducer(self, producer: object, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        self.disconnecting = True

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


#: The peer, as Twisted gives it to buildProtocol.
PEER = IPv4Address("TCP", "127.0.0.1", 40000)

#: The default per-source limits, but a connection rate that a loop on a
#: frozen clock, all from one source, never reaches (the bucket is still
#: kept, as by default).
UNLIMITED = SourceLimitsPolicy(connectionRate=1e12, connectionBurst=10**9)


def capturedPDUs() -> tuple[bytes, bytes, bytes]:
    """
    DCMTK echoscu's A-ASSOCIATE-RQ, C-ECHO-RQ P-DATA-TF and A-RELEASE-RQ.
    """
    framer = PDUFramer()
    framer.receiveData(FIXTURE.read_bytes())
    pdus = []
    while (frame := framer.nextFrame()) is not None:
        pdus.append(struct.pack(">BxI", frame.pduType, len(frame.body)) + frame.body)
    rq, echo, release = pdus[0], pdus[1], pdus[2]
    return rq, echo, release


def runEchoes(count: int) -> float:
    rq, echo, _ = capturedPDUs()
    factory = DICOMServerFactory(clock=Clock(), sourceLimits=UNLIMITED)
    protocol = factory.buildProtocol(PEER)
    transport = NullTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(rq)
    received = protocol.dataReceived
    start = time.process_time()
    for _ in range(count):
        received(echo)
    elapsed = time.process_time() - start
    assert transport.written > 0
    return elapsed / count


def runAssociations(count: int) -> float:
    rq, echo, release = capturedPDUs()
    factory = DICOMServerFactory(clock=Clock(), sourceLimits=UNLIMITED)
    done = Failure(ConnectionDone())
    start = time.process_time()
    for _ in range(count):
        protocol = factory.buildProtocol(PEER)
        protocol.makeConnection(NullTransport())
        protocol.dataReceived(rq)
        protocol.dataReceived(echo)
        protocol.dataReceived(release)
        protocol.connectionLost(done)
    elapsed = time.process_time() - start
    assert factory.activeAssociations == 0
    return elapsed / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--echoes", type=int, default=200_000)
    parser.add_argument("--associations", type=int, default=20_000)
    parser.add_argument("--profile", choices=("echoes", "associations"))
    options = parser.parse_args()
    # The command line's default, as echoscp's: errors only.
    setLogLevel(LogLevel.error)
    if options.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        if options.profile == "echoes":
            runEchoes(options.echoes)
        else:
            runAssociations(options.associations)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    # The least of several runs: the figure least disturbed by other work.
    perEcho = min(runEchoes(options.echoes // 5) for _ in range(5))
    perAssociation = min(runAssociations(options.associations // 5) for _ in range(5))
    print(f"echo (P-DATA in, P-DATA out): {perEcho * 1e6:.2f} us CPU")
    print(f"association (RQ, echo, release, close): {perAssociation * 1e6:.2f} us CPU")


if __name__ == "__main__":
    main()
