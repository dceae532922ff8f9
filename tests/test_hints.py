"""
Tests for L{dicomecho.observability.hints}: a hint for every key (each
A-ASSOCIATE-RJ combination of PS3.8 Table 9-21, each A-ABORT source and
reason of Table 9-26, ours and the peer's, each presentation context result
of Table 9-18, each timer, refusal, per-source limit, TLS failure and
foreign protocol), the rejections this server sends (built by the real
C{negotiate} and the server's own refusal sentences), None for a plain
success, escaping of peer values, and a hypothesis property.
"""

from __future__ import annotations

import dataclasses
import re
from itertools import product
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from dicomecho.association.negotiation import (
    CAPACITY_REACHED,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    Acceptance,
    AssociationPolicy,
    Rejection,
    TransferSyntaxPreference,
    identityRejection,
    localLimitRejection,
    negotiate,
    transferSyntaxOrder,
)
from dicomecho.association.outcome import Outcome
from dicomecho.association.timers import Timer
from dicomecho.observability import hints
from dicomecho.observability.hints import abortKey, hintFor
from dicomecho.observability.history import AssociationRecord, Refusal
from dicomecho.observability.stats import ServerStats
from dicomecho.security.access import AccessList
from dicomecho.security.identity import IdentityRefused
from dicomecho.security.sourcelimits import LIMIT_OPTIONS, SourceLimit, SourceLimitsPolicy
from dicomecho.security.tlsfailures import TLSFailureKind
from dicomecho.server.identitycheck import CredentialsChecker
from dicomecho.server.sourcegate import SourceGate
from dicomecho.wire import vocabulary
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.pdu import AssociateRJ, AssociateRQ, encode
from dicomecho.wire.recognition import FirstBytes
from dicomecho.wire.userinfo import UserIdentityRQ, UserInformation
from tests.support.harness import CT, VERIFICATION, rq
from tests.support.strategies import aeTitle

DEFAULT = AssociationPolicy()
IMPLICIT_ONLY = AssociationPolicy(
    transferSyntaxes=transferSyntaxOrder(TransferSyntaxPreference.IMPLICIT_ONLY)
)
PEER = "10.1.2.3:40312"
#: Words that name the side that must change.
SIDE = re.compile(r"\bSCU\b|\bdicomecho\b|\bclient\b|\bbalancer\b")


def record(answer: Acceptance | Rejection | None = None, **fields: Any) -> AssociationRecord:
    """
    A record of a connection from L{PEER} answered with C{answer}: released
    after an acceptance, rejected after a rejection, unless C{fields} say
    otherwise; AE titles and reason from the request and the answer.
    """
    if answer is not None:
        fields.setdefault("callingAETitle", answer.rq.callingAETitle)
        fields.setdefault("calledAETitle", answer.rq.calledAETitle)
    if isinstance(answer, Rejection):
        fields.setdefault("outcome", Outcome.REJECTED)
        fields.setdefault("reason", answer.reason)
    fields.setdefault("outcome", Outcome.RELEASED)
    fields.setdefault("reason", "A-RELEASE completed")
    return AssociationRecord(startedAt=0.0, peer=PEER, answer=answer, **fields)


def assertGoodHint(hint: str | None) -> str:
    """
    A hint: one short paragraph (at most 3 sentences) on one printable
    line, naming the side that must change.
    """
    assert hint, hint
    assert hint.isprintable() and "\n" not in hint, hint
    assert len(hint) < 500, hint
    sentences = len(re.findall(r"(?<!e\.g)\.\s+(?=[A-Z])", hint)) + 1
    assert sentences <= 3, hint
    assert SIDE.search(hint), hint
    return hint


#: Every (result, (source, reason)) of PS3.8 Table 9-21.
REJECTIONS = list(product(vocabulary.REJECT_RESULTS, vocabulary.REJECT_REASONS))


def rejection(result: int, source: int, reason: int, why: str = "why") -> Rejection:
    return Rejection(rq(), AssociateRJ(result, source, reason), why)


# --- every key ------------------------------------------------------------------------


