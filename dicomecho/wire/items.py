# -*- test-case-name: tests.test_items -*-
"""
Items and sub-items of the A-ASSOCIATE-RQ/AC variable field (PS3.8 §9.3.2,
§9.3.3 and Annex D; PS3.7 Annex D.3.3), in one namespace.

The presentation context items (0x20, 0x21) are defined here; the framing
every item shares is L{dicomecho.wire.itemcodec}, and the User Information
item (0x50) with its sub-items is L{dicomecho.wire.userinfo}. Their names
are exported here too, as the one place to import items from.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomecho.wire.errors import LocalProtocolError
from dicomecho.wire.itemcodec import (
    ItemBudget,
    ItemType,
    decodeText,
    encodeItem,
    encodeText,
    iterItems,
    needLength,
    singleValued,
)

__all__ = [
    "PresentationContextRQ",
    "PresentationContextAC",
    "PresentationResult",
]


class PresentationResult:
    """
    Result/Reason of a presentation context in an A-ASSOCIATE-AC
    (PS3.8 Table 9-18).
    """

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


def _checkContextID(contextID: int) -> None:
    if not 0 <= contextID <= 0xFF:
        raise LocalProtocolError(f"presentation context ID {contextID} not a byte")


@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    """
    Item 0x20 (PS3.8 §9.3.2.2): one proposed presentation context.

    @ivar contextID: as sent; PS3.8 wants an odd number 1-255, but the
        decoder keeps any byte so the negotiation layer can answer it.
    @ivar abstractSyntax: the abstract syntax sub-item (0x30), C{None} if the
        peer left it out.
    @ivar transferSyntaxes: the transfer syntax sub-items (0x40), in order;
        may be empty if the peer sent none.
    """

    contextID: int
    abstractSyntax: str | None
    transferSyntaxes: tuple[str, ...]

    def encode(self) -> bytes:
        _checkContextID(self.contextID)
        parts = [bytes((self.contextID, 0, 0, 0))]
        if self.abstractSyntax is not None:
            parts.append(
                encodeItem(
                    ItemType.ABSTRACT_SYNTAX,
                    encodeText(self.abstractSyntax, "abstract syntax"),
                )
            )
        for ts in self.transferSyntaxes:
            parts.append(
                encodeItem(ItemType.TRANSFER_SYNTAX, encodeText(ts, "transfer syntax"))
            )
        return encodeItem(ItemType.PRESENTATION_CONTEXT_RQ, b"".join(parts))

    @classmethod
    def decode(
        cls, data: bytes, start: int, end: int, budget: ItemBudget | None = None
    ) -> PresentationContextRQ:
        needLength(end - start, 4, "presentation context item")
        contextID = data[start]
        what = f"presentation context {contextID}"
        abstract: str | None = None
        transfers: list[str] = []
        for itemType, _, s, e in iterItems(data, start + 4, end, what, budget):
            if itemType == ItemType.TRANSFER_SYNTAX:
                transfers.append(decodeText(data[s:e]))
            elif itemType == ItemType.ABSTRACT_SYNTAX:
                abstract = singleValued(
                    abstract, decodeText(data[s:e]), f"abstract syntax in {what}"
                )
            # Other sub-item types: ignored and skipped (PS3.8 §9.3.1).
        return cls(contextID, abstract, tuple(transfers))


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    """
    Item 0x21 (PS3.8 §9.3.3.2): the acceptor's answer for one context.

    @ivar result: a L{PresentationResult} value.
    @ivar transferSyntax: the transfer syntax sub-item; PS3.8 says it is not
        significant when C{result} is not acceptance. C{None} if absent.
    """

    contextID: int
    result: int
    transferSyntax: str | None

    def encode(self) -> bytes:
        _checkContextID(self.contextID)
        if not 0 <= self.result <= 0xFF:
            raise LocalProtocolError(f"presentation result {self.result} not a byte")
        body = bytes((self.contextID, 0, self.result, 0))
        if self.transferSyntax is not None:
            body += encodeItem(
                ItemType.TRANSFER_SYNTAX,
                encodeText(self.transferSyntax, "transfer syntax"),
            )
        return encodeItem(ItemType.PRESENTATION_CONTEXT_AC, body)

    @classmethod
    def decode(
        cls, data: bytes, start: int, end: int, budget: ItemBudget | None = None
    ) -> PresentationContextAC:
        needLength(end - start, 4, "presentation context item")
        contextID = data[start]
        result = data[start + 2]
        what = f"presentation context {contextID}"
        transfer: str | None = None
        for itemType, _, s, e in iterItems(data, start + 4, end, what, budget):
            if itemType == ItemType.TRANSFER_SYNTAX:
                transfer = singleValued(
                    transfer, decodeText(data[s:e]), f"transfer syntax in {what}"
                )
        return cls(contextID, result, transfer)
