"""
Hostile peers against a running server, what an A-ASSOCIATE-RQ carries:
its fixed fields (class 11), item and sub-item lengths that lie (class
12), unknown, repeated and missing items (class 13), presentation contexts
(class 14), AE titles (class 15) and user identity (class 16). A
raw-socket client sends them to a L{DICOMServerFactory} in a
C{tests.support.serve} subprocess on loopback.

Each case checks (a) the peer's PS3.8 answer, (b) the server's log of it,
(c) that the next client is served, and, where the input could make the
server allocate, (d) its memory: see L{tests.support.hostile}. Hostile
input is numbered by class, as in the test names. One server with short
timers (the C{server} fixture) is shared by the module; tests whose
options or counts matter start their own. Every wait is bounded (socket
timeouts of at most 10 s, deadlines on every read loop).
"""

from __future__ import annotations

import struct

import pytest

from dicomecho.wire.itemcodec import MAX_ITEMS
from dicomecho.wire.items import PresentationContextRQ
from dicomecho.wire.userinfo import UserIdentityRQ, UserInformation
from dicomecho.wire.pdu import AssociateRQ
from tests.support.hostile import (
    CT_IMAGE_STORAGE,
    IMPLICIT,
    MESSAGE_ID_RESPONDED,
    RSS_SLACK_KIB,
    STATUS,
    VERIFICATION,
    Client,
    MiB,
    abortCase,
    abortedFor,
    closedWithin,
    echoPDU,
    expectAbort,
    item,
    logged,
    makeRQ,
    pdu,
    rawRQ,
    rjBytes,
    served,
    server,  # noqa: F401 (fixture)
    warm,
)
from tests.support.malformed import MALFORMED, REPEATED


# --- class 11: fixed fields of the A-ASSOCIATE-RQ ----------------------------


@pytest.mark.parametrize("length", [0, 10, 67])
def test_class11_shorterThanFixedPart(server, length):
    """
    Class 11: an A-ASSOCIATE-RQ shorter than its 68-byte fixed part
    is A-ABORT (2, 6).
    """
    body = makeRQ()[6 : 6 + length]
    abortCase(server, [pdu(0x01, body)], 2, 6, "shorter than its 68-byte fixed part", invalid=True)


REJECTIONS = {
    "version-0": (rawRQ(b"", version=0), (1, 2, 2), "protocol version 0x0000"),
    "version-2": (rawRQ(b"", version=2), (1, 2, 2), "protocol version 0x0002"),
    "wrong-app-context": (
        rawRQ(item(0x10, b"1.2.3.4"), appContext=False),
        (1, 1, 2),
        "'1.2.3.4' is not DICOM's",
    ),
    "no-app-context": (rawRQ(b"", appContext=False), (1, 1, 2), "no application context"),
}


@pytest.mark.parametrize("name", list(REJECTIONS))
def test_class11_rejected(server, name):
    """
    Class 11: protocol version without bit 0 is RJ (1, 2, 2); a wrong
    or missing application context name is RJ (1, 1, 2). The exact RJ
    bytes, then nothing; the rejection and its reason are logged.
    """
    rq, (result, source, diagnostic), why = REJECTIONS[name]
    with Client(server.port()) as client:
        client.send(rq)
        assert client.recvExactly(10) == rjBytes(result, source, diagnostic)
        assert client.finish() == b""
    byName = logged(server, client.peer, "rejected", why, ["association-rejected"])
    (rejected,) = byName["association-rejected"]
    assert (rejected["result"], rejected["source"], rejected["diagnostic"]) == (
        result,
        source,
        diagnostic,
    )
    assert why in rejected["reason"]
    served(server)


def test_class11_rejectionThenClose(server):
    """
    Class 11/22: after an A-ASSOCIATE-RJ the server closes the
    connection as soon as the RJ is flushed (within 1 s), without waiting
    for the peer.
    """
    with Client(server.port()) as client:
        client.send(rawRQ(b"", version=2))
        assert client.recvExactly(10) == rjBytes(1, 2, 2)
        closedWithin(client, 1.0)
    logged(server, client.peer, "rejected")
    served(server)


