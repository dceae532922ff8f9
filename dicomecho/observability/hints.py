# -*- test-case-name: tests.test_hints -*-
"""
What to change, in plain words, for one connection (the C{hint} of an
L{AssociationRecord}: the live page, the JSON summary, the C{-v} line):
L{hintFor}. The wording is data, templates keyed by the codes and Enum
members they explain (PS3.8 Tables 9-18, 9-21, 9-26; timers, refusals,
foreign first bytes), filled with fields made on demand (L{_Fields}).
Peer values (AE titles, UIDs, usernames) are cut short and escaped: a
hint never carries a control character. Pure: no reactor, no I/O.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Callable, Iterable

from pydicom.uid import UID

from dicomecho.association.negotiation import (
    CAPACITY_REACHED,
    Acceptance,
    AssociationPolicy as _Policy,
    Rejection,
    TransferSyntaxPreference,
    transferSyntaxOrder,
)
from dicomecho.association.outcome import Outcome
from dicomecho.association.timers import Timer
from dicomecho.observability.history import AssociationRecord as _Record, Refusal
from dicomecho.observability.logblocks import escape
from dicomecho.security.identity import IDENTITY_TYPE_NAMES, usernameText
from dicomecho.security.sourcelimits import LIMIT_OPTIONS, SourceLimit
from dicomecho.security.tlsfailures import TLSFailureKind
from dicomecho.wire import vocabulary
from dicomecho.wire.errors import AbortSource
from dicomecho.wire.items import PresentationContextRQ, PresentationResult
from dicomecho.wire.pdu import RejectReason, RejectSource, validateAETitle
from dicomecho.wire.recognition import FirstBytes

__all__ = [
    "REJECTION_HINTS", "CALLING_HINTS", "IDENTITY_HINTS", "LOCAL_LIMIT_HINTS",
    "OUR_ABORT_HINTS", "PEER_ABORT_HINTS", "CLOSED_HINTS", "CONTEXT_HINTS",
    "TRANSFER_SYNTAX_HINTS", "TIMER_HINTS", "REFUSAL_HINTS",
    "SOURCE_LIMIT_HINTS", "TLS_FAILURE_HINTS", "FOREIGN_HINTS", "abortKey", "hintFor",
]

_USER, _ACSE, _PRESENTATION = RejectSource  # sources 1, 2, 3 of PS3.8 Table 9-21
_NOT_OURS = "which dicomecho does not send itself; its log line for this association says why."

#: A-ASSOCIATE-RJ (source, reason), PS3.8 Table 9-21 (L{vocabulary.REJECT_REASONS}), any
#: result. Where we have several causes, the cause tables below refine these.
REJECTION_HINTS: dict[tuple[int, int], str] = {
    **{key: "dicomecho rejected the association ({result}, {source}) with the reserved "
       f"reason {{code}}, {_NOT_OURS}" for key in vocabulary.REJECT_REASONS},
    (_USER, RejectReason.NO_REASON_GIVEN): "dicomecho rejected the association ({result}) "
    f"without a reason, {_NOT_OURS}",
    (_USER, RejectReason.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED): "The SCU proposed application "
    "context {appContext}, not DICOM's 1.2.840.10008.3.1.1.1. Fix the SCU's configuration.",
    (_USER, RejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED): "dicomecho did not accept the calling "
    "AE title '{calling}'. Set the SCU's calling AE title to one dicomecho allows.",
    (_USER, RejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED): "The SCU called '{called}', but "
    "dicomecho answers only to '{ours}' (--require-called-aet). Set the SCU's called "
    "(destination) AE title to {ours}, {aeFix}.",
    (_ACSE, RejectReason.ACSE_NO_REASON_GIVEN): "dicomecho refused the SCU's user identity "
    "({reason}). Check the SCU's username and passcode against --credentials.",
    (_ACSE, RejectReason.PROTOCOL_VERSION_NOT_SUPPORTED): "The SCU claims protocol version "
    "{version}, without version 1 (bit 0): it is broken or not DICOM. Update or replace it.",
    (_PRESENTATION, RejectReason.TEMPORARY_CONGESTION): "dicomecho reported temporary "
    f"congestion ({{result}}), {_NOT_OURS} Retry later from the SCU.",
    (_PRESENTATION, RejectReason.LOCAL_LIMIT_EXCEEDED): "dicomecho was at a local limit "
    "({reason}). The SCU may retry later; if it is frequent, raise that limit on dicomecho.",
}

#: Rejections (1, 1, 3) by cause: --allow-calling-aet, or --allow-peer for the SCU's address.
CALLING_HINTS: dict[str, str] = {
    "allow-calling-aet": "The SCU calls itself '{calling}', not one of dicomecho's "
    "--allow-calling-aet titles ({allowed}). Set the SCU's calling AE title to one of them, "
    "or add --allow-calling-aet {callingFix} to dicomecho.",
    "allow-peer": "The SCU calls itself '{calling}', which dicomecho's --allow-peer rules do "
    "not allow from {host}. Add --allow-peer {callingFix}@{host} to dicomecho, or use the "
    "calling AE title allowed from there on the SCU.",
}

#: Rejections (1, 2, 1) of a user identity (PS3.7 D.3.3.7) by cause.
IDENTITY_HINTS: dict[str, str] = {
    "missing": "dicomecho requires a user identity (--user-identity required) and the SCU "
    "sent none. Configure a username and passcode on the SCU, or use --user-identity optional.",
    "unsupported": "The SCU sent a {identityType} identity, which dicomecho's --credentials "
    "cannot verify. Configure a username and passcode on the SCU instead.",
    "username": "The SCU sent username '{user}' without a passcode, which dicomecho's "
    "--credentials does not admit. Send the passcode too, or add the user on dicomecho with "
    "python -m dicomecho.passwd --no-passcode FILE {user}.",
    "passcode": "dicomecho's --credentials did not accept user '{user}' with that passcode. "
    "Check both on the SCU, or reset it with python -m dicomecho.passwd FILE {user}.",
    "unchecked": "dicomecho could not check the user identity: its --credentials file is "
    "unreadable or its checker failed (see its error). Fix that; the SCU is not at fault.",
}

#: Rejections (2, 3, 2), local-limit-exceeded, not from a per-source limit.
LOCAL_LIMIT_HINTS: dict[str, str] = {
    "capacity": "dicomecho was at --max-associations associations at once, or shutting down. "
    "The SCU may retry later; if it is frequent, raise --max-associations.",
    "identity-checks": "dicomecho had too many user identity checks in progress (32). The "
    "SCU may retry in a moment; a slow --credentials check or a burst of SCUs cause this.",
}


_RAISE = "raise {option} on dicomecho if that traffic is legitimate."
#: Per-source limits: connections closed, or rejections (2, 3, 2).
SOURCE_LIMIT_HINTS: dict[SourceLimit, str] = {
    SourceLimit.PENDING: "Source {host} held too many connections not yet associated "
    f"({{option}}). Find what opens idle connections there, or {_RAISE}",
    SourceLimit.ASSOCIATIONS: "Source {host} already held its {option} associations at once. "
    f"Make the SCU release its associations, or {_RAISE}",
    SourceLimit.RATE: "Source {host} opened connections faster than {option} allows. Slow the "
    f"SCU's retries, or {_RAISE}",
    SourceLimit.REQUEST_BYTES: "Source {host} sent more A-ASSOCIATE-RQ bytes per second than "
    f"{{option}} allows. Slow the SCU's association loop, or {_RAISE}",
    SourceLimit.HANDSHAKES: "Source {host} started more TLS handshakes per second than "
    f"{{option}} allows. Have the SCU reuse associations or slow down, or {_RAISE}",
}

_OUR_ABORT = "dicomecho aborted the association itself ({reason}); the SCU may retry."
_PROVIDER = AbortSource.SERVICE_PROVIDER

#: A-ABORTs dicomecho sent, by L{abortKey} (PS3.8 Table 9-26).
OUR_ABORT_HINTS: dict[tuple[int, int | None], str] = {
    (AbortSource.SERVICE_USER, None): _OUR_ABORT,
    (AbortSource.RESERVED, None): _OUR_ABORT,
    **{(_PROVIDER, r): "dicomecho aborted ({abortReason}): the SCU sent a PDU it could not "
       "accept ({reason}). Fix or update the SCU." for r in vocabulary.ABORT_REASONS},
    (_PROVIDER, 0): _OUR_ABORT,
    (_PROVIDER, 1): "The SCU sent a PDU type DICOM does not define: it is not a DICOM SCU, or "
    "has the wrong port. Check what connects to this port of dicomecho.",
    (_PROVIDER, 2): "The SCU sent a PDU out of order ({reason}). Fix or update the SCU; "
    "dicomecho's -d log shows the exchange.",
    (_PROVIDER, 6): "The SCU sent an invalid PDU value ({reason}). Fix the SCU, or raise "
    "dicomecho's --max-pdu or --max-associate-length if it is only too large.",
}

#: Our service-user aborts (0, 0) by the cause our sentence names.
_OUR_CAUSES: dict[str, str] = {
    "shutting down": "dicomecho was shutting down and the association outlived "
    "--shutdown-grace. Nothing to change on the SCU; raise --shutdown-grace if needed.",
    "responder failed": "A service responder in dicomecho failed (see the responder-failed "
    "error). Fix that responder; the SCU is not at fault.",
}

#: A-ABORTs the SCU sent, by L{abortKey} (PS3.8 Table 9-26).
PEER_ABORT_HINTS: dict[tuple[int, int | None], str] = {
    (AbortSource.SERVICE_USER, None): "The SCU aborted the association itself. Its own log "
    "says why (often its timeout, or an answer from dicomecho it did not expect).",
    (AbortSource.RESERVED, None): "The SCU sent an A-ABORT with the reserved source 1: it is "
    "broken. Check its log and update it.",
    **{(_PROVIDER, r): "The SCU's DICOM layer aborted ({abortReason}): it could not handle a "
       "PDU from dicomecho, or gave up. Check the SCU's log." for r in vocabulary.ABORT_REASONS},
}

#: A transport closed without A-RELEASE or A-ABORT (PS3.8 §7.4), by whether the peer did.
CLOSED_HINTS: dict[bool, str] = {
    True: "The SCU closed the TCP connection without A-RELEASE or A-ABORT. Check its log, and "
    "any firewall or balancer idle timeout between it and dicomecho.",
    False: "dicomecho closed the connection before an association ({reason}); nothing to "
    "change on the SCU if dicomecho was shutting down.",
}

_TS_ANY = (
    "The SCU {proposed} for {abstract} on context {contextID}, none of the {count} transfer "
    "syntaxes dicomecho accepts{option}. Have the SCU offer Implicit VR Little Endian, which "
    "every DICOM application supports.{more}"
)
_NOT_OUR_RESULT = "which dicomecho's negotiation does not do; see its -d log.{more}"

#: Presentation context results (PS3.8 Table 9-18) but acceptance.
CONTEXT_HINTS: dict[int, str] = {
    PresentationResult.USER_REJECTION: "Context {contextID} ({abstract}) was rejected by the "
    f"service-user, {_NOT_OUR_RESULT}",
    PresentationResult.NO_REASON: "Context {contextID} ({abstract}) was rejected without a "
    f"reason, {_NOT_OUR_RESULT}",
    PresentationResult.ABSTRACT_SYNTAX_NOT_SUPPORTED: "The SCU proposed {abstract} on context "
    "{contextID}, but dicomecho serves only {served}. Have the SCU propose that to test "
    "the link, and send other services to an SCP that has them.{more}",
    PresentationResult.TRANSFER_SYNTAXES_NOT_SUPPORTED: _TS_ANY,
}

#: Result 4 by what we accept (C{-xi}, echoscp's other lists, our own), or none proposed.
TRANSFER_SYNTAX_HINTS: dict[str, str] = {
    "-xi": "The SCU {proposed} for {abstract} on context {contextID}, but dicomecho runs with "
    "-xi (Implicit VR Little Endian only). Have the SCU also offer Implicit VR Little Endian, "
    "or start dicomecho without -xi.{more}",
    "echoscp": _TS_ANY,
    "custom": "The SCU {proposed} for {abstract} on context {contextID}, but dicomecho accepts "
    "only {accepted}. Have the SCU offer one of those, or add its own to dicomecho's list.{more}",
    "none": "The SCU proposed no transfer syntax for {abstract} on context {contextID}. It must "
    "propose one, e.g. Implicit VR Little Endian.{more}",
}
_NO_CONTEXTS = (
    "The SCU proposed no presentation context, so it could send nothing. Configure it to "
    "propose {served}."
)

#: Timers that expired (L{Timer}).
TIMER_HINTS: dict[Timer, str] = {
    Timer.ARTIM: "The client sent no A-ASSOCIATE-RQ within dicomecho's --acse-timeout: a "
    "health check, a port scan, or an SCU waiting or speaking something else. If the SCU is "
    "slow, raise --acse-timeout.",
    Timer.NETWORK: "The SCU sent nothing for dicomecho's --network-timeout while associated. "
    "Make the SCU release when done, or raise --network-timeout.",
    Timer.DIMSE: "The SCU left a DIMSE message unfinished beyond dicomecho's --dimse-timeout. "
    "Check the network and the SCU, or raise --dimse-timeout on a slow link.",
}
_ARTIM_AFTER_END = (
    "The SCU did not close the connection after the association ended; dicomecho closed it "
    "after --acse-timeout. Harmless; update the SCU if it persists."
)

#: Connections turned away before DICOM (L{Refusal}), unless the limit or failure is named.
REFUSAL_HINTS: dict[Refusal, str] = {
    Refusal.ACCESS_LIST: "The SCU's address {host} is outside every network dicomecho allows. "
    "Add it on dicomecho (--allow-network, --allow-peer), or connect from an allowed host.",
    Refusal.SOURCE_LIMIT: "Source {host} was over a per-source limit of dicomecho ({reason}). "
    "Slow that SCU down, or raise the limit if its traffic is legitimate.",
    Refusal.SHED: "dicomecho held --max-pending connections not yet associated and closed "
    "this, the oldest. Find what holds idle connections, or raise --max-pending.",
    Refusal.TLS_HANDSHAKE: "The TLS handshake with the SCU failed ({reason}). Check its TLS "
    "settings against dicomecho's --tls-cert and --tls-ca.",
}

#: TLS handshakes that failed (L{TLSFailureKind}).
TLS_FAILURE_HINTS: dict[TLSFailureKind, str] = {
    TLSFailureKind.PLAIN_DICOM: "The SCU sent plain DICOM to dicomecho's TLS port. Turn TLS on "
    "in the SCU (e.g. echoscu +tls), or point it at dicomecho's plain port.",
    TLSFailureKind.HTTP: "An HTTP client reached dicomecho's TLS DICOM port. Point it "
    "elsewhere; check DICOM with python -m dicomecho.ping --tls.",
    TLSFailureKind.OLD_VERSION: "The SCU offered only TLS below 1.2, and dicomecho requires "
    "TLS 1.2 or 1.3 (BCP 195). Enable TLS 1.2 or 1.3 on the SCU.",
    TLSFailureKind.NO_CLIENT_CERTIFICATE: "The SCU sent no client certificate and dicomecho "
    "requires one (--tls-ca). Give the SCU a certificate, or use --tls-client-cert optional.",
    TLSFailureKind.UNTRUSTED_CERTIFICATE: "dicomecho does not trust the SCU's certificate "
    "({reason}). Issue it from a CA in --tls-ca, or add the SCU's CA there.",
    TLSFailureKind.NO_SHARED_CIPHER: "The SCU shares no cipher suite with dicomecho (TLS 1.3, "
    "or TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305). Enable those on the SCU.",
    TLSFailureKind.TIMEOUT: "The SCU did not finish its TLS handshake within dicomecho's "
    "--acse-timeout (a TCP check, or a stalled SCU). Raise --acse-timeout on a slow link.",
    TLSFailureKind.SERVER_CERTIFICATE_REJECTED: "The SCU rejected dicomecho's certificate "
    "({reason}). Add the CA of --tls-cert to the SCU's trusted CAs; check the host name.",
    TLSFailureKind.CLOSED: "The SCU closed the connection during the TLS handshake, often as "
    "it does not trust dicomecho's --tls-cert. Check the SCU's log.",
    TLSFailureKind.OTHER: REFUSAL_HINTS[Refusal.TLS_HANDSHAKE],
}

_TLS_PORT = "dicomecho's TLS listener (port 2762: --tls-key/--tls-cert, or --listen dicomtls:)"
_NOT_DICOM = "The client sent {what}, not DICOM. Point it at the right port, not dicomecho's."
_PROXY_HEADER = (
    "A balancer sends PROXY headers to dicomecho's plain port. Listen with --listen "
    "haproxy:tcp:PORT, or turn send-proxy off in the balancer."
)

#: Foreign first bytes on the plain port (L{FirstBytes} but DICOM, nothing).
FOREIGN_HINTS: dict[FirstBytes, str] = {
    FirstBytes.TLS: "The SCU opened with a TLS ClientHello on dicomecho's plain DICOM port, so "
    f"it speaks TLS. Point it at {_TLS_PORT}, or turn TLS off on the SCU.",
    FirstBytes.TLS_UNKNOWN_VERSION: _NOT_DICOM,
    FirstBytes.SSLV2: "The SCU opened with an SSLv2 ClientHello on dicomecho's plain DICOM port: "
    f"a very old TLS client. Enable TLS 1.2 or later on it and point it at {_TLS_PORT}.",
    FirstBytes.HTTP: "An HTTP client (a browser, an HTTP health check) reached dicomecho's "
    "DICOM port. Check DICOM with python -m dicomecho.ping instead.",
    FirstBytes.SSH: _NOT_DICOM,
    FirstBytes.PROXY_V1: _PROXY_HEADER,
    FirstBytes.PROXY_V2: _PROXY_HEADER,
    FirstBytes.UNKNOWN: _NOT_DICOM,
}

_NO_REQUEST = (
    "The client closed without an A-ASSOCIATE-RQ: a TCP health check or a port scan, nothing "
    "to change on dicomecho. An SCU doing this gave up first: check its log."
)
_UNEXPLAINED = "The connection ended {outcome} ({reason}). Check the SCU's and dicomecho's logs."
_REJECTED_UNKEPT = "dicomecho rejected the association ({reason}). Change that on the SCU."

_AE_LENGTH, _UID_LENGTH, _NAME_LENGTH, _REASON_LENGTH = 16, 64, 32, 160
#: A UID pydicom takes without a warning (PS3.5 §9.1: no leading zeros).
_UID_SHAPE = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\Z")
_TIMERS = {timer.value: timer for timer in Timer}
_FOREIGN_BY_TEXT = {kind.value: kind for kind in FirstBytes}
_Found = tuple[str, dict[str, str]]


def _peerText(value: str | None, limit: int = _AE_LENGTH) -> str:
    """A peer's value for a hint: at most C{limit} characters, escaped."""
    if value is None:
        return ""
    return escape(value[:limit]) + ("..." if len(value) > limit else "")


