# -*- test-case-name: tests.test_history -*-
"""
The recent connections a server saw, for the live page (C{--web}): one
L{AssociationRecord} per connection that did something (an
A-ASSOCIATE-RQ, foreign bytes, a refusal), newest last, at most
C{--web-history} of them; counters since start, and associations per
minute by category over the last hour. Pure: the caller gives the time.

A record keeps the decoded request and the answer by reference (shared
with the acceptance cache for a known request); a large request (more
than L{MAX_KEPT_CONTEXTS} contexts or L{MAX_KEPT_SYNTAXES} transfer
syntaxes) leaves the text of its C{-d} block instead, cut at
L{MAX_DETAIL_LINES} lines, so that every record stays small.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterator, Mapping

from dicomecho.association.negotiation import Acceptance, Rejection
from dicomecho.association.outcome import Outcome
from dicomecho.security.sourcelimits import SourceLimit
from dicomecho.security.tlsfailures import TLSFailureKind
from dicomecho.wire.pdu import AssociateRQ

__all__ = [
    "CHART_MINUTES",
    "COALESCE_SECONDS",
    "DEFAULT_HISTORY",
    "MAX_DETAIL_LINES",
    "MAX_KEPT_CONTEXTS",
    "MAX_KEPT_SYNTAXES",
    "AssociationHistory",
    "AssociationRecord",
    "Category",
    "fitsAsObjects",
    "keepAsText",
    "Refusal",
]

#: Records kept by default (C{--web-history}).
DEFAULT_HISTORY = 1000
#: A request with more presentation contexts keeps text, not objects.
MAX_KEPT_CONTEXTS = 32
#: ... or more proposed transfer syntaxes, over all its contexts.
MAX_KEPT_SYNTAXES = 128
#: The longest detail text a record keeps, in lines (about 16 KiB).
MAX_DETAIL_LINES = 200
#: Minutes the per-minute counts cover.
CHART_MINUTES = 60
#: Connections from one source that end alike without a request within
#: this many seconds of the first share its record.
COALESCE_SECONDS = 10.0
#: Sources remembered for coalescing (beyond, all are forgotten at once).
_MAX_RECENT = 4096


class Refusal(Enum):
    """Why a connection was turned away before DICOM."""

    ACCESS_LIST = "access-list"
    SOURCE_LIMIT = "source-limit"
    SHED = "shed"
    TLS_HANDSHAKE = "tls-handshake"


class Category(Enum):
    """The page's grouping of outcomes (counters, chart, filter)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ABORTED = "aborted"
    REFUSED = "refused"
    NO_ASSOCIATION = "no-association"

    # Looked up per record: identity hashing, not Enum's (a Python call).
    __hash__ = object.__hash__


#: The categories whose records are coalesced: no request came.
_COALESCED = frozenset({Category.REFUSED, Category.NO_ASSOCIATION})

_CATEGORIES = {
    Outcome.RELEASED: Category.ACCEPTED,
    Outcome.ESTABLISHED: Category.ACCEPTED,
    Outcome.REJECTED: Category.REJECTED,
    Outcome.ABORTED: Category.ABORTED,
    Outcome.ABORTED_BY_PEER: Category.ABORTED,
    Outcome.CONNECTION_LOST: Category.ABORTED,
    Outcome.REFUSED: Category.REFUSED,
    Outcome.NO_ASSOCIATION: Category.NO_ASSOCIATION,
}


