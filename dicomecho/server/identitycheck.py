# -*- test-case-name: tests.test_security -*-
"""
The server's L{IUserIdentityChecker}: User Identity types 1 (username) and
2 (username and passcode) checked against a credentials file, with scrypt
run in a thread, off the reactor (PS3.7 D.3.3.7). The policy around it
(modes, refusals, the failure throttle) is L{dicomecho.security.identity}.
"""

from __future__ import annotations

from typing import Callable, Protocol

from twisted.internet.defer import Deferred, fail
from zope.interface import implementer

from dicomecho.security.identity import (
    IDENTITY_TYPE_NAMES,
    IdentityRefused,
    IUserIdentityChecker,
    usernameText,
)
from dicomecho.wire.userinfo import UserIdentityRQ

__all__ = ["PasscodeVerifier", "CredentialsChecker"]


class PasscodeVerifier(Protocol):
    """
    What L{CredentialsChecker} needs of its store: the C{verify} of
    L{dicomecho.security.credentials.Credentials} and C{CredentialsStore}.
    """

    def verify(self, username: bytes, passcode: bytes | None) -> bool: ...


@implementer(IUserIdentityChecker)
class CredentialsChecker:
    """
    Checks types 1 and 2 against a L{dicomecho.security.credentials.CredentialsStore}
    (scrypt, so in a thread, off the reactor); refuses types 3 to 5, which
    need an identity provider this checker does not have.

    @param runInThread: calls a function in a thread and returns a
        L{Deferred} of its result, e.g. C{partial(deferToThreadPool,
        reactor, reactor.getThreadPool())}; tests pass a synchronous one.
    """

    def __init__(
        self, store: PasscodeVerifier, runInThread: Callable[..., Deferred[bool]]
    ) -> None:
        self.store = store
        self._runInThread = runInThread

    def checkIdentity(self, identity: UserIdentityRQ, peerHost: str | None) -> Deferred[bytes]:
        kind = identity.identityType
        if kind not in (1, 2):
            name = IDENTITY_TYPE_NAMES.get(kind)
            what = f"type {kind} ({name})" if name else f"type {kind}"
            return fail(IdentityRefused(f"user identity {what} is not supported"))
        passcode = identity.secondaryField if kind == 2 else None
        checked = self._runInThread(self.store.verify, identity.primaryField, passcode)
        return checked.addCallback(self._verified, identity)

    @staticmethod
    def _verified(accepted: bool, identity: UserIdentityRQ) -> bytes:
        if not accepted:
            who = usernameText(identity)
            if identity.identityType == 1:
                raise IdentityRefused(f"user {who!r} is not accepted by username alone")
            raise IdentityRefused(f"user {who!r}: unknown user or wrong passcode")
        return b""