def test_class11_protocolVersion3Accepted(server):
    """
    Class 11: only bit 0 of the protocol version is tested, so 3 is
    accepted and the echo works.
    """
    rq = bytearray(makeRQ())
    rq[6:8] = b"\x00\x03"
    with Client(server.port()) as client:
        client.associate(bytes(rq))
        assert client.echo(1)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")


# --- class 12: item and sub-item lengths that lie --------------------------

#: A representative set from tests/test_items.py, at least one per item type.
LYING_ITEMS = [
    "app context longer than PDU",
    "pc longer than PDU",
    "pc length 2",
    "abstract syntax longer than pc",
    "transfer syntax longer than pc",
    "trailing bytes in pc",
    "user info longer than PDU",
    "trailing bytes in user info",
    "max length 2 bytes",
    "max length 5 bytes",
    "impl UID longer than user info",
    "async window 3 bytes",
    "role UID longer than item",
    "version name longer than user info",
    "ext neg UID longer than item",
    "common ext service UID too long",
    "identity primary longer than item",
    "identity secondary longer than item",
    "1 trailing byte",
]


@pytest.mark.parametrize("name", LYING_ITEMS)
def test_class12_lyingItemLength(server, name):
    """
    Class 12: an item or sub-item length that runs past its container,
    or is shorter or longer than its fixed part, is A-ABORT (2, 6), logged
    with the decoder's reason.
    """
    abortCase(server, [rawRQ(MALFORMED[name], appContext=False)], 2, 6, "", invalid=True)


# --- class 13: unknown, repeated and missing items -------------------------


def test_class13_unknownItemsSkipped(server):
    """
    Class 13: unknown item types (0x60 in the PDU, 0x99 inside a
    presentation context, 0x5A in the user information) are skipped and the
    association works.
    """
    pc = item(
        0x20,
        b"\x01\0\0\0" + item(0x99, b"junk") + item(0x30, VERIFICATION.encode()) + item(0x40, IMPLICIT.encode()),
    )
    info = item(0x50, item(0x5A, b"future") + item(0x51, struct.pack(">I", 16384)))
    with Client(server.port()) as client:
        ac = client.associate(rawRQ(item(0x60, b"later") + pc + info))
        assert [(pc.contextID, pc.result) for pc in ac.presentationContexts] == [(1, 0)]
        assert client.echo(1)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")


@pytest.mark.parametrize(
    "name", ["maximum length", "application context", "user information", "AC context in RQ"]
)
def test_class13_repeatedOrMisplacedItem(server, name):
    """
    Class 13: a repeated single-valued item (maximum length,
    application context, user information) or an AC's context item in an
    RQ is A-ABORT (2, 5) (unexpected-PDU-parameter).
    """
    abortCase(server, [rawRQ(REPEATED[name], appContext=False)], 2, 5, "", invalid=True)


@pytest.mark.parametrize(
    "name, info",
    [
        ("no-max-length", UserInformation(implementationClassUID="1.2.3")),
        ("max-length-0", UserInformation(maximumLength=0, implementationClassUID="1.2.3")),
        ("max-length-8", UserInformation(maximumLength=8, implementationClassUID="1.2.3")),
        ("max-length-13", UserInformation(maximumLength=13, implementationClassUID="1.2.3")),
    ],
)
def test_class13_maximumLengthAccepted(server, name, info):
    """
    Class 13: a missing Maximum Length, Maximum Length 0 (no limit),
    and the smallest usable ones (8, odd 13) are accepted; the C-ECHO-RSP
    comes in fragments that fit the peer's maximum.
    """
    limit = info.maximumLength or 0
    with Client(server.port()) as client:
        client.associate(makeRQ(userInformation=info))
        client.send(echoPDU(5))
        rsp = client.response()
        assert (rsp[MESSAGE_ID_RESPONDED], rsp[STATUS]) == (5, 0)
        lengths = [length for pduType, length in client.received if pduType == 0x04]
        client.release()
    logged(server, client.peer, "released")
    if limit:
        # Fragments of (limit - 6) rounded down to even: 2 (8) or 6 (13).
        assert max(lengths) <= limit, lengths
        assert len(lengths) == -(-78 // ((limit - 6) & ~1)), lengths
    else:
        assert len(lengths) == 1, lengths


def test_class13_noUserInformation(server):
    """
    Class 13: a request without a user information item is accepted
    (treated as no limit) and the echo works.
    """
    with Client(server.port()) as client:
        client.associate(
            AssociateRQ(
                "ECHOSCP",
                "HOSTILE",
                presentationContexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT,)),),
                userInformation=None,
            ).encode()
        )
        assert client.echo(1)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")