def test_tablesCoverEveryKey() -> None:
    """
    Each table is keyed by every member of what it explains, from the one
    vocabulary table or the Enum: nothing left out, nothing invented.
    """
    assert set(hints.REJECTION_HINTS) == set(vocabulary.REJECT_REASONS)
    aborts = {abortKey(s, r) for s in vocabulary.ABORT_SOURCES for r in vocabulary.ABORT_REASONS}
    assert set(hints.OUR_ABORT_HINTS) == set(hints.PEER_ABORT_HINTS) == aborts
    assert set(hints.CLOSED_HINTS) == {True, False}
    assert set(hints.CONTEXT_HINTS) == set(vocabulary.CONTEXT_RESULTS) - {0}
    assert set(hints.TIMER_HINTS) == set(Timer)
    assert set(hints.REFUSAL_HINTS) == set(Refusal)
    assert set(hints.SOURCE_LIMIT_HINTS) == set(SourceLimit)
    assert set(hints.TLS_FAILURE_HINTS) == set(TLSFailureKind)
    assert set(hints.FOREIGN_HINTS) == set(FirstBytes) - {FirstBytes.DICOM, FirstBytes.NOTHING}


@pytest.mark.parametrize(
    "result, source, reason",
    [(res, src, rsn) for res, (src, rsn) in REJECTIONS],
)
def test_everyRejection(result: int, source: int, reason: int) -> None:
    """
    Every (result, source, reason) of PS3.8 Table 9-21 has a hint.
    """
    assertGoodHint(hintFor(record(rejection(result, source, reason)), DEFAULT))


@pytest.mark.parametrize("byPeer", [False, True])
@pytest.mark.parametrize(
    "source, reason",
    [*product(vocabulary.ABORT_SOURCES, vocabulary.ABORT_REASONS), (2, None), (0, None)],
)
def test_everyAbort(byPeer: bool, source: int, reason: int | None) -> None:
    """
    Every A-ABORT source and reason of PS3.8 Table 9-26, sent by us or by
    the peer, and a transport closed without one (reason None), has a hint;
    the peer's name the SCU.
    """
    outcome = Outcome.ABORTED_BY_PEER if byPeer else Outcome.ABORTED
    if reason is None:
        outcome = Outcome.CONNECTION_LOST if byPeer else Outcome.NO_ASSOCIATION
    accepted = negotiate(rq(), DEFAULT)
    hint = assertGoodHint(
        hintFor(record(accepted, outcome=outcome, reason="some reason", abort=(source, reason),
                       abortedByPeer=byPeer), DEFAULT)
    )
    if byPeer:
        assert "SCU" in hint


@pytest.mark.parametrize("result", sorted(set(vocabulary.CONTEXT_RESULTS) - {0}))
def test_everyContextResult(result: int) -> None:
    """
    Each presentation context result but acceptance (PS3.8 Table 9-18) on
    context 3, next to an accepted Verification context, has a hint that
    names the context and its abstract syntax.
    """
    request = rq(
        PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,)),
        PresentationContextRQ(3, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,)),
    )
    accepted = negotiate(request, DEFAULT)
    assert isinstance(accepted, Acceptance)
    items = tuple(
        dataclasses.replace(item, result=result) if item.contextID == 3 else item
        for item in accepted.ac.presentationContexts
    )
    ac = dataclasses.replace(accepted.ac, presentationContexts=items)
    answer = dataclasses.replace(accepted, ac=ac)
    hint = assertGoodHint(hintFor(record(answer), DEFAULT))
    assert "context 3" in hint.lower() and "Verification SOP Class" in hint


@pytest.mark.parametrize("timer", list(Timer))
def test_everyTimer(timer: Timer) -> None:
    """
    Each timer names its option: ARTIM before any request, the network and
    DIMSE timers while associated.
    """
    if timer is Timer.ARTIM:
        rec = record(None, outcome=Outcome.NO_ASSOCIATION, reason="ARTIM", timer=timer.value)
    else:
        rec = record(negotiate(rq(), DEFAULT), outcome=Outcome.ABORTED, reason=f"{timer.value} timeout",
                     abort=(0, 0), timer=timer.value)
    option = {Timer.ARTIM: "--acse-timeout", Timer.NETWORK: "--network-timeout",
              Timer.DIMSE: "--dimse-timeout"}[timer]
    assert option in assertGoodHint(hintFor(rec, DEFAULT))


@pytest.mark.parametrize("refusal", list(Refusal))
def test_everyRefusal(refusal: Refusal) -> None:
    """
    Each refusal has a hint even without the limit or failure named.
    """
    rec = record(None, outcome=Outcome.REFUSED, reason="refused", refusal=refusal)
    assertGoodHint(hintFor(rec, DEFAULT))