def _uidName(uid: str | None, withUID: bool = False) -> str:
    """pydicom's name for C{uid} (and the UID, C{withUID}), else the UID, escaped."""
    if uid is None:
        return "none"
    if len(uid) <= _UID_LENGTH and _UID_SHAPE.match(uid):
        name = UID(uid).name
        if name != uid:
            return f"{name} ({uid})" if withUID else name
    return _peerText(uid, _UID_LENGTH)


def _listed(names: Iterable[str], limit: int = 3) -> str:
    """C{none}, C{A}, C{A and B}, C{A, B and C}, C{A, B, C and 2 more}."""
    names = list(names) or ["none"]
    last = f"{len(names) - limit} more" if len(names) > limit else names.pop()
    return ", ".join(names[:limit]) + " and " + last if names else last


def _title(record: _Record, calling: bool) -> str:
    title = record.callingAETitle if calling else record.calledAETitle
    name = "callingAETitle" if calling else "calledAETitle"
    return title if title is not None else getattr(record.request, name, None) or ""


def _asOption(title: str) -> str | None:
    """C{title} if an option may take it (a valid AE title, PS3.5), else C{None}."""
    try:
        return validateAETitle(title)
    except ValueError:
        return None


def _host(record: _Record, policy: _Policy) -> str:
    """The peer's host: C{[v6]:port} and C{v4:port} lose the port."""
    peer = record.peer
    if peer.startswith("[") or peer.count(":") == 1:
        peer = peer.rsplit(":", 1)[0].strip("[]")
    return _peerText(peer, 48)