@pytest.mark.parametrize("maximum", [1, 7])
def test_class13_maximumLengthTooSmall(server, maximum):
    """
    Class 13: a Maximum Length of 1-7 cannot carry a PDV: A-ABORT
    (2, 6), logged with the reason.
    """
    info = UserInformation(maximumLength=maximum, implementationClassUID="1.2.3")
    abortCase(server, [makeRQ(userInformation=info)], 2, 6, "too small", invalid=True)


def test_class13_unknownItemsMemory(server):
    """
    Classes 2 and 13 (d): a request made of as many empty unknown items as
    the item budget admits is accepted, but holding its association must
    not cost more than a few MiB each (the skipped items are not all kept
    as objects).
    """
    before = warm(server)
    count = MAX_ITEMS - 10
    rq = rawRQ(item(0x60, b"") * count + item(0x20, b"\x01\0\0\0" + item(0x30, VERIFICATION.encode()) + item(0x40, IMPLICIT.encode())))
    clients = []
    try:
        for _ in range(3):
            client = Client(server.port())
            clients.append(client)
            client.associate(rq)
        held = server.rssKiB() - before
        assert clients[-1].echo(1)[STATUS] == 0
    finally:
        for client in clients:
            client.close()
    for client in clients:
        server.peerEvents(client.peer)
    assert held < 3 * RSS_SLACK_KIB, f"3 held associations cost {held} KiB"
    served(server)


def test_class13_unknownItemsBeyondTheBudget(server):
    """
    Classes 2 and 13 (d): a request within the length cap with more items
    than the budget (PS3.8 says to skip unknown items, but each costs the
    decoder time) is A-ABORT (2, 6), and the log says which limit.
    """
    count = MAX_ITEMS + 1
    rq = rawRQ(item(0x60, b"") * count + item(0x20, b"\x01\0\0\0" + item(0x30, VERIFICATION.encode()) + item(0x40, IMPLICIT.encode())))
    abortCase(server, [rq], 2, 6, f"more than {MAX_ITEMS} items and sub-items", invalid=True)


# --- class 14: presentation contexts -------------------------------------------


@pytest.mark.parametrize(
    "name, contexts, why",
    [
        ("duplicate", [(1, VERIFICATION, [IMPLICIT]), (1, VERIFICATION, [IMPLICIT])], "more than once"),
        ("even", [(2, VERIFICATION, [IMPLICIT])], "ID 2 is not an odd number"),
        ("zero", [(0, VERIFICATION, [IMPLICIT])], "ID 0 is not an odd number"),
        (
            "129-contexts",
            [(2 * i + 1, VERIFICATION, [IMPLICIT]) for i in range(128)] + [(1, VERIFICATION, [IMPLICIT])],
            "more than 128 presentation context items",
        ),
    ],
)
def test_class14_invalidContextIDs(server, name, contexts, why):
    """
    Class 14: duplicate, even or zero presentation context IDs, and
    more than 128 contexts (which must repeat an ID: the decoder stops at
    the 129th item), are A-ABORT (2, 6); the log gives the reason.
    """
    abortCase(server, [makeRQ(contexts)], 2, 6, why, invalid=True)


def test_class14_perContextResults(server):
    """
    Class 14: a context with an unknown abstract syntax gets result 3,
    one without transfer syntaxes result 4, one without an abstract syntax
    result 3; the good one is accepted and works.
    """
    contexts = [
        (1, CT_IMAGE_STORAGE, [IMPLICIT]),
        (3, VERIFICATION, []),
        (5, None, [IMPLICIT]),
        (7, VERIFICATION, [IMPLICIT]),
    ]
    with Client(server.port()) as client:
        ac = client.associate(makeRQ(contexts))
        results = {pc.contextID: pc.result for pc in ac.presentationContexts}
        assert results == {1: 3, 3: 4, 5: 3, 7: 0}
        assert client.echo(1, contextID=7)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")


