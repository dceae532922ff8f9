"""
Tests for L{dicomecho.wire.userinfo}: the User Information item and its
sub-items, decoded through a whole A-ASSOCIATE-RQ, and the values their
encoders refuse. Malformed and repeated sub-items are among the cases of
C{tests.test_items}.
"""

from __future__ import annotations

import pytest

from dicomecho.wire.errors import AbortReason, LocalProtocolError, PDUDecodeError
from dicomecho.wire.userinfo import (
    AsyncOperationsWindow,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from tests.support.malformed import item, rq, u16, userInfo

INVALID = AbortReason.INVALID_PDU_PARAMETER_VALUE


def test_largeUserIdentity() -> None:
    """
    The largest primary field a 0x58 sub-item can hold inside its 0x50 item
    (65,535 minus the 4-byte sub-item header minus 6 bytes of fixed fields)
    and unknown identity types (0, 6, 255) decode, since judging them is the
    policy's job. A primary field that declares 65,535 bytes cannot fit its
    item and is refused.
    """
    primary = b"u" * (0xFFFF - 4 - 6)
    for identityType in (0, 6, 0xFF):
        body = bytes((identityType, 1)) + u16(primary) + u16(b"")
        assert len(userInfo(item(0x58, body))) == 4 + 0xFFFF
        value = rq(userInfo(item(0x58, body)))
        assert value.userInformation is not None
        identity = value.userInformation.userIdentity
        assert identity == UserIdentityRQ(identityType, 1, primary, b"")
    overlong = b"\x02\x01\xff\xff" + primary + b"\0\0"
    with pytest.raises(PDUDecodeError) as e:
        rq(userInfo(item(0x58, overlong[: 0xFFFF - 4])))
    assert e.value.abortReason == INVALID


def test_subItemsInAnyOrder() -> None:
    """
    Every sub-item decodes whatever order it arrives in (PS3.8 §9.3.2.3)
    and is encoded back in ascending type order.
    """
    info = UserInformation(
        maximumLength=16384,
        implementationClassUID="1.2.3",
        implementationVersionName="V1",
        asyncOperationsWindow=AsyncOperationsWindow(1, 1),
        roleSelections=(RoleSelection("1.2", 1, 0),),
        sopClassExtendedNegotiations=(SOPClassExtendedNegotiation("1.2", b"\1\0"),),
        sopClassCommonExtendedNegotiations=(
            SOPClassCommonExtendedNegotiation("1.2", "1.3", ("1.4",), 0),
        ),
        userIdentity=UserIdentityRQ(2, 1, b"alice", b"s3cret"),
        userIdentityResponse=UserIdentityAC(b""),
    )
    encoded = info.encode()
    subItems = []
    pos = 4
    while pos < len(encoded):
        length = int.from_bytes(encoded[pos + 2 : pos + 4], "big")
        subItems.append(encoded[pos : pos + 4 + length])
        pos += 4 + length
    assert [s[0] for s in subItems] == sorted(s[0] for s in subItems)
    value = rq(userInfo(*reversed(subItems)))
    assert value.userInformation == info


@pytest.mark.parametrize(
    "value",
    [
        AsyncOperationsWindow(0x10000, 1),
        RoleSelection("1.2", 256, 0),
        SOPClassCommonExtendedNegotiation("1.2", "1.3", (), 256),
        UserIdentityRQ(256, 0, b""),
        UserIdentityRQ(1, 0, b"x" * 0x10000),
        UserInformation(maximumLength=2**32),
        UserInformation(implementationClassUID="1.2€"),
        SOPClassExtendedNegotiation("1.2", b"x" * 0xFFFF),
    ],
)
def test_encodeRefusesUnrepresentableValues(value: object) -> None:
    """
    Sub-item values that do not fit their PS3.7 field raise
    L{LocalProtocolError} instead of being truncated or wrapped.
    """
    with pytest.raises(LocalProtocolError):
        value.encode()  # type: ignore[attr-defined]
