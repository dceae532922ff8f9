"""
Tests of access control and user identity in L{dicomecho.server.protocol}: the
source gate at connect, calling-AE@network rejections, the acceptance cache
under an access list, and User Identity Negotiation (PS3.7 D.3.3.7) with
synchronous and delayed checkers, the failure throttle and the limit on
checks in progress. Fake transport, fake clock, no sockets.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from zope.interface import implementer

from dicomecho.security.access import AccessList
from dicomecho.security.credentials import Credentials
from dicomecho.security.passcodes import hashPasscode
from dicomecho.association.transitions import State
from dicomecho.security.identity import (
    IdentityRefused,
    IUserIdentityChecker,
    UserIdentityMode,
)
from dicomecho.server.identitycheck import CredentialsChecker
from dicomecho.wire.userinfo import UserIdentityAC, UserIdentityRQ
from dicomecho.observability.logs import consoleObserver, jsonObserver
from dicomecho.wire.pdu import Abort, AssociateAC, AssociateRJ, ReleaseRP, ReleaseRQ
from dicomecho.server.factory import DICOMServerFactory
from tests.support.admission import connect, request  # noqa: F401 (fixture)
from tests.support.harness import echo, responses

PASSCODE = b"S3cr3t-Pa55-\xc3\xa9"


def ours(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("dicomEvent") == name]


def userPass(user: bytes = b"alice", passcode: bytes = PASSCODE, positive: int = 0) -> UserIdentityRQ:
    return UserIdentityRQ(2, positive, user, passcode)


# --- source networks and calling AE @ network --------------------------------------

ACCESS = AccessList.build(["10.0.0.0/8", "2001:db8::/32"], [("CT1", "192.168.1.0/24")])


@pytest.mark.parametrize(
    "host, admitted",
    [
        ("10.1.2.3", True),
        ("192.168.1.7", True),
        ("192.168.2.7", False),
        ("127.0.0.1", False),
        ("2001:db8::5", True),
        ("2001:db9::5", False),
        ("::ffff:10.9.9.9", True),
        ("/run/dicom.sock", True),
    ],
)
def test_sourceGate(connect: Any, events: list[dict[str, Any]], host: str, admitted: bool) -> None:
    """
    A source outside every listed network is closed on connect, before any
    byte is read, with one warning and no summary; others get ARTIM.
    """
    h = connect(host, access=ACCESS)
    if admitted:
        assert h.protocol.state is State.STA2
        assert not h.transport.disconnecting
        assert ours(events, "connection-refused") == []
    else:
        assert h.protocol.state is State.STA1
        assert h.transport.disconnecting
        (refused,) = ours(events, "connection-refused")
        assert refused["log_level"] is LogLevel.warn
        assert "not allowed" in refused["why"] and "10.0.0.0/8" in refused["why"]
        h.send(request())
        assert h.transport.value() == b""
        h.close()
        assert ours(events, "association-summary") == []
        assert h.factory.openConnections == 0


@pytest.mark.parametrize(
    "host, calling, accepted",
    [
        ("192.168.1.7", "CT1", True),
        ("192.168.1.7", "CT2", False),
        ("10.1.2.3", "ANY", True),
    ],
)
def test_callingAETitleFromNetwork(connect: Any, host: str, calling: str, accepted: bool) -> None:
    """
    AET@CIDR admits that calling AE from that network; another title from
    there is rejected permanent, service-user, calling-AE-not-recognized.
    """
    h = connect(host, access=ACCESS)
    h.send(request(calling))
    (answer,) = h.received()
    if accepted:
        assert isinstance(answer, AssociateAC)
    else:
        assert answer == AssociateRJ(1, 1, 3)
        assert h.transport.disconnecting


def test_cachedAcceptanceStillChecksTheSource(connect: Any, clock: Clock) -> None:
    """
    The acceptance cache keys on request bytes only: with an access list, a
    cached acceptance for CT1 from its network is not reused for the same
    bytes from another admitted source that CT1 may not come from.
    """
    factory = DICOMServerFactory(clock=clock, access=AccessList.build(["10.0.0.0/8"], [("CT1", "192.168.1.0/24")]))
    first = connect("192.168.1.7", factory=factory)
    first.send(request("CT1"))
    assert isinstance(first.received()[0], AssociateAC)
    # Same bytes, now from 10/8 (any AE allowed there): accepted from cache.
    second = connect("10.0.0.1", factory=factory)
    second.send(request("CT1"))
    assert isinstance(second.received()[0], AssociateAC)
    narrower = DICOMServerFactory(clock=clock, access=AccessList.build([], [("CT1", "192.168.1.0/24"), ("CT2", "10.0.0.0/8")]))
    a = connect("192.168.1.7", factory=narrower)
    a.send(request("CT1"))
    assert isinstance(a.received()[0], AssociateAC)
    b = connect("10.0.0.1", factory=narrower)
    b.send(request("CT1"))
    assert b.received() == [AssociateRJ(1, 1, 3)]


# --- user identity ---------------------------------------------------------------------


@implementer(IUserIdentityChecker)
class DelayedChecker:
    """
    Answers each identity check when the test says so.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[UserIdentityRQ, str | None, Deferred[bytes]]] = []

    def checkIdentity(self, identity: UserIdentityRQ, peerHost: str | None) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self.calls.append((identity, peerHost, d))
        return d


