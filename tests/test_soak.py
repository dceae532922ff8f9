"""
The soak benchmark (L{benchmarks.soak}) at CI size: a real
C{python -m dicomecho} server flooded over loopback with TCP probes,
associate/abort cycles and full associations must answer every one
correctly and keep its RSS and open fds flat. The full-size run is
C{python -m benchmarks.soak}; this takes a few seconds.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest

from benchmarks import soak
from tests.support.helpers import fixtureBytes

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="measures the server through Linux /proc"
)

COUNTS = {"probes": 3000, "aborts": 1000, "associations": 1000}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """
    One soak run at CI size, shared by this module's tests, with the
    affinity of this process before and after it.
    """
    before = os.sched_getaffinity(0)
    result = soak.runSoak(COUNTS, maxSeconds=30.0, opTimeout=10.0, settle=5.0)
    result["affinity"] = (before, os.sched_getaffinity(0))
    return result


def phaseResult(report: dict[str, Any], phase: str) -> dict[str, Any]:
    return next(p for p in report["phases"] if p["phase"] == phase)


@pytest.mark.parametrize("phase", soak.PHASES)
def test_phaseCompletesWithoutErrors(report: dict[str, Any], phase: str) -> None:
    """
    Every connection of the phase completes and every reply is the right
    one: no client error, no C{E:} line from the server, no time limit hit.
    """
    result = phaseResult(report, phase)
    assert result["errors"] == 0, (result["errorKinds"], result["errorSamples"])
    assert result["stoppedEarly"] is None
    assert result["completed"] == COUNTS[phase]
    assert result["serverLog"].get("E: lines", 0) == 0, report["environment"]["serverErrorLines"]


@pytest.mark.parametrize("phase", soak.PHASES)
def test_phaseLeavesRSSAndFDsFlat(report: dict[str, Any], phase: str) -> None:
    """
    After the phase, once the server has settled, its RSS is within 5% of
    the level measured after the warm-up, and it holds at most 2 more fds.
    """
    result = phaseResult(report, phase)
    assert result["rssWarmKB"] > 0
    assert result["rssEndKB"] <= result["rssWarmKB"] * 1.05, result
    assert result["fdEnd"] <= result["fdWarm"] + 2, result


def test_serverSawEveryAssociation(report: dict[str, Any]) -> None:
    """
    The server's own log agrees with the client: probes log nothing at
    C{-v}; each associate/abort cycle is accepted and then aborted by the
    peer; each full association is accepted, echoed and released; each
    association ends with its one summary line.
    """
    assert phaseResult(report, "probes")["serverLog"] == {}
    assert phaseResult(report, "aborts")["serverLog"] == {
        "accepted": COUNTS["aborts"],
        "aborted by peer": COUNTS["aborts"],
        "summaries": COUNTS["aborts"],
    }
    assert phaseResult(report, "associations")["serverLog"] == {
        "accepted": COUNTS["associations"],
        "echo requests": COUNTS["associations"],
        "released": COUNTS["associations"],
        "summaries": COUNTS["associations"],
    }


def test_serverStoppedAndAffinityRestored(report: dict[str, Any]) -> None:
    """
    The server is stopped by SIGTERM and exits 0, and this process's CPU
    affinity is what it was before the run.
    """
    assert report["environment"]["serverExitStatus"] == 0
    before, after = report["affinity"]
    assert before == after
    assert report["passed"]


def test_checksAcceptCapturedReplies() -> None:
    """
    The reply checks accept the replies a real SCP (pynetdicom's echoscp)
    gave DCMTK's echoscu: AC, C-ECHO-RSP to MessageID 1, RP.
    """
    ac, rsp, rp = soak.splitPDUs(fixtureBytes("dcmtk_echoscu_default", "s2c"))
    soak.checkAC(ac)
    soak.checkEchoRSP(rsp, 1)
    soak.checkRP(rp)


def test_checksRejectWrongReplies() -> None:
    """
    The reply checks refuse a reply to another MessageID, a failure
    status, an RJ or an A-ABORT where an AC or RP was due, and a C-ECHO-RSP
    where the AC was due.
    """
    ac, rsp, rp = soak.splitPDUs(fixtureBytes("dcmtk_echoscu_default", "s2c"))
    with pytest.raises(soak.ReplyError, match="MessageIDBeingRespondedTo"):
        soak.checkEchoRSP(rsp, 2)
    status = rsp.rindex(struct.pack("<HHI", 0x0000, 0x0900, 2)) + 8
    failed = rsp[:status] + struct.pack("<H", 0x0122) + rsp[status + 2 :]
    with pytest.raises(soak.ReplyError, match="status"):
        soak.checkEchoRSP(failed, 1)
    with pytest.raises(soak.ReplyError, match="A-ASSOCIATE-RJ instead of A-ASSOCIATE-AC"):
        soak.checkAC(bytes.fromhex("03000000000400010107"))
    with pytest.raises(soak.ReplyError, match="A-ABORT instead of A-RELEASE-RP"):
        soak.checkRP(soak.ABORT)
    with pytest.raises(soak.ReplyError, match="P-DATA-TF instead of A-ASSOCIATE-AC"):
        soak.checkAC(rsp)