@dataclass(slots=True, eq=False)
class AssociationRecord:
    """
    One connection, as the page shows it.

    @ivar startedAt: when it connected (seconds since the epoch).
    @ivar peer: C{host:port} (the PROXY header's client where there is one).
    @ivar answer: the acceptance or rejection sent, if any and kept; its
        C{rq} is the record's L{request}.
    @ivar detailLines: for a request too large to keep: its C{-d} text.
    @ivar abort: the A-ABORT (source, reason) that ended it, ours or the
        peer's (reason C{None}: the transport closed).
    @ivar abortedByPeer: whether the peer aborted or closed.
    @ivar timer: the timer that expired (L{Timer
        <dicomecho.association.timers.Timer>} value), if one did.
    @ivar foreign: what the first bytes looked like when they were not
        DICOM (C{"a TLS handshake"}, ...).
    @ivar refusal: why it was turned away, for a refused connection; with
        C{sourceLimit} or C{tlsFailure} naming which.
    @ivar connections: how many connections it stands for: more than one for
        refusals by a per-source limit, and for connections from one source
        that ended alike without a request within L{COALESCE_SECONDS}.
    @ivar hint: what to change, in plain words (L{dicomecho.observability.hints}),
        once C{hinted}.
    @ivar number: its place in the history, from 1.
    """

    startedAt: float
    peer: str
    outcome: Outcome
    reason: str
    callingAETitle: str | None = None
    calledAETitle: str | None = None
    durationSeconds: float = 0.0
    messages: int = 0
    answer: Acceptance | Rejection | None = None
    detailLines: tuple[str, ...] = ()
    user: str | None = None
    tls: Mapping[str, str | None] = field(default_factory=dict)
    abort: tuple[int, int | None] | None = None
    abortedByPeer: bool = False
    timer: str | None = None
    foreign: str | None = None
    refusal: Refusal | None = None
    sourceLimit: SourceLimit | None = None
    tlsFailure: TLSFailureKind | None = None
    connections: int = 1
    hint: str | None = None
    #: Whether C{hint} is known: the history has it made when the record
    #: is first read (L{AssociationHistory.hinter}), not as it is added.
    hinted: bool = False
    number: int = 0

    @property
    def category(self) -> Category:
        return _CATEGORIES[self.outcome]

    @property
    def request(self) -> AssociateRQ | None:
        """The A-ASSOCIATE-RQ answered, if the record keeps it."""
        answer = self.answer
        return answer.rq if answer is not None else None

    @property
    def rejection(self) -> tuple[int, int, int] | None:
        """The A-ASSOCIATE-RJ's (result, source, reason), if one was sent."""
        answer = self.answer
        if isinstance(answer, Rejection):
            rj = answer.rj
            return rj.result, rj.source, rj.reason
        return None

    @property
    def implementation(self) -> tuple[str | None, str | None]:
        """The SCU's implementation class UID and version name (PS3.7 D.3.3.2-3)."""
        info = self.request.userInformation if self.request is not None else None
        if info is None:
            return None, None
        return info.implementationClassUID, info.implementationVersionName


def fitsAsObjects(rq: AssociateRQ) -> bool:
    """
    Whether a record may keep C{rq} as it is: at most L{MAX_KEPT_CONTEXTS}
    contexts and L{MAX_KEPT_SYNTAXES} transfer syntaxes.
    """
    contexts = rq.presentationContexts
    if len(contexts) == 1:
        return len(contexts[0].transferSyntaxes) <= MAX_KEPT_SYNTAXES
    return len(contexts) <= MAX_KEPT_CONTEXTS and (
        sum(len(pc.transferSyntaxes) for pc in contexts) <= MAX_KEPT_SYNTAXES
    )


def keepAsText(record: AssociationRecord, lines: list[str]) -> None:
    """
    Keep the C{-d} text of a request that does not L{fitsAsObjects}
    instead of the request and its answer, cut to L{MAX_DETAIL_LINES} lines.
    """
    if len(lines) > MAX_DETAIL_LINES:
        cut = len(lines) - MAX_DETAIL_LINES
        lines = lines[:MAX_DETAIL_LINES] + [f"... {cut} more lines not kept"]
    record.detailLines = tuple(lines)
    record.answer = None


