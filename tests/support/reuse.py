"""
Many associations against one port, for the tests of several server
processes sharing it (C{reuseport:}, systemd socket activation):
L{runEchoes} runs them with DCMTK's echoscu, L{countAccepted} says how
many each process accepted.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from tests.support.peers import requireEchoscu
from tests.support.processes import Server

__all__ = ["ACCEPTING", "CONCURRENCY", "countAccepted", "runEchoes"]

#: Associations run at once by L{runEchoes}.
CONCURRENCY = 8

#: The C{-v} line a server logs for each association it accepts.
ACCEPTING = "Accepting Association"


def runEchoes(port: int, count: int) -> None:
    """
    Run C{count} associations with DCMTK echoscu (each: associate, C-ECHO,
    release) against 127.0.0.1:C{port}, L{CONCURRENCY} at a time; fail if
    any does not succeed.
    """
    echoscu = requireEchoscu()

    def one(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [echoscu, "-aec", "ECHOSCP", "-to", "10", "-ta", "10", "-td", "10",
             "127.0.0.1", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(one, range(count)))
    failed = [r for r in results if r.returncode != 0]
    assert not failed, f"{len(failed)} of {count} echoes failed: {failed[0].stderr}"


def countAccepted(
    processes: Sequence[Server], port: int, batch: int = 40, limit: int = 200
) -> list[int]:
    """
    Run associations in batches of C{batch} until every process has
    accepted at least one, or C{limit} have run; return how many each
    accepted (their C{-v} "Accepting Association" lines), once they add up
    to the number run (bounded wait).
    """
    before = [p.count(ACCEPTING) for p in processes]
    total = 0
    counts = [0] * len(processes)
    while total < limit:
        runEchoes(port, batch)
        total += batch
        deadline = time.monotonic() + 10
        while True:
            counts = [p.count(ACCEPTING) - b for p, b in zip(processes, before)]
            if sum(counts) >= total or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert sum(counts) == total, (counts, total)
        if all(counts):
            break
    return counts
