"""
Hypothesis strategies for the wire layer's values: L{pdus} (every PDU the
decoder can produce, in canonical form), L{pdatas}, L{userInformation},
the keyword strategies common to A-ASSOCIATE-RQ and -AC
(L{associateCommon}), and the small ones they are built from (L{byte},
L{uid}, L{aeTitle}, L{blob}).
"""

from __future__ import annotations

from hypothesis import strategies as st

from dicomecho.wire.userinfo import (
    AsyncOperationsWindow,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomecho.wire.items import PresentationContextAC, PresentationContextRQ
from dicomecho.wire.itemcodec import UnknownItem
from dicomecho.wire.pdu import (
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
    PresentationDataValue,
    ReleaseRP,
    ReleaseRQ,
)

__all__ = [
    "byte",
    "latin1",
    "uid",
    "aeTitle",
    "blob",
    "KNOWN_SUB_ITEMS",
    "KNOWN_ITEMS",
    "unknownItems",
    "userInformation",
    "associateCommon",
    "pdus",
    "pdatas",
]

byte = st.integers(0, 0xFF)
latin1 = st.characters(min_codepoint=0, max_codepoint=0xFF)
# Canonical forms: what the decoder produces after removing padding.
uid = st.text(latin1, max_size=40).map(lambda s: s.rstrip("\0 "))
aeTitle = st.text(latin1, max_size=16).map(lambda s: s.rstrip("\0 ").lstrip(" "))
blob = st.binary(max_size=60)

KNOWN_SUB_ITEMS = set(range(0x51, 0x5A))
KNOWN_ITEMS = {0x10, 0x20, 0x21, 0x50}


def unknownItems(known: set[int]) -> st.SearchStrategy[tuple[UnknownItem, ...]]:
    return st.lists(
        st.builds(
            UnknownItem,
            byte.filter(lambda t: t not in known),
            blob,
            byte,
        ),
        max_size=2,
    ).map(tuple)


userInformation = st.builds(
    UserInformation,
    maximumLength=st.none() | st.integers(0, 0xFFFFFFFF),
    implementationClassUID=st.none() | uid,
    implementationVersionName=st.none() | uid,
    asyncOperationsWindow=st.none()
    | st.builds(AsyncOperationsWindow, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    roleSelections=st.lists(st.builds(RoleSelection, uid, byte, byte), max_size=3).map(tuple),
    sopClassExtendedNegotiations=st.lists(
        st.builds(SOPClassExtendedNegotiation, uid, blob), max_size=2
    ).map(tuple),
    sopClassCommonExtendedNegotiations=st.lists(
        st.builds(
            SOPClassCommonExtendedNegotiation,
            uid,
            uid,
            st.lists(uid, max_size=3).map(tuple),
            byte,
        ),
        max_size=2,
    ).map(tuple),
    userIdentity=st.none() | st.builds(UserIdentityRQ, byte, byte, blob, blob),
    userIdentityResponse=st.none() | st.builds(UserIdentityAC, blob),
    unknownSubItems=unknownItems(KNOWN_SUB_ITEMS),
)

associateCommon = dict(
    calledAETitle=aeTitle,
    callingAETitle=aeTitle,
    applicationContextName=st.none() | uid,
    userInformation=st.none() | userInformation,
    protocolVersion=st.integers(0, 0xFFFF),
    unknownItems=unknownItems(KNOWN_ITEMS),
    reservedField=st.binary(min_size=32, max_size=32),
)

pdus: st.SearchStrategy[PDU] = st.one_of(
    st.builds(
        AssociateRQ,
        presentationContexts=st.lists(
            st.builds(
                PresentationContextRQ,
                byte,
                st.none() | uid,
                st.lists(uid, max_size=4).map(tuple),
            ),
            max_size=4,
        ).map(tuple),
        **associateCommon,
    ),
    st.builds(
        AssociateAC,
        presentationContexts=st.lists(
            st.builds(PresentationContextAC, byte, byte, st.none() | uid), max_size=4
        ).map(tuple),
        **associateCommon,
    ),
    st.builds(AssociateRJ, byte, byte, byte),
    st.deferred(lambda: pdatas),
    st.just(ReleaseRQ()),
    st.just(ReleaseRP()),
    st.builds(Abort, byte, byte),
)

pdatas = st.builds(
    PDataTF,
    st.lists(
        st.builds(PresentationDataValue, byte, st.booleans(), st.booleans(), blob),
        min_size=1,
        max_size=4,
    ).map(tuple),
)
