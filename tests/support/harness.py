"""
One DICOM protocol on an in-memory TCP transport with a fake clock
(L{Harness}), and the PDUs tests send it (L{rq}, L{echo}, L{echoCommand}),
read back with L{responses}. No sockets, no reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from dicomecho.association.commandset import CommandField, decodeCommandSet, encodeCommandSet, tag
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.userinfo import UserInformation
from dicomecho.association.dimse import DIMSEResponse
from dicomecho.services.verification import VerificationResponder
from dicomecho.wire.pdu import AssociateRQ, PDataTF, PresentationDataValue, decodePDU, encode
from dicomecho.server.factory import DICOMServerFactory
from dicomecho.server.protocol import DICOMAssociationProtocol
from tests.support.helpers import splitStream

__all__ = [
    "VERIFICATION",
    "CT",
    "IMPLICIT",
    "TCPStringTransport",
    "Harness",
    "rq",
    "echoCommand",
    "echo",
    "responses",
    "pdata",
    "CountingResponder",
]

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"


@implementer(ITCPTransport)
class TCPStringTransport(StringTransport):
    """
    A StringTransport that claims to be TCP, to observe TCP_NODELAY.
    """

    noDelay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled

    def getTcpNoDelay(self) -> bool:
        return self.noDelay


class Harness:
    """
    One protocol on a fake transport with a fake clock, from C{peer}
    (127.0.0.1:40000 unless given).
    """

    def __init__(self, factory: DICOMServerFactory, clock: Clock, peer: Any = None) -> None:
        self.factory = factory
        self.clock = clock
        self.transport = TCPStringTransport(
            peerAddress=peer if peer is not None else IPv4Address("TCP", "127.0.0.1", 40000)
        )
        self.protocol = factory.buildProtocol(self.transport.getPeer())
        assert isinstance(self.protocol, DICOMAssociationProtocol)
        self.protocol.makeConnection(self.transport)

    def send(self, *pdus: Any) -> None:
        for pdu in pdus:
            self.protocol.dataReceived(pdu if isinstance(pdu, bytes) else encode(pdu))

    def received(self) -> list[Any]:
        data = self.transport.value()
        self.transport.clear()
        return [decodePDU(*f) for f in splitStream(data, maxPDataLength=0)]

    def close(self) -> None:
        """
        The peer closes the connection (or the transport finishes closing).
        """
        if self.transport.connected:
            self.transport.loseConnection()
        self.protocol.connectionLost()


def rq(*contexts: PresentationContextRQ, maxLength: int | None = 16384, **kw: Any) -> AssociateRQ:
    return AssociateRQ(
        "ECHOSCP",
        "SCU",
        presentationContexts=contexts or (PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),),
        userInformation=UserInformation(maximumLength=maxLength, implementationClassUID="1.2.3"),
        **kw,
    )


def echoCommand(messageID: int, sopClass: str = VERIFICATION, field: int = CommandField.C_ECHO_RQ) -> bytes:
    return encodeCommandSet(
        {
            tag("AffectedSOPClassUID"): sopClass,
            tag("CommandField"): field,
            tag("MessageID"): messageID,
            tag("CommandDataSetType"): 0x0101,
        }
    )


def echo(messageID: int, contextID: int = 1) -> PDataTF:
    return PDataTF((PresentationDataValue(contextID, True, True, echoCommand(messageID)),))


def responses(pdus: list[Any]) -> list[dict[int, object]]:
    """
    The command sets of the P-DATA-TF PDUs in C{pdus} (one PDV each).
    """
    out = []
    for pdu in pdus:
        if isinstance(pdu, PDataTF):
            (pdv,) = pdu.pdvs
            assert pdv.isCommand and pdv.isLastFragment
            out.append(decodeCommandSet(pdv.data))
    return out


def pdata(*pdvs: tuple[int, bytes]) -> bytes:
    """
    A P-DATA-TF of whole command PDVs, as (context ID, bytes) pairs, encoded.
    """
    return encode(PDataTF(tuple(PresentationDataValue(c, True, True, d) for c, d in pdvs)))


class CountingResponder(VerificationResponder):
    """
    Verification that counts its calls, repeatable or not.
    """

    def __init__(self, repeatable: bool) -> None:
        self.repeatable = repeatable  # type: ignore[misc]
        self.calls = 0

    def handle(self, request: Any, context: Any) -> DIMSEResponse | None:
        self.calls += 1
        return super().handle(request, context)
