# -*- test-case-name: tests.test_recording -*-
"""
What a closed connection leaves behind: its C{association-summary} event
(JSON, and the C{-v} line) and, with C{--web}, its record in the
server's L{AssociationHistory}. Both carry the same hint
(L{dicomecho.observability.hints}), so the log and the page agree.

Nothing is built at the default level without C{--web}: the protocol
does not call it.
"""

from __future__ import annotations

from typing import Mapping, Protocol

from dicomecho.association.association import Association
from dicomecho.association.fsm import AbortIndication
from dicomecho.association.negotiation import AssociationPolicy
from dicomecho.association.outcome import NOTHING_SENT, Outcome
from dicomecho.observability import events
from dicomecho.observability.hints import hintFor
from dicomecho.observability.history import (
    AssociationHistory,
    AssociationRecord,
    Refusal,
    fitsAsObjects,
    keepAsText,
)
from dicomecho.observability.logblocks import associateRQLines
from dicomecho.observability.logs import listeningAddress
from dicomecho.server.admission import Admission
from dicomecho.wire.errors import RemoteProtocolError, UnrecognizedPDUError

__all__ = ["ConnectionFacts", "reportConnection"]

_NO_ASSOCIATION = Outcome.NO_ASSOCIATION
_NO_TITLES = (None, None)


class ConnectionFacts(Protocol):
    """What a closed connection tells about itself (the protocol)."""

    startedAt: float
    abortIndication: AbortIndication | None
    expiredTimer: str | None
    invalidPDU: RemoteProtocolError | None

    def peerHostPort(self) -> tuple[str, int | None]: ...


def reportConnection(
    connection: ConnectionFacts,
    association: Association,
    admission: Admission | None,
    policy: AssociationPolicy,
    history: AssociationHistory | None,
    now: float,
    summaries: bool,
) -> None:
    """
    The summary event (when C{summaries} are emitted, info, and the
    connection was not refused: a refusal has its own line) and the
    history's record.
    """
    refusal = admission.refusal if admission is not None else None
    summarize = summaries and refusal is None
    keep = history is not None and refusal is not Refusal.SOURCE_LIMIT
    if not (summarize or keep):
        return
    record = _record(connection, association, admission, now)
    if summarize:
        record.hint, record.hinted = hintFor(record, policy), True
        _emitSummary(connection, association, record)
    if keep and (record.outcome is not _NO_ASSOCIATION or record.reason != NOTHING_SENT):
        # Not a port scan or a TCP health check (closed without a byte).
        # The hint is made when the record is read (history.hinter).
        request = record.request
        if request is not None and not fitsAsObjects(request):
            keepAsText(record, associateRQLines(request))
        history.add(record)  # type: ignore[union-attr]


def _record(
    connection: ConnectionFacts, association: Association, admission: Admission | None, now: float
) -> AssociationRecord:
    started = connection.startedAt
    titles = association.titles or _NO_TITLES
    record = AssociationRecord(
        started, listeningAddress(*connection.peerHostPort()), association.outcome,
        association.reason,
        titles[0], titles[1], now - started, association.messages,
    )
    answer = association.answer
    if answer is not None:
        record.answer = answer
    if admission is not None:
        record.user, record.tls = admission.user, admission.tlsInfo
        record.refusal, record.tlsFailure = admission.refusal, admission.tlsFailure
    # What only a connection that went wrong has.
    abort = connection.abortIndication
    if abort is not None:
        record.abort, record.abortedByPeer = (abort.source, abort.reason), abort.byPeer
    record.timer = connection.expiredTimer
    invalid = connection.invalidPDU
    if isinstance(invalid, UnrecognizedPDUError):
        record.foreign = invalid.looksLike
    return record


def _emitSummary(
    connection: ConnectionFacts, association: Association, record: AssociationRecord
) -> None:
    host, port = connection.peerHostPort()
    contexts = association.contexts.values()
    tls: Mapping[str, str | None] = record.tls
    events.emitSummary(
        peer=record.peer,
        peerHost=host,
        peerPort=port,
        callingAETitle=record.callingAETitle,
        calledAETitle=record.calledAETitle,
        contexts=[f"{c.contextID}:{c.abstractSyntax}/{c.transferSyntax}" for c in contexts],
        outcome=record.outcome.value,
        reason=record.reason,
        durationSeconds=round(record.durationSeconds, 6),
        messages=record.messages,
        user=record.user,
        hint=record.hint,
        **tls,
    )