def test_class14_noContexts(server):
    """
    Class 14: no presentation context at all (or none accepted) still
    gives an AC; a P-DATA-TF on context 1 is then A-ABORT (2, 6), and the
    association's slot is freed.
    """
    with Client(server.port()) as client:
        ac = client.associate(makeRQ([]))
        assert ac.presentationContexts == ()
        client.send(echoPDU(1))
        expectAbort(client, 2, 6)
    abortedFor(server, client.peer, 2, 6, "unaccepted context 1")
    with Client(server.port()) as client:
        ac = client.associate(makeRQ([(1, CT_IMAGE_STORAGE, [IMPLICIT])]))
        assert [pc.result for pc in ac.presentationContexts] == [3]
        client.release()
    logged(server, client.peer, "released")
    served(server)


# --- class 15: AE titles -----------------------------------------------------

AE_TITLES = {
    "all-spaces": (b" " * 16, ""),
    "empty-nul": (b"\0" * 16, ""),
    "leading-trailing-spaces": (b"  LEAD  ", "LEAD"),
    "backslash": (b"A\\B", "A\\B"),
    "control": (b"A\nI: forged\x1b[31m", "A\nI: forged\x1b[31m"),
    "high-bytes": (b"\xff\xfe\x80\xe9", "\xff\xfe\x80\xe9"),
    "path": (b"../../etc/passwd", "../../etc/passwd"),
    "nul-inside": (b"A\0B", "A\0B"),
}


@pytest.mark.parametrize("name", list(AE_TITLES))
def test_class15_aeTitles(server, name):
    """
    Class 15: odd calling AE titles (blank, NULs, spaces, backslash,
    control characters, bytes ≥ 0x80, a path) are accepted by the default
    policy and logged as data: the summary carries the decoded title, and
    no output line of the server was forged by it.
    """
    raw, expected = AE_TITLES[name]
    rq = bytearray(makeRQ())
    rq[6 + 20 : 6 + 36] = raw.ljust(16, b" ")
    with Client(server.port()) as client:
        client.associate(bytes(rq))
        assert client.echo(1)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")
    assert server.summaryOf(client.peer)["callingAETitle"] == expected
    for line in server.outputLines():
        assert line.startswith(("EVENT ", "PORT ")), line
    served(server)


# --- class 16: user identity -------------------------------------------------

SECRET = b"hunter2-Secret-Passcode"


@pytest.mark.parametrize(
    "name, identity",
    [
        ("type-0", UserIdentityRQ(0, 0, b"who")),
        ("type-6", UserIdentityRQ(6, 1, b"who")),
        ("type-255", UserIdentityRQ(255, 1, b"who", b"x")),
        ("type-1-positive-response", UserIdentityRQ(1, 1, b"alice")),
        ("type-2-password", UserIdentityRQ(2, 1, b"alice", SECRET)),
        ("largest-primary", UserIdentityRQ(1, 0, b"u" * (0xFFFF - 4 - 6 - 48))),
    ],
)
def test_class16_userIdentity(server, name, identity):
    """
    Class 16: user identity of unknown types, asking for a positive
    response, carrying a passcode, or a near-65,535-byte primary field is
    accepted (dicomecho does not authenticate and sends no 0x59 response);
    the passcode never appears in the server's output.
    """
    info = UserInformation(
        maximumLength=16384, implementationClassUID="1.2.3", userIdentity=identity
    )
    with Client(server.port()) as client:
        ac = client.associate(makeRQ(userInformation=info))
        assert ac.userInformation is not None
        assert ac.userInformation.userIdentityResponse is None
        assert client.echo(1)[STATUS] == 0
        client.release()
    logged(server, client.peer, "released")
    assert SECRET.decode() not in server.output()
    served(server)


def test_class16_primaryFieldOverrunsItem(server):
    """
    Class 16: a primary field declaring 65,535 bytes in a short
    sub-item is A-ABORT (2, 6).
    """
    abortCase(
        server,
        [rawRQ(MALFORMED["identity primary longer than item"])],
        2,
        6,
        "declares 65535 bytes",
        invalid=True,
    )
