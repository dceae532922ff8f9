# -*- test-case-name: tests.test_security -*-
"""
User Identity Negotiation on the acceptor side (PS3.7 D.3.3.7).

L{UserIdentityMode} says whether the sub-item is ignored (echoscp's
behaviour), checked when present, or required. An L{IUserIdentityChecker}
decides about one identity (the server's checker of a credentials file is
L{dicomecho.server.identitycheck.CredentialsChecker}). L{FailureThrottle}
slows down the answers to a source that keeps failing.

A refused identity gets A-ASSOCIATE-RJ rejected-permanent, source DICOM UL
service-provider (ACSE related function), no-reason-given: PS3.7 D.3.3.7
asks for a permanent rejection from the ACSE service-provider, and PS3.8
Table 9-21 leaves "no-reason-given" as that source's only applicable
reason.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from zope.interface import Interface

from dicomecho.wire.userinfo import UserIdentityRQ

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

__all__ = [
    "UserIdentityMode",
    "IDENTITY_TYPE_NAMES",
    "IdentityRefused",
    "IUserIdentityChecker",
    "TimeSource",
    "FailureThrottle",
    "usernameText",
]

#: PS3.7 D.3.3.7.1 User-Identity-Type values.
IDENTITY_TYPE_NAMES = {
    1: "username",
    2: "username and passcode",
    3: "Kerberos service ticket",
    4: "SAML assertion",
    5: "JSON Web Token",
}


class UserIdentityMode(Enum):
    """
    What the acceptor does with a User Identity sub-item (0x58).
    """

    #: Never look at it, never answer it (echoscp, and PS3.7 D.3.3.7 for an
    #: acceptor that does not support the negotiation).
    IGNORE = "ignore"
    #: Check it when present; accept requests without one.
    OPTIONAL = "optional"
    #: Reject requests without one; check it when present.
    REQUIRED = "required"


class IdentityRefused(Exception):
    """
    A user identity was not accepted. The message is for the log; it never
    holds a passcode.
    """


class IUserIdentityChecker(Interface):
    """
    Decides whether a user identity may associate.
    """

    def checkIdentity(identity: UserIdentityRQ, peerHost: str | None) -> Deferred[bytes]:
        """
        Check C{identity}, received from C{peerHost}.

        @return: a L{Deferred} firing with the server response to send when
            a positive response is requested (empty for types 1 and 2,
            PS3.7 D.3.3.7.2), or failing with L{IdentityRefused}.
        """


def usernameText(identity: UserIdentityRQ) -> str:
    """
    The username of a type 1 or 2 identity as text for the log (undecodable
    bytes replaced), or the identity type's name for the other types.
    """
    if identity.identityType in (1, 2):
        return identity.primaryField.decode("utf-8", "replace")
    return IDENTITY_TYPE_NAMES.get(identity.identityType, f"type {identity.identityType}")


class TimeSource(Protocol):
    """
    What L{FailureThrottle} needs of a clock: the C{seconds()} of Twisted's
    C{IReactorTime}.
    """

    def seconds(self) -> float: ...


class FailureThrottle:
    """
    Per-source count of failed identity checks, and how long to hold the
    rejection of the next failure: nothing for the first C{free} failures,
    then 1, 2, 4 ... up to C{maxDelay} seconds. A source is forgotten after
    C{window} seconds without a failure, or when it succeeds. At most
    C{maxSources} sources are remembered (the least recent is dropped).
    """

    def __init__(
        self,
        clock: TimeSource,
        free: int = 3,
        maxDelay: float = 30.0,
        window: float = 900.0,
        maxSources: int = 10000,
    ) -> None:
        self._clock = clock
        self.free = free
        self.maxDelay = maxDelay
        self.window = window
        self.maxSources = maxSources
        # host -> (failures, time of the last failure)
        self._sources: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def failures(self, host: str) -> int:
        """
        Recent failures from C{host}.
        """
        entry = self._sources.get(host)
        if entry is None:
            return 0
        if self._clock.seconds() - entry[1] > self.window:
            del self._sources[host]
            return 0
        return entry[0]

    def failed(self, host: str) -> float:
        """
        Count a failure from C{host}; return the seconds to hold its
        rejection.
        """
        count = self.failures(host) + 1
        self._sources[host] = (count, self._clock.seconds())
        self._sources.move_to_end(host)
        while len(self._sources) > self.maxSources:
            self._sources.popitem(last=False)
        over = count - self.free
        if over <= 0:
            return 0.0
        return float(min(self.maxDelay, 2 ** min(over - 1, 30)))

    def succeeded(self, host: str) -> None:
        """
        Forget C{host}'s failures.
        """
        self._sources.pop(host, None)
