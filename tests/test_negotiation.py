"""
Tests for L{dicomecho.association.negotiation}: transfer syntax lists and preference
orders (pynetdicom echoscp's, reference §1.4), presentation context results,
reject codes and their precedence, invalid requests, answers to requests
captured from DCMTK and pynetdicom, and a hypothesis property.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pynetdicom._globals import ALL_TRANSFER_SYNTAXES as PYNETDICOM_SYNTAXES

from dicomecho import __version__
from dicomecho.wire.errors import AbortReason, AbortSource, RemoteProtocolError
from dicomecho.wire.userinfo import (
    AsyncOperationsWindow,
    RoleSelection,
    UserIdentityRQ,
    UserInformation,
)
from dicomecho.wire.items import PresentationContextAC, PresentationContextRQ
from dicomecho.association.negotiation import (
    ALL_TRANSFER_SYNTAXES,
    DEFAULT_MAX_ASSOCIATIONS,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    VERIFICATION_SOP_CLASS,
    Acceptance,
    AcceptedContext,
    AssociationPolicy,
    InvalidAssociateRequest,
    Rejection,
    TransferSyntaxPreference,
    negotiate,
    transferSyntaxOrder,
)
from dicomecho.wire.pdu import DICOM_APPLICATION_CONTEXT
from dicomecho.wire.pdu import AssociateAC, AssociateRQ, decode, decodePDU
from tests.support.helpers import SESSIONS, fixtureBytes, splitStream

IVLE = "1.2.840.10008.1.2"
EVLE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
EVBE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

Pref = TransferSyntaxPreference
DEFAULT_POLICY = AssociationPolicy()


def makeRQ(
    contexts: tuple[PresentationContextRQ, ...] = (
        PresentationContextRQ(1, VERIFICATION_SOP_CLASS, (IVLE,)),
    ),
    *,
    called: str = "ECHOSCP",
    calling: str = "MYSCU",
    version: int = 1,
    applicationContext: str | None = DICOM_APPLICATION_CONTEXT,
    userInformation: UserInformation | None = UserInformation(maximumLength=16384),
) -> AssociateRQ:
    """
    An A-ASSOCIATE-RQ that is acceptable by default.
    """
    return AssociateRQ(
        calledAETitle=called,
        callingAETitle=calling,
        applicationContextName=applicationContext,
        userInformation=userInformation,
        protocolVersion=version,
        presentationContexts=contexts,
    )


def verification(contextID: int, *syntaxes: str) -> PresentationContextRQ:
    return PresentationContextRQ(contextID, VERIFICATION_SOP_CLASS, syntaxes)


def accept(rq: AssociateRQ, policy: AssociationPolicy = DEFAULT_POLICY) -> Acceptance:
    outcome = negotiate(rq, policy)
    assert isinstance(outcome, Acceptance), outcome
    return outcome


def reject(
    rq: AssociateRQ,
    policy: AssociationPolicy = DEFAULT_POLICY,
    atCapacity: bool = False,
) -> Rejection:
    outcome = negotiate(rq, policy, atCapacity)
    assert isinstance(outcome, Rejection), outcome
    return outcome


def capturedRQ(session: str) -> AssociateRQ:
    frame = splitStream(fixtureBytes(session, "c2s"))[0]
    rq = decodePDU(frame.pduType, frame.body)
    assert isinstance(rq, AssociateRQ)
    return rq


def capturedAC(session: str) -> tuple[AssociateAC, bytes]:
    frame = splitStream(fixtureBytes(session, "s2c"))[0]
    ac = decodePDU(frame.pduType, frame.body)
    assert isinstance(ac, AssociateAC)
    return ac, fixtureBytes(session, "s2c")[: 6 + len(frame.body)]


# --- transfer syntax lists ---------------------------------------------------


def test_allTransferSyntaxesArePynetdicoms() -> None:
    """
    The default list is exactly pynetdicom 3.0.4's 45 UIDs, in its order,
    with no duplicates.
    """
    assert ALL_TRANSFER_SYNTAXES == tuple(PYNETDICOM_SYNTAXES)
    assert len(ALL_TRANSFER_SYNTAXES) == 45
    assert len(set(ALL_TRANSFER_SYNTAXES)) == 45
    assert ALL_TRANSFER_SYNTAXES[:4] == (IVLE, EVLE, DEFLATED, EVBE)
    assert ALL_TRANSFER_SYNTAXES[-1] == "1.2.840.10008.1.2.8.1"


def test_defaultOrder() -> None:
    """
    Without an option the order is the default list, Implicit LE first, and
    that is the policy's default.
    """
    assert transferSyntaxOrder(Pref.DEFAULT) == ALL_TRANSFER_SYNTAXES
    assert AssociationPolicy().transferSyntaxes == ALL_TRANSFER_SYNTAXES


def test_preferUncompressedMovesImplicitToTheEnd() -> None:
    """
    C{-x=} moves Implicit LE to the end and keeps the rest in order.
    """
    order = transferSyntaxOrder(Pref.PREFER_UNCOMPRESSED)
    assert len(order) == 45
    assert order[:3] == (EVLE, DEFLATED, EVBE)
    assert order[-2:] == ("1.2.840.10008.1.2.8.1", IVLE)
    assert order == ALL_TRANSFER_SYNTAXES[1:] + (IVLE,)


def test_preferLittleMovesExplicitLittleToTheFront() -> None:
    """
    C{-xe} puts Explicit LE first, then Implicit LE, Deflated, Explicit BE...
    """
    order = transferSyntaxOrder(Pref.PREFER_LITTLE)
    assert len(order) == 45
    assert order[:5] == (EVLE, IVLE, DEFLATED, EVBE, JPEG_BASELINE)
    assert order[1:] == tuple(ts for ts in ALL_TRANSFER_SYNTAXES if ts != EVLE)


def test_preferBigMovesExplicitBigToTheFront() -> None:
    """
    C{-xb} puts Explicit BE first, then Implicit LE, Explicit LE, Deflated...
    """
    order = transferSyntaxOrder(Pref.PREFER_BIG)
    assert len(order) == 45
    assert order[:5] == (EVBE, IVLE, EVLE, DEFLATED, JPEG_BASELINE)
    assert order[1:] == tuple(ts for ts in ALL_TRANSFER_SYNTAXES if ts != EVBE)


def test_implicitOnly() -> None:
    """
    C{-xi} keeps Implicit LE only.
    """
    assert transferSyntaxOrder(Pref.IMPLICIT_ONLY) == (IVLE,)


@pytest.mark.parametrize(
    "preference",
    [Pref.DEFAULT, Pref.PREFER_UNCOMPRESSED, Pref.PREFER_LITTLE, Pref.PREFER_BIG],
)
def test_ordersArePermutations(preference: TransferSyntaxPreference) -> None:
    """
    Every preference but C{-xi} reorders the 45 syntaxes, dropping none.
    """
    assert sorted(transferSyntaxOrder(preference)) == sorted(ALL_TRANSFER_SYNTAXES)


def test_preferenceValuesAreEchoscpFlags() -> None:
    """
    Each preference's value is echoscp's option flag, so the option layer
    can look a member up by flag.
    """
    assert Pref("-x=") is Pref.PREFER_UNCOMPRESSED
    assert Pref("-xe") is Pref.PREFER_LITTLE
    assert Pref("-xb") is Pref.PREFER_BIG
    assert Pref("-xi") is Pref.IMPLICIT_ONLY
    assert Pref("") is Pref.DEFAULT


# --- identity and policy -------------------------------------------------------


def test_implementationIdentity() -> None:
    """
    dicomecho identifies as itself: a 2.25 UUID-derived UID of at most 64
    characters, and a version name of at most 16 from C{__version__}.
    """
    assert IMPLEMENTATION_CLASS_UID.startswith("2.25.")
    assert len(IMPLEMENTATION_CLASS_UID) <= 64
    digits = IMPLEMENTATION_CLASS_UID[len("2.25.") :]
    assert digits.isdigit() and not digits.startswith("0")
    assert int(digits) < 2**128
    major, minor = __version__.split(".")[:2]
    assert IMPLEMENTATION_VERSION_NAME == f"DICOMECHO_{major}.{minor}"
    assert IMPLEMENTATION_VERSION_NAME == "DICOMECHO_0.1"
    assert len(IMPLEMENTATION_VERSION_NAME) <= 16
    assert DEFAULT_MAX_ASSOCIATIONS == 500


def test_policyDefaults() -> None:
    """
    The default policy is echoscp's: AE title ECHOSCP, no AE title checks,
    16382-byte PDUs, Verification only.
    """
    policy = AssociationPolicy()
    assert policy.aeTitle == "ECHOSCP"
    assert policy.requireCalledAETitle is False
    assert policy.allowedCallingAETitles == frozenset()
    assert policy.maxPDULength == 16382
    assert policy.abstractSyntaxes == (VERIFICATION_SOP_CLASS,)


def test_policyNormalisesCollections() -> None:
    """
    Lists and sets given to the policy are stored as tuples and frozensets,
    so a policy stays immutable and hashable.
    """
    policy = AssociationPolicy(
        allowedCallingAETitles={"A"},  # type: ignore[arg-type]
        transferSyntaxes=[EVLE],  # type: ignore[arg-type]
        abstractSyntaxes=[VERIFICATION_SOP_CLASS],  # type: ignore[arg-type]
    )
    assert policy.allowedCallingAETitles == frozenset({"A"})
    assert policy.transferSyntaxes == (EVLE,)
    assert policy.abstractSyntaxes == (VERIFICATION_SOP_CLASS,)
    hash(policy)


@pytest.mark.parametrize("length", [-1, 2**32])
def test_policyRejectsUnencodableMaxPDULength(length: int) -> None:
    """
    A maximum length that does not fit the 4-byte field fails when the
    policy is made, not when the first AC is encoded.
    """
    with pytest.raises(ValueError):
        AssociationPolicy(maxPDULength=length)


# --- transfer syntax choice: the acceptor's order wins ------------------------


def chosenSyntax(policy: AssociationPolicy, *proposed: str) -> PresentationContextAC:
    acceptance = accept(makeRQ((verification(1, *proposed),)), policy)
    (item,) = acceptance.ac.presentationContexts
    return item


def test_acceptorOrderWinsDefault() -> None:
    """
    Proposal [EVBE, EVLE, IVLE] with the default order gives IVLE, our
    first choice, whatever the peer's order.
    """
    item = chosenSyntax(DEFAULT_POLICY, EVBE, EVLE, IVLE)
    assert (item.result, item.transferSyntax) == (0, IVLE)


def test_acceptorOrderWinsPreferLittle() -> None:
    """
    With C{-xe}, proposal [IVLE, EVLE] gives EVLE.
    """
    policy = AssociationPolicy(transferSyntaxes=transferSyntaxOrder(Pref.PREFER_LITTLE))
    item = chosenSyntax(policy, IVLE, EVLE)
    assert (item.result, item.transferSyntax) == (0, EVLE)


def test_acceptorOrderWinsPreferBig() -> None:
    """
    With C{-xb}, proposal [IVLE, EVLE, EVBE] gives EVBE.
    """
    policy = AssociationPolicy(transferSyntaxes=transferSyntaxOrder(Pref.PREFER_BIG))
    item = chosenSyntax(policy, IVLE, EVLE, EVBE)
    assert (item.result, item.transferSyntax) == (0, EVBE)


def test_preferUncompressedPrefersAnythingToImplicit() -> None:
    """
    With C{-x=} Implicit LE is last, so even a compressed syntax wins over
    it, as in echoscp.
    """
    policy = AssociationPolicy(
        transferSyntaxes=transferSyntaxOrder(Pref.PREFER_UNCOMPRESSED)
    )
    assert chosenSyntax(policy, IVLE, JPEG_BASELINE).transferSyntax == JPEG_BASELINE
    assert chosenSyntax(policy, IVLE).transferSyntax == IVLE


def test_implicitOnlyRefusesExplicit() -> None:
    """
    With C{-xi}, proposal [EVLE] has nothing in common: result 4, the
    peer's syntax echoed, and no accepted context.
    """
    policy = AssociationPolicy(transferSyntaxes=transferSyntaxOrder(Pref.IMPLICIT_ONLY))
    acceptance = accept(makeRQ((verification(1, EVLE),)), policy)
    assert acceptance.ac.presentationContexts == (PresentationContextAC(1, 4, EVLE),)
    assert acceptance.contexts == {}


def test_unknownProposedSyntaxesAreSkipped() -> None:
    """
    Syntaxes we do not know are ignored; a known one later in the list is
    still chosen.
    """
    item = chosenSyntax(DEFAULT_POLICY, "1.2.3.4", "1.2.840.10008.1.2.4.52", EVLE)
    assert (item.result, item.transferSyntax) == (0, EVLE)


# --- presentation context results -----------------------------------------------


@pytest.mark.parametrize(
    "proposed, expected",
    [
        (
            PresentationContextRQ(1, CT_IMAGE_STORAGE, (EVLE, IVLE)),
            PresentationContextAC(1, 3, EVLE),
        ),
        (
            PresentationContextRQ(1, None, (EVBE, IVLE)),
            PresentationContextAC(1, 3, EVBE),
        ),
        (
            PresentationContextRQ(1, VERIFICATION_SOP_CLASS, ("1.2.3",)),
            PresentationContextAC(1, 4, "1.2.3"),
        ),
        (
            PresentationContextRQ(1, VERIFICATION_SOP_CLASS, ()),
            PresentationContextAC(1, 4, IVLE),
        ),
        (
            PresentationContextRQ(1, CT_IMAGE_STORAGE, ()),
            PresentationContextAC(1, 3, IVLE),
        ),
        (PresentationContextRQ(1, None, ()), PresentationContextAC(1, 3, IVLE)),
    ],
    ids=[
        "unserved abstract",
        "missing abstract",
        "no common syntax",
        "served, no syntax",
        "unserved, no syntax",
        "nothing at all",
    ],
)
def test_rejectedContextResults(
    proposed: PresentationContextRQ, expected: PresentationContextAC
) -> None:
    """
    An unserved or missing abstract syntax gives result 3; a served one with
    no common transfer syntax gives result 4. The item carries the peer's
    first proposed syntax, or Implicit LE if it proposed none. The
    association is still accepted.
    """
    acceptance = accept(makeRQ((proposed,)))
    assert acceptance.ac.presentationContexts == (expected,)
    assert acceptance.contexts == {}


def test_acceptedFirstThenRejectedByAscendingID() -> None:
    """
    AC items list the accepted contexts by ascending ID, then the rejected
    ones by ascending ID, whatever the RQ's order; the contexts mapping
    holds the accepted ones only.
    """
    rq = makeRQ(
        (
            PresentationContextRQ(9, CT_IMAGE_STORAGE, (EVLE,)),
            verification(7, EVLE, IVLE),
            verification(5, EVBE),
            verification(3, "1.2.3"),
            PresentationContextRQ(1, CT_IMAGE_STORAGE, (IVLE,)),
        )
    )
    acceptance = accept(rq)
    assert acceptance.ac.presentationContexts == (
        PresentationContextAC(5, 0, EVBE),
        PresentationContextAC(7, 0, IVLE),
        PresentationContextAC(1, 3, IVLE),
        PresentationContextAC(3, 4, "1.2.3"),
        PresentationContextAC(9, 3, EVLE),
    )
    assert acceptance.contexts == {
        5: AcceptedContext(5, VERIFICATION_SOP_CLASS, EVBE),
        7: AcceptedContext(7, VERIFICATION_SOP_CLASS, IVLE),
    }
    assert list(acceptance.contexts) == [5, 7]


def test_servedAbstractSyntaxesComeFromPolicy() -> None:
    """
    A policy serving another SOP class accepts it, and no longer serves
    Verification unless listed.
    """
    policy = AssociationPolicy(abstractSyntaxes=(CT_IMAGE_STORAGE,))
    rq = makeRQ(
        (
            verification(1, IVLE),
            PresentationContextRQ(3, CT_IMAGE_STORAGE, (EVLE,)),
        )
    )
    acceptance = accept(rq, policy)
    assert acceptance.contexts == {3: AcceptedContext(3, CT_IMAGE_STORAGE, EVLE)}
    assert [(i.contextID, i.result) for i in acceptance.ac.presentationContexts] == [
        (3, 0),
        (1, 3),
    ]


def test_zeroContextsStillAccepted() -> None:
    """
    A request proposing no presentation context is accepted with an AC
    that has no context items (as echoscp does).
    """
    acceptance = accept(makeRQ(()))
    assert acceptance.ac.presentationContexts == ()
    assert acceptance.contexts == {}
    assert decode(acceptance.ac.encode()) == acceptance.ac


def test_acContent() -> None:
    """
    The AC echoes the request's AE titles, carries DICOM's application
    context, version 1, and a user information item with our maximum
    length and identity only, whatever extended items the peer sent.
    """
    rq = makeRQ(
        called="ANY-SCP",
        calling="SOMEONE",
        version=0x0003,
        userInformation=UserInformation(
            maximumLength=4096,
            implementationClassUID="1.2.3",
            asyncOperationsWindow=AsyncOperationsWindow(5, 5),
            roleSelections=(RoleSelection(VERIFICATION_SOP_CLASS, 1, 1),),
            userIdentity=UserIdentityRQ(2, 1, b"alice", b"s3cret"),
        ),
    )
    policy = AssociationPolicy(maxPDULength=0)
    acceptance = accept(rq, policy)
    assert acceptance.rq is rq
    assert acceptance.peerMaxPDULength == 4096
    assert acceptance.ac == AssociateAC(
        calledAETitle="ANY-SCP",
        callingAETitle="SOMEONE",
        applicationContextName=DICOM_APPLICATION_CONTEXT,
        userInformation=UserInformation(
            maximumLength=0,
            implementationClassUID=IMPLEMENTATION_CLASS_UID,
            implementationVersionName=IMPLEMENTATION_VERSION_NAME,
        ),
        protocolVersion=1,
        presentationContexts=(PresentationContextAC(1, 0, IVLE),),
    )


def test_acEchoesReservedField() -> None:
    """
    PS3.8 Table 9-17: bytes 43-74 of the AC are "a value identical to the
    value received in the same field of the A-ASSOCIATE-RQ", whatever it
    is; zeros stay zeros.
    """
    reserved = b"DICOM" + bytes(range(0xE0, 0xFB))
    rq = dataclasses.replace(makeRQ(), reservedField=reserved)
    wire = rq.encode()
    assert wire[42:74] == reserved
    ac = accept(decodePDU(wire[0], wire[6:])).ac
    assert ac.reservedField == reserved
    assert ac.encode()[42:74] == reserved
    assert accept(makeRQ()).ac.encode()[42:74] == bytes(32)


# --- invalid requests -------------------------------------------------------------


def assertInvalid(rq: AssociateRQ) -> InvalidAssociateRequest:
    with pytest.raises(InvalidAssociateRequest) as caught:
        negotiate(rq, DEFAULT_POLICY)
    error = caught.value
    assert isinstance(error, RemoteProtocolError)
    assert error.abortReason == AbortReason.INVALID_PDU_PARAMETER_VALUE
    assert int(error.abortReason) == 6
    assert error.abortSource == AbortSource.SERVICE_PROVIDER
    return error


@pytest.mark.parametrize("contextID", [0, 2, 4, 254, 256, -1])
def test_contextIDNotOddFrom1To255(contextID: int) -> None:
    """
    A presentation context ID that is not odd and within 1-255 makes the
    request invalid: A-ABORT reason 6, even next to valid contexts.
    """
    rq = makeRQ((verification(1, IVLE), verification(contextID, IVLE)))
    error = assertInvalid(rq)
    assert str(contextID) in str(error)


@pytest.mark.parametrize("otherAbstract", [VERIFICATION_SOP_CLASS, CT_IMAGE_STORAGE])
def test_duplicateContextID(otherAbstract: str) -> None:
    """
    Two contexts with the same ID make the request invalid, whether their
    abstract syntaxes are the same or not.
    """
    rq = makeRQ(
        (
            verification(1, IVLE),
            verification(3, IVLE),
            PresentationContextRQ(1, otherAbstract, (EVLE,)),
        )
    )
    assertInvalid(rq)


@pytest.mark.parametrize("maximumLength", range(1, 8))
def test_peerMaximumLengthTooSmall(maximumLength: int) -> None:
    """
    A peer Maximum Length of 1-7 cannot carry any PDV: invalid, reason 6.
    """
    assertInvalid(makeRQ(userInformation=UserInformation(maximumLength=maximumLength)))


@pytest.mark.parametrize(
    "userInformation, expected",
    [
        (UserInformation(maximumLength=0), 0),
        (UserInformation(maximumLength=8), 8),
        (UserInformation(maximumLength=2**32 - 1), 2**32 - 1),
        (UserInformation(implementationClassUID="1.2.3"), 0),
        (None, 0),
    ],
    ids=["unlimited", "eight", "largest", "sub-item absent", "item absent"],
)
def test_peerMaximumLengthAccepted(
    userInformation: UserInformation | None, expected: int
) -> None:
    """
    A peer Maximum Length of 0 (no limit) or at least 8 is accepted; a
    missing item or sub-item is read as 0 (no limit).
    """
    acceptance = accept(makeRQ(userInformation=userInformation))
    assert acceptance.peerMaxPDULength == expected


def test_invalidBeforeRejected() -> None:
    """
    Validity is checked before any reject condition: an even ID aborts
    even when the protocol version would be rejected and we are full.
    """
    rq = makeRQ((verification(2, IVLE),), version=0, applicationContext=None)
    with pytest.raises(InvalidAssociateRequest):
        negotiate(rq, DEFAULT_POLICY, atCapacity=True)


# --- rejections ---------------------------------------------------------------------


def rjBytes(result: int, source: int, reason: int) -> bytes:
    return bytes((0x03, 0, 0, 0, 0, 4, 0, result, source, reason))


@pytest.mark.parametrize("version", [0, 2, 0xFFFE])
def test_protocolVersionBit0Clear(version: int) -> None:
    """
    A protocol version with bit 0 clear is rejected: permanent, ACSE
    provider, protocol-version-not-supported.
    """
    rejection = reject(makeRQ(version=version))
    assert rejection.rj.encode() == rjBytes(1, 2, 2)
    assert f"0x{version:04X}" in rejection.reason


@pytest.mark.parametrize("version", [1, 3, 0xFFFF])
def test_protocolVersionBit0Set(version: int) -> None:
    """
    Only bit 0 is tested (PS3.8 §9.3.2): 3 and 0xFFFF are accepted, unlike
    echoscp which wants exactly 1; our AC says version 1.
    """
    acceptance = accept(makeRQ(version=version))
    assert acceptance.ac.protocolVersion == 1


@pytest.mark.parametrize(
    "name", ["1.2.3.4", "1.2.840.10008.3.1.1.1.1", "1.2.840.10008.3.1.1", "", None]
)
def test_applicationContextNotDICOM(name: str | None) -> None:
    """
    Any application context name but DICOM's, or none, is rejected:
    permanent, service-user, application-context-name-not-supported.
    """
    rejection = reject(makeRQ(applicationContext=name))
    assert rejection.rj.encode() == rjBytes(1, 1, 2)


def test_callingAETitleAllowList() -> None:
    """
    A non-empty allow-list rejects other calling AE titles (permanent,
    service-user, calling-AE-title-not-recognized) and accepts listed ones;
    an empty list accepts any.
    """
    policy = AssociationPolicy(allowedCallingAETitles=frozenset({"MYSCU", "OTHER"}))
    rejection = reject(makeRQ(calling="INTRUDER"), policy)
    assert rejection.rj.encode() == rjBytes(1, 1, 3)
    assert "'INTRUDER'" in rejection.reason
    accept(makeRQ(calling="MYSCU"), policy)
    accept(makeRQ(calling="OTHER"), policy)
    # Exact comparison: no case folding.
    reject(makeRQ(calling="myscu"), policy)
    accept(makeRQ(calling="INTRUDER"))


def test_calledAETitleRequired() -> None:
    """
    With requireCalledAETitle, another called AE title is rejected
    (permanent, service-user, called-AE-title-not-recognized); without it,
    any called AE title is accepted, as echoscp does.
    """
    policy = AssociationPolicy(aeTitle="ECHOSCP", requireCalledAETitle=True)
    rejection = reject(makeRQ(called="X"), policy)
    assert rejection.rj.encode() == rjBytes(1, 1, 7)
    assert rejection.reason == "called AE title 'X' is not ours ('ECHOSCP')"
    accept(makeRQ(called="ECHOSCP"), policy)
    accept(makeRQ(called="X"))


def test_atCapacity() -> None:
    """
    At the association limit the request is rejected: transient,
    presentation provider, local-limit-exceeded.
    """
    rejection = reject(makeRQ(), atCapacity=True)
    assert rejection.rj.encode() == rjBytes(2, 3, 2)
    assert rejection.rq == makeRQ()


def test_reasonEscapesPeerStrings() -> None:
    """
    Peer strings appear in the log sentence as reprs, so control characters
    cannot forge log lines.
    """
    policy = AssociationPolicy(requireCalledAETitle=True)
    rejection = reject(makeRQ(called="A\nI: fake"), policy)
    assert "\n" not in rejection.reason
    assert "\\n" in rejection.reason


def test_rejectPrecedence() -> None:
    """
    When several reject conditions hold, the first in PS3.8-minded order
    wins: protocol version, application context, calling AE title, called
    AE title, capacity. Each step removes one fault.
    """
    policy = AssociationPolicy(
        requireCalledAETitle=True, allowedCallingAETitles=frozenset({"MYSCU"})
    )
    faults: dict[str, Any] = dict(
        version=2, applicationContext="1.2.3", calling="NOPE", called="NOPE"
    )
    expected = [rjBytes(1, 2, 2), rjBytes(1, 1, 2), rjBytes(1, 1, 3), rjBytes(1, 1, 7)]
    for name, rj in zip(list(faults), expected):
        assert reject(makeRQ(**faults), policy, atCapacity=True).rj.encode() == rj
        del faults[name]
    assert reject(makeRQ(), policy, atCapacity=True).rj.encode() == rjBytes(2, 3, 2)
    accept(makeRQ(), policy)


# --- requests captured from real peers -------------------------------------------


def test_dcmtkDefault() -> None:
    """
    DCMTK echoscu's default request: Verification accepted with Implicit LE,
    peer maximum 16384.
    """
    acceptance = accept(capturedRQ("dcmtk_echoscu_default"))
    assert acceptance.contexts == {1: AcceptedContext(1, VERIFICATION_SOP_CLASS, IVLE)}
    assert acceptance.peerMaxPDULength == 16384


@pytest.mark.parametrize(
    "preference, expected",
    [
        (Pref.DEFAULT, IVLE),
        (Pref.PREFER_UNCOMPRESSED, EVLE),
        (Pref.PREFER_LITTLE, EVLE),
        (Pref.PREFER_BIG, EVBE),
        (Pref.IMPLICIT_ONLY, IVLE),
    ],
)
def test_dcmtkProposeTS(preference: TransferSyntaxPreference, expected: str) -> None:
    """
    DCMTK's 38 proposed syntaxes in one context: each preference picks its
    first syntax that DCMTK proposed.
    """
    rq = capturedRQ("dcmtk_echoscu_propose_ts")
    (proposed,) = rq.presentationContexts
    assert len(proposed.transferSyntaxes) == 38
    policy = AssociationPolicy(transferSyntaxes=transferSyntaxOrder(preference))
    acceptance = accept(rq, policy)
    assert acceptance.contexts == {
        1: AcceptedContext(1, VERIFICATION_SOP_CLASS, expected)
    }


def test_dcmtkProposePC() -> None:
    """
    DCMTK's 128 Verification contexts (IDs 1-255) are all accepted with
    Implicit LE; a policy not serving Verification answers all 128 with
    result 3 and still accepts the association.
    """
    rq = capturedRQ("dcmtk_echoscu_propose_pc")
    assert len(rq.presentationContexts) == 128
    acceptance = accept(rq)
    assert sorted(acceptance.contexts) == list(range(1, 256, 2))
    assert all(
        c == AcceptedContext(c.contextID, VERIFICATION_SOP_CLASS, IVLE)
        for c in acceptance.contexts.values()
    )
    assert [i.contextID for i in acceptance.ac.presentationContexts] == list(
        range(1, 256, 2)
    )

    notServed = accept(rq, AssociationPolicy(abstractSyntaxes=(CT_IMAGE_STORAGE,)))
    assert notServed.contexts == {}
    assert {i.result for i in notServed.ac.presentationContexts} == {3}
    assert len(notServed.ac.presentationContexts) == 128


def test_pynetdicomExtended() -> None:
    """
    pynetdicom's request with every extended item: Verification (1)
    accepted, CT Image Storage (3) result 3 with its first syntax echoed,
    and no reply item (role, async window, user identity, extended
    negotiation) in the AC.
    """
    rq = capturedRQ("pynetdicom_extended")
    acceptance = accept(rq)
    assert acceptance.contexts == {1: AcceptedContext(1, VERIFICATION_SOP_CLASS, IVLE)}
    assert acceptance.ac.presentationContexts == (
        PresentationContextAC(1, 0, IVLE),
        PresentationContextAC(3, 3, rq.presentationContexts[1].transferSyntaxes[0]),
    )
    assert acceptance.ac.userInformation == UserInformation(
        maximumLength=16382,
        implementationClassUID=IMPLEMENTATION_CLASS_UID,
        implementationVersionName=IMPLEMENTATION_VERSION_NAME,
    )
    assert acceptance.peerMaxPDULength == 16382


@pytest.mark.parametrize("session", SESSIONS)
def test_sameACAsEchoscp(session: str) -> None:
    """
    For every captured request our AC encodes to exactly the bytes
    pynetdicom's echoscp sent, except for the implementation class UID and
    version name sub-items, which name dicomecho.
    """
    ours = accept(capturedRQ(session)).ac
    theirs, theirBytes = capturedAC(session)
    assert theirs.encode() == theirBytes
    assert theirs.userInformation is not None
    expected = dataclasses.replace(
        theirs,
        userInformation=dataclasses.replace(
            theirs.userInformation,
            implementationClassUID=IMPLEMENTATION_CLASS_UID,
            implementationVersionName=IMPLEMENTATION_VERSION_NAME,
        ),
    )
    assert ours.encode() == expected.encode()


def test_dcmtkDefaultACBytes() -> None:
    """
    The AC for DCMTK's default request, byte for byte (reference §3.2's
    capture with our identity in place of pynetdicom's).
    """
    ac = accept(capturedRQ("dcmtk_echoscu_default")).ac.encode()
    uid = IMPLEMENTATION_CLASS_UID.encode()
    name = IMPLEMENTATION_VERSION_NAME.encode()
    userInfo = (
        b"\x51\x00\x00\x04\x00\x00\x3f\xfe"
        + bytes((0x52, 0, 0, len(uid)))
        + uid
        + bytes((0x55, 0, 0, len(name)))
        + name
    )
    body = (
        b"\x00\x01\x00\x00"
        + b"ECHOSCP".ljust(16)
        + b"MYSCU".ljust(16)
        + bytes(32)
        + b"\x10\x00\x00\x15"
        + DICOM_APPLICATION_CONTEXT.encode()
        + b"\x21\x00\x00\x19\x01\x00\x00\x00\x40\x00\x00\x11"
        + IVLE.encode()
        + bytes((0x50, 0, 0, len(userInfo)))
        + userInfo
    )
    assert ac == b"\x02\x00" + len(body).to_bytes(4, "big") + body


# --- property ---------------------------------------------------------------------

_ABSTRACTS = st.one_of(
    st.none(), st.sampled_from([VERIFICATION_SOP_CLASS, CT_IMAGE_STORAGE, "1.2.3"])
)
_SYNTAXES = st.lists(
    st.sampled_from(ALL_TRANSFER_SYNTAXES[:6] + ("1.2.3.4", "1.2.840.10008.1.2.4.52")),
    max_size=5,
)
_TITLES = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=16
)


@st.composite
def acceptableRequests(draw: st.DrawFn) -> AssociateRQ:
    ids = draw(st.lists(st.integers(0, 127), unique=True, max_size=12))
    contexts = tuple(
        PresentationContextRQ(2 * i + 1, draw(_ABSTRACTS), tuple(draw(_SYNTAXES)))
        for i in ids
    )
    maximumLength = draw(st.one_of(st.none(), st.just(0), st.integers(8, 2**32 - 1)))
    userInformation = draw(
        st.one_of(st.none(), st.just(UserInformation(maximumLength=maximumLength)))
    )
    return AssociateRQ(
        calledAETitle=draw(_TITLES),
        callingAETitle=draw(_TITLES),
        applicationContextName=DICOM_APPLICATION_CONTEXT,
        userInformation=userInformation,
        protocolVersion=draw(st.integers(0, 0xFFFF)) | 1,
        presentationContexts=contexts,
        reservedField=draw(st.binary(min_size=32, max_size=32)),
    )


_POLICIES = st.builds(
    AssociationPolicy,
    maxPDULength=st.integers(0, 2**32 - 1),
    transferSyntaxes=st.sampled_from(list(Pref)).map(transferSyntaxOrder),
    abstractSyntaxes=st.sampled_from(
        [(VERIFICATION_SOP_CLASS,), (CT_IMAGE_STORAGE, VERIFICATION_SOP_CLASS), ()]
    ),
)


@given(acceptableRequests(), _POLICIES)
def test_acceptablePropertyHolds(rq: AssociateRQ, policy: AssociationPolicy) -> None:
    """
    Any valid request with bit 0 set and DICOM's application context is
    accepted; the AC has one item per proposed context, accepted first then
    rejected, each by ascending ID; every accepted context has a served
    abstract syntax and a transfer syntax the peer proposed, and we would
    choose nothing earlier in our order; the AC's reserved field is the
    request's; and the AC survives encoding.
    """
    acceptance = negotiate(rq, policy)
    assert isinstance(acceptance, Acceptance)
    proposed = {pc.contextID: pc for pc in rq.presentationContexts}
    items = acceptance.ac.presentationContexts
    assert sorted(i.contextID for i in items) == sorted(proposed)
    assert [i.contextID for i in items] == sorted(
        proposed, key=lambda cid: (cid not in acceptance.contexts, cid)
    )
    for item in items:
        pc = proposed[item.contextID]
        assert item.result in (0, 3, 4)
        if item.result == 0:
            assert pc.abstractSyntax in policy.abstractSyntaxes
            assert item.transferSyntax in pc.transferSyntaxes
            rank = policy.transferSyntaxes.index(item.transferSyntax)
            assert not set(policy.transferSyntaxes[:rank]) & set(pc.transferSyntaxes)
            assert acceptance.contexts[item.contextID] == AcceptedContext(
                item.contextID, pc.abstractSyntax, item.transferSyntax
            )
        else:
            assert item.contextID not in acceptance.contexts
            assert item.transferSyntax == (pc.transferSyntaxes or (IVLE,))[0]
    assert acceptance.ac.reservedField == rq.reservedField
    assert decode(acceptance.ac.encode()) == acceptance.ac
