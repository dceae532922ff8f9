# -*- test-case-name: tests.test_webresources -*-
"""
The live page's C{twisted.web} site (C{--web}): its resources, behind
HTTP Basic authentication when C{--web-credentials} names a credentials
file (the format of C{dicomecho passwd}; scrypt, checked in a thread).
"""

from __future__ import annotations

import hashlib
from functools import partial
from typing import Any, Callable

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.web.guard import BasicCredentialFactory, HTTPAuthSessionWrapper
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site
from zope.interface import implementer

from dicomecho.observability.history import AssociationHistory
from dicomecho.web.resources import liveResource

__all__ = ["MAX_CHECKS_IN_FLIGHT", "PasscodeChecker", "liveSite", "REMEMBERED_SECONDS"]

#: How long a username and passcode that passed stay accepted without
#: another scrypt (HTTP Basic sends them with every request).
REMEMBERED_SECONDS = 300.0
_REMEMBERED_MAX = 64
#: Passcode checks (scrypt, in threads) at once; more are refused at once,
#: so a flood of guesses queues no work.
MAX_CHECKS_IN_FLIGHT = 4


@implementer(ICredentialsChecker)
class PasscodeChecker:
    """
    Checks HTTP Basic credentials against a credentials store, in a thread.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self, store: Any, runInThread: Callable[..., Deferred[bool]], clock: IReactorTime
    ) -> None:
        self.store = store
        self._runInThread = runInThread
        self._clock = clock
        self._passed: dict[bytes, float] = {}
        self._inFlight = 0

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes]:
        username, passcode = credentials.username, credentials.password
        key = hashlib.sha256(username + b"\0" + passcode).digest()
        now = self._clock.seconds()
        if self._passed.get(key, -1.0) > now:
            return succeed(username)
        if self._inFlight >= MAX_CHECKS_IN_FLIGHT:
            return fail(UnauthorizedLogin("too many passcode checks at once"))
        self._inFlight += 1
        checked = self._runInThread(self.store.verify, username, passcode)

        def verified(accepted: bool) -> bytes:
            self._inFlight -= 1
            if not accepted:
                raise UnauthorizedLogin("unknown user or wrong passcode")
            if len(self._passed) >= _REMEMBERED_MAX:
                self._passed.clear()
            self._passed[key] = now + REMEMBERED_SECONDS
            return username

        def failed(failure: Any) -> Any:
            self._inFlight -= 1
            return failure

        return checked.addCallbacks(verified, failed)


@implementer(IRealm)
class _Realm:
    def __init__(self, resource: Resource) -> None:
        self.resource = resource

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        if IResource not in interfaces:
            raise NotImplementedError()
        return IResource, self.resource, lambda: None


def liveSite(
    factory: Any,
    store: Any | None,
    reactor: Any,
    runInThread: Callable[..., Deferred[bool]] | None = None,
) -> Site:
    """
    The site of C{--web}: the factory's history and live association
    count; behind HTTP Basic when C{store} is given.

    @param runInThread: runs a passcode check off the reactor; by default
        in the reactor's thread pool.
    """
    history: AssociationHistory = factory.history
    resource: Resource = liveResource(
        history, lambda: factory.activeAssociations, reactor, f"dicomecho \u00b7 {factory.policy.aeTitle}"
    )
    if store is not None:
        if runInThread is None:
            from twisted.internet.threads import deferToThreadPool

            runInThread = partial(deferToThreadPool, reactor, reactor.getThreadPool())
        portal = Portal(_Realm(resource), [PasscodeChecker(store, runInThread, reactor)])
        resource = HTTPAuthSessionWrapper(portal, [BasicCredentialFactory(b"dicomecho")])
    site = Site(resource)
    site.noisy = False
    return site
