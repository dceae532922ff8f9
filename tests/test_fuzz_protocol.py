"""
Fuzzing the protocol (hypothesis, stateful): random sequences of valid and
invalid PDUs, cut at random points and delivered in random-size chunks, to
one to three L{DICOMAssociationProtocol}s of one factory on
C{StringTransport}s and a C{Clock}, interleaved with clock advances, peer
closes, slow closes, backpressure, late responder answers and a graceful
shutdown (C{factory.drain}).

After every step: no exception escaped the protocol; every byte the server
wrote decodes, with our own decoder, as whole PDUs in an order PS3.8
allows (and no A-ASSOCIATE-AC once draining); C{activeAssociations} counts
exactly the protocols in Sta6/Sta8 and never exceeds the limit, and
C{openConnections} the connections not yet lost; the framer holds at most its cap plus one
read; every log line rendered from the events is a single printable line.
At the end of each example the clock runs on until every connection has
closed, and then no C{DelayedCall} is left, every protocol is in Sta1, no
association is counted and a drain's L{Deferred} has fired.

The clock starts at values whose sums with the timeouts round (as real
clocks' values do) and can be advanced exactly to its next scheduled call.
L{BoundedClock} turns a call that keeps re-arming itself at the instant
being run, which would make C{Clock.advance} loop forever, into a failure.

L{ProtocolDriver} is shared with the long-run harness in
C{fuzz/fuzz_dicomecho.py}; the last test here runs a short slice of it.

The driver only uses the transport as a reactor would, so it holds both
for the current protocol and for one that closes after an
A-ASSOCIATE-RJ or registers itself as a streaming producer: close
completion is simulated once C{transport.disconnecting} is set (the
producer is stopped first, as Twisted's transports do), no data is
delivered to a closing or paused transport, a registered streaming
producer is paused from within the write that fills the (simulated) send
buffer and resumed when it drains, and C{drain} is only called if the
factory has it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from dicomecho.association.transitions import State
from tests.support.protocoldriver import ProtocolDriver, ProtocolMachine
from tests.support.peerbytes import AssociateRQ, IMPLICIT, IPv4Address, PresentationContextRQ, PresentationDataValue, ReleaseRQ, UserInformation, VERIFICATION, command, encode, pdata

# --- tests ----------------------------------------------------------------------------


def test_protocolStateMachine() -> None:
    """
    Random interleavings of valid and invalid PDUs cut at random points,
    clock advances, peer closes, slow closes, backpressure and late
    responses never raise out of the protocol, keep the association count
    and the framer's buffer within bounds, only ever put whole valid PDUs
    in a PS3.8 order on the wire, and end, once the clock has run on, with
    every connection closed, no DelayedCall left and no association
    counted.
    """
    run_state_machine_as_test(
        ProtocolMachine,
        settings=settings(
            max_examples=150,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        ),
    )


def test_driverSeesAWholeSession() -> None:
    """
    The driver itself works: a clean session through it gets an AC, the
    echo responses and an RP, the peer's close after the RP ends in Sta1,
    and nothing is left behind.
    """
    driver = ProtocolDriver(
        dict(
            acseTimeout=5,
            dimseTimeout=5,
            networkTimeout=5,
            maxAssociations=2,
            maxPDULength=16382,
            maxAssociateLength=4096,
            requireCalledAETitle=False,
            allowedCallingAETitles=(),
            deferredResponses=False,
            clockStart=1_700_000_000.5,
        )
    )
    try:
        driver.open(IPv4Address("TCP", "127.0.0.1", 40000), lazyClose=False)
        rq = AssociateRQ(
            "ECHOSCP",
            "SCU",
            presentationContexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),),
            userInformation=UserInformation(maximumLength=16384),
        )
        stream = encode(rq) + pdata(PresentationDataValue(1, True, True, command(messageID=7))) + encode(ReleaseRQ())
        driver.send(0, stream, [5, 100])
        (peer,) = driver.peers
        assert peer.output.phase == "ended" and peer.output.pdus == 3
        assert peer.protocol.state is State.STA13
        driver.check()
        driver.peerClose(0)
        driver.finish()
    finally:
        if not driver.finished:
            driver.close()


def _loadHarness() -> Any:
    path = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_dicomecho.py"
    spec = importlib.util.spec_from_file_location("fuzz_dicomecho", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_fuzzHarnessShortSlice(tmp_path: Path) -> None:
    """
    A 10-second slice of the long-run harness (decoder, framer and
    protocol targets, hypothesis engine) executes inputs for every target
    and finds no failure. Under CI=true the slice is seeded, so a CI run
    is reproducible.
    """
    harness = _loadHarness()
    seed = 0 if os.environ.get("CI") == "true" else None
    started = time.monotonic()
    report = harness.run(seconds=10, targets=["decoder", "framer", "protocol"], seed=seed, crashDir=tmp_path)
    assert time.monotonic() - started < 60
    assert all(report.inputs[target] > 0 for target in ("decoder", "framer", "protocol")), report.inputs
    assert report.failures == {}, harness.describe(report)
