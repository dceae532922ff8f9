"""
Per-source limits against a real peer (DCMTK's echoscu, which connects
from 127.0.0.1): another source's associations or silent connections do
not count against it; its own do, and it gets the refusal PS3.8 provides
((2, 3, 2) for an association) until they are gone.
"""

from __future__ import annotations

import pytest

from tests.support.associations import echoscu  # noqa: F401 (fixture)
from tests.support.hostile import Client
from tests.support.peers import runEchoscu
from tests.support.processes import runningServer


@pytest.mark.peer
def test_associationsPerSource(echoscu):
    limits = {"maxAssociations": 1}
    with runningServer(sourceLimits=limits) as server:
        with Client(server.port(), source="127.0.0.2") as other:
            other.associate()
            status, output = runEchoscu(echoscu, server.port())
            assert status == 0, output  # another source's association does not count
            with Client(server.port()) as same:
                same.associate()
                status, output = runEchoscu(echoscu, server.port())
                assert status != 0, output
                assert "Association Rejected" in output, output
                assert "Rejected Transient" in output and "Local Limit Exceeded" in output, output
        status, output = runEchoscu(echoscu, server.port())
        assert status == 0, output
        server.waitForEvents(
            lambda events: any(
                e.name == "source-limited" and e.fields.get("source") == "127.0.0.1"
                and e.fields.get("limit") == "associations"
                for e in events
            ),
            "the source-limited line",
        )


@pytest.mark.peer
def test_pendingPerSource(echoscu):
    limits = {"maxPending": 2}
    with runningServer(sourceLimits=limits) as server:
        others = [Client(server.port(), source="127.0.0.3") for _ in range(2)]
        status, output = runEchoscu(echoscu, server.port())
        assert status == 0, output
        silent = [Client(server.port()) for _ in range(2)]
        status, output = runEchoscu(echoscu, server.port())
        assert status != 0, output
        for client in silent + others:
            client.close()
        # The refused connection has no summary: its source-limited line
        # stands for it.
        events = server.waitForEvents(
            lambda events: sum(e.name == "association-summary" for e in events) >= 5,
            "the silent connections' ends",
        )
        (limited,) = [e for e in events if e.name == "source-limited"]
        assert (limited.fields["source"], limited.fields["limit"]) == ("127.0.0.1", "pending")
        status, output = runEchoscu(echoscu, server.port())
        assert status == 0, output