@pytest.mark.parametrize("limit", list(SourceLimit))
def test_everySourceLimit(limit: SourceLimit) -> None:
    """
    Each per-source limit names its option and the source.
    """
    rec = AssociationRecord(0.0, "192.0.2.7", Outcome.REFUSED, "3 refused, at its limit",
                            refusal=Refusal.SOURCE_LIMIT, sourceLimit=limit, connections=3)
    hint = assertGoodHint(hintFor(rec, DEFAULT))
    assert LIMIT_OPTIONS[limit] in hint and "192.0.2.7" in hint


@pytest.mark.parametrize("kind", list(TLSFailureKind))
def test_everyTLSFailure(kind: TLSFailureKind) -> None:
    """
    Each kind of failed TLS handshake has a hint.
    """
    rec = record(None, outcome=Outcome.REFUSED, reason="the failure's sentence",
                 refusal=Refusal.TLS_HANDSHAKE, tlsFailure=kind)
    assertGoodHint(hintFor(rec, DEFAULT))


@pytest.mark.parametrize(
    "kind", [k for k in FirstBytes if k not in (FirstBytes.DICOM, FirstBytes.NOTHING)]
)
def test_everyForeignProtocol(kind: FirstBytes) -> None:
    """
    Each foreign protocol on the plain port (the invalid-PDU's
    C{looksLike}) has a hint.
    """
    rec = record(None, outcome=Outcome.ABORTED, reason="unrecognized PDU type", abort=(2, 1),
                 foreign=kind.value)
    assertGoodHint(hintFor(rec, DEFAULT))


# --- the rejections this server sends ------------------------------------------------------


def test_calledAETitle() -> None:
    """
    The issue's example: the SCU called PACS1, we answer to ECHOSCP only.
    The hint names both titles and both fixes.
    """
    policy = AssociationPolicy(aeTitle="ECHOSCP", requireCalledAETitle=True)
    request = AssociateRQ("PACS1", "CT1", presentationContexts=rq().presentationContexts)
    answer = negotiate(request, policy)
    assert isinstance(answer, Rejection) and record(answer).rejection == (1, 1, 7)
    hint = assertGoodHint(hintFor(record(answer), policy))
    assert "'PACS1'" in hint and "'ECHOSCP'" in hint and "--require-called-aet" in hint
    assert "called (destination) AE title to ECHOSCP" in hint
    assert "--ae-title PACS1" in hint


def test_calledAETitleThatNoOptionTakes() -> None:
    """
    A called AE title --ae-title would refuse is not suggested for it.
    """
    policy = AssociationPolicy(requireCalledAETitle=True)
    request = AssociateRQ("A\\B", "CT1", presentationContexts=rq().presentationContexts)
    answer = negotiate(request, policy)
    hint = assertGoodHint(hintFor(record(answer), policy))
    assert "without --require-called-aet" in hint and "--ae-title" not in hint


def test_protocolVersionAndApplicationContext() -> None:
    """
    (1, 2, 2) names the version the SCU sent; (1, 1, 2) the application
    context it proposed, or that it sent none.
    """
    version = assertGoodHint(hintFor(record(negotiate(rq(protocolVersion=2), DEFAULT)), DEFAULT))
    assert "0x0002" in version
    context = hintFor(record(negotiate(rq(applicationContextName="1.2.3.4"), DEFAULT)), DEFAULT)
    assert "1.2.3.4" in assertGoodHint(context)
    missing = hintFor(record(negotiate(rq(applicationContextName=None), DEFAULT)), DEFAULT)
    assert "application context none" in assertGoodHint(missing)


def test_callingAETitleNotAllowed() -> None:
    """
    (1, 1, 3) from --allow-calling-aet names the titles allowed and both
    fixes; from --allow-peer, the source and the --allow-peer rule to add.
    """
    policy = AssociationPolicy(allowedCallingAETitles={"CT1", "MR1"})
    hint = assertGoodHint(hintFor(record(negotiate(rq(), policy)), policy))
    assert "'SCU'" in hint and "CT1 and MR1" in hint and "--allow-calling-aet SCU" in hint
    peers = AssociationPolicy(access=AccessList.build(peers=[("CT1", "10.0.0.0/8")]))
    answer = negotiate(rq(), peers, peerHost="10.1.2.3")
    assert record(answer).rejection == (1, 1, 3)
    hint = assertGoodHint(hintFor(record(answer), peers))
    assert "--allow-peer SCU@10.1.2.3" in hint