def _identity(record: _Record) -> object:
    """The request's User Identity sub-item (PS3.7 D.3.3.7), if any."""
    return getattr(getattr(record.request, "userInformation", None), "userIdentity", None)


#: How each template field is made from a record and the policy.
_FIELD_MAKERS: dict[str, Callable[[_Record, _Policy], str]] = {
    "calling": lambda r, p: _peerText(_title(r, calling=True)),
    "called": lambda r, p: _peerText(_title(r, calling=False)),
    "callingFix": lambda r, p: _asOption(_title(r, calling=True)) or "TITLE",
    "ours": lambda r, p: escape(p.aeTitle),
    "aeFix": lambda r, p: (
        f"or start dicomecho with --ae-title {_asOption(_title(r, False))}"
        if _asOption(_title(r, False)) else "or start dicomecho without --require-called-aet"
    ),
    "allowed": lambda r, p: _listed(escape(t) for t in sorted(p.allowedCallingAETitles)),
    "host": _host,
    # Our sentence, whose peer values are repr()s already.
    "reason": lambda r, p: escape(r.reason[:_REASON_LENGTH], backslash=False),
    "outcome": lambda r, p: escape(str(getattr(r.outcome, "value", r.outcome))),
    "result": lambda r, p: vocabulary.rejectResultText((r.rejection or (0, 0, 0))[0]),
    "source": lambda r, p: vocabulary.rejectSourceText((r.rejection or (0, 0, 0))[1]),
    "code": lambda r, p: str((r.rejection or (0, 0, 0))[2]),
    "appContext": lambda r, p: _uidName(getattr(r.request, "applicationContextName", None)),
    "version": lambda r, p: f"0x{getattr(r.request, 'protocolVersion', 0):04X}",
    "user": lambda r, p: (
        _peerText(usernameText(i), _NAME_LENGTH) if (i := _identity(r)) is not None else ""  # type: ignore
    ),
    "identityType": lambda r, p: IDENTITY_TYPE_NAMES.get(
        getattr(_identity(r), "identityType", 0), "non-standard"
    ),
    "abortReason": lambda r, p: vocabulary.abortReasonText(r.abort[1] if r.abort else None),
    "served": lambda r, p: _listed(_uidName(a) for a in p.abstractSyntaxes),
    "more": lambda r, p: "",
}


