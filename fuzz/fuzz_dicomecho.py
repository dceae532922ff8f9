#!/usr/bin/env python
"""
Long-run fuzzing harness for dicomecho's decoder, framer and protocol.

    python fuzz/fuzz_dicomecho.py --seconds 600 [--target decoder|framer|protocol|all]
                                  [--engine hypothesis|atheris] [--seed N]
                                  [--crash-dir DIR] [--json FILE]

The time budget is split evenly between the targets, which run one after
the other. It prints the inputs executed per target, the unique failures
found (a minimal reproducer for each is written to C{fuzz/crashes/}) and
the duration, and exits 1 if anything failed.

Targets:
 - C{decoder}: L{decodePDU} and L{decode} on arbitrary bodies and on
   mutated valid encodings (generated PDUs and captured real-peer PDUs),
   with C{decode(encode(decoded)) == decoded}; the command-set codec; the
   negotiation of decoded requests (its AC or RJ must encode and be one we
   document); PDV reassembly; response fragmentation.
 - C{framer}: arbitrary chunk sequences with small caps (memory bound,
   caps honoured, failure is final); valid streams with or without
   garbage, cut anywhere, frame exactly as when delivered whole.
 - C{protocol}: the stateful driver of C{tests/test_fuzz_protocol.py}
   (protocols on StringTransports with a Clock; invariants after every
   step, no DelayedCall left, everything closed at the end).

Engines: C{hypothesis} (the default; the only one the test suite uses)
runs batches of examples with fresh seeds until the budget is spent, and
shrinks any failure. C{atheris} (coverage-guided libFuzzer; needs
C{pip install atheris}, which has wheels for CPython 3.11 on x86-64 Linux)
runs each target in a subprocess: raw bytes for the decoder and the
framer, and the protocol driver through hypothesis's C{fuzz_one_input}.

The test suite runs a short slice: C{tests/test_fuzz_protocol.py} calls
L{run} for 10 seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGETS = ("decoder", "framer", "protocol")
DEFAULT_CRASH_DIR = Path(__file__).resolve().parent / "crashes"


if __name__ == "__main__" and sys.argv[1:2] == ["--atheris-worker"]:
    # Instrument dicomecho for atheris's coverage before anything imports it.
    import atheris

    with atheris.instrument_imports(include=["dicomecho"]):
        import dicomecho.server.protocol  # noqa: F401 (imports every module)

from dicomecho.association.commandset import (
    CommandSetError,
    DIMSEError,
    Status,
    decodeCommandSet,
    encodeCommandSet,
)
from dicomecho.association.dimse import DIMSEMessage, MessageAssembler, fragment, refusalResponse
from dicomecho.wire.errors import RemoteProtocolError  # noqa: E402
from dicomecho.wire.framer import HEADER_LENGTH, UNLIMITED_PDATA_CEILING, PDUFramer  # noqa: E402
from dicomecho.association.negotiation import (  # noqa: E402
    Acceptance,
    AssociationPolicy,
    InvalidAssociateRequest,
    negotiate,
)
from dicomecho.wire.pdu import (  # noqa: E402
    AssociateRQ,
    PDataTF,
    PDUType,
    PresentationDataValue,
    decode,
    decodePDU,
    encode,
)
from dicomecho.wire.items import PresentationContextRQ  # noqa: E402
from dicomecho.services.verification import VerificationResponder  # noqa: E402

# --- properties, shared by both engines ------------------------------------------------

#: Negotiated against: the default, and a strict one with other syntaxes.
POLICIES = (
    AssociationPolicy(),
    AssociationPolicy(
        requireCalledAETitle=True,
        allowedCallingAETitles=frozenset({"SCU"}),
        maxPDULength=0,
        transferSyntaxes=("1.2.840.10008.1.2.1",),
    ),
)
VALID_RJ = {(1, 2, 2), (1, 1, 2), (1, 1, 3), (1, 1, 7), (2, 3, 2)}


def _kept(value: Any) -> Any:
    """
    C{value} without the counts of unknown (sub-)items the decoder skipped
    and did not keep: those items are gone, so they cannot round-trip.
    """
    import dataclasses

    if getattr(value, "droppedUnknownItems", 0):
        value = dataclasses.replace(value, droppedUnknownItems=0)
    info = getattr(value, "userInformation", None)
    if getattr(info, "droppedUnknownSubItems", 0):
        value = dataclasses.replace(value, userInformation=dataclasses.replace(info, droppedUnknownSubItems=0))
    return value
FIXED_FOUR = {3, 5, 6, 7}


def checkDecodeBody(pduType: int, body: bytes) -> None:
    """
    C{decodePDU} gives a PDU or a L{RemoteProtocolError}; a decoded PDU
    encodes, and decodes back to itself; a P-DATA-TF accounts for every
    byte.
    """
    try:
        value = decodePDU(pduType, body)
    except RemoteProtocolError:
        return
    assert pduType in set(PDUType), f"type 0x{pduType:02X} decoded"
    again = decode(encode(value))
    assert again == _kept(value), f"decode(encode(x)) != x for {value!r}"
    if isinstance(value, PDataTF):
        assert len(encode(value)) - 6 == len(body)


def checkDecodeWhole(data: bytes) -> None:
    """
    C{decode} of one whole PDU, header included.
    """
    try:
        value = decode(data)
    except RemoteProtocolError:
        return
    assert decode(encode(value)) == _kept(value)


def checkCommandSet(data: bytes) -> None:
    """
    The command-set decoder gives a command or a C{CommandSetError}; a
    decoded command encodes back to itself; answering it as a request
    (C-ECHO or refusal) raises only C{DIMSEError}s and gives a command
    that encodes.
    """
    try:
        command = decodeCommandSet(data)
    except CommandSetError:
        return
    assert decodeCommandSet(encodeCommandSet(command)) == command
    message = DIMSEMessage(1, command, None)
    try:
        response = refusalResponse(message, Status.UNRECOGNIZED_OPERATION)
    except DIMSEError:
        response = None
    if response is not None:
        decodeCommandSet(encodeCommandSet(response))
    context = _Context()
    try:
        answer = VerificationResponder().handle(message, context)
    except DIMSEError:
        answer = None
    if answer is not None:
        decodeCommandSet(encodeCommandSet(answer.command))


class _Context:
    contextID = 1
    abstractSyntax = "1.2.840.10008.1.1"
    transferSyntax = "1.2.840.10008.1.2"


def checkNegotiate(body: bytes) -> None:
    """
    A decoded A-ASSOCIATE-RQ negotiates to an Acceptance, a Rejection or
    an C{InvalidAssociateRequest}: the AC encodes, decodes to itself and
    accepts only proposed contexts with our syntaxes; at capacity nothing
    is accepted; an RJ is one we document; responses fragment for the
    peer's maximum length.
    """
    try:
        rq = AssociateRQ.decode(body)
    except RemoteProtocolError:
        return
    for policy in POLICIES:
        for atCapacity in (False, True):
            try:
                outcome = negotiate(rq, policy, atCapacity=atCapacity)
            except InvalidAssociateRequest:
                continue
            if isinstance(outcome, Acceptance):
                assert not atCapacity, "accepted at capacity"
                ac = outcome.ac
                assert decode(ac.encode()) == ac
                proposed = {pc.contextID for pc in rq.presentationContexts}
                assert {c.contextID for c in ac.presentationContexts} == proposed
                for context in outcome.contexts.values():
                    assert context.contextID in proposed
                    assert context.abstractSyntax in policy.abstractSyntaxes
                    assert context.transferSyntax in policy.transferSyntaxes
                peerMax = outcome.peerMaxPDULength
                assert peerMax == 0 or peerMax >= 8
                checkFragments(1, b"\x00" * 80, None, peerMax)
            else:
                rj = outcome.rj
                assert decode(rj.encode()) == rj
                assert (rj.result, rj.source, rj.reason) in VALID_RJ


def checkFragments(contextID: int, command: bytes, dataSet: bytes | None, peerMax: int) -> None:
    """
    C{fragment} gives P-DATA-TF PDUs within the peer's maximum, with even
    fragments but the last, that reassemble to the message.
    """
    pdus = fragment(contextID, command, dataSet, peerMax)
    command_, data_ = b"", b""
    for raw in pdus:
        value = decode(raw)
        assert isinstance(value, PDataTF) and len(value.pdvs) == 1
        if peerMax:
            assert len(raw) - 6 <= peerMax, f"{len(raw) - 6} > {peerMax}"
        (pdv,) = value.pdvs
        if not pdv.isLastFragment:
            assert len(pdv.data) % 2 == 0 and pdv.data
        if pdv.isCommand:
            command_ += pdv.data
        else:
            data_ += pdv.data
    assert command_ == command
    assert data_ == (dataSet or b"")


def checkAssembler(body: bytes, accepted: Iterable[int] = (1, 3)) -> None:
    """
    PDVs (from a P-DATA-TF body) give messages or C{DIMSEError}s, never
    another exception, and the partial messages stay within the caps.
    """
    try:
        value = PDataTF.decode(body)
    except RemoteProtocolError:
        return
    checkPDVs(list(value.pdvs), accepted)


def checkPDVs(pdvs: list[Any], accepted: Iterable[int] = (1, 3)) -> None:
    assembler = MessageAssembler(accepted, maxCommandLength=256, maxDataSetLength=1024)
    for pdv in pdvs:
        try:
            message = assembler.receive(pdv)
        except DIMSEError:
            return
        if message is not None:
            assert message.contextID == pdv.contextID
            assert (message.dataSet is None) != message.hasDataSet
        assert getattr(assembler, "_buffered", 0) <= 256 + 1024


def checkFramerReads(reads: list[bytes], associateCap: int, pdataCap: int) -> None:
    """
    Any reads give frames within the caps or a L{RemoteProtocolError};
    after each drain the framer holds less than a header plus the largest
    cap; after an error it holds nothing and raises the same error again.
    """
    framer = PDUFramer(maxAssociateLength=associateCap, maxPDataLength=pdataCap)
    failure: Exception | None = None
    bound = HEADER_LENGTH + max(associateCap, pdataCap or UNLIMITED_PDATA_CEILING)
    for data in reads:
        framer.receiveData(data)
        try:
            while (frame := framer.nextFrame()) is not None:
                assert failure is None, "a frame after a failure"
                if frame.pduType == 4:
                    assert len(frame.body) <= (pdataCap or UNLIMITED_PDATA_CEILING)
                elif frame.pduType in FIXED_FOUR:
                    assert len(frame.body) == 4
                else:
                    assert len(frame.body) <= associateCap
        except RemoteProtocolError as error:
            if failure is None:
                failure = error
            else:
                assert error is failure, "a different error after a failure"
        assert framer.bufferedLength < bound
        if failure is not None:
            assert framer.bufferedLength == 0


def _frames(chunks: Iterable[bytes]) -> tuple[list[Any], str | None]:
    framer = PDUFramer(maxPDataLength=0)
    frames: list[Any] = []
    for chunk in chunks:
        framer.receiveData(chunk)
        try:
            while (frame := framer.nextFrame()) is not None:
                frames.append(frame)
        except RemoteProtocolError as error:
            return frames, f"{type(error).__name__}: {error}"
    return frames, None


def checkFramerSplit(stream: bytes, cuts: list[int]) -> None:
    """
    A stream cut anywhere frames exactly as when delivered whole, up to
    and including the error that ends it.
    """
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in zip(points, points[1:])]
    assert _frames(chunks) == _frames([stream])


# --- hypothesis engine ------------------------------------------------------------------


def _strategies() -> dict[str, list[tuple[str, dict[str, Any], Callable[..., None]]]]:
    """
    The hypothesis sub-tests of each target: (name, strategies, body).
    """
    from hypothesis import strategies as st

    from tests.support.helpers import SESSIONS, fixtureBytes, splitStream
    from tests.support.peerbytes import (
        associateRQs,
        controlSegments,
        echoes,
        invalidSegments,
        pdataSegments,
        segments,
    )
    from tests.support.strategies import associateCommon, byte, pdus, uid

    captured: list[bytes] = []
    for session in SESSIONS:
        for direction in ("c2s", "s2c"):
            for frame in splitStream(fixtureBytes(session, direction)):
                captured.append(struct.pack(">BBI", frame.pduType, 0, len(frame.body)) + frame.body)
    valid = st.one_of(
        pdus.map(encode),
        st.sampled_from(captured),
        associateRQs(),
        pdataSegments(),
        controlSegments(),
        echoes(),
    )

    @st.composite
    def mutated(draw: Any) -> bytes:
        data = bytearray(draw(valid))
        for _ in range(draw(st.integers(1, 5))):
            where = draw(st.integers(0, len(data)))
            action = draw(st.sampled_from(["set", "cut", "add", "length", "itemLength"]))
            if action == "set" and where < len(data):
                data[where] = draw(byte)
            elif action == "cut":
                del data[where : where + draw(st.integers(1, 8))]
            elif action == "add":
                data[where:where] = draw(st.binary(min_size=1, max_size=8))
            elif action == "length" and len(data) >= 6:
                data[2:6] = draw(st.integers(0, 0xFFFFFFFF)).to_bytes(4, "big")
            elif where + 2 <= len(data):
                data[where : where + 2] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
        return bytes(data)

    def typeAndBody(data: bytes) -> tuple[int, bytes]:
        return (data[0], data[6:]) if len(data) >= 6 else (data[0] if data else 1, b"")

    @st.composite
    def commandSets(draw: Any) -> bytes:
        from tests.support.peerbytes import command

        base = draw(
            st.sampled_from(
                [
                    command(),
                    command(0x0001, 3, AffectedSOPInstanceUID="1.2.3", Priority=0),
                    command(0x8030, None, MessageIDBeingRespondedTo=1, Status=0),
                    command(0x0120, 4, None, RequestedSOPClassUID="1.2", RequestedSOPInstanceUID="1.3"),
                    command(0x0FFF, None, None, MessageIDBeingRespondedTo=1),
                ]
            )
        )
        data = bytearray(base)
        for _ in range(draw(st.integers(0, 4))):
            where = draw(st.integers(0, len(data)))
            action = draw(st.integers(0, 3))
            if action == 0 and where < len(data):
                data[where] = draw(byte)
            elif action == 1:
                del data[where : where + draw(st.integers(1, 8))]
            elif action == 2:
                data[where:where] = draw(st.binary(min_size=1, max_size=12))
            elif where + 4 <= len(data):
                data[where : where + 4] = draw(st.integers(0, 0xFFFFFFFF)).to_bytes(4, "little")
        if draw(st.booleans()):
            # Keep CommandGroupLength true, so the elements are decoded.
            data[0:12] = struct.pack("<HHII", 0, 0, 4, max(len(data) - 12, 0))[: min(12, len(data))]
        return bytes(data)

    rqs = st.builds(
        AssociateRQ,
        presentationContexts=st.lists(
            st.builds(
                PresentationContextRQ,
                st.one_of(st.sampled_from([1, 3, 5]), byte),
                st.one_of(st.just("1.2.840.10008.1.1"), st.none(), uid),
                st.lists(
                    st.one_of(st.sampled_from(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]), uid), max_size=4
                ).map(tuple),
            ),
            max_size=4,
        ).map(tuple),
        **associateCommon,
    )
    pdvs = st.lists(
        st.builds(
            PresentationDataValue,
            st.sampled_from([1, 1, 3, 5]),
            st.booleans(),
            st.booleans(),
            st.one_of(commandSets(), st.binary(max_size=64)),
        ),
        max_size=8,
    )

    def decodeArbitrary(pduType: int, body: bytes) -> None:
        checkDecodeBody(pduType, body)

    def decodeMutated(data: bytes) -> None:
        checkDecodeWhole(data)
        checkDecodeBody(*typeAndBody(data))

    def commandSet(data: bytes) -> None:
        checkCommandSet(data)

    def negotiateRQ(data: bytes) -> None:
        checkNegotiate(data[6:])

    def assemble(items: list[Any]) -> None:
        checkPDVs(items)

    def fragments(command: bytes, dataSet: bytes | None, peerMax: int) -> None:
        checkFragments(1, command, dataSet, peerMax)

    def framerReads(reads: list[bytes], associateCap: int, pdataCap: int) -> None:
        checkFramerReads(reads, associateCap, pdataCap)

    def framerSplit(stream: bytes, cuts: list[int]) -> None:
        checkFramerSplit(stream, cuts)

    streams = st.lists(st.one_of(valid, valid, valid, invalidSegments(), segments), min_size=1, max_size=6).map(
        b"".join
    )
    return {
        "decoder": [
            (
                "decodeArbitrary",
                dict(
                    pduType=st.one_of(st.integers(1, 7), st.integers(0, 255)),
                    body=st.one_of(st.binary(max_size=600), mutated().map(lambda d: d[6:])),
                ),
                decodeArbitrary,
            ),
            ("decodeMutated", dict(data=mutated()), decodeMutated),
            ("commandSet", dict(data=st.one_of(commandSets(), st.binary(max_size=120))), commandSet),
            ("negotiate", dict(data=st.one_of(rqs.map(encode), associateRQs(), mutated())), negotiateRQ),
            ("assemble", dict(items=pdvs), assemble),
            (
                "fragment",
                dict(
                    command=st.binary(min_size=0, max_size=200).map(lambda b: b + b"\0" * (len(b) % 2)),
                    dataSet=st.none() | st.binary(max_size=300),
                    peerMax=st.one_of(st.just(0), st.integers(8, 64), st.integers(8, 0xFFFFFFFF)),
                ),
                fragments,
            ),
        ],
        "framer": [
            (
                "framerReads",
                dict(
                    reads=st.lists(st.one_of(st.binary(max_size=400), valid, mutated()), max_size=12),
                    associateCap=st.sampled_from([16, 300, 1024 * 1024]),
                    pdataCap=st.sampled_from([0, 8, 120, 16382]),
                ),
                framerReads,
            ),
            ("framerSplit", dict(stream=streams, cuts=st.lists(st.integers(0, 10**6), max_size=30)), framerSplit),
        ],
    }


@dataclass
class Failure_:
    """
    One unique failure.
    """

    key: str
    target: str
    test: str
    message: str
    reproducer: str
    count: int = 1


@dataclass
class Report:
    """
    What a run did: inputs executed per target (and per sub-test), unique
    failures by key, seconds per target and in all.
    """

    inputs: dict[str, int] = field(default_factory=dict)
    details: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: dict[str, Failure_] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    engine: str = "hypothesis"


def _flatten(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in error.exceptions:
            out += _flatten(inner)
        # Keep the group's own notes (hypothesis puts the example there).
        for inner in out:
            for note in getattr(error, "__notes__", []):
                if note not in getattr(inner, "__notes__", []):
                    inner.add_note(note)
        return out
    return [error]


def _signature(error: BaseException) -> str:
    """
    A failure's identity: its type and the innermost frame in dicomecho,
    else in the tests or this harness.
    """
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if f.filename.startswith(str(REPO)) and "/.venv/" not in f.filename]
    package = [f for f in ours if "/dicomecho/" in f.filename]
    frame = (package or ours or frames or [None])[-1]
    where = "?"
    if frame is not None:
        name = frame.filename
        if name.startswith(str(REPO)):
            name = os.path.relpath(name, REPO)
        where = f"{name}:{frame.lineno} in {frame.name}"
    return f"{type(error).__name__} at {where}"


def _record(report: Report, target: str, test: str, error: BaseException, crashDir: Path) -> None:
    key = _signature(error)
    if key in report.failures:
        report.failures[key].count += 1
        return
    notes = "\n".join(getattr(error, "__notes__", []))
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    crashDir.mkdir(parents=True, exist_ok=True)
    path = crashDir / f"{target}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.txt"
    path.write_text(
        f"{key}\ntarget: {target} ({test})\n\n"
        f"Minimal reproducer (hypothesis, shrunk):\n{notes}\n\n"
        f"Traceback:\n{text}"
    )
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    report.failures[key] = Failure_(key, target, test, message[:300], str(path))


def _batchSettings(examples: int, seed: int | None) -> Any:
    from hypothesis import HealthCheck, Phase, Verbosity, settings

    return settings(
        max_examples=examples,
        stateful_step_count=50,
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.generate, Phase.shrink),
        report_multiple_bugs=True,
        print_blob=True,
        verbosity=Verbosity.normal,
    )


def _runBatch(run: Callable[[], None], seed: int | None) -> BaseException | None:
    import hypothesis.core

    previous = hypothesis.core.global_force_seed
    hypothesis.core.global_force_seed = seed
    try:
        run()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        return error
    finally:
        hypothesis.core.global_force_seed = previous
    return None


def _counted(body: Callable[..., None], name: str, counts: dict[str, int]) -> Callable[..., None]:
    def counted(**kwargs: Any) -> None:
        counts[name] = counts.get(name, 0) + 1
        body(**kwargs)

    return counted


def _hypothesisTarget(target: str, seconds: float, seed: int | None, crashDir: Path, report: Report) -> None:
    from hypothesis import given

    deadline = time.monotonic() + seconds
    counts: dict[str, int] = {}
    batch = 0
    if target == "protocol":
        from hypothesis.stateful import run_state_machine_as_test

        from tests.support.peerbytes import STATS
        from tests.support.protocoldriver import ProtocolMachine

        before = dict(STATS)
        while time.monotonic() < deadline:
            s = _batchSettings(10, seed)
            error = _runBatch(
                lambda: run_state_machine_as_test(ProtocolMachine, settings=s),
                None if seed is None else seed * 1_000_003 + batch,
            )
            batch += 1
            for e in _flatten(error) if error is not None else []:
                _record(report, target, "ProtocolMachine", e, crashDir)
        counts = {k: STATS[k] - before[k] for k in STATS}
        report.inputs[target] = counts["examples"]
    else:
        tests = _strategies()[target]
        while time.monotonic() < deadline:
            name, strategies, body = tests[batch % len(tests)]

            test = _batchSettings(100, seed)(given(**strategies)(_counted(body, name, counts)))
            error = _runBatch(test, None if seed is None else seed * 1_000_003 + batch)
            batch += 1
            for e in _flatten(error) if error is not None else []:
                _record(report, target, name, e, crashDir)
        report.inputs[target] = sum(counts.values())
    report.details[target] = counts


# --- atheris engine -----------------------------------------------------------------------


def _atherisDecoder(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, rest = data[0] % 6, data[1:]
    if mode == 0:
        checkDecodeBody(rest[0], rest[1:])
    elif mode == 1:
        checkDecodeWhole(rest)
    elif mode == 2:
        checkCommandSet(rest)
    elif mode == 3:
        checkNegotiate(rest)
    elif mode == 4:
        checkAssembler(rest)
    else:
        peerMax = int.from_bytes(rest[:4].ljust(4, b"\0"), "big")
        if 0 < peerMax < 8:
            return
        body = rest[4:]
        checkFragments(1, body[: len(body) & ~1], None, peerMax)


def _atherisFramer(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, count, rest = data[0] % 2, data[1] % 16, data[2:]
    cuts = [int.from_bytes(rest[2 * i : 2 * i + 2], "big") for i in range(count)]
    stream = rest[2 * count :]
    if mode == 0:
        checkFramerSplit(stream, cuts)
    else:
        points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
        reads = [stream[a:b] for a, b in zip(points, points[1:])]
        checkFramerReads(reads, 300, 120)


def _seedCorpus(target: str, directory: Path) -> None:
    from tests.support.helpers import SESSIONS, fixtureBytes, splitStream

    directory.mkdir(parents=True, exist_ok=True)
    items: list[bytes] = []
    for session in SESSIONS:
        stream = fixtureBytes(session, "c2s")
        if target == "framer":
            items += [b"\x00\x00" + stream, b"\x01\x00" + stream]
            continue
        for frame in splitStream(stream):
            whole = struct.pack(">BBI", frame.pduType, 0, len(frame.body)) + frame.body
            items += [bytes([0, frame.pduType]) + frame.body, b"\x01" + whole]
            if frame.pduType == 1:
                items.append(b"\x03" + frame.body)
            if frame.pduType == 4:
                items.append(b"\x04" + frame.body)
                items.append(b"\x02" + frame.body[6:])
    for item in items:
        (directory / hashlib.sha1(item).hexdigest()).write_bytes(item)


def _atherisWorker(target: str, libfuzzerArgs: list[str]) -> None:
    """
    Run one target under libFuzzer (dicomecho was instrumented on import,
    at the top of this module).
    """
    import atheris

    _quiet()
    if target == "protocol":
        from tests.support.protocoldriver import protocolScenario

        function = protocolScenario.hypothesis.fuzz_one_input
    else:
        function = {"decoder": _atherisDecoder, "framer": _atherisFramer}[target]
    atheris.Setup([sys.argv[0]] + libfuzzerArgs, function)
    atheris.Fuzz()


_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_DONE = re.compile(r"Done (\d+) runs")
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def _atherisTarget(target: str, seconds: float, seed: int | None, crashDir: Path, report: Report) -> None:
    deadline = time.monotonic() + seconds
    corpus = Path(tempfile.mkdtemp(prefix=f"dicomecho-{target}-corpus-"))
    _seedCorpus(target, corpus)
    executed = 0
    runs = 0
    crashDir.mkdir(parents=True, exist_ok=True)
    try:
        while (remaining := deadline - time.monotonic()) > 2:
            args = [
                f"-max_total_time={int(remaining)}",
                "-print_final_stats=1",
                f"-artifact_prefix={crashDir}/{target}-atheris-",
                "-rss_limit_mb=4096",
                "-timeout=30",
                str(corpus),
            ]
            if seed is not None:
                args.append(f"-seed={seed + runs + 1}")
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--atheris-worker", target, "--", *args],
                capture_output=True,
                text=True,
                errors="replace",
                env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")},
            )
            runs += 1
            out = proc.stdout + proc.stderr
            counts = _EXECUTED.findall(out) or _DONE.findall(out)
            executed += int(counts[-1]) if counts else 0
            if proc.returncode == 0:
                break
            # A crash: name it by its innermost frame in the repository.
            frames = [m for m in _FRAME.findall(out) if m[0].startswith(str(REPO))]
            package = [m for m in frames if "/dicomecho/" in m[0]]
            last = (package or frames or [("?", "0", "?")])[-1]
            kind = re.findall(r"^(\w+(?:Error|Exception|Failure)\w*)[:\s]", out, re.M)
            key = f"{kind[-1] if kind else 'crash'} at {os.path.relpath(last[0], REPO) if last[0] != '?' else '?'}:{last[1]} in {last[2]}"
            artifact = _ARTIFACT.findall(out)
            log = crashDir / f"{target}-atheris-{hashlib.sha1(key.encode()).hexdigest()[:10]}.log"
            if key in report.failures:
                report.failures[key].count += 1
                if report.failures[key].count >= 3:
                    break  # libFuzzer keeps hitting it first; nothing more to learn
            else:
                log.write_text(out[-20000:])
                report.failures[key] = Failure_(
                    key, target, "atheris", key, f"{artifact[-1] if artifact else '?'} (output: {log})"
                )
            if len([f for f in report.failures.values() if f.target == target]) >= 20:
                break
    finally:
        shutil.rmtree(corpus, ignore_errors=True)
    report.inputs[target] = executed
    report.details[target] = {"libFuzzer runs": runs}


# --- running ------------------------------------------------------------------------------


def run(
    seconds: float,
    targets: Iterable[str] = TARGETS,
    seed: int | None = None,
    crashDir: Path | str = DEFAULT_CRASH_DIR,
    engine: str = "hypothesis",
) -> Report:
    """
    Fuzz C{targets} one after the other, splitting C{seconds} evenly.

    @param seed: make the hypothesis engine's batches reproducible.
    @param crashDir: where reproducers are written.
    """
    targets = list(targets)
    crashDir = Path(crashDir)
    report = Report(engine=engine)
    started = time.monotonic()
    share = seconds / len(targets)
    for i, target in enumerate(targets):
        t0 = time.monotonic()
        # Give later targets whatever earlier ones left unused.
        budget = max(share, (started + share * (i + 1)) - t0)
        with warnings.catch_warnings():
            # pydicom warns about each invalid UID a peer sends when the
            # debug log block names it; expected under fuzzing.
            warnings.simplefilter("ignore")
            if engine == "atheris":
                _atherisTarget(target, budget, seed, crashDir, report)
            else:
                _hypothesisTarget(target, budget, seed, crashDir, report)
        report.seconds[target] = time.monotonic() - t0
    report.duration = time.monotonic() - started
    return report


def describe(report: Report) -> str:
    """
    The report as text.
    """
    lines = [f"engine: {report.engine}", "inputs executed:"]
    for target, count in report.inputs.items():
        detail = ", ".join(f"{k}={v}" for k, v in report.details.get(target, {}).items())
        lines.append(f"  {target:9} {count:>10}  in {report.seconds.get(target, 0):7.1f} s  ({detail})")
    lines.append(f"unique failures: {len(report.failures)}")
    for failure in report.failures.values():
        lines.append(f"  [{failure.target}/{failure.test}] {failure.key} (seen {failure.count}x)")
        lines.append(f"      {failure.message}")
        lines.append(f"      reproducer: {failure.reproducer}")
    lines.append(f"duration: {report.duration:.1f} s")
    return "\n".join(lines)


def _quiet() -> None:
    """
    Send Twisted's global log nowhere: injected responder failures are
    logged at critical level, which Twisted otherwise prints to stderr.
    """
    from twisted.logger import globalLogBeginner

    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--atheris-worker"]:
        rest = argv[2:]
        _atherisWorker(argv[1], rest[1:] if rest[:1] == ["--"] else rest)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600, help="total time budget (default 600)")
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--engine", choices=["hypothesis", "atheris"], default="hypothesis")
    parser.add_argument("--seed", type=int, default=None, help="reproducible hypothesis batches")
    parser.add_argument("--crash-dir", type=Path, default=DEFAULT_CRASH_DIR)
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    options = parser.parse_args(argv)
    if options.engine == "atheris":
        if importlib.util.find_spec("atheris") is None:
            parser.error("--engine atheris needs atheris (pip install atheris)")
    _quiet()
    targets = TARGETS if options.target == "all" else (options.target,)
    report = run(options.seconds, targets, options.seed, options.crash_dir, options.engine)
    print(describe(report))
    if options.json is not None:
        options.json.write_text(
            json.dumps(
                {
                    "engine": report.engine,
                    "inputs": report.inputs,
                    "details": report.details,
                    "seconds": report.seconds,
                    "duration": report.duration,
                    "failures": [vars(f) for f in report.failures.values()],
                },
                indent=2,
            )
        )
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
