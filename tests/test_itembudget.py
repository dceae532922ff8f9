"""
Tests for the bounds on decoding an A-ASSOCIATE-RQ (issue 15): the item
budget (L{dicomecho.wire.itemcodec.MAX_ITEMS}), at most 128 presentation
contexts (PS3.8 §9.3.2.2) and at most 128 per-SOP-class sub-items (PS3.7
D.3.3), checked on DCMTK's largest captured request and on built ones.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomecho.association.negotiation import Acceptance, AssociationPolicy, negotiate
from dicomecho.wire.errors import AbortReason, PDUDecodeError
from dicomecho.wire.framer import DEFAULT_MAX_ASSOCIATE_LENGTH, HEADER_LENGTH
from dicomecho.wire.itemcodec import MAX_ITEMS, MAX_PRESENTATION_CONTEXTS, ItemBudget, iterItems
from dicomecho.wire.pdu import AssociateRQ, decodePDU
from tests.support.helpers import fixtureBytes

VERIFICATION = b"1.2.840.10008.1.1"
IMPLICIT = b"1.2.840.10008.1.2"


def item(itemType: int, body: bytes = b"") -> bytes:
    return struct.pack(">BBH", itemType, 0, len(body)) + body


def fixed() -> bytes:
    return struct.pack(">HH16s16s32s", 1, 0, b"ECHOSCP".ljust(16), b"SCU".ljust(16), bytes(32))


def context(contextID: int, extra: bytes = b"") -> bytes:
    return item(0x20, bytes((contextID, 0, 0, 0)) + item(0x30, VERIFICATION) + item(0x40, IMPLICIT) + extra)


def userInformation(extra: bytes = b"") -> bytes:
    return item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.3") + extra)


def body(*parts: bytes) -> bytes:
    return fixed() + item(0x10, b"1.2.840.10008.3.1.1.1") + b"".join(parts)


#: Items in C{body(context(1), userInformation())}: the application
#: context; a context with two sub-items; user information with two.
_BASE_ITEMS = 1 + 3 + 3


def refused(data: bytes, words: str) -> None:
    with pytest.raises(PDUDecodeError) as raised:
        decodePDU(1, data)
    assert raised.value.abortReason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert words in str(raised.value)


def test_dcmtkLargestFitsWithMargin() -> None:
    """
    DCMTK's largest request (echoscu -ppc 128 -pts 38) decodes whole and is
    accepted; it is under half the default cap and holds 5,125 items.
    """
    data = fixtureBytes("dcmtk_echoscu_ppc128_pts38", "rq")
    assert 2 * (len(data) - HEADER_LENGTH) <= DEFAULT_MAX_ASSOCIATE_LENGTH
    rq = decodePDU(data[0], data[HEADER_LENGTH:])
    assert isinstance(rq, AssociateRQ)
    assert len(rq.presentationContexts) == 128
    assert {len(pc.transferSyntaxes) for pc in rq.presentationContexts} == {38}
    items = 1 + 1 + 128 * 40 + 3  # app context, user info, contexts, their sub-items
    assert items == 5125 and items * 1.5 < MAX_ITEMS
    outcome = negotiate(rq, AssociationPolicy(aeTitle="ANY-SCP"))
    assert isinstance(outcome, Acceptance) and len(outcome.contexts) == 128


def test_unknownItemsWithinTheBudget() -> None:
    """
    Unknown items are skipped (PS3.8 §9.3.1): as many as the budget leaves
    are accepted, a few kept for the log and the rest counted.
    """
    spare = MAX_ITEMS - _BASE_ITEMS
    rq = decodePDU(1, body(context(1), userInformation(), item(0x99) * spare))
    assert isinstance(rq, AssociateRQ)
    assert len(rq.unknownItems) + rq.droppedUnknownItems == spare


def test_oneItemBeyondTheBudget() -> None:
    spare = MAX_ITEMS - _BASE_ITEMS
    refused(body(context(1), userInformation(), item(0x99) * (spare + 1)),
            f"more than {MAX_ITEMS} items and sub-items")


def test_subItemsSpendTheSameBudget() -> None:
    """
    Sub-items inside contexts and the User Information item count too: the
    budget is the PDU's, not each container's.
    """
    perContext = MAX_ITEMS // 64
    contexts = [context(2 * i + 1, item(0x40, b"1") * perContext) for i in range(64)]
    refused(body(*contexts, userInformation()), "items and sub-items")
    refused(body(context(1), userInformation(item(0x99) * MAX_ITEMS)), "items and sub-items")


def test_at_most128Contexts() -> None:
    decodePDU(1, body(*(context(2 * i + 1) for i in range(128)), userInformation()))
    refused(body(*(context(2 * i + 1) for i in range(128)), context(1), userInformation()),
            f"more than {MAX_PRESENTATION_CONTEXTS} presentation context items")


@pytest.mark.parametrize(
    "itemType, subItem, words",
    [
        (0x54, struct.pack(">H", 3) + b"1.2" + b"\x01\x01", "role selection"),
        (0x56, struct.pack(">H", 3) + b"1.2" + b"\x01", "SOP class extended negotiation"),
        (0x57, struct.pack(">H", 3) + b"1.2" + struct.pack(">H", 3) + b"1.2" + struct.pack(">H", 0),
         "SOP class common extended negotiation"),
    ],
)
def test_at_most128PerSOPClassSubItems(itemType: int, subItem: bytes, words: str) -> None:
    """
    Role selection, SOP class extended and common extended negotiation
    come one per SOP class (PS3.7 D.3.3.4 to D.3.3.6): 128 are decoded,
    the 129th is refused.
    """
    rq = decodePDU(1, body(context(1), userInformation(item(itemType, subItem) * 128)))
    assert isinstance(rq, AssociateRQ)
    refused(body(context(1), userInformation(item(itemType, subItem) * 129)), words)


_items = st.lists(
    st.tuples(st.sampled_from([0x10, 0x20, 0x30, 0x40, 0x50, 0x54, 0x99]), st.binary(max_size=6)),
    max_size=40,
)


@settings(max_examples=200)
@given(_items, st.integers(1, 60))
def test_budgetBoundsEveryWalk(items: list[tuple[int, bytes]], limit: int) -> None:
    """
    Walking items never yields more than the budget allows: it stops with
    L{PDUDecodeError} at the first item beyond it, whatever the items are.
    """
    data = b"".join(item(t, b) for t, b in items)
    budget = ItemBudget(limit)
    walked = 0
    try:
        for _ in iterItems(data, 0, len(data), "test", budget):
            walked += 1
    except PDUDecodeError as error:
        assert walked == limit and "more than" in str(error)
    else:
        assert walked == len(items) <= limit
    assert walked <= limit


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=8)), max_size=60))
def test_anyRequestDecodesOrIsRefused(items: list[tuple[int, bytes]]) -> None:
    """
    Any sequence of items after a valid fixed part either decodes or raises
    L{PDUDecodeError}; nothing else.
    """
    try:
        decodePDU(1, fixed() + b"".join(item(t, b) for t, b in items))
    except PDUDecodeError:
        pass


def test_fixedPartAlone() -> None:
    """
    C{AssociateRQ.decodeFixedPart} reads the AE titles and version and
    nothing else: items that would not decode are not looked at.
    """
    rq = AssociateRQ.decodeFixedPart(fixed() + item(0x99, b"\xff" * 3) + b"\x01")
    assert (rq.calledAETitle, rq.callingAETitle, rq.protocolVersion) == ("ECHOSCP", "SCU", 1)
    assert rq.presentationContexts == () and rq.userInformation is None
    refused(fixed()[:67], "shorter than its 68-byte fixed part")