class AssociationHistory:
    """
    The last C{limit} records, counters by category since start, and the
    per-minute counts of the last hour; listeners hear of each new record.
    """

    #: Makes a record's hint when it is first read (the server sets it).
    hinter: Callable[[AssociationRecord], str | None] | None = None

    def __init__(self, limit: int = DEFAULT_HISTORY) -> None:
        if limit < 1:
            raise ValueError(f"the history must hold at least 1 record, not {limit}")
        self.limit = limit
        self._records: deque[AssociationRecord] = deque(maxlen=limit)
        self._added = 0
        self.counts: dict[Category, int] = dict.fromkeys(Category, 0)
        self._minutes: dict[int, dict[Category, int]] = {}
        self._minute = -1
        self._thisMinute: dict[Category, int] = {}
        self._listeners: list[Callable[[AssociationRecord], None]] = []
        #: The latest coalescable record of each (source, outcome, reason).
        self._recent: dict[tuple[str, Outcome, str], AssociationRecord] = {}

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: AssociationRecord) -> None:
        """
        Keep C{record} (the oldest goes beyond the limit) and tell the
        listeners; or, for a connection that ended alike without a request
        (L{_COALESCED}), count it in the record that stands for its source.
        """
        category = _CATEGORIES[record.outcome]
        if category in _COALESCED:
            recent = self._coalescedInto(record)
            if recent is not None:
                self._count(category, record)
                # The listeners hear of its growing count at 2, 4, 8 ...:
                # a flood does not become a flood of events.
                if recent.connections & (recent.connections - 1) == 0:
                    self._tell(recent)
                return
        self._added += 1
        record.number = self._added
        self._records.append(record)
        self._count(category, record)
        self._tell(record)

    def _tell(self, record: AssociationRecord) -> None:
        if self._listeners:
            self.hinted(record)
            for listener in list(self._listeners):
                listener(record)

    def _coalescedInto(self, record: AssociationRecord) -> AssociationRecord | None:
        """
        The kept record of the same source, outcome and reason from the
        last L{COALESCE_SECONDS} that now counts C{record} too, if any: a
        flood of silent or refused connections is a few rows, not the
        whole history.
        """
        key = (record.peer.rpartition(":")[0] or record.peer, record.outcome, record.reason)
        recent = self._recent.get(key)
        oldest = self._added - len(self._records) + 1
        if (
            recent is not None
            and recent.number >= oldest
            and record.startedAt - recent.startedAt < COALESCE_SECONDS
        ):
            recent.connections += record.connections
            return recent
        if len(self._recent) >= _MAX_RECENT:
            self._recent.clear()
        self._recent[key] = record
        return None

    def _count(self, category: Category, record: AssociationRecord) -> None:
        """Count C{record} since start and in its minute."""
        self.counts[category] += record.connections
        minute = int(record.startedAt // 60)
        if minute != self._minute:
            self._minute = minute
            if minute not in self._minutes:
                self._minutes[minute] = dict.fromkeys(Category, 0)
                for old in [m for m in self._minutes if m <= minute - CHART_MINUTES]:
                    del self._minutes[old]
            self._thisMinute = self._minutes[minute]
        self._thisMinute[category] += record.connections

    def hinted(self, record: AssociationRecord) -> AssociationRecord:
        """C{record}, with its hint made if it was not yet."""
        if not record.hinted and self.hinter is not None:
            record.hint = self.hinter(record)
            record.hinted = True
        return record

    def newestFirst(self) -> Iterator[AssociationRecord]:
        return map(self.hinted, reversed(self._records))

    def find(self, number: int) -> AssociationRecord | None:
        """The record numbered C{number}, if still kept."""
        oldest = self._added - len(self._records) + 1
        if oldest <= number <= self._added:
            return self.hinted(self._records[number - oldest])
        return None

    def perMinute(self, now: float) -> list[tuple[int, dict[Category, int]]]:
        """
        The last L{CHART_MINUTES} minutes up to C{now}, oldest first: each
        minute (since the epoch) and its counts by category.
        """
        last = int(now // 60)
        empty = dict.fromkeys(Category, 0)
        return [
            (m, self._minutes.get(m, empty)) for m in range(last - CHART_MINUTES + 1, last + 1)
        ]

    def listen(self, listener: Callable[[AssociationRecord], None]) -> Callable[[], None]:
        """Call C{listener} with each new record; returns what stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None
