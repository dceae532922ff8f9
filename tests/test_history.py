"""
Tests for L{dicomecho.observability.history}: the bounded history of
connections, its counters and per-minute counts (pure: times are given).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import pytest

from dicomecho.association.negotiation import AssociationPolicy, negotiate
from dicomecho.association.outcome import Outcome
from dicomecho.observability.history import (
    CHART_MINUTES,
    COALESCE_SECONDS,
    MAX_DETAIL_LINES,
    MAX_KEPT_CONTEXTS,
    MAX_KEPT_SYNTAXES,
    AssociationHistory,
    AssociationRecord,
    Category,
    fitsAsObjects,
    keepAsText,
)
from dicomecho.observability.logblocks import associateRQLines
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.pdu import AssociateRQ
from tests.support.harness import rq


def record(outcome: Outcome = Outcome.RELEASED, at: float = 0.0, **fields: object) -> AssociationRecord:
    fields.setdefault("peer", "192.0.2.1:4000")
    return AssociationRecord(startedAt=at, outcome=outcome, reason="r", **fields)  # type: ignore[arg-type]


def test_boundedNewestFirst() -> None:
    history = AssociationHistory(3)
    for n in range(5):
        history.add(record(at=float(n)))
    assert len(history) == 3
    assert [r.number for r in history.newestFirst()] == [5, 4, 3]
    assert history.find(3) is not None and history.find(2) is None and history.find(6) is None
    assert history.find(5).startedAt == 4.0  # type: ignore[union-attr]


def test_limitMustBePositive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AssociationHistory(0)


def test_countersByCategory() -> None:
    history = AssociationHistory(2)
    for outcome in (
        Outcome.RELEASED, Outcome.REJECTED, Outcome.ABORTED_BY_PEER, Outcome.CONNECTION_LOST,
        Outcome.REFUSED, Outcome.NO_ASSOCIATION,
    ):
        history.add(record(outcome))
    history.add(record(Outcome.REFUSED, connections=10))
    # Counters count since start, not only what is kept.
    assert history.counts == {
        Category.ACCEPTED: 1, Category.REJECTED: 1, Category.ABORTED: 2, Category.REFUSED: 11,
        Category.NO_ASSOCIATION: 1,
    }


def test_perMinuteLastHour() -> None:
    history = AssociationHistory()
    history.add(record(at=60.0 * 10 + 5))
    history.add(record(Outcome.REJECTED, at=60.0 * 10 + 50))
    history.add(record(at=60.0 * 12))
    minutes = history.perMinute(60.0 * 12 + 30)
    assert len(minutes) == CHART_MINUTES
    assert minutes[-1] == (12, {**dict.fromkeys(Category, 0), Category.ACCEPTED: 1})
    assert minutes[-3][1][Category.REJECTED] == 1 and minutes[-3][1][Category.ACCEPTED] == 1
    # An hour later the old minutes are gone, from the chart and from memory.
    history.add(record(at=60.0 * 75))
    assert sum(sum(c.values()) for _, c in history.perMinute(60.0 * 75)) == 1
    assert len(history._minutes) <= CHART_MINUTES  # type: ignore[attr-defined]


def test_listeners() -> None:
    history = AssociationHistory()
    heard: list[int] = []
    stop = history.listen(lambda r: heard.append(r.number))
    history.add(record())
    stop()
    stop()  # twice is harmless
    history.add(record())
    assert heard == [1]


def test_keepsTextOfLargeRequests() -> None:
    """
    A request with more contexts than kept as objects keeps its -d text,
    cut to a bounded number of lines, instead of the request and answer.
    """
    contexts = tuple(
        PresentationContextRQ(2 * n + 1, "1.2.840.10008.1.1", tuple(f"1.2.3.{k}" for k in range(30)))
        for n in range(MAX_KEPT_CONTEXTS + 1)
    )
    request = rq(*contexts)
    kept = record(answer=negotiate(request, AssociationPolicy()))
    keepAsText(kept, associateRQLines(request))
    assert kept.request is None and kept.answer is None
    assert len(kept.detailLines) == MAX_DETAIL_LINES + 1
    assert kept.detailLines[-1].startswith("... ") and kept.detailLines[-1].endswith("more lines not kept")
    short = record()
    keepAsText(short, ["a", "b"])
    assert short.detailLines == ("a", "b")


def test_fitsAsObjects() -> None:
    """Few contexts and transfer syntaxes: kept as objects; many of either: not."""
    def contexts(n: int, syntaxes: int) -> AssociateRQ:
        return rq(*(PresentationContextRQ(2 * k + 1, "1.2.840.10008.1.1",
                                          tuple(f"1.2.3.{s}" for s in range(syntaxes))) for k in range(n)))

    assert fitsAsObjects(contexts(1, MAX_KEPT_SYNTAXES))
    assert not fitsAsObjects(contexts(1, MAX_KEPT_SYNTAXES + 1))
    assert fitsAsObjects(contexts(MAX_KEPT_CONTEXTS, 4))
    assert not fitsAsObjects(contexts(MAX_KEPT_CONTEXTS + 1, 1))
    assert not fitsAsObjects(contexts(8, MAX_KEPT_SYNTAXES // 8 + 1))


def test_hintsAreMadeWhenRead() -> None:
    """
    A record's hint is made when it is first read (or heard), once: adding
    one costs no hint.
    """
    history = AssociationHistory()
    made: list[int] = []
    history.hinter = lambda r: made.append(r.number) or f"hint {r.number}"
    history.add(record())
    history.add(record())
    assert made == []
    assert [r.hint for r in history.newestFirst()] == ["hint 2", "hint 1"]
    assert history.find(1).hint == "hint 1"  # type: ignore[union-attr]
    assert made == [2, 1]
    history.listen(lambda r: None)
    history.add(record())
    assert made == [2, 1, 3]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Outcome)), st.floats(0, 1e6)), max_size=60),
       st.integers(1, 10))
def test_historyBounds(entries: list[tuple[Outcome, float]], limit: int) -> None:
    """Whatever is added, at most C{limit} are kept, newest first, and findable."""
    history = AssociationHistory(limit)
    for n, (outcome, at) in enumerate(entries):
        # One source each: connections without a request are not coalesced.
        history.add(record(outcome, at, peer=f"10.0.0.{n}:4000"))
    kept = list(history.newestFirst())
    assert len(kept) == min(limit, len(entries))
    assert [r.number for r in kept] == list(range(len(entries), len(entries) - len(kept), -1))
    assert all(history.find(r.number) is r for r in kept)
    assert sum(history.counts.values()) == len(entries)


def test_connectionsWithoutRequestAreCoalesced() -> None:
    """
    Connections from one source that end alike without a request within
    COALESCE_SECONDS share one row (its count grows); listeners hear of it
    at 2, 4, 8 ... Another source, another reason, a later time, or a row
    gone from the history start a new one. Associations are never merged.
    """
    history = AssociationHistory(3)
    heard: list[tuple[int, int]] = []
    history.listen(lambda r: heard.append((r.number, r.connections)))

    def silent(peer: str, at: float, reason: str = "ARTIM") -> None:
        history.add(AssociationRecord(at, peer, Outcome.NO_ASSOCIATION, reason))

    for n in range(9):
        silent(f"192.0.2.1:{1000 + n}", n * 0.5)
    assert [(r.number, r.connections) for r in history.newestFirst()] == [(1, 9)]
    assert heard == [(1, 1), (1, 2), (1, 4), (1, 8)]
    assert history.counts[Category.NO_ASSOCIATION] == 9
    silent("192.0.2.2:1", 5.0)
    silent("192.0.2.1:2000", 5.0, reason="other")
    silent("192.0.2.1:2001", 5.0 + COALESCE_SECONDS)
    assert [r.connections for r in history.newestFirst()] == [1, 1, 1]
    silent("192.0.2.1:2002", 6.0 + COALESCE_SECONDS)  # counted in #4
    assert [(r.number, r.connections) for r in history.newestFirst()] == [(4, 2), (3, 1), (2, 1)]
    for _ in range(3):
        history.add(record(at=17.0))
    silent("192.0.2.1:2003", 17.0)  # #4 is gone from the history: a new row
    assert next(history.newestFirst()).number == 8