class _Fields(dict):  # type: ignore[type-arg]
    """A template's fields, each made by L{_FIELD_MAKERS} when first used."""

    def __init__(self, record: _Record, policy: _Policy, **given: str) -> None:
        super().__init__(given)
        self.record, self.policy = record, policy

    def __missing__(self, key: str) -> str:
        value = self[key] = _FIELD_MAKERS[key](self.record, self.policy)
        return value


def _render(template: str, record: _Record, policy: _Policy, **given: str) -> str:
    return template.format_map(_Fields(record, policy, **given))


def _callingCause(rejection: Rejection, record: _Record, policy: _Policy) -> _Found | None:
    """(1, 1, 3): the --allow-calling-aet list, or the --allow-peer rules."""
    allowed = policy.allowedCallingAETitles
    if allowed and rejection.rq.callingAETitle not in allowed:
        return CALLING_HINTS["allow-calling-aet"], {}
    return None if policy.access.empty else (CALLING_HINTS["allow-peer"], {})


def _identityCause(rejection: Rejection, record: _Record, policy: _Policy) -> _Found:
    """(1, 2, 1): which user identity refusal (PS3.7 D.3.3.7)."""
    identity = _identity(record)
    if "could not be checked" in rejection.reason:
        cause = "unchecked"
    elif identity is None:
        cause = "missing"
    else:
        kind = getattr(identity, "identityType", None)
        cause = "username" if kind == 1 else "passcode" if kind == 2 else "unsupported"
    return IDENTITY_HINTS[cause], {}


