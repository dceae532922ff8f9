"""
The wire layer against DICOM peers nobody here wrote.

Each test runs a real SCU (DCMTK's C{echoscu} or pynetdicom) against
L{WireScript}, a loopback server that decodes everything with
L{dicomecho.wire.pdu} and answers with PDUs our codec encoded. Two directions are
checked at once: our decoder reads what the peer actually sends, and the
peer understands what our encoder produces (it says so in its output or its
API). The script plays the acceptor, so only the wire layer is under
test.
"""

from __future__ import annotations

import logging
import re
import struct
import threading

import pytest

from dicomecho.wire.userinfo import AsyncOperationsWindow, RoleSelection, UserInformation
from dicomecho.wire.items import PresentationContextAC, PresentationContextRQ
from dicomecho.wire.pdu import (
    DICOM_APPLICATION_CONTEXT,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PDataTF,
)
from tests.support.associations import (  # noqa: F401 (fixture)
    IMPLICIT_VR_LITTLE_ENDIAN,
    VERIFICATION,
    echoscu,
    pynetdicomAE,
)
from tests.support.peers import Reply, WireScript, requirePynetdicom, runEchoscu

IMPLEMENTATION_CLASS_UID = "2.25.123456789012345678901234567890123"
IMPLEMENTATION_VERSION_NAME = "DICOMECHO_0.1"
OUR_MAXIMUM_LENGTH = 16382

#: PS3.8 §9.3.4: A-ASSOCIATE-RJ, result 1 (permanent), source 1 (service
#: user), reason 3 (calling AE title not recognized).
PERMANENT_CALLING_AE_RJ = AssociateRJ(result=1, source=1, reason=3)


def acceptFor(rq: AssociateRQ, maximumLength: int = OUR_MAXIMUM_LENGTH) -> bytes:
    """
    Our A-ASSOCIATE-AC for C{rq}: AE titles echoed, presentation context 1
    accepted with Implicit VR Little Endian.
    """
    return AssociateAC(
        calledAETitle=rq.calledAETitle,
        callingAETitle=rq.callingAETitle,
        applicationContextName=DICOM_APPLICATION_CONTEXT,
        presentationContexts=(
            PresentationContextAC(1, 0, IMPLICIT_VR_LITTLE_ENDIAN),
        ),
        userInformation=UserInformation(
            maximumLength=maximumLength,
            implementationClassUID=IMPLEMENTATION_CLASS_UID,
            implementationVersionName=IMPLEMENTATION_VERSION_NAME,
        ),
    ).encode()


def rejectWith(rj: AssociateRJ):
    """
    A script that answers the first PDU with C{rj} and closes.
    """

    def respond(pdu):
        return Reply([rj.encode()], close=True)

    return respond


def commandElements(data: bytes) -> dict[tuple[int, int], bytes]:
    """
    Split a DIMSE command set (Implicit VR Little Endian, PS3.7 §6.3) into
    its elements, checking that each length fits what is left.
    """
    elements = {}
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 8, f"truncated element header at {pos}"
        group, element, length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        assert length <= len(data) - pos, f"element ({group:04X},{element:04X})"
        elements[group, element] = data[pos : pos + length]
        pos += length
    return elements


@pytest.fixture
def pynetdicom(caplog):
    """
    pynetdicom, with its logger limited to errors for the test (pytest keeps
    the records and shows them only if the test fails).
    """
    module = requirePynetdicom()
    caplog.set_level(logging.ERROR, logger="pynetdicom")
    return module


# --- DCMTK echoscu -----------------------------------------------------------


