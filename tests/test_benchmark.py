"""
The benchmark suite (L{benchmarks.run}, L{benchmarks.loadgen},
L{benchmarks.floor}): unit tests of the load generator's reply checker and
of the floor's framing, and a CI smoke run of C{python -m benchmarks.run
--quick} against all three servers. No timing is asserted anywhere: only
that every server produced figures for every mode and that dicomecho and the
floor answered everything correctly.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from benchmarks._common import (
    COMMAND_FIELD,
    MESSAGE_ID_RESPONDED_TO,
    STATUS,
    BadReply,
    CannedReplies,
    ReplyChecker,
    Requests,
    parseEchoRSP,
    splitPDUs,
    valueOffset,
)
from benchmarks.floor import FloorFactory, FloorProtocol
from benchmarks.loadgen import percentile
from tests.support.helpers import fixtureBytes
from tests.support.peers import requirePynetdicom

ROOT = Path(__file__).resolve().parent.parent
QUICK_TIMEOUT = 120

REQUESTS = Requests.fromCapture()
CANNED = CannedReplies.fromFixture()


def _patched(pdu: bytes, tag: tuple[int, int], value: int) -> bytes:
    offset = valueOffset(pdu, tag)
    return pdu[:offset] + struct.pack("<H", value) + pdu[offset + 2 :]


# --- the reply checker --------------------------------------------------------------


@pytest.mark.parametrize("replies", ["dicomecho", "pynetdicom"])
def test_checkerAcceptsRealReplies(replies: str) -> None:
    """
    The checker accepts dicomecho's canned replies and the ones pynetdicom's
    echoscp gave DCMTK's echoscu, each by a full parse the first time.
    """
    if replies == "dicomecho":
        ac, rsp, rp = CANNED.associateAC, CANNED.echoRSP(1), CANNED.releaseRP
    else:
        ac, rsp, rp = splitPDUs(fixtureBytes("dcmtk_echoscu_default", "s2c"))
    checker = ReplyChecker()
    checker.checkAC(ac)
    checker.checkEchoRSP(rsp, 1)
    checker.checkRP(rp)
    assert (checker.parsed, checker.matched) == (3, 0)


def test_checkerUsesTemplateWithPatchedMessageID() -> None:
    """
    After the first verified C-ECHO-RSP, a reply to another MessageID that
    differs only in MessageIDBeingRespondedTo matches the template.
    """
    checker = ReplyChecker()
    checker.checkEchoRSP(CANNED.echoRSP(1), 1)
    checker.checkEchoRSP(CANNED.echoRSP(0xBEEF), 0xBEEF)
    checker.checkAC(CANNED.associateAC)
    checker.checkAC(CANNED.associateAC)
    assert (checker.parsed, checker.matched) == (2, 2)


@pytest.mark.parametrize("primed", [False, True], ids=["fresh", "template cached"])
def test_checkerRejectsWrongEchoReplies(primed: bool) -> None:
    """
    A C-ECHO-RSP to another MessageID, with a non-zero status or with a
    CommandField other than C-ECHO-RSP is rejected, whether or not a
    template is cached.
    """
    checker = ReplyChecker()
    if primed:
        checker.checkEchoRSP(CANNED.echoRSP(7), 7)
    with pytest.raises(BadReply, match="MessageIDBeingRespondedTo 8, expected 9"):
        checker.checkEchoRSP(CANNED.echoRSP(8), 9)
    failed = _patched(CANNED.echoRSP(9), STATUS, 0x0122)
    with pytest.raises(BadReply, match="Status 290"):
        checker.checkEchoRSP(failed, 9)
    storeRSP = _patched(CANNED.echoRSP(9), COMMAND_FIELD, 0x8001)
    with pytest.raises(BadReply, match="CommandField 32769"):
        checker.checkEchoRSP(storeRSP, 9)
    assert checker.parsed == int(primed)


def test_checkerRejectsMalformedAndUnexpectedPDUs() -> None:
    """
    A truncated command set, a wrong PDV length, an A-ASSOCIATE-RJ where the
    AC is due and an A-ABORT where the RP is due are rejected, by kind.
    """
    checker = ReplyChecker()
    rsp = CANNED.echoRSP(1)
    with pytest.raises(BadReply, match="PDV length"):
        checker.checkEchoRSP(rsp[:-2], 1)
    truncated = rsp[:2] + struct.pack(">I", len(rsp) - 8) + struct.pack(">I", len(rsp) - 12) + rsp[10:-2]
    with pytest.raises(BadReply, match="overruns"):
        checker.checkEchoRSP(truncated, 1)
    with pytest.raises(BadReply) as rejected:
        checker.checkAC(bytes.fromhex("03000000000400010107"))
    assert rejected.value.kind == "RJ"
    with pytest.raises(BadReply) as aborted:
        checker.checkRP(bytes.fromhex("07000000000400000000"))
    assert aborted.value.kind == "abort"
    with pytest.raises(BadReply) as wrong:
        checker.checkAC(rsp)
    assert wrong.value.kind == "bad reply"


def test_parseEchoRSPReturnsTheRespondedToOffset() -> None:
    """
    The full check returns where MessageIDBeingRespondedTo's value is.
    """
    rsp = CANNED.echoRSP(0x1234)
    offset = parseEchoRSP(rsp, 0x1234)
    assert rsp[offset : offset + 2] == b"\x34\x12"
    assert offset == valueOffset(rsp, MESSAGE_ID_RESPONDED_TO)


def test_percentileIsNearestRank() -> None:
    values = list(range(1, 101))
    assert [percentile(values, p) for p in (0.5, 0.99, 1.0)] == [50, 99, 100]
    assert percentile([], 0.5) == 0


# --- the floor ------------------------------------------------------------------------


@implementer(ITCPTransport)
class _TCPStringTransport(StringTransport):
    noDelay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


def _floor() -> tuple[FloorProtocol, _TCPStringTransport]:
    protocol = FloorFactory().buildProtocol(None)
    transport = _TCPStringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


@pytest.mark.parametrize("chunk", [None, 1, 7], ids=["whole", "byte by byte", "7 bytes"])
def test_floorAnswersCapturedStream(chunk: int | None) -> None:
    """
    Fed DCMTK echoscu's whole request stream, however it is split, the
    floor answers AC, the C-ECHO-RSP to MessageID 1 and RP, in order, with
    dicomecho's bytes, and sets TCP_NODELAY.
    """
    protocol, transport = _floor()
    data = fixtureBytes("dcmtk_echoscu_default", "c2s")
    step = chunk or len(data)
    for start in range(0, len(data), step):
        protocol.dataReceived(data[start : start + step])
    assert transport.value() == CANNED.associateAC + CANNED.echoRSP(1) + CANNED.releaseRP
    assert transport.noDelay
    assert not transport.disconnecting


def test_floorPatchesEveryMessageID() -> None:
    """
    Three C-ECHO-RQs in one association (DCMTK's --repeat 3 capture, IDs
    1-3) and the load generator's own with ID 0xBEEF are each answered with
    their own MessageIDBeingRespondedTo, and the checker accepts them.
    """
    protocol, transport = _floor()
    protocol.dataReceived(fixtureBytes("dcmtk_echoscu_maxpdu", "c2s"))
    pdus = splitPDUs(transport.value())
    assert [p[0] for p in pdus] == [2, 4, 4, 4, 6]
    checker = ReplyChecker()
    checker.checkAC(pdus[0])
    for messageID, rsp in zip((1, 2, 3), pdus[1:4]):
        checker.checkEchoRSP(rsp, messageID)
    checker.checkRP(pdus[4])
    transport.clear()
    protocol.dataReceived(REQUESTS.echo(0xBEEF))
    checker.checkEchoRSP(transport.value(), 0xBEEF)


def test_floorClosesOnAbort() -> None:
    """
    An A-ABORT (anything but RQ, P-DATA-TF or RELEASE-RQ) closes the
    connection, after the replies to what came before it.
    """
    protocol, transport = _floor()
    protocol.dataReceived(REQUESTS.associateRQ + bytes.fromhex("07000000000400000000"))
    assert transport.value() == CANNED.associateAC
    assert transport.disconnecting


def test_cannedRepliesAreDicomechosForTheRequests() -> None:
    """
    The fixture the floor answers from holds an AC accepting the load
    generator's presentation context and a C-ECHO-RSP to MessageID 1.
    """
    ac, rsp, rp = splitPDUs(fixtureBytes("dcmtk_echoscu_default", "s2c"))
    assert CANNED.echoRSP(1) == rsp  # dicomecho and pynetdicom answer alike
    ReplyChecker().checkAC(CANNED.associateAC)
    assert CANNED.releaseRP == rp


# --- the quick run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def quickReport(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """
    C{python -m benchmarks.run --quick --json PATH}, run once for this
    module's smoke tests.
    """
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("the benchmark measures servers through Linux /proc")
    requirePynetdicom()
    path = tmp_path_factory.mktemp("benchmark") / "quick.json"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--json", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=QUICK_TIMEOUT, stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert path.exists(), completed.stdout + completed.stderr
    report: dict[str, Any] = json.loads(path.read_text())
    report["stdout"] = completed.stdout
    return report


EXPECTED_MODES = ["echoes/1", "echoes/8", "associations/1", "associations/8", "idle"]


def test_quickRunReportsEveryServerAndMode(quickReport: dict[str, Any]) -> None:
    """
    One round; every server produced figures for every mode; the medians,
    ratios, targets and machine description are there, and the table was
    printed.
    """
    (round_,) = quickReport["rounds"]
    assert sorted(round_["servers"]) == ["dicomecho", "floor", "pynetdicom"]
    for name, entry in round_["servers"].items():
        assert "failed" not in entry, (name, entry)
        assert list(entry["modes"]) == EXPECTED_MODES, name
        for key, result in entry["modes"].items():
            assert "failed" not in result, (name, key, result)
            if key == "idle":
                assert result["held"] > 0, (name, result)
            else:
                assert result["ops"] > 0 and result["echoesInWindow"] > 0, (name, key, result)
                assert result["serverCPUSeconds"] is not None, (name, key, result)
    assert set(quickReport["medians"]) == {"dicomecho", "floor", "pynetdicom"}
    assert quickReport["ratios"]["echoes/1"]["opsPerSecond"]["dicomecho/pynetdicom"]["perRound"]
    assert len(quickReport["targets"]) == 9
    assert {"cpuModel", "cpus", "kernel", "python", "twisted", "pydicom", "pynetdicom"} <= set(
        quickReport["machine"])
    assert "targets" in quickReport["stdout"]


@pytest.mark.parametrize("server", ["dicomecho", "floor"])
def test_quickRunHasNoErrors(quickReport: dict[str, Any], server: str) -> None:
    """
    dicomecho and the floor answered every request of every mode correctly,
    held every idle association, and exited 0 on SIGTERM.
    """
    entry = quickReport["rounds"][0]["servers"][server]
    for key, result in entry["modes"].items():
        assert result["errors"] == 0, (key, result["errorKinds"], result["errorSamples"])
        assert result["echoesOK"] == result["echoesSent"] > 0, (key, result)
    idle = entry["modes"]["idle"]
    assert idle["held"] == idle["requested"] == 200
    assert idle["echoedAfterHold"] == 200
    assert entry["exitStatus"] == 0, entry["outputTail"]
    assert entry["errorLines"] == 0, entry["outputTail"]


def test_quickRunPynetdicomHoldsItsLimit(quickReport: dict[str, Any]) -> None:
    """
    pynetdicom's refusals beyond its 10 associations are counted as
    rejections in the idle mode, not as errors.
    """
    idle = quickReport["rounds"][0]["servers"]["pynetdicom"]["modes"]["idle"]
    assert idle["held"] + idle["rejected"] + idle["errors"] == idle["requested"]
    assert idle["held"] > 0


def test_floorAnswersWithDicomechosBytes(quickReport: dict[str, Any]) -> None:
    """
    The replies the load generator cached from the floor are byte for byte
    the ones it cached from the running dicomecho. If dicomecho's AC
    changes, re-capture: C{python -m benchmarks.floor --capture PORT}.
    """
    servers = quickReport["rounds"][0]["servers"]
    dicomecho = servers["dicomecho"]["modes"]["echoes/1"]["templates"]
    floor = servers["floor"]["modes"]["echoes/1"]["templates"]
    assert dicomecho["associateAC"] is not None
    assert floor == dicomecho


@pytest.mark.peer
def test_scaleSmokeRun(tmp_path: Path) -> None:
    """
    python -m benchmarks.scale with 1 and 2 processes on one reuseport:
    port, briefly: every configuration and mode has figures and no errors
    (that both processes serve is tests/test_reuseport.py's to show).
    """
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--rounds", "1", "--duration", "0.3",
         "--warmup", "0.1", "--no-pynetdicom", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    medians = result["summary"]["medians"]
    assert set(medians) == {f"dicomechox{n}/{m}" for n in (1, 2) for m in ("associations", "echoes")}
    for figure in medians.values():
        assert figure["opsPerSecond"] > 0
        assert figure["errors"] == 0
    assert "dicomechox2/echoes / dicomechox1/echoes" in result["summary"]["ratios"]