def _localLimitCause(rejection: Rejection, record: _Record, policy: _Policy) -> _Found | None:
    """(2, 3, 2): a per-source limit (its option in our sentence), capacity, identity checks."""
    limit = record.sourceLimit
    if limit is None:
        limit = next((k for k, o in LIMIT_OPTIONS.items() if o in rejection.reason), None)
    if limit in SOURCE_LIMIT_HINTS:
        return SOURCE_LIMIT_HINTS[limit], {"option": LIMIT_OPTIONS[limit]}
    if rejection.reason == CAPACITY_REACHED:
        return LOCAL_LIMIT_HINTS["capacity"], {}
    if "identity checks" in rejection.reason:
        return LOCAL_LIMIT_HINTS["identity-checks"], {}
    return None


#: The rejections this server sends for several causes (PS3.8 Table 9-21).
_CAUSES: dict[tuple[int, int], Callable[[Rejection, _Record, _Policy], _Found | None]] = {
    (_USER, RejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED): _callingCause,
    (_ACSE, RejectReason.ACSE_NO_REASON_GIVEN): _identityCause,
    (_PRESENTATION, RejectReason.LOCAL_LIMIT_EXCEEDED): _localLimitCause,
}


def abortKey(source: int, reason: int | None) -> tuple[int, int | None]:
    """
    An A-ABORT's key in the abort tables (PS3.8 Table 9-26): the reason counts only from
    the service-provider; an unknown source or reason counts as reserved (1, or reason 3).
    """
    if source == _PROVIDER:
        return _PROVIDER, reason if reason in vocabulary.ABORT_REASONS else 3
    return (source if source in vocabulary.ABORT_SOURCES else AbortSource.RESERVED), None


