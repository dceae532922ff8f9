# -*- test-case-name: tests.test_logs -*-
"""
Every log event dicomecho emits: its name (L{EventName}, the C{dicomEvent}
field of the JSON log) and one emitter per event that fixes its level,
text and fields. Renderers (L{dicomecho.observability.logs}) match on the
same names.

Emitters of events that may be off at the current level test it first,
so building their fields costs nothing then.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Mapping, Protocol

from twisted.logger import LogLevel
from twisted.python.failure import Failure

from dicomecho.association.commandset import CommandField
from dicomecho.association.dimse import DIMSEMessage
from dicomecho.association.fsm import AbortIndication
from dicomecho.association.negotiation import Acceptance, Rejection
from dicomecho.observability.levels import isEnabled, log
from dicomecho.wire.errors import RemoteProtocolError
from dicomecho.wire.pdu import AssociateRQ

__all__ = [
    "EventName",
    "Named",
    "commandName",
    "emitShutdown",
    "emitShutdownAbort",
    "emitConnectionRefused",
    "emitConnectionClosed",
    "emitTLSEstablished",
    "emitTLSRefused",
    "emitInvalidPDU",
    "emitAssociateRQ",
    "emitAccepted",
    "emitRejected",
    "emitDIMSEReceived",
    "emitReleased",
    "emitAborted",
    "emitTimeout",
    "emitResponderFailed",
    "emitSummary",
    "emitIdentityCheckFailed",
    "emitIdentityThrottled",
]


class Named(Protocol):
    """
    Who an event is about; asked only when the event is emitted.
    """

    def peerText(self) -> str: ...


class EventName(Enum):
    """
    The C{dicomEvent} of each event; the value is what logs carry.
    """

    STARTUP = "startup"
    LISTENING = "listening"
    LISTEN_FAILED = "listen-failed"
    METRICS_LISTENING = "metrics-listening"
    WEB_LISTENING = "web-listening"
    INSECURE_LISTENER = "insecure-listener"
    DESCRIPTOR_LIMIT = "descriptor-limit"
    SHUTDOWN = "shutdown"
    SHUTDOWN_ABORT = "shutdown-abort"
    CONNECTION_REFUSED = "connection-refused"
    SOURCE_LIMITED = "source-limited"
    CONNECTIONS_SHED = "connections-shed"
    CONNECTION_CLOSED = "connection-closed"
    PROXY_HEADER_INVALID = "proxy-header-invalid"
    TLS_ESTABLISHED = "tls-established"
    TLS_REFUSED = "tls-refused"
    ASSOCIATE_RQ = "associate-rq"
    ASSOCIATION_ACCEPTED = "association-accepted"
    ASSOCIATION_REJECTED = "association-rejected"
    DIMSE_RECEIVED = "dimse-received"
    ASSOCIATION_RELEASED = "association-released"
    ASSOCIATION_ABORTED = "association-aborted"
    ASSOCIATION_ABORTING = "association-aborting"
    ASSOCIATION_SUMMARY = "association-summary"
    INVALID_PDU = "invalid-pdu"
    TIMEOUT = "timeout"
    RESPONDER_FAILED = "responder-failed"
    IDENTITY_CHECK_FAILED = "identity-check-failed"
    IDENTITY_THROTTLED = "identity-throttled"



def commandName(commandField: int) -> str:
    """
    echoscp's wording for a received message: "Echo Request" for a
    C-ECHO-RQ, else the PS3.7 name (e.g. "C-STORE-RQ").
    """
    if commandField == CommandField.C_ECHO_RQ:
        return "Echo Request"
    try:
        return CommandField(commandField).name.replace("_", "-")
    except ValueError:
        return f"command 0x{commandField:04X}"


# --- the server's life ---------------------------------------------------------


def emitDescriptorLimit(soft: int, hard: int, needed: int, maxAssociations: int) -> None:
    """
    The descriptor limit in effect (debug; JSON only, echoscp's C{-d} has
    no such line), and a warning at any level but quiet when it is below
    C{needed} (C{soft} of -1 is unlimited).
    """
    fields = dict(peer="", soft=soft, hard=hard, needed=needed, maxAssociations=maxAssociations)
    name = EventName.DESCRIPTOR_LIMIT.value
    log.debug("File descriptor limit: {soft} (hard limit {hard})", dicomEvent=name, **fields)
    if 0 <= soft < needed:
        log.warn(
            "File descriptor limit {soft} is below the {needed} that {maxAssociations} "
            "associations and connections not yet associated need: raise the hard "
            "limit (systemd: LimitNOFILE=) or lower --max-associations/--max-pending",
            dicomEvent=name,
            dicomAlways=True,
            **fields,
        )


def emitShutdown(associations: int, connections: int, grace: float) -> None:
    log.info(
        "Shutting down: {associations} association(s) may finish within {grace} s",
        dicomEvent=EventName.SHUTDOWN.value,
        peer="",
        associations=associations,
        connections=connections,
        grace=grace,
    )


def emitShutdownAbort(count: int) -> None:
    log.info(
        "Aborting {count} association(s) still open after the grace period",
        dicomEvent=EventName.SHUTDOWN_ABORT.value,
        peer="",
        count=count,
    )


# --- connections --------------------------------------------------------------


def emitConnectionRefused(peer: Named, why: str) -> None:
    log.warn(
        "Refused connection from {peer}: {why}",
        dicomEvent=EventName.CONNECTION_REFUSED.value,
        peer=peer.peerText(),
        why=why,
    )


def emitSourceLimited(source: str, limit: str, refusals: int, detail: str) -> None:
    """
    One source broke a per-source limit: one line per source and limit per
    interval, counting the refusals since the last.
    """
    log.warn(
        "Source {source}: {refusals} refused ({detail})",
        dicomEvent=EventName.SOURCE_LIMITED.value,
        source=source,
        limit=limit,
        refusals=refusals,
        detail=detail,
    )


def emitConnectionsShed(shed: int, limit: int) -> None:
    """
    The oldest connections not yet associated were closed to make room:
    one line per interval, counting those since the last.
    """
    log.warn(
        "Closed {shed} connection(s) not yet associated to make room for newer "
        "ones (at the limit of {limit}, --max-pending)",
        dicomEvent=EventName.CONNECTIONS_SHED.value,
        peer="",
        shed=shed,
        limit=limit,
    )


def emitConnectionClosed(peer: Named, detail: str) -> None:
    log.debug(
        "Connection from {peer} closed: {detail}",
        dicomEvent=EventName.CONNECTION_CLOSED.value,
        peer=peer.peerText(),
        detail=detail,
    )


def emitTLSEstablished(peer: Named, tlsInfo: Mapping[str, str | None]) -> None:
    if isEnabled(LogLevel.info):
        log.info(
            "TLS {tlsVersion} from {peer} ({tlsCipher}), client certificate: {subject}",
            dicomEvent=EventName.TLS_ESTABLISHED.value,
            peer=peer.peerText(),
            subject=tlsInfo.get("tlsSubject") or "none",
            **tlsInfo,
        )


def emitTLSRefused(peer: Named, why: str, tlsInfo: Mapping[str, str | None]) -> None:
    log.error(
        "TLS handshake with {peer} failed: {why}",
        dicomEvent=EventName.TLS_REFUSED.value,
        peer=peer.peerText(),
        why=why,
        **tlsInfo,
    )


def emitInvalidPDU(peer: Named, error: RemoteProtocolError) -> None:
    log.error(
        "Invalid PDU from {peer}: {error}",
        dicomEvent=EventName.INVALID_PDU.value,
        peer=peer.peerText(),
        error=str(error),
        abortReason=int(error.abortReason),
        looksLike=getattr(error, "looksLike", None),
    )


# --- associations -------------------------------------------------------------


def emitAssociateRQ(peer: Named, rq: AssociateRQ) -> None:
    if isEnabled(LogLevel.debug):
        log.debug("A-ASSOCIATE-RQ from {peer}", dicomEvent=EventName.ASSOCIATE_RQ.value, peer=peer.peerText(), rq=rq)


def emitAccepted(
    peer: Named, acceptance: Acceptance, user: str | None, tlsInfo: Mapping[str, str | None]
) -> None:
    if isEnabled(LogLevel.info):
        log.info(
            "Accepting Association",
            dicomEvent=EventName.ASSOCIATION_ACCEPTED.value,
            peer=peer.peerText(),
            rq=acceptance.rq,
            ac=acceptance.ac,
            contexts=acceptance.contexts,
            user=user,
            **tlsInfo,
        )


def emitRejected(peer: Named, rejection: Rejection, tlsInfo: Mapping[str, str | None]) -> None:
    rj = rejection.rj
    # echoscp reports a protocol version it cannot serve (1, 2, 2) as an
    # error; every other rejection is information.
    level = LogLevel.error if (rj.result, rj.source, rj.reason) == (1, 2, 2) else LogLevel.info
    log.emit(
        level,
        "Rejecting Association",
        dicomEvent=EventName.ASSOCIATION_REJECTED.value,
        peer=peer.peerText(),
        rq=rejection.rq,
        rj=rj,
        result=rj.result,
        source=rj.source,
        diagnostic=rj.reason,
        reason=rejection.reason,
        **tlsInfo,
    )


def emitDIMSEReceived(peer: Named, message: DIMSEMessage) -> None:
    log.info(
        "Received {commandName} (MsgID {messageID})",
        dicomEvent=EventName.DIMSE_RECEIVED.value,
        peer=peer.peerText(),
        commandName=commandName(message.commandField),
        commandField=message.commandField,
        messageID=message.messageID,
        contextID=message.contextID,
        message=message,
    )


def emitReleased(peer: Named) -> None:
    if isEnabled(LogLevel.info):
        log.info("Association Released", dicomEvent=EventName.ASSOCIATION_RELEASED.value, peer=peer.peerText())


def emitAborted(peer: Named, indication: AbortIndication) -> None:
    name = EventName.ASSOCIATION_ABORTED if indication.byPeer else EventName.ASSOCIATION_ABORTING
    log.info(
        "Association Aborted" if indication.byPeer else "Aborting Association",
        dicomEvent=name.value,
        peer=peer.peerText(),
        source=indication.source,
        reason=indication.reason,
        detail=indication.detail,
    )


def emitTimeout(peer: Named, what: str) -> None:
    log.error("{what} timeout reached", what=what, dicomEvent=EventName.TIMEOUT.value, peer=peer.peerText())


def emitResponderFailed(peer: Named, failure: Failure) -> None:
    log.failure(
        "Service responder failed; aborting the association",
        failure,
        dicomEvent=EventName.RESPONDER_FAILED.value,
        peer=peer.peerText(),
    )


def emitSummary(*, hint: str | None = None, **fields: Any) -> None:
    """
    The one C{association-summary} of a connection (fields as
    L{dicomecho.server.protocol} gathers them). C{hint} is what to change,
    in plain words (L{dicomecho.observability.hints}); C{None} (JSON
    C{null}) for a plain success.
    """
    log.info(
        "Association from {peer}: {outcome} ({reason})",
        dicomEvent=EventName.ASSOCIATION_SUMMARY.value,
        hint=hint,
        **fields,
    )


# --- user identity --------------------------------------------------------------


def emitIdentityCheckFailed(peer: Named, failure: Failure) -> None:
    log.failure(
        "User identity check failed; rejecting the association",
        failure,
        dicomEvent=EventName.IDENTITY_CHECK_FAILED.value,
        peer=peer.peerText(),
    )


def emitIdentityThrottled(peer: Named, host: str, failures: int, delay: float) -> None:
    log.warn(
        "{failures} failed user identity checks from {host}: answering in {delay} s",
        dicomEvent=EventName.IDENTITY_THROTTLED.value,
        peer=peer.peerText(),
        host=host,
        failures=failures,
        delay=delay,
    )