def credentialsChecker() -> CredentialsChecker:
    text = (
        f"alice:{hashPasscode(PASSCODE, n=16)}\n"
        f"bob:\n"
    )
    return CredentialsChecker(Credentials.parse(text), lambda f, *a: maybeDeferred(f, *a))


def test_identityIgnoredByDefault(connect: Any) -> None:
    """
    As echoscp: a User Identity sub-item, even a wrong one, is ignored and
    never answered.
    """
    h = connect()
    h.send(request(identity=userPass(passcode=b"wrong", positive=1)))
    (ac,) = h.received()
    assert isinstance(ac, AssociateAC)
    assert ac.userInformation.userIdentityResponse is None


def test_factoryNeedsAChecker() -> None:
    with pytest.raises(ValueError, match="identity checker"):
        DICOMServerFactory(clock=Clock(), userIdentity=UserIdentityMode.REQUIRED)


@pytest.mark.parametrize(
    "mode, identity, expected",
    [
        (UserIdentityMode.REQUIRED, None, AssociateRJ(1, 2, 1)),
        (UserIdentityMode.OPTIONAL, None, "accepted"),
        (UserIdentityMode.OPTIONAL, userPass(), "accepted"),
        (UserIdentityMode.REQUIRED, userPass(), "accepted"),
        (UserIdentityMode.REQUIRED, userPass(positive=1), "accepted+response"),
        (UserIdentityMode.REQUIRED, UserIdentityRQ(1, 1, b"bob", b""), "accepted+response"),
        (UserIdentityMode.OPTIONAL, userPass(passcode=b"wrong"), AssociateRJ(1, 2, 1)),
        (UserIdentityMode.REQUIRED, userPass(user=b"mallory"), AssociateRJ(1, 2, 1)),
        (UserIdentityMode.REQUIRED, UserIdentityRQ(1, 0, b"alice", b""), AssociateRJ(1, 2, 1)),
        (UserIdentityMode.REQUIRED, UserIdentityRQ(2, 0, b"bob", PASSCODE), AssociateRJ(1, 2, 1)),
        (UserIdentityMode.REQUIRED, UserIdentityRQ(3, 1, b"ticket", b""), AssociateRJ(1, 2, 1)),
        (UserIdentityMode.REQUIRED, UserIdentityRQ(5, 1, b"jwt", b""), AssociateRJ(1, 2, 1)),
        (UserIdentityMode.REQUIRED, UserIdentityRQ(9, 0, b"x", b""), AssociateRJ(1, 2, 1)),
    ],
)
def test_identityOutcomes(
    connect: Any, events: list[dict[str, Any]], mode: UserIdentityMode, identity: Any, expected: Any
) -> None:
    """
    PS3.7 D.3.3.7: a refused or missing (when required) identity is
    rejected permanent, ACSE service-provider, no-reason-given; an accepted
    one that asks for a positive response gets a 0x59 item, empty for
    types 1 and 2 (D.3.3.7.2).
    """
    h = connect(userIdentity=mode, identityChecker=credentialsChecker())
    h.send(request(identity=identity))
    (answer,) = h.received()
    if isinstance(expected, AssociateRJ):
        assert answer == expected
        (rejected,) = ours(events, "association-rejected")
        assert rejected["reason"]
        assert h.transport.disconnecting
    else:
        assert isinstance(answer, AssociateAC)
        response = answer.userInformation.userIdentityResponse
        if expected == "accepted+response":
            assert response == UserIdentityAC(b"")
        else:
            assert response is None
        h.send(echo(1))
        assert responses(h.received())[0][0x00000900] == 0
        h.send(ReleaseRQ())
        assert h.received() == [ReleaseRP()]
    h.close()
    if identity is not None and identity.identityType in (1, 2) and "accepted" == str(expected)[:8]:
        (summary,) = ours(events, "association-summary")
        assert summary["user"] == identity.primaryField.decode()


