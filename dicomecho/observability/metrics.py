# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics of a L{DICOMServerFactory}, through C{prometheus_client}
(the C{metrics} extra: C{pip install 'dicomecho[metrics]'}).

L{DICOMEchoCollector} reads the factory's L{dicomecho.observability.stats.ServerStats}
when scraped, so nothing is counted twice and the per-echo path pays
nothing. L{metricsResource} is the C{twisted.web} resource to serve them;
C{--metrics ENDPOINT} serves it at C{/metrics}.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from dicomecho.observability.stats import ABORT_SOURCES, DURATION_BUCKETS
from dicomecho.security.sourcelimits import SourceLimit
from dicomecho.security.tlsfailures import TLSFailureKind
from dicomecho.wire.vocabulary import REJECT_LABELS

__all__ = ["DICOMEchoCollector", "metricsRegistry", "metricsResource", "metricsSite"]

_NAMESPACE = "dicomecho"


def _labels(known: Iterable[str], counts: dict[str, int]) -> list[tuple[str, int]]:
    # Every known label value appears (at 0 until it happens), so a rate()
    # over it is defined from the start; "other" catches the rest.
    values = dict.fromkeys(known, 0)
    values.update(counts)
    return sorted(values.items())


class DICOMEchoCollector:
    """
    A C{prometheus_client} collector of one or more factories' stats.
    """

    def __init__(self, *factories: Any) -> None:
        self.factories = factories

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = [f.stats for f in self.factories]

        def counter(name: str, doc: str, value: int) -> Any:
            return CounterMetricFamily(f"{_NAMESPACE}_{name}", doc, value=value)

        yield counter("associations_accepted", "Associations accepted (A-ASSOCIATE-AC sent).", _total(stats, "accepted"))
        yield _labelled(
            "associations_rejected",
            "Associations rejected (A-ASSOCIATE-RJ sent), by reason.",
            "reason",
            REJECT_LABELS,
            _merged(stats, "rejected"),
        )
        yield _labelled(
            "associations_aborted",
            "Established associations aborted: by us (local), by the peer's "
            "A-ABORT (peer), or by the connection dropping (transport).",
            "source",
            ABORT_SOURCES.values(),
            _merged(stats, "aborted"),
        )
        yield counter("associations_released", "Associations released (A-RELEASE completed).", _total(stats, "released"))
        yield counter(
            "echoes_answered",
            "DIMSE requests answered (C-ECHO, and refusals of other commands).",
            sum(f.messagesAnswered() for f in self.factories),
        )
        yield from _refusals(stats)
        yield _labelled(
            "tls_handshake_failures",
            "TLS handshakes that failed, by kind.",
            "kind",
            [kind.value for kind in TLSFailureKind],
            {kind.value: count for kind, count in _merged(stats, "tlsFailures").items()},
        )
        yield GaugeMetricFamily(
            f"{_NAMESPACE}_associations_active",
            "Associations established now.",
            value=sum(f.activeAssociations for f in self.factories),
        )
        yield GaugeMetricFamily(
            f"{_NAMESPACE}_connections_open",
            "Connections open now, associated or not.",
            value=sum(f.openConnections for f in self.factories),
        )
        yield _durations(stats)


def _refusals(stats: list[Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily

    yield CounterMetricFamily(
        f"{_NAMESPACE}_connections_refused",
        "Connections closed on connect: source not in the allow-list.",
        value=_total(stats, "refusedConnections"),
    )
    yield CounterMetricFamily(
        f"{_NAMESPACE}_connections_shed",
        "Connections not yet associated closed to make room for newer ones "
        "(--max-pending).",
        value=_total(stats, "shedConnections"),
    )
    yield _labelled(
        "source_limit_refusals",
        "Connections closed (pending, rate) or associations rejected (2, 3, 2) "
        "because their source was at a per-source limit.",
        "limit",
        [limit.value for limit in SourceLimit],
        _merged(stats, "sourceRefusals"),
    )


def _total(stats: list[Any], name: str) -> int:
    return sum(getattr(s, name) for s in stats)


def _merged(stats: list[Any], name: str) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for s in stats:
        for key, value in getattr(s, name).items():
            out[key] = out.get(key, 0) + value
    return out


def _labelled(name: str, doc: str, label: str, known: Iterable[str], counts: dict[str, int]) -> Any:
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(f"{_NAMESPACE}_{name}", doc, labels=[label])
    for value, count in _labels(known, counts):
        family.add_metric([value], count)
    return family


def _durations(stats: list[Any]) -> Any:
    """
    The association duration histogram of all C{stats}, cumulative as
    Prometheus wants it.
    """
    from prometheus_client.core import HistogramMetricFamily

    counts = [0] * (len(DURATION_BUCKETS) + 1)
    durationSum = 0.0
    for s in stats:
        counts = [a + b for a, b in zip(counts, s.durationCounts)]
        durationSum += s.durationSum
    cumulative, buckets = 0, []
    for bound, count in zip([*map(str, DURATION_BUCKETS), "+Inf"], counts):
        cumulative += count
        buckets.append((bound, cumulative))
    return HistogramMetricFamily(
        f"{_NAMESPACE}_association_duration_seconds",
        "How long established associations lasted, from A-ASSOCIATE-AC to their end.",
        buckets=buckets,
        sum_value=durationSum,
    )


def metricsRegistry(*factories: Any) -> Any:
    """
    A registry with the factories' collector and the process collector
    (CPU, memory, file descriptors of this process).
    """
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry()
    registry.register(DICOMEchoCollector(*factories))
    ProcessCollector(registry=registry)
    return registry


def metricsResource(*factories: Any) -> Any:
    """
    The C{twisted.web} resource serving the factories' metrics.
    """
    from prometheus_client.twisted import MetricsResource

    return MetricsResource(registry=metricsRegistry(*factories))


def metricsSite(*factories: Any) -> Any:
    """
    A C{twisted.web} site with the metrics at C{/metrics} (and C{/}).
    """
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    resource = metricsResource(*factories)
    root = Resource()
    root.putChild(b"metrics", resource)
    root.putChild(b"", resource)
    site = Site(root)
    site.noisy = False
    return site
