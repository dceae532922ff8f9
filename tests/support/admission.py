"""
Admission on a fake transport: the C{connect} fixture builds protocols of
a L{DICOMServerFactory} on L{Harness}es from any source address (IPv4,
IPv6 or a UNIX socket path), closed after the test; L{request} is the
A-ASSOCIATE-RQ they send (Verification, Implicit VR Little Endian, any
calling AE title and user identity).
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock

from dicomecho.association.transitions import State
from dicomecho.server.factory import DICOMServerFactory
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.userinfo import UserIdentityRQ, UserInformation
from dicomecho.wire.pdu import AssociateRQ
from tests.support.harness import IMPLICIT, VERIFICATION, Harness

__all__ = ["connect", "request"]


@pytest.fixture
def connect(clock: Clock) -> Iterator[Any]:
    """
    C{connect(host="127.0.0.1", factory=None, **options)}: a L{Harness}
    connected from C{host} (port 40000) to C{factory}, or to a new factory
    with C{options} on the test's clock.
    """
    harnesses: list[Harness] = []

    def build(host: str = "127.0.0.1", factory: DICOMServerFactory | None = None, **options: Any) -> Harness:
        if factory is None:
            factory = DICOMServerFactory(clock=clock, **options)
        if host.startswith("/"):
            peer: Any = UNIXAddress(host)
        elif ":" in host:
            peer = IPv6Address("TCP", host, 40000)
        else:
            peer = IPv4Address("TCP", host, 40000)
        harness = Harness(factory, clock, peer)
        harnesses.append(harness)
        return harness

    yield build
    for harness in harnesses:
        if harness.protocol.state is not State.STA1 or harness.transport.connected:
            harness.close()


def request(calling: str = "SCU", identity: UserIdentityRQ | None = None) -> AssociateRQ:
    """
    An A-ASSOCIATE-RQ to ECHOSCP from C{calling}: Verification on context
    1, Maximum Length 16384, and C{identity} if given.
    """
    return AssociateRQ(
        "ECHOSCP",
        calling,
        presentationContexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),),
        userInformation=UserInformation(
            maximumLength=16384, implementationClassUID="1.2.3", userIdentity=identity
        ),
    )