@pytest.mark.peer
def test_echoscuRequestDecodedAndOurRejectUnderstood(echoscu):
    """
    DCMTK's A-ASSOCIATE-RQ decodes field by field as echoscu was told to
    build it, and echoscu reads our 10-byte A-ASSOCIATE-RJ (1, 1, 3) as a
    permanent rejection by the service user because the calling AE title is
    not recognized, and exits with a failure status.
    """
    assert PERMANENT_CALLING_AE_RJ.encode() == bytes.fromhex(
        "03 00 00000004 00 01 01 03"
    )
    with WireScript(rejectWith(PERMANENT_CALLING_AE_RJ)) as server:
        status, output = runEchoscu(echoscu, server.port)

    assert len(server.received) == 1, server.received
    rq = server.received[0]
    assert isinstance(rq, AssociateRQ)
    assert rq.protocolVersion == 1
    assert rq.callingAETitle == "MYSCU"
    assert rq.calledAETitle == "ECHOSCP"
    assert rq.applicationContextName == DICOM_APPLICATION_CONTEXT
    assert rq.presentationContexts == (
        PresentationContextRQ(1, VERIFICATION, (IMPLICIT_VR_LITTLE_ENDIAN,)),
    )
    userInformation = rq.userInformation
    assert userInformation is not None
    assert userInformation.maximumLength == 16384
    assert userInformation.implementationClassUID
    assert userInformation.implementationClassUID.startswith("1.2.276.0.7230010.3")
    assert userInformation.implementationVersionName.startswith("OFFIS_DCMTK")
    assert rq.unknownItems == ()
    assert userInformation.unknownSubItems == ()
    assert server.peerClosed

    assert status != 0, output
    assert "Association Rejected" in output, output
    assert "Result: Rejected Permanent, Source: Service User" in output, output
    assert "Reason: Calling AE Title Not Recognized" in output, output


@pytest.mark.peer
def test_echoscuAcceptsOurACThenSeesOurAbort(echoscu):
    """
    echoscu parses our A-ASSOCIATE-AC as we built it (its debug dump shows
    our implementation class UID and version name, our maximum length,
    context 1 accepted with Implicit VR Little Endian) and takes our maximum
    length: it reports "Max Send PDV: 16370", i.e. our 16382 minus the PDU
    header (6) and the PDV item header (6). Its C-ECHO-RQ then decodes as
    one P-DATA-TF with one whole command PDV on context 1, whose command set
    is exactly as long as the PDV says. echoscu reads our A-ABORT as a peer
    abort.
    """

    def respond(pdu):
        if isinstance(pdu, AssociateRQ):
            return [acceptFor(pdu)]
        return Reply([Abort(source=0, reason=0).encode()], close=True)

    with WireScript(respond) as server:
        status, output = runEchoscu(echoscu, server.port, verbosity="-d")

    assert [type(pdu) for pdu in server.received] == [AssociateRQ, PDataTF]
    (pdv,) = server.received[1].pdvs
    assert pdv.contextID == 1
    assert pdv.isCommand
    assert pdv.isLastFragment
    assert pdv.data
    command = commandElements(pdv.data)
    # (0000,0000) command group length: the bytes after that element.
    assert struct.unpack("<I", command[0x0000, 0x0000]) == (len(pdv.data) - 12,)
    # (0000,0100) command field 0x0030: C-ECHO-RQ.
    assert struct.unpack("<H", command[0x0000, 0x0100]) == (0x0030,)
    assert command[0x0000, 0x0002].rstrip(b"\0") == VERIFICATION.encode()
    assert server.peerClosed

    # DCMTK's debug dump of our A-ASSOCIATE-AC, between BEGIN/END markers.
    accepted = output[output.index("BEGIN A-ASSOCIATE-AC") :]
    accepted = accepted[: accepted.index("END A-ASSOCIATE-AC")]
    for pattern in (
        rf"Their Implementation Class UID:\s+{re.escape(IMPLEMENTATION_CLASS_UID)}"
        r"\n",
        rf"Their Implementation Version Name:\s+{IMPLEMENTATION_VERSION_NAME}\n",
        r"Application Context Name:\s+1\.2\.840\.10008\.3\.1\.1\.1\n",
        r"Responding Application Name:\s+ECHOSCP\n",
        rf"Their Max PDU Receive Size:\s+{OUR_MAXIMUM_LENGTH}\n",
        r"Context ID:\s+1 \(Accepted\)\n",
        r"Accepted Transfer Syntax:\s+=LittleEndianImplicit\n",
    ):
        assert re.search(pattern, accepted), (pattern, accepted)
    assert "Association Accepted (Max Send PDV: 16370)" in output, output
    assert "Sending Echo Request" in output, output
    assert "Echo Failed" in output, output
    assert "Peer Aborted Association" in output, output
    # echoscu 3.6.7 exits 0 after a peer abort, so the status is not checked.