def test_unsupportedTypeSaysSo(connect: Any, events: list[dict[str, Any]]) -> None:
    h = connect(userIdentity=UserIdentityMode.REQUIRED, identityChecker=credentialsChecker())
    h.send(request(identity=UserIdentityRQ(4, 0, b"<saml/>", b"")))
    assert h.received() == [AssociateRJ(1, 2, 1)]
    (rejected,) = ours(events, "association-rejected")
    assert rejected["reason"] == "user identity type 4 (SAML assertion) is not supported"


def test_identityRequestsAreNeverCached(connect: Any, clock: Clock) -> None:
    """
    An accepted identity's request bytes are not remembered: the same bytes
    again are checked again (a changed passcode takes effect at once, the
    lesson of dcm4chee-arc-light #3241).
    """
    checker = DelayedChecker()
    factory = DICOMServerFactory(clock=clock, userIdentity=UserIdentityMode.REQUIRED, identityChecker=checker)
    for expected in (b"", None):
        h = connect(factory=factory)
        h.send(request(identity=userPass()))
        assert h.received() == []
        assert h.protocol.state is State.STA3
        _, host, d = checker.calls[-1]
        assert host == "127.0.0.1"
        if expected is None:
            d.errback(IdentityRefused("passcode changed"))
            assert h.received() == [AssociateRJ(1, 2, 1)]
        else:
            d.callback(expected)
            assert isinstance(h.received()[0], AssociateAC)
    assert len(checker.calls) == 2


def test_peerLeavesDuringCheck(connect: Any, clock: Clock) -> None:
    """
    A peer that aborts while its identity is being checked: the late answer
    sends nothing and the check count comes back to 0.
    """
    checker = DelayedChecker()
    h = connect(userIdentity=UserIdentityMode.REQUIRED, identityChecker=checker)
    h.send(request(identity=userPass()))
    assert h.factory.identityChecksInProgress == 1
    h.send(Abort(0, 0))
    h.close()
    checker.calls[0][2].callback(b"")
    assert h.transport.value() == b""
    assert h.factory.identityChecksInProgress == 0
    assert h.factory.activeAssociations == 0


def test_checkerFailureRejectsAndLogs(connect: Any, events: list[dict[str, Any]]) -> None:
    """
    A checker that fails unexpectedly (e.g. the credentials file became
    unreadable) rejects the association and logs the failure.
    """
    @implementer(IUserIdentityChecker)
    class Broken:
        def checkIdentity(self, identity: Any, host: Any) -> Deferred[bytes]:
            return fail(OSError("credentials file vanished"))

    h = connect(userIdentity=UserIdentityMode.REQUIRED, identityChecker=Broken())
    h.send(request(identity=userPass()))
    assert h.received() == [AssociateRJ(1, 2, 1)]
    (failed,) = ours(events, "identity-check-failed")
    assert failed["log_failure"].check(OSError)


