"""
Whole associations between pynetdicom and a running
L{DICOMServerFactory}: each transfer syntax alone, unsupported abstract
syntaxes, user identity, role selection and asynchronous operations
window items, maximum PDU lengths from unlimited down to below the floor,
abort, the transfer syntax preference, AE title checks, and the limit on
concurrent associations (with DCMTK's C{echoscu} too), read through
pynetdicom's API.

Each test talks over loopback to dicomecho's Twisted server, started by
C{tests.support.serve} in a subprocess (L{FactoryServer}). Every test
checks both ends: what the peer reports and the C{EVENT} lines the server
logged for that association. One server with the default configuration is
shared by the module; servers with other options are started only where
the options differ. Every wait is bounded: subprocesses run with timeouts,
the server's startup and shutdown are timed, and a server that does not
stop is killed by its PID.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from dicomecho.association.negotiation import ALL_TRANSFER_SYNTAXES
from tests.support.associations import (  # noqa: F401 (fixtures)
    CT_IMAGE_STORAGE,
    ECHOED,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    VERIFICATION,
    associate,
    calledAEServer,
    callingAEServer,
    defaultServer,
    echoAndRelease,
    echoscu,
    implicitOnlyServer,
    names,
    preferLittleServer,
    pynetdicom,
    pynetdicomAE,
    rejection,
)
from tests.support.peers import runEchoscu
from tests.support.processes import EVENT_TIMEOUT, FactoryServer, runningServer


@pytest.fixture
def twoAssociationServer() -> Iterator[FactoryServer]:
    """
    A fresh server allowing two concurrent associations (its count is the
    test's state, so it is not shared).
    """
    with runningServer(maxAssociations=2) as server:
        yield server


def _verificationTransferSyntaxes() -> list[str]:
    """
    16 transfer syntaxes to propose alone for Verification.

    The issue asks for the 16 of pynetdicom's
    C{pynetdicom._globals.DEFAULT_TRANSFER_SYNTAXES}, but in pynetdicom
    3.0.4 that list holds 4 (Implicit, Explicit, Deflated Explicit Little
    Endian and Explicit Big Endian), so, as the issue says for a missing
    name: C{pydicom.uid.AllTransferSyntaxes} filtered to the ones we accept,
    first 16 (which begin with those 4).
    """
    try:
        from pydicom.uid import AllTransferSyntaxes
    except ImportError:
        return list(ALL_TRANSFER_SYNTAXES[:16])
    ours = set(ALL_TRANSFER_SYNTAXES)
    return [uid for uid in AllTransferSyntaxes if uid in ours][:16]


def _transferSyntaxID(uid: str) -> str:
    try:
        from pydicom.uid import UID

        return f"{uid} {UID(uid).name}"
    except ImportError:
        return uid


VERIFICATION_TRANSFER_SYNTAXES = _verificationTransferSyntaxes()


@pytest.mark.peer
@pytest.mark.parametrize(
    "transferSyntax", VERIFICATION_TRANSFER_SYNTAXES, ids=_transferSyntaxID
)
def test_pynetdicomEachTransferSyntaxAlone(pynetdicom, defaultServer, transferSyntax):
    """
    Each transfer syntax proposed alone for Verification is accepted with
    that transfer syntax, and C-ECHO returns status 0x0000; the server logs
    one C-ECHO-RQ on context 1 and the release.
    """
    assert len(VERIFICATION_TRANSFER_SYNTAXES) == 16
    ae = pynetdicomAE(pynetdicom, (VERIFICATION, [transferSyntax]))
    assoc, peer = associate(ae, defaultServer.port())

    assert assoc.is_established
    (context,) = assoc.accepted_contexts
    assert (context.context_id, context.abstract_syntax) == (1, VERIFICATION)
    assert context.transfer_syntax == [transferSyntax]
    assert echoAndRelease(assoc) == 0x0000
    events = defaultServer.associationEvents(peer)
    assert names(events) == ECHOED
    assert events[2].fields["contextID"] == 1


@pytest.mark.peer
def test_pynetdicomVerificationAndCTImageStorage(pynetdicom, defaultServer):
    """
    Verification and CT Image Storage proposed together: Verification
    (context 1) is accepted, CT Image Storage (context 3) is rejected with
    result 3 (abstract syntax not supported), and the echo works.
    """
    ae = pynetdicomAE(pynetdicom, (VERIFICATION, None), (CT_IMAGE_STORAGE, None))
    assoc, peer = associate(ae, defaultServer.port())

    assert assoc.is_established
    assert [
        (cx.context_id, cx.abstract_syntax, cx.transfer_syntax)
        for cx in assoc.accepted_contexts
    ] == [(1, VERIFICATION, [IMPLICIT_VR_LITTLE_ENDIAN])]
    assert [
        (cx.context_id, cx.abstract_syntax, cx.result)
        for cx in assoc.rejected_contexts
    ] == [(3, CT_IMAGE_STORAGE, 3)]
    assert echoAndRelease(assoc) == 0x0000
    assert names(defaultServer.associationEvents(peer)) == ECHOED


@pytest.mark.peer
@pytest.mark.parametrize("positiveResponse", [True, False], ids=["positive", "silent"])
def test_pynetdicomUserIdentity(pynetdicom, defaultServer, positiveResponse):
    """
    A user identity item (type 2, username and passcode), with or without a
    positive response requested, is accepted and ignored: the association
    is established, the AC carries no user identity response, and the echo
    works. The server log never shows the passcode.
    """
    from pynetdicom.pdu_primitives import UserIdentityNegotiation

    identity = UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.primary_field = b"alice"
    identity.secondary_field = b"s3cret-passcode"
    identity.positive_response_requested = positiveResponse
    ae = pynetdicomAE(pynetdicom)
    assoc, peer = associate(ae, defaultServer.port(), ext_neg=[identity])

    assert assoc.is_established
    assert assoc.acceptor.user_identity is None
    assert not [
        item
        for item in assoc.acceptor.primitive.user_information
        if isinstance(item, UserIdentityNegotiation)
    ]
    assert echoAndRelease(assoc) == 0x0000
    assert names(defaultServer.associationEvents(peer)) == ECHOED
    assert "s3cret-passcode" not in defaultServer.output()


@pytest.mark.peer
def test_pynetdicomRoleSelection(pynetdicom, defaultServer):
    """
    An SCP/SCU role selection item for Verification (SCU yes, SCP no) is
    accepted without a reply item, so the default roles stand: pynetdicom
    acts as SCU only, and the echo works.
    """
    from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = VERIFICATION
    role.scu_role = True
    role.scp_role = False
    ae = pynetdicomAE(pynetdicom)
    assoc, peer = associate(ae, defaultServer.port(), ext_neg=[role])

    assert assoc.is_established
    (context,) = assoc.accepted_contexts
    assert (context.as_scu, context.as_scp) == (True, False)
    assert assoc.acceptor.role_selection == {}
    assert echoAndRelease(assoc) == 0x0000
    assert names(defaultServer.associationEvents(peer)) == ECHOED


@pytest.mark.peer
def test_pynetdicomAsyncOperationsWindow(pynetdicom, defaultServer):
    """
    An asynchronous operations window item (5, 5) is accepted without a
    reply item, so pynetdicom takes the default (1, 1); the echo works.
    """
    from pynetdicom.pdu_primitives import AsynchronousOperationsWindowNegotiation

    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 5
    window.maximum_number_operations_performed = 5
    ae = pynetdicomAE(pynetdicom)
    assoc, peer = associate(ae, defaultServer.port(), ext_neg=[window])

    assert assoc.is_established
    assert assoc.acceptor.asynchronous_operations == (1, 1)
    assert echoAndRelease(assoc) == 0x0000
    assert names(defaultServer.associationEvents(peer)) == ECHOED


def _receivedPData(received: list[Any]) -> list[Any]:
    """
    The P-DATA-TF PDUs among pynetdicom's received PDUs.
    """
    from pynetdicom.pdu import P_DATA_TF

    return [pdu for pdu in received if isinstance(pdu, P_DATA_TF)]


@pytest.mark.peer
def test_pynetdicomUnlimitedMaximumPDU(pynetdicom, defaultServer):
    """
    A peer maximum length of 0 (no limit) is accepted; the C-ECHO-RSP comes
    back whole in one P-DATA-TF with one PDV, and the echo works.

    (The requestor's maximum length is C{associate(max_pdu=...)}:
    C{AE.maximum_pdu_size} is what pynetdicom offers as an acceptor.)
    """
    from pynetdicom import evt

    received: list[Any] = []
    ae = pynetdicomAE(pynetdicom)
    assoc, peer = associate(
        ae,
        defaultServer.port(),
        max_pdu=0,
        evt_handlers=[(evt.EVT_PDU_RECV, lambda event: received.append(event.pdu))],
    )

    assert assoc.is_established
    assert assoc.requestor.maximum_length == 0
    assert echoAndRelease(assoc) == 0x0000
    (pdata,) = _receivedPData(received)
    (pdv,) = pdata.presentation_data_value_items
    # Message control header: command, last fragment.
    assert pdv.presentation_data_value[0] == 0x03
    assert names(defaultServer.associationEvents(peer)) == ECHOED


@pytest.mark.peer
@pytest.mark.parametrize("maximumLength", [20, 8])
def test_pynetdicomTinyMaximumPDUFragments(pynetdicom, defaultServer, maximumLength):
    """
    A tiny peer maximum length (20; and 8, the smallest a PDV with an even
    fragment fits, which is dicomecho's floor) makes the server split the
    C-ECHO-RSP command set into many P-DATA-TF PDUs, none longer than the
    peer's limit; pynetdicom reassembles them and the echo works.

    pynetdicom itself offers any value down to 1; see
    L{test_pynetdicomMaximumPDUBelowFloorAborted}. The server logs nothing
    about what it sends, so the fragments are counted on pynetdicom's side.
    """
    from pynetdicom import evt

    received: list[Any] = []
    ae = pynetdicomAE(pynetdicom)
    assoc, peer = associate(
        ae,
        defaultServer.port(),
        max_pdu=maximumLength,
        evt_handlers=[(evt.EVT_PDU_RECV, lambda event: received.append(event.pdu))],
    )

    assert assoc.is_established
    assert echoAndRelease(assoc) == 0x0000
    pdatas = _receivedPData(received)
    assert len(pdatas) > 1, pdatas
    fragments = []
    for pdata in pdatas:
        # len() of a pynetdicom PDU includes its 6-byte header.
        assert len(pdata) - 6 <= maximumLength, len(pdata)
        (pdv,) = pdata.presentation_data_value_items
        assert pdv.presentation_context_id == 1
        fragments.append(pdv.presentation_data_value)
    # Message control headers: command fragments, only the last one last.
    assert [f[0] for f in fragments] == [0x01] * (len(fragments) - 1) + [0x03]
    assert all(len(f) % 2 == 1 for f in fragments)  # header byte + even data
    assert names(defaultServer.associationEvents(peer)) == ECHOED


@pytest.mark.peer
def test_pynetdicomMaximumPDUBelowFloorAborted(pynetdicom, defaultServer):
    """
    A peer maximum length of 7, below the 8 bytes any PDV needs, is answered
    with an A-ABORT from the service provider, reason 6 (invalid PDU
    parameter value); the server logs an invalid PDU naming the value, then
    the abort it sent. pynetdicom reports the association aborted.
    """
    from pynetdicom import evt

    received: list[Any] = []
    ae = pynetdicomAE(pynetdicom)
    assoc, peer = associate(
        ae,
        defaultServer.port(),
        max_pdu=7,
        evt_handlers=[(evt.EVT_PDU_RECV, lambda event: received.append(event.pdu))],
    )

    assert not assoc.is_established
    assert assoc.is_aborted
    (abort,) = received
    assert (abort.source, abort.reason_diagnostic) == (2, 6)
    events = defaultServer.associationEvents(peer)
    assert names(events) == ["associate-rq", "invalid-pdu", "association-aborting"]
    invalid, aborting = events[1].fields, events[2].fields
    assert invalid["abortReason"] == 6
    assert "maximum length 7" in invalid["error"]
    assert (aborting["source"], aborting["reason"]) == (2, 6)


@pytest.mark.peer
def test_pynetdicomAbort(pynetdicom, defaultServer):
    """
    pynetdicom's C{assoc.abort()} after an echo: the server logs
    association-aborted, source 0 (service user).
    """
    ae = pynetdicomAE(pynetdicom)
    assoc, peer = associate(ae, defaultServer.port())
    try:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.abort()

    assert assoc.is_aborted
    events = defaultServer.associationEvents(peer)
    assert names(events) == [
        "associate-rq",
        "association-accepted",
        "dimse-received",
        "association-aborted",
    ]
    assert events[-1].fields["source"] == 0


@pytest.mark.peer
def test_pynetdicomPreferLittle(pynetdicom, preferLittleServer):
    """
    With C{PREFER_LITTLE}, pynetdicom proposing Implicit then Explicit VR
    Little Endian gets Explicit VR Little Endian, and the echo works.
    """
    ae = pynetdicomAE(
        pynetdicom,
        (VERIFICATION, [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN]),
    )
    assoc, peer = associate(ae, preferLittleServer.port())

    assert assoc.is_established
    (context,) = assoc.accepted_contexts
    assert context.transfer_syntax == [EXPLICIT_VR_LITTLE_ENDIAN]
    assert echoAndRelease(assoc) == 0x0000
    assert names(preferLittleServer.associationEvents(peer)) == ECHOED


@pytest.mark.peer
def test_pynetdicomImplicitOnlyRejectsExplicitContext(pynetdicom, implicitOnlyServer):
    """
    With C{IMPLICIT_ONLY}, a context proposing only Explicit VR Little
    Endian is rejected with result 4 (transfer syntaxes not supported). The
    association itself is accepted, but pynetdicom has no accepted context,
    so it aborts (A-ABORT, source 2), which the server logs.
    """
    ae = pynetdicomAE(pynetdicom, (VERIFICATION, [EXPLICIT_VR_LITTLE_ENDIAN]))
    assoc, peer = associate(ae, implicitOnlyServer.port())

    assert not assoc.is_established
    assert assoc.is_aborted
    assert assoc.acceptor.primitive.result == 0
    assert assoc.accepted_contexts == []
    assert [(cx.context_id, cx.result) for cx in assoc.rejected_contexts] == [(1, 4)]
    events = implicitOnlyServer.associationEvents(peer)
    assert names(events) == [
        "associate-rq",
        "association-accepted",
        "association-aborted",
    ]
    assert events[-1].fields["source"] == 2


@pytest.mark.peer
def test_pynetdicomCalledAETitle(pynetdicom, calledAEServer):
    """
    With C{requireCalledAETitle}, pynetdicom calling C{WRONG} is rejected
    (1, 1, 7: called AE title not recognised) and EVT_REJECTED fires;
    calling ECHOSCP it is accepted and echoes.
    """
    from pynetdicom import evt

    rejected: list[Any] = []
    ae = pynetdicomAE(pynetdicom)
    assoc, peer = associate(
        ae,
        calledAEServer.port(),
        called="WRONG",
        evt_handlers=[(evt.EVT_REJECTED, lambda event: rejected.append(event))],
    )

    assert rejection(assoc) == (1, 1, 7)
    assert assoc.acceptor.primitive.reason_str == "Called AE title not recognised"
    assert len(rejected) == 1
    events = calledAEServer.associationEvents(peer)
    assert names(events) == ["associate-rq", "association-rejected"]
    assert "called AE title 'WRONG'" in events[-1].fields["reason"]

    assoc, peer = associate(ae, calledAEServer.port(), called="ECHOSCP")
    assert echoAndRelease(assoc) == 0x0000
    assert names(calledAEServer.associationEvents(peer)) == ECHOED


@pytest.mark.peer
def test_pynetdicomCallingAETitle(pynetdicom, callingAEServer):
    """
    With C{allowedCallingAETitles=["GOOD"]}, pynetdicom as BAD is rejected
    (1, 1, 3: calling AE title not recognised); as GOOD it is accepted and
    echoes.
    """
    ae = pynetdicomAE(pynetdicom, title="BAD")
    assoc, peer = associate(ae, callingAEServer.port())

    assert rejection(assoc) == (1, 1, 3)
    assert assoc.acceptor.primitive.reason_str == "Calling AE title not recognised"
    events = callingAEServer.associationEvents(peer)
    assert names(events) == ["associate-rq", "association-rejected"]
    assert "calling AE title 'BAD'" in events[-1].fields["reason"]

    ae = pynetdicomAE(pynetdicom, title="GOOD")
    assoc, peer = associate(ae, callingAEServer.port())
    assert echoAndRelease(assoc) == 0x0000
    assert names(callingAEServer.associationEvents(peer)) == ECHOED


_PROC_NET_TCP = Path("/proc/net/tcp")


#: /proc/net/tcp states in which an endpoint still holds its connection open.
_OPEN_TCP_STATES = {"01": "ESTABLISHED", "08": "CLOSE_WAIT"}


def openTCPEndpoints(portA: int, portB: int) -> list[str]:
    """
    Loopback endpoints of the connection between C{portA} and C{portB}
    (either direction) that are still open, as C{"local->remote STATE"}.
    """
    found = []
    for line in _PROC_NET_TCP.read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        localPort = int(local.split(":")[1], 16)
        remotePort = int(remote.split(":")[1], 16)
        if {localPort, remotePort} == {portA, portB} and state in _OPEN_TCP_STATES:
            found.append(f"{localPort}->{remotePort} {_OPEN_TCP_STATES[state]}")
    return found


def waitUntilClosed(portA: int, portB: int) -> None:
    """
    Wait until neither end of the loopback connection between C{portA} and
    C{portB} is open (Linux only; elsewhere, do nothing).
    """
    if not _PROC_NET_TCP.exists():
        return
    deadline = time.monotonic() + EVENT_TIMEOUT
    while (still := openTCPEndpoints(portA, portB)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not still, still


@pytest.mark.peer
def test_maxAssociations(pynetdicom, echoscu, twoAssociationServer):
    """
    With C{maxAssociations=2}: two pynetdicom associations are accepted;
    a third is rejected as transient by the presentation-related service
    provider, local limit exceeded (2, 3, 2), and its connection is then
    closed at both ends (so the server does not hold it for the ACSE
    timeout); echoscu is refused the same way. Once one association is
    released, a new one is accepted and echoes.
    """
    server = twoAssociationServer
    ae = pynetdicomAE(pynetdicom)
    held = []
    try:
        for _ in range(2):
            assoc, peer = associate(ae, server.port())
            held.append(assoc)
            assert assoc.is_established
        third, thirdPeer = associate(ae, server.port())

        assert rejection(third) == (2, 3, 2)
        assert third.acceptor.primitive.reason_str == "Local limit exceeded"
        events = server.associationEvents(thirdPeer)
        assert names(events) == ["associate-rq", "association-rejected"]
        assert "limit on concurrent associations" in events[-1].fields["reason"]
        waitUntilClosed(server.port(), int(thirdPeer.rsplit(":", 1)[1]))

        mark = server.mark()
        status, output = runEchoscu(echoscu, server.port())
        assert status != 0, output
        assert (
            "Result: Rejected Transient, "
            "Source: Service Provider (Presentation Related)" in output
        ), output
        assert "Reason: Local Limit Exceeded" in output, output
        assert names(server.onlyAssociationSince(mark)) == [
            "associate-rq",
            "association-rejected",
        ]

        held.pop(0).release()
        assoc, peer = associate(ae, server.port())
        assert echoAndRelease(assoc) == 0x0000
        assert names(server.associationEvents(peer)) == ECHOED
    finally:
        for assoc in held:
            if assoc.is_established:
                assoc.release()