@pytest.mark.peer
def test_echoscuLargestRequestDecodedLive(echoscu):
    """
    echoscu's largest A-ASSOCIATE-RQ (128 presentation contexts, IDs 1 to
    255 odd, 16 transfer syntaxes each, about 55 KB) passes the framer's
    default cap and decodes in full from the live stream; echoscu reads our
    transient (2, 3, 2) A-ASSOCIATE-RJ as "local limit exceeded" from the
    presentation-related service provider.
    """
    transientRJ = AssociateRJ(result=2, source=3, reason=2)
    with WireScript(rejectWith(transientRJ)) as server:
        status, output = runEchoscu(
            echoscu, server.port, "--propose-pc", "128", "--propose-ts", "16"
        )

    assert len(server.received) == 1, server.received
    rq = server.received[0]
    assert isinstance(rq, AssociateRQ)
    assert len(server.receivedBytes) > 50 * 1024
    assert rq.callingAETitle == "MYSCU"
    assert rq.calledAETitle == "ECHOSCP"
    contexts = rq.presentationContexts
    assert [pc.contextID for pc in contexts] == list(range(1, 256, 2))
    assert {pc.abstractSyntax for pc in contexts} == {VERIFICATION}
    for pc in contexts:
        assert len(pc.transferSyntaxes) == 16
        assert len(set(pc.transferSyntaxes)) == 16
        assert pc.transferSyntaxes[0] == IMPLICIT_VR_LITTLE_ENDIAN
    assert rq.userInformation is not None
    assert rq.userInformation.maximumLength == 16384

    assert status != 0, output
    assert "Association Rejected" in output, output
    assert (
        "Result: Rejected Transient, Source: Service Provider (Presentation Related)"
        in output
    ), output
    assert "Reason: Local Limit Exceeded" in output, output


# --- pynetdicom --------------------------------------------------------------