def test_repeatedFailuresAreSlowedDown(connect: Any, clock: Clock, events: list[dict[str, Any]]) -> None:
    """
    The first three failures from a source are answered at once; after
    that each rejection is held 1, 2, 4 ... s. Another source is not
    slowed, and a success clears the count.
    """
    factory = DICOMServerFactory(clock=clock, userIdentity=UserIdentityMode.REQUIRED, identityChecker=credentialsChecker())
    for attempt in range(3):
        h = connect("10.0.0.5", factory=factory)
        h.send(request(identity=userPass(passcode=b"guess%d" % attempt)))
        assert h.received() == [AssociateRJ(1, 2, 1)]
        h.close()
    for delay in (1.0, 2.0, 4.0):
        h = connect("10.0.0.5", factory=factory)
        h.send(request(identity=userPass(passcode=b"guess")))
        assert h.received() == []
        clock.advance(delay - 0.01)
        assert h.received() == []
        clock.advance(0.02)
        assert h.received() == [AssociateRJ(1, 2, 1)]
        h.close()
    throttled = ours(events, "identity-throttled")
    assert [e["delay"] for e in throttled] == [1.0, 2.0, 4.0]
    other = connect("10.0.0.6", factory=factory)
    other.send(request(identity=userPass(passcode=b"guess")))
    assert other.received() == [AssociateRJ(1, 2, 1)]
    good = connect("10.0.0.5", factory=factory)
    good.send(request(identity=userPass()))
    assert isinstance(good.received()[0], AssociateAC)
    assert factory.identityThrottle.failures("10.0.0.5") == 0


def test_heldRejectionForAPeerThatLeft(connect: Any, clock: Clock) -> None:
    factory = DICOMServerFactory(clock=clock, userIdentity=UserIdentityMode.REQUIRED, identityChecker=credentialsChecker())
    for attempt in range(3):
        h = connect(factory=factory)
        h.send(request(identity=userPass(passcode=b"x")))
        h.close()
    h = connect(factory=factory)
    h.send(request(identity=userPass(passcode=b"x")))
    h.close()
    # connectionLost cancelled the held rejection: the clock fixture checks
    # that no DelayedCall is left.
    assert h.transport.value() == b""


def test_limitOnChecksInProgress(connect: Any, clock: Clock) -> None:
    """
    Beyond maxIdentityChecks in progress, a request is rejected transient,
    presentation, local-limit-exceeded rather than queued.
    """
    checker = DelayedChecker()
    factory = DICOMServerFactory(
        clock=clock, userIdentity=UserIdentityMode.REQUIRED, identityChecker=checker, maxIdentityChecks=2
    )
    waiting = [connect(factory=factory) for _ in range(2)]
    for h in waiting:
        h.send(request(identity=userPass()))
    extra = connect(factory=factory)
    extra.send(request(identity=userPass()))
    assert extra.received() == [AssociateRJ(2, 3, 2)]
    for _, _, d in checker.calls:
        d.callback(b"")
    assert all(isinstance(h.received()[0], AssociateAC) for h in waiting)
    assert factory.identityChecksInProgress == 0


def test_capacityRecheckedAfterTheCheck(connect: Any, clock: Clock) -> None:
    checker = DelayedChecker()
    factory = DICOMServerFactory(
        clock=clock, userIdentity=UserIdentityMode.OPTIONAL, identityChecker=checker, maxAssociations=1
    )
    h = connect(factory=factory)
    h.send(request(identity=userPass()))
    other = connect(factory=factory)
    other.send(request())
    assert isinstance(other.received()[0], AssociateAC)
    checker.calls[0][2].callback(b"")
    assert h.received() == [AssociateRJ(2, 3, 2)]


def test_passcodeNeverLogged(connect: Any, events: list[dict[str, Any]]) -> None:
    """
    At debug level, through both of our renderings, neither an accepted
    nor a refused passcode appears anywhere.
    """
    text, jsonText = io.StringIO(), io.StringIO()
    console, jsonOut = consoleObserver(text), jsonObserver(jsonText)
    globalLogPublisher.addObserver(console)
    globalLogPublisher.addObserver(jsonOut)
    try:
        for passcode in (PASSCODE, b"Wr0ng-" + PASSCODE):
            h = connect(userIdentity=UserIdentityMode.REQUIRED, identityChecker=credentialsChecker())
            h.send(request(identity=userPass(passcode=passcode, positive=1)))
            h.received()
            h.close()
    finally:
        globalLogPublisher.removeObserver(console)
        globalLogPublisher.removeObserver(jsonOut)
    everything = text.getvalue() + jsonText.getvalue() + repr(events)
    assert "Accepting Association" in everything and "Rejecting Association" in everything
    assert "alice" in everything
    for secret in (PASSCODE.decode(), "S3cr3t", json.dumps(PASSCODE.decode())[1:-1]):
        assert secret not in everything