def test_localLimits() -> None:
    """
    (2, 3, 2) for each of its causes: the association limit (or shutting
    down), a source's associations and request bytes (the server's own
    sentences, from L{SourceGate}), identity checks in progress.
    """
    capacity = negotiate(rq(), DEFAULT, atCapacity=True)
    assert CAPACITY_REACHED == capacity.reason  # type: ignore[union-attr]
    assert "--max-associations" in assertGoodHint(hintFor(record(capacity), DEFAULT))
    gate = SourceGate(
        SourceLimitsPolicy(maxAssociations=1, requestBytesPerSecond=10, requestBytesBurst=10),
        ServerStats(),
        Clock(),
    )
    key, _ = gate.admit("192.0.2.7")
    gate.table.associated(key)
    perSource = gate.refuseAssociation(key)
    assert perSource is not None
    hint = assertGoodHint(hintFor(record(negotiate(rq(), DEFAULT, localLimit=perSource)), DEFAULT))
    assert "--max-associations-per-source" in hint
    tooMuch = gate.refuseRequest(key, 1000)
    assert tooMuch is not None
    body = encode(rq())[6:]
    fixedPart = localLimitRejection(AssociateRQ.decodeFixedPart(body), tooMuch)
    assert "--request-bytes-per-source" in assertGoodHint(hintFor(record(fixedPart), DEFAULT))
    checks = localLimitRejection(rq(), "too many user identity checks in progress")
    assert "identity checks" in assertGoodHint(hintFor(record(checks), DEFAULT))
    unknown = localLimitRejection(rq(), "some new limit")
    assert "some new limit" in assertGoodHint(hintFor(record(unknown), DEFAULT))


def test_localLimitNamedByTheRecord() -> None:
    """
    A record that names its source limit is told by it, whatever the sentence.
    """
    rec = record(localLimitRejection(rq(), "limited"), sourceLimit=SourceLimit.ASSOCIATIONS)
    assert "--max-associations-per-source" in assertGoodHint(hintFor(rec, DEFAULT))


class _Store:
    """A credentials store that knows no one."""

    def verify(self, username: bytes, passcode: bytes | None) -> bool:
        return False


def _checkerRefusal(identity: UserIdentityRQ) -> str:
    """What the server's own checker says when it refuses C{identity}."""
    checker = CredentialsChecker(_Store(), lambda f, *a: succeed(f(*a)))
    checked: Deferred[bytes] = checker.checkIdentity(identity, "10.1.2.3")
    refused: list[str] = []
    checked.addErrback(lambda f: refused.append(str(f.trap(IdentityRefused) and f.value)))
    assert refused
    return refused[0]


def _identityRecord(identity: UserIdentityRQ | None, why: str) -> AssociationRecord:
    """A rejection of C{identity} (or of none) for C{why}, as the server makes it."""
    info = UserInformation(maximumLength=16384, userIdentity=identity)
    accepted = negotiate(dataclasses.replace(rq(), userInformation=info), DEFAULT)
    assert isinstance(accepted, Acceptance)
    return record(identityRejection(accepted, why))


@pytest.mark.parametrize(
    "identity, expected",
    [
        (UserIdentityRQ(2, 0, b"alice", b"s3cret"), ["'alice'", "python -m dicomecho.passwd"]),
        (UserIdentityRQ(1, 0, b"ct1"), ["'ct1'", "--no-passcode"]),
        (UserIdentityRQ(4, 0, b"<saml/>"), ["SAML assertion"]),
    ],
)
def test_identityRefused(identity: UserIdentityRQ, expected: list[str]) -> None:
    """
    (1, 2, 1) with the server checker's own refusals: the user and what to
    do, never the passcode.
    """
    hint = assertGoodHint(hintFor(_identityRecord(identity, _checkerRefusal(identity)), DEFAULT))
    assert all(text in hint for text in expected) and "s3cret" not in hint