@pytest.mark.peer
def test_pynetdicomExtendedRequestDecodedAndOurRejectUnderstood(
    pynetdicom, monkeypatch
):
    """
    pynetdicom's A-ASSOCIATE-RQ with user identity, role selection and
    asynchronous operations window sub-items decodes into those values, and
    pynetdicom decodes our A-ASSOCIATE-RJ into result 1, source 1, reason 3
    and fires EVT_REJECTED.
    """
    from pynetdicom import evt
    from pynetdicom.dul import DULServiceProvider
    from pynetdicom.pdu_primitives import (
        AsynchronousOperationsWindowNegotiation,
        SCP_SCU_RoleSelectionNegotiation,
        UserIdentityNegotiation,
    )

    identity = UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.primary_field = b"alice"
    identity.secondary_field = b"s3cret"
    identity.positive_response_requested = True
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = VERIFICATION
    role.scu_role = True
    role.scp_role = False
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 5
    window.maximum_number_operations_performed = 5

    # pynetdicom 3.0.4 races against a fast reject: after sending the RQ its
    # ACSE thread checks the socket's "connected" flag, and if its DUL thread
    # has already read the RJ and closed the socket by then, the association
    # ends as a connection failure (is_aborted, no primitive), not a
    # rejection. Seen in a few percent of runs on a loaded 2-CPU machine. The
    # check comes just before the ACSE first waits for the answer, so the
    # script answers only once pynetdicom waits.
    waiting = threading.Event()
    receivePDU = DULServiceProvider.receive_pdu

    def spyReceivePDU(self, wait=False, timeout=None):
        if wait:
            waiting.set()
        return receivePDU(self, wait=wait, timeout=timeout)

    monkeypatch.setattr(DULServiceProvider, "receive_pdu", spyReceivePDU)

    def respond(pdu):
        assert waiting.wait(10), "pynetdicom never waited for an answer"
        return Reply([PERMANENT_CALLING_AE_RJ.encode()], close=True)

    events = []
    ae = pynetdicomAE(pynetdicom)
    with WireScript(respond) as server:
        assoc = ae.associate(
            "127.0.0.1",
            server.port,
            ae_title="ECHOSCP",
            ext_neg=[identity, role, window],
            evt_handlers=[(evt.EVT_REJECTED, lambda event: events.append(event))],
        )

    assert assoc.is_rejected
    assert not assoc.is_established
    answer = assoc.acceptor.primitive
    assert (answer.result, answer.result_source, answer.diagnostic) == (1, 1, 3)
    assert answer.result_str == "Rejected Permanent"
    assert answer.source_str == "Service User"
    assert answer.reason_str == "Calling AE title not recognised"
    assert [event.event.name for event in events] == ["EVT_REJECTED"]

    assert len(server.received) == 1, server.received
    rq = server.received[0]
    assert isinstance(rq, AssociateRQ)
    assert rq.callingAETitle == "PYSCU"
    assert rq.calledAETitle == "ECHOSCP"
    assert rq.applicationContextName == DICOM_APPLICATION_CONTEXT
    (pc,) = rq.presentationContexts
    assert pc.contextID == 1
    assert pc.abstractSyntax == VERIFICATION
    assert pc.transferSyntaxes[0] == IMPLICIT_VR_LITTLE_ENDIAN
    userInformation = rq.userInformation
    assert userInformation is not None
    assert userInformation.maximumLength == 16382
    assert userInformation.implementationClassUID == (
        pynetdicom.PYNETDICOM_IMPLEMENTATION_UID
    )
    assert userInformation.implementationVersionName == (
        pynetdicom.PYNETDICOM_IMPLEMENTATION_VERSION
    )
    userIdentity = userInformation.userIdentity
    assert userIdentity is not None
    assert userIdentity.identityType == 2
    assert userIdentity.primaryField == b"alice"
    assert userIdentity.secondaryField == b"s3cret"
    assert userIdentity.positiveResponseRequested == 1
    assert userInformation.roleSelections == (RoleSelection(VERIFICATION, 1, 0),)
    assert userInformation.asyncOperationsWindow == AsyncOperationsWindow(5, 5)
    assert userInformation.unknownSubItems == ()
    assert server.peerClosed


@pytest.mark.peer
def test_pynetdicomAcceptsOurACAndAborts(pynetdicom):
    """
    pynetdicom establishes an association on our A-ASSOCIATE-AC and reports
    the values we encoded (AE title, maximum length, implementation class UID
    and version name, the accepted context); its A-ABORT then decodes as a
    service-user abort.
    """

    def respond(pdu):
        if isinstance(pdu, AssociateRQ):
            return [acceptFor(pdu)]
        return Reply([], close=True)

    ae = pynetdicomAE(pynetdicom)
    with WireScript(respond) as server:
        assoc = ae.associate("127.0.0.1", server.port, ae_title="ECHOSCP")
        try:
            assert assoc.is_established
            acceptor = assoc.acceptor
            assert acceptor.primitive.result == 0
            assert acceptor.ae_title == "ECHOSCP"
            assert acceptor.maximum_length == OUR_MAXIMUM_LENGTH
            assert acceptor.implementation_class_uid == IMPLEMENTATION_CLASS_UID
            assert acceptor.implementation_version_name == (
                IMPLEMENTATION_VERSION_NAME
            )
            (context,) = assoc.accepted_contexts
            assert context.context_id == 1
            assert context.abstract_syntax == VERIFICATION
            assert context.transfer_syntax == [IMPLICIT_VR_LITTLE_ENDIAN]
        finally:
            assoc.abort()

    assert [type(pdu) for pdu in server.received] == [AssociateRQ, Abort]
    assert server.received[0].callingAETitle == "PYSCU"
    assert server.received[1].source == 0
    assert server.peerClosed