def _transferSyntaxKey(pc: PresentationContextRQ | None, policy: _Policy) -> tuple[str, str]:
    """The L{TRANSFER_SYNTAX_HINTS} key, and the C{-x} option in effect (C{""}: none)."""
    if pc is not None and not pc.transferSyntaxes:
        return "none", ""
    for preference in TransferSyntaxPreference:
        if transferSyntaxOrder(preference) == policy.transferSyntaxes:
            flag = preference.value
            return ("-xi" if flag == "-xi" else "echoscp"), flag
    return "custom", ""


def _contextFields(pc: PresentationContextRQ | None, policy: _Policy, flag: str) -> dict[str, str]:
    """What a context hint says: the abstract syntax, proposed and accepted syntaxes."""
    syntaxes = [_uidName(ts) for ts in pc.transferSyntaxes] if pc is not None else []
    proposed = f"only {syntaxes[0]}" if len(syntaxes) == 1 else _listed(syntaxes)
    return {
        "abstract": _uidName(pc.abstractSyntax, withUID=True) if pc is not None else "none",
        "proposed": "offered " + proposed,
        "count": str(len(policy.transferSyntaxes)),
        "option": f" (it runs with {flag})" if flag else "",
        "accepted": _listed(_uidName(ts) for ts in policy.transferSyntaxes),
    }