def test_identityMissingOrUnchecked() -> None:
    """
    No identity where one is required names --user-identity; a checker
    that failed is dicomecho's to fix.
    """
    missing = _identityRecord(None, "no user identity was sent (one is required)")
    assert "--user-identity optional" in assertGoodHint(hintFor(missing, DEFAULT))
    why = "the user identity could not be checked"
    unchecked = _identityRecord(UserIdentityRQ(2, 0, b"bob", b"pw"), why)
    hint = assertGoodHint(hintFor(unchecked, DEFAULT))
    assert "not at fault" in hint and "--credentials" in hint


def test_rejectionWithoutItsAnswer() -> None:
    """
    A rejection whose request was too large to keep has no answer: its
    sentence is told.
    """
    rec = record(None, outcome=Outcome.REJECTED, reason="calling AE title 'X' is not allowed")
    assert "'X' is not allowed" in assertGoodHint(hintFor(rec, DEFAULT))


# --- presentation contexts ---------------------------------------------------------------


def test_implicitOnlyWithExplicitProposed() -> None:
    """
    The issue's example: only Explicit VR Little Endian proposed, and the
    server runs with -xi.
    """
    request = rq(PresentationContextRQ(1, VERIFICATION, (EXPLICIT_VR_LITTLE_ENDIAN,)))
    answer = negotiate(request, IMPLICIT_ONLY)
    assert isinstance(answer, Acceptance) and not answer.contexts
    hint = assertGoodHint(hintFor(record(answer), IMPLICIT_ONLY))
    assert "only Explicit VR Little Endian" in hint and "-xi" in hint
    assert "Implicit VR Little Endian only" in hint and "Verification SOP Class" in hint
    aborted = record(answer, outcome=Outcome.ABORTED_BY_PEER, abort=(0, 0), abortedByPeer=True)
    assert hintFor(aborted, IMPLICIT_ONLY) == hint


@pytest.mark.parametrize(
    "preference, words",
    [
        (TransferSyntaxPreference.DEFAULT, "none of the 45 transfer syntaxes dicomecho accepts."),
        (TransferSyntaxPreference.PREFER_BIG, "accepts (it runs with -xb)"),
    ],
)
def test_unknownTransferSyntax(preference: TransferSyntaxPreference, words: str) -> None:
    """
    With echoscp's other lists, the hint says how many syntaxes are
    accepted and which option runs; a syntax pydicom does not know is
    shown as its UID.
    """
    policy = AssociationPolicy(transferSyntaxes=transferSyntaxOrder(preference))
    answer = negotiate(rq(PresentationContextRQ(1, VERIFICATION, ("1.2.3.4.5",))), policy)
    hint = assertGoodHint(hintFor(record(answer), policy))
    assert words in hint and "only 1.2.3.4.5" in hint


def test_customAndMissingTransferSyntaxes() -> None:
    """
    A list of the server's own is named; a context with no transfer syntax
    is told so.
    """
    policy = AssociationPolicy(transferSyntaxes=(EXPLICIT_VR_LITTLE_ENDIAN,))
    answer = negotiate(rq(PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,))), policy)
    assert "accepts only Explicit VR Little Endian" in assertGoodHint(hintFor(record(answer), policy))
    none = negotiate(rq(PresentationContextRQ(1, VERIFICATION, ())), DEFAULT)
    assert "no transfer syntax" in assertGoodHint(hintFor(record(none), DEFAULT))
    empty = negotiate(dataclasses.replace(rq(), presentationContexts=()), DEFAULT)
    assert "no presentation context" in assertGoodHint(hintFor(record(empty), DEFAULT))


def test_releasedAllAccepted() -> None:
    """
    A plain success has no hint: released (or not yet ended) with every
    proposed context accepted.
    """
    request = rq(
        PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,)),
        PresentationContextRQ(3, VERIFICATION, (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)),
    )
    answer = negotiate(request, DEFAULT)
    assert hintFor(record(answer, messages=1), DEFAULT) is None
    assert hintFor(record(answer, outcome=Outcome.ESTABLISHED), DEFAULT) is None
    assert hintFor(record(None, callingAETitle="CT1", calledAETitle="ECHOSCP"), DEFAULT) is None


