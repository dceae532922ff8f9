"""
An association's server and peer as plain data, for the pure layers'
tests (L{dicomecho.association}), and the PDUs among effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from dicomecho.association.fastpaths import AcceptanceCache
from dicomecho.association.fsm import SendPDU
from dicomecho.association.negotiation import AssociationPolicy
from dicomecho.services.verification import VerificationResponder
from dicomecho.wire.pdu import decodePDU
from tests.support.harness import IMPLICIT, VERIFICATION
from tests.support.helpers import splitStream

ECHO_TIMEOUT = 30.0


@dataclass
class Host:
    """
    An association's server, as plain data.
    """

    policy: AssociationPolicy = field(
        default_factory=lambda: AssociationPolicy(
            aeTitle="ECHOSCP",
            transferSyntaxes=(IMPLICIT,),
            abstractSyntaxes=(VERIFICATION,),
        )
    )
    acceptances: AcceptanceCache = field(default_factory=AcceptanceCache)
    responders: Mapping[str, Any] = field(
        default_factory=lambda: {VERIFICATION: VerificationResponder()}
    )
    acseTimeout: float = ECHO_TIMEOUT
    networkTimeout: float = 60.0
    dimseTimeout: float = 20.0
    maxAssociateLength: int = 1 << 20
    draining: bool = False
    replaysResponses: bool = True
    checksIdentity: bool = False
    requiresIdentity: bool = False
    atCapacity: bool = False
    reporting: bool = False

    def refuseRequest(self, peer: Any, size: int) -> str | None:
        return None

    def refuseAssociation(self, peer: Any) -> str | None:
        return "the limit on concurrent associations is reached" if self.atCapacity else None

    def reportsProgress(self) -> bool:
        return self.reporting

    def reportsRequests(self) -> bool:
        return self.reporting


class Peer:
    def peerHost(self) -> str:
        return "192.0.2.7"

    def sourceKey(self) -> str | None:
        return "192.0.2.7"


def sent(effects: list[Any]) -> list[Any]:
    """
    The PDUs among C{effects}, decoded.
    """
    data = b"".join(e.data for e in effects if isinstance(e, SendPDU))
    return [decodePDU(*frame) for frame in splitStream(data, maxPDataLength=0)]