def _refusalHint(record: _Record, policy: _Policy) -> str | None:
    refusal, limit = record.refusal, record.sourceLimit
    if refusal is Refusal.SOURCE_LIMIT and limit in SOURCE_LIMIT_HINTS:
        option = LIMIT_OPTIONS[limit]
        return _render(SOURCE_LIMIT_HINTS[limit], record, policy, option=option)
    if refusal is Refusal.TLS_HANDSHAKE and record.tlsFailure in TLS_FAILURE_HINTS:
        return _render(TLS_FAILURE_HINTS[record.tlsFailure], record, policy)
    template = REFUSAL_HINTS.get(refusal)  # type: ignore[arg-type]
    return None if template is None else _render(template, record, policy)


def _foreignHint(record: _Record, policy: _Policy) -> str | None:
    if record.foreign is None:
        return None
    kind = _FOREIGN_BY_TEXT.get(record.foreign, FirstBytes.UNKNOWN)
    template = FOREIGN_HINTS.get(kind)
    what = "an unknown protocol" if kind is FirstBytes.UNKNOWN else kind.value
    return None if template is None else _render(template, record, policy, what=what)


def _rejectionHint(record: _Record, policy: _Policy) -> str | None:
    answer = record.answer
    if not isinstance(answer, Rejection):
        # A rejection whose request was too large to keep keeps no answer.
        unkept = record.outcome is Outcome.REJECTED
        return _render(_REJECTED_UNKEPT, record, policy) if unkept else None
    key = (answer.rj.source, answer.rj.reason)
    cause = _CAUSES.get(key)
    found = cause(answer, record, policy) if cause is not None else None
    template, given = found or (REJECTION_HINTS.get(key, REJECTION_HINTS[_USER, 4]), {})
    return _render(template, record, policy, **given)