def test_releasedOneContextRejected() -> None:
    """
    Released, but one context rejected: the hint is about that context,
    its abstract syntax and what this server serves.
    """
    request = rq(
        PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,)),
        PresentationContextRQ(3, CT, (IMPLICIT_VR_LITTLE_ENDIAN,)),
    )
    answer = negotiate(request, DEFAULT)
    assert isinstance(answer, Acceptance) and list(answer.contexts) == [1]
    hint = assertGoodHint(hintFor(record(answer, messages=1), DEFAULT))
    assert f"CT Image Storage ({CT}) on context 3" in hint
    assert "serves only Verification SOP Class" in hint and "more context" not in hint


def test_moreRejectedContextsAreCounted() -> None:
    """
    Several rejected contexts: the transfer syntax one is told, the others
    counted.
    """
    request = rq(
        PresentationContextRQ(1, CT, (IMPLICIT_VR_LITTLE_ENDIAN,)),
        PresentationContextRQ(3, CT, (IMPLICIT_VR_LITTLE_ENDIAN,)),
        PresentationContextRQ(5, VERIFICATION, (EXPLICIT_VR_LITTLE_ENDIAN,)),
    )
    hint = assertGoodHint(hintFor(record(negotiate(request, IMPLICIT_ONLY)), IMPLICIT_ONLY))
    assert "context 5" in hint and hint.endswith("2 more contexts were rejected.")


# --- aborts, timers, refusals, foreign bytes ------------------------------------------------


def test_tlsOnThePlainPort() -> None:
    """
    The issue's example: a TLS ClientHello on the plain port; point the SCU
    at the TLS listener or turn TLS off.
    """
    rec = record(
        None,
        outcome=Outcome.ABORTED,
        reason="unrecognized PDU type 0x16 (this looks like a TLS handshake, not DICOM)",
        abort=(2, 1),
        foreign=FirstBytes.TLS.value,
    )
    hint = assertGoodHint(hintFor(rec, DEFAULT))
    assert "TLS ClientHello" in hint and "plain DICOM port" in hint
    assert "2762" in hint and "dicomtls:" in hint and "turn TLS off on the SCU" in hint


def test_ourAbortsByCause() -> None:
    """
    Our (0, 0) abort on shutdown names --shutdown-grace; a failing
    responder is dicomecho's to fix; an invalid PDU value names the caps.
    """
    accepted = negotiate(rq(), DEFAULT)

    def ours(reason: str, abort: tuple[int, int]) -> str:
        rec = record(accepted, outcome=Outcome.ABORTED, reason=reason, abort=abort)
        return assertGoodHint(hintFor(rec, DEFAULT))

    assert "--shutdown-grace" in ours("server shutting down", (0, 0))
    assert "not at fault" in ours("the service responder failed", (0, 0))
    assert "--max-associate-length" in ours("A-ASSOCIATE-RQ PDU length 300000", (2, 6))


def test_peerClosedAndSilentConnections() -> None:
    """
    A transport the SCU closed, ARTIM before any request (the server's
    sentence names it), and a client that closed without a request.
    """
    lost = record(negotiate(rq(), DEFAULT), outcome=Outcome.CONNECTION_LOST, reason="closed",
                  abort=(2, None), abortedByPeer=True)
    assert "idle timeout" in assertGoodHint(hintFor(lost, DEFAULT))
    artim = record(None, outcome=Outcome.NO_ASSOCIATION,
                   reason="no A-ASSOCIATE-RQ before the ARTIM timer expired")
    assert "--acse-timeout" in assertGoodHint(hintFor(artim, DEFAULT))
    closed = record(None, outcome=Outcome.NO_ASSOCIATION,
                    reason="connection closed before an A-ASSOCIATE-RQ")
    assert "health check" in assertGoodHint(hintFor(closed, DEFAULT))
    after = record(negotiate(rq(), DEFAULT), timer=Timer.ARTIM.value)
    assert "did not close" in assertGoodHint(hintFor(after, DEFAULT))


def test_accessListRefusal() -> None:
    """
    A source outside --allow-network is told so, with its address.
    """
    rec = AssociationRecord(0.0, "[2001:db8::7]:4000", Outcome.REFUSED, "source address not allowed",
                            refusal=Refusal.ACCESS_LIST)
    hint = assertGoodHint(hintFor(rec, DEFAULT))
    assert "2001:db8::7 " in hint and "--allow-network" in hint


# --- peer values ---------------------------------------------------------------------------


