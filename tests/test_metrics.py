"""
Metrics: L{dicomecho.observability.stats} counted by whole associations through the
protocol (fake transport, Clock), rendered by L{dicomecho.observability.metrics} in the
Prometheus text format, and scraped from a running C{--metrics} server
while DCMTK and pynetdicom associate.
"""

from __future__ import annotations

import sys
import urllib.request
from typing import Any

import pytest
from OpenSSL import SSL
from prometheus_client import generate_latest
from twisted.internet.task import Clock

from dicomecho.security.access import AccessList
from dicomecho.observability.metrics import metricsRegistry
from dicomecho.wire.pdu import Abort, AssociateRQ, ReleaseRQ
from dicomecho.server.factory import DICOMServerFactory
from dicomecho.association.outcome import Outcome
from dicomecho.observability.stats import ABORT_SOURCES, DURATION_BUCKETS, ServerStats
from dicomecho.security.tlsfailures import TLSFailureKind, classifyHandshakeFailure, handshakeTimeout
from dicomecho.wire.vocabulary import rejectLabel
from tests.support.peers import requirePynetdicom
from tests.support.processes import TIMEOUT, Server, servers, start  # noqa: F401 (fixture)
from tests.support.peers import echoscu
from tests.support.harness import echo, rq
from tests.support.admission import connect, request  # noqa: F401 (fixture)


def scrape(*factories: DICOMServerFactory) -> dict[str, float]:
    """
    The text format parsed into {"name{labels}": value}, our metrics only.
    """
    text = generate_latest(metricsRegistry(*factories)).decode()
    return parseMetrics(text)


def parseMetrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line.startswith("dicomecho_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_labels() -> None:
    assert rejectLabel(1, 1, 3) == "calling-ae-title"
    assert rejectLabel(2, 3, 2) == "local-limit"
    assert rejectLabel(1, 1, 9) == "other"
    assert classifyHandshakeFailure(SSL.Error([]), b"\x01\x00").kind.value == "plain-dicom"
    untrusted = SSL.Error([("SSL routines", "", "certificate verify failed")])
    assert classifyHandshakeFailure(untrusted, b"\x16\x03").kind.value == "untrusted-certificate"
    assert handshakeTimeout(2).kind.value == "timeout"
    assert classifyHandshakeFailure(RuntimeError("something new")).kind.value == "other"
    assert set(ABORT_SOURCES) == {Outcome.ABORTED, Outcome.ABORTED_BY_PEER, Outcome.CONNECTION_LOST}


def test_tlsFailuresByKind() -> None:
    """
    The stats count TLS failures by kind; each kind's value is its label.
    """
    stats = ServerStats()
    stats.tlsFailed(TLSFailureKind.TIMEOUT)
    stats.tlsFailed(TLSFailureKind.TIMEOUT)
    stats.tlsFailed(TLSFailureKind.HTTP)
    assert stats.tlsFailures == {TLSFailureKind.TIMEOUT: 2, TLSFailureKind.HTTP: 1}


def test_histogramBuckets() -> None:
    """
    An observation equal to a bound counts in that bucket (Prometheus'
    "less than or equal"); beyond the last, in +Inf.
    """
    stats = ServerStats()
    for duration in (0.001, 0.0011, 300.0, 301.0):
        stats.connectionEnded(Outcome.RELEASED, 0, duration)
    assert stats.durationCounts[0] == 1
    assert stats.durationCounts[1] == 1
    assert stats.durationCounts[len(DURATION_BUCKETS) - 1] == 1
    assert stats.durationCounts[-1] == 1
    assert stats.durationCount == 4


def test_countedByOutcome(connect: Any, clock: Clock) -> None:
    """
    Released, aborted by each source, rejected, refused on connect, and
    messages of open and closed connections: each counted once.
    """
    factory = DICOMServerFactory(
        clock=clock, requireCalledAETitle=True, access=AccessList.build(["10.0.0.0/8"])
    )
    released = connect("10.0.0.1", factory=factory)
    released.send(request(), echo(1), echo(2))
    clock.advance(0.003)
    released.send(ReleaseRQ())
    released.close()
    byPeer = connect("10.0.0.2", factory=factory)
    byPeer.send(request(), Abort(0, 0))
    byPeer.close()
    dropped = connect("10.0.0.3", factory=factory)
    dropped.send(request(), echo(1))
    dropped.close()
    local = connect("10.0.0.4", factory=factory)
    local.send(request(), b"\x04\x00\x00\x00\x00\x02\x00\x00")  # a PDV shorter than its header
    local.close()
    rejected = connect("10.0.0.5", factory=factory)
    rejected.send(AssociateRQ("SOMEONE", "SCU", presentationContexts=rq().presentationContexts))
    rejected.close()
    connect("192.168.0.1", factory=factory).close()
    open_ = connect("10.0.0.6", factory=factory)
    open_.send(request(), echo(1), echo(2), echo(3))
    values = scrape(factory)
    assert values["dicomecho_associations_accepted_total"] == 5
    assert values["dicomecho_associations_released_total"] == 1
    assert values['dicomecho_associations_aborted_total{source="peer"}'] == 1
    assert values['dicomecho_associations_aborted_total{source="transport"}'] == 1
    assert values['dicomecho_associations_aborted_total{source="local"}'] == 1
    assert values['dicomecho_associations_rejected_total{reason="called-ae-title"}'] == 1
    assert values["dicomecho_connections_refused_total"] == 1
    assert values["dicomecho_echoes_answered_total"] == 2 + 1 + 3
    assert values["dicomecho_associations_active"] == 1
    assert values["dicomecho_connections_open"] == 1
    assert values["dicomecho_association_duration_seconds_count"] == 4
    assert values['dicomecho_association_duration_seconds_bucket{le="0.0025"}'] == 3
    assert values['dicomecho_association_duration_seconds_bucket{le="0.005"}'] == 4
    assert values["dicomecho_association_duration_seconds_sum"] == pytest.approx(0.003)
    open_.close()


def test_labelsStayBounded(connect: Any, clock: Clock) -> None:
    """
    A thousand distinct calling AE titles and sources add no series.
    """
    factory = DICOMServerFactory(clock=clock, allowedCallingAETitles=["CT1"])
    before = set(scrape(factory))
    for i in range(1000):
        h = connect(f"10.{i // 256}.{i % 256}.1", factory=factory)
        h.send(request(f"AE{i}"))
        h.close()
    values = scrape(factory)
    assert set(values) == before
    assert values['dicomecho_associations_rejected_total{reason="calling-ae-title"}'] == 1000


@pytest.mark.peer
def test_scrapedFromARunningServer(servers: list[Server]) -> None:
    """
    python -m dicomecho --metrics tcp:0: DCMTK echoes, a rejected request
    and an open pynetdicom association, as a scrape shows them.
    """
    server = start(
        servers,
        [sys.executable, "-m", "dicomecho", "-v", "--require-called-aet", "--bind-address", "127.0.0.1",
         "--metrics", "tcp:0:interface=127.0.0.1", "0"],
    )
    port = int(server.waitFor(r"^I: Listening on .*\(127\.0\.0\.1:(\d+)\)").group(1))
    metricsPort = int(server.waitFor(r"^I: Serving metrics on .*\(127\.0\.0\.1:(\d+)\)").group(1))
    for _ in range(3):
        assert echoscu(port).returncode == 0
    refused = echoscu(port, "-aec", "SOMEONE")
    assert refused.returncode != 0
    pynetdicom = requirePynetdicom()
    ae = pynetdicom.AE(ae_title="PYSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="ECHOSCP")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0

    def metrics() -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{metricsPort}/metrics", timeout=TIMEOUT) as response:
            assert response.status == 200
            return parseMetrics(response.read().decode())

    during = metrics()
    assert during["dicomecho_associations_active"] == 1
    assert during["dicomecho_associations_accepted_total"] == 4
    assert during["dicomecho_echoes_answered_total"] == 4
    assert during['dicomecho_associations_rejected_total{reason="called-ae-title"}'] == 1
    assoc.release()
    server.waitFor(r"Association Released")
    after = metrics()
    assert after["dicomecho_associations_active"] == 0
    assert after["dicomecho_associations_released_total"] == 4
    assert after["dicomecho_association_duration_seconds_count"] == 4
    assert server.stop() == 0