def _contextHint(record: _Record, policy: _Policy, unusable: bool = False) -> str | None:
    """The first rejected context (PS3.8 Table 9-18); C{unusable}: only if none was accepted."""
    answer = record.answer
    if not isinstance(answer, Acceptance) or (unusable and answer.contexts):
        return None
    if not answer.rq.presentationContexts:
        return _render(_NO_CONTEXTS, record, policy)
    rejected = sorted(
        (c for c in answer.ac.presentationContexts if c.result != PresentationResult.ACCEPTANCE),
        key=lambda c: (c.result != PresentationResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, c.contextID),
    )
    if not rejected:
        return None
    first = rejected[0]
    pc = next((c for c in answer.rq.presentationContexts if c.contextID == first.contextID), None)
    template = CONTEXT_HINTS.get(first.result, CONTEXT_HINTS[PresentationResult.NO_REASON])
    flag = ""
    if first.result == PresentationResult.TRANSFER_SYNTAXES_NOT_SUPPORTED:
        key, flag = _transferSyntaxKey(pc, policy)
        template = TRANSFER_SYNTAX_HINTS[key]
    others = len(rejected) - 1
    more = f" {others} more context{'s were' if others > 1 else ' was'} rejected." if others else ""
    fields = _contextFields(pc, policy, flag)
    return _render(template, record, policy, contextID=str(first.contextID), more=more, **fields)


def _timerHint(record: _Record, policy: _Policy) -> str | None:
    timer = _TIMERS.get(record.timer)  # type: ignore[arg-type]
    if timer is None:
        return None
    if timer is Timer.ARTIM and record.request is not None:
        return _render(_ARTIM_AFTER_END, record, policy)
    return _render(TIMER_HINTS[timer], record, policy)


def _abortHint(record: _Record, policy: _Policy) -> str | None:
    if record.abort is None:
        return None
    source, reason = record.abort
    if reason is None:
        return _render(CLOSED_HINTS[bool(record.abortedByPeer)], record, policy)
    key = abortKey(source, reason)
    if record.abortedByPeer:
        return _render(PEER_ABORT_HINTS[key], record, policy)
    template = OUR_ABORT_HINTS[key]
    if template is _OUR_ABORT:
        template = next((t for k, t in _OUR_CAUSES.items() if k in record.reason), template)
    return _render(template, record, policy)


def _noRequestHint(record: _Record, policy: _Policy) -> str | None:
    """No A-ASSOCIATE-RQ: the client closed, or ARTIM expired (our sentence names it)."""
    if record.outcome is not Outcome.NO_ASSOCIATION:
        return None
    artim = "ARTIM" in record.reason
    return _render(TIMER_HINTS[Timer.ARTIM] if artim else _NO_REQUEST, record, policy)


#: An association accepted with no context, before its end: nothing could be sent on it.
_unusableHint = partial(_contextHint, unusable=True)
_FINDERS = (
    _refusalHint, _foreignHint, _rejectionHint, _unusableHint, _timerHint, _abortHint,
    _contextHint, _noRequestHint,
)
_SUCCESSES = (Outcome.RELEASED, Outcome.ESTABLISHED)


def hintFor(record: _Record, policy: _Policy) -> str | None:
    """
    What to change for C{record}, in one short paragraph naming the side
    that must change; C{None} for a plain success (released, or not yet
    ended, with every proposed presentation context accepted).

    The first that applies is told: a refusal before DICOM, a foreign
    protocol, an A-ASSOCIATE-RJ (PS3.8 Table 9-21), an association with no
    context accepted, an expired timer, an A-ABORT (Table 9-26) or a closed
    transport, a rejected context (Table 9-18), no request at all.
    """
    answer = record.answer  # The common case first, cheaply: every context accepted.
    if record.outcome is Outcome.RELEASED and record.timer is None and isinstance(answer, Acceptance):
        results = answer.ac.presentationContexts
        accepted = results and not any(pc.result for pc in results)
        if accepted and len(results) == len(answer.rq.presentationContexts):
            return None
    for finder in _FINDERS:
        hint = finder(record, policy)
        if hint is not None:
            return hint
    return None if record.outcome in _SUCCESSES else _render(_UNEXPLAINED, record, policy)