def test_hostileAETitlesAreEscaped() -> None:
    """
    A hostile AE title (markup, a line feed) is cut and escaped: the hint
    stays one printable line.
    """
    hostile = "<img src=x>\n"
    policy = AssociationPolicy(allowedCallingAETitles={"CT1"}, requireCalledAETitle=True)
    for request in (AssociateRQ("ECHOSCP", hostile, presentationContexts=rq().presentationContexts),
                    AssociateRQ(hostile, "CT1", presentationContexts=rq().presentationContexts)):
        hint = assertGoodHint(hintFor(record(negotiate(request, policy)), policy))
        assert "<img src=x>\\n" in hint and "\n" not in hint
        assert "--allow-calling-aet <img" not in hint and "--ae-title <img" not in hint


def test_hostileUIDsAndUsernamesAreCut() -> None:
    """
    A long UID with control characters, and a username of escape
    sequences, are cut short and escaped.
    """
    uid = "1.2\x1b[31m" + "9" * 5000
    answer = negotiate(rq(PresentationContextRQ(1, uid, (IMPLICIT_VR_LITTLE_ENDIAN,))), DEFAULT)
    hint = assertGoodHint(hintFor(record(answer), DEFAULT))
    assert "\\x1b[31m" in hint and "9" * 100 not in hint
    identity = UserIdentityRQ(2, 0, ("\r\n" * 40).encode(), b"pw")
    rec = _identityRecord(identity, "user '...': unknown user or wrong passcode")
    assert "\\r\\n" in assertGoodHint(hintFor(rec, DEFAULT))


# --- never raises --------------------------------------------------------------------------

_REQUESTS = [
    rq(),
    rq(PresentationContextRQ(1, VERIFICATION, (EXPLICIT_VR_LITTLE_ENDIAN,)),
       PresentationContextRQ(3, CT, ("1.2.3",)), PresentationContextRQ(5, None, ())),
    dataclasses.replace(rq(), presentationContexts=()),
    rq(protocolVersion=2, applicationContextName=None),
    AssociateRQ("\n", "A" * 40),
]
_POLICIES = [
    DEFAULT,
    IMPLICIT_ONLY,
    AssociationPolicy(aeTitle="X", requireCalledAETitle=True, allowedCallingAETitles={"CT1"}),
    AssociationPolicy(access=AccessList.build(["10.0.0.0/8"], [("CT1", "192.0.2.0/24")])),
    AssociationPolicy(transferSyntaxes=("1.2.3",), abstractSyntaxes=()),
]
_ANSWERS = [
    *(negotiate(r, p, peerHost="192.0.2.1") for r in _REQUESTS for p in _POLICIES),
    *(rejection(res, src, rsn, why) for res, (src, rsn) in REJECTIONS
      for why in ("why", CAPACITY_REACHED, "--max-pending-per-source", "could not be checked")),
]


def _maybe(values: Any) -> st.SearchStrategy[Any]:
    return st.none() | st.sampled_from(list(values))


records = st.builds(
    AssociationRecord,
    startedAt=st.just(0.0),
    peer=st.sampled_from(["10.1.2.3:4000", "[2001:db8::1]:5", "2001:db8::/64", ""])
    | st.text(max_size=30),
    outcome=st.sampled_from(list(Outcome)),
    reason=st.text(max_size=300),
    callingAETitle=st.none() | aeTitle,
    calledAETitle=st.none() | aeTitle,
    answer=_maybe(_ANSWERS),
    abort=st.none() | st.tuples(st.integers(0, 255), st.none() | st.integers(0, 255)),
    abortedByPeer=st.booleans(),
    timer=_maybe(t.value for t in Timer) | st.text(max_size=8),
    foreign=_maybe(k.value for k in FirstBytes) | st.text(max_size=20),
    refusal=_maybe(Refusal),
    sourceLimit=_maybe(SourceLimit),
    tlsFailure=_maybe(TLSFailureKind),
)


@given(records, st.sampled_from(_POLICIES))
def test_neverRaises(rec: AssociationRecord, policy: AssociationPolicy) -> None:
    """
    Any record built from the enums, codes and real answers gets a hint or
    None, never an exception; a hint is one printable line; only a success
    may have none.
    """
    hint = hintFor(rec, policy)
    if hint is None:
        assert rec.outcome in (Outcome.RELEASED, Outcome.ESTABLISHED)
    else:
        assert hint.isprintable() and len(hint) < 800
