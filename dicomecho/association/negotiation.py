# -*- test-case-name: tests.test_negotiation -*-
"""
The acceptor's answer to an A-ASSOCIATE-RQ: reject it (PS3.8 §9.3.4), or
accept it and answer every proposed presentation context (PS3.8 §9.3.3).

L{negotiate} is pure: it takes a decoded L{AssociateRQ}, an
L{AssociationPolicy} and whether the server is at its association limit,
and returns an L{Acceptance} or a L{Rejection} holding the PDU to send. A
request that breaks PS3.8 outright raises L{InvalidAssociateRequest}, to be
answered with an A-ABORT.

Observable choices (transfer syntax lists and preference orders, result 3/4
items, AC contents) match pynetdicom 3.0.4's C{echoscp}; the checks it
skips (protocol version bit, application context, invalid context IDs) are
made here as PS3.8 asks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Iterable, Mapping

from dicomecho import __version__
from dicomecho.security.access import AccessList
from dicomecho.wire.errors import AbortReason, RemoteProtocolError
from dicomecho.wire.items import PresentationContextAC, PresentationContextRQ, PresentationResult
from dicomecho.wire.userinfo import UserInformation
from dicomecho.wire.userinfo import UserIdentityAC
from dicomecho.wire.pdu import (
    DICOM_APPLICATION_CONTEXT,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    RejectReason,
    RejectResult,
    RejectSource,
)

__all__ = [
    "VERIFICATION_SOP_CLASS",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "EXPLICIT_VR_BIG_ENDIAN",
    "ALL_TRANSFER_SYNTAXES",
    "TransferSyntaxPreference",
    "transferSyntaxOrder",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "DEFAULT_MAX_PDU_LENGTH",
    "DEFAULT_MAX_ASSOCIATIONS",
    "MINIMUM_PEER_MAX_PDU_LENGTH",
    "AssociationPolicy",
    "AcceptedContext",
    "Acceptance",
    "Rejection",
    "InvalidAssociateRequest",
    "localLimitRejection",
    "CAPACITY_REACHED",
    "identityRejection",
    "withIdentityResponse",
    "negotiate",
]

#: Verification SOP Class (PS3.4 Annex A, PS3.6).
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

# PS3.5 §10 and Annex A.
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

#: The transfer syntaxes echoscp accepts for Verification, in its default
#: preference order (pynetdicom 3.0.4 C{ALL_TRANSFER_SYNTAXES}).
ALL_TRANSFER_SYNTAXES: tuple[str, ...] = (
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    EXPLICIT_VR_BIG_ENDIAN,
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 Multi-component Lossless
    "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 Multi-component
    "1.2.840.10008.1.2.4.94",  # JPIP Referenced
    "1.2.840.10008.1.2.4.95",  # JPIP Referenced Deflate
    "1.2.840.10008.1.2.4.100",  # MPEG2 Main Profile / Main Level
    "1.2.840.10008.1.2.4.100.1",  # Fragmentable MPEG2 MP@ML
    "1.2.840.10008.1.2.4.101",  # MPEG2 Main Profile / High Level
    "1.2.840.10008.1.2.4.101.1",  # Fragmentable MPEG2 MP@HL
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 High Profile / Level 4.1
    "1.2.840.10008.1.2.4.102.1",  # Fragmentable, same
    "1.2.840.10008.1.2.4.103",  # MPEG-4 AVC/H.264 BD-compatible High Profile
    "1.2.840.10008.1.2.4.103.1",  # Fragmentable, same
    "1.2.840.10008.1.2.4.104",  # MPEG-4 AVC/H.264 High Profile for 2D Video
    "1.2.840.10008.1.2.4.104.1",  # Fragmentable, same
    "1.2.840.10008.1.2.4.105",  # MPEG-4 AVC/H.264 High Profile for 3D Video
    "1.2.840.10008.1.2.4.105.1",  # Fragmentable, same
    "1.2.840.10008.1.2.4.106",  # MPEG-4 AVC/H.264 Stereo High Profile
    "1.2.840.10008.1.2.4.106.1",  # Fragmentable, same
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main Profile / Level 5.1
    "1.2.840.10008.1.2.4.108",  # HEVC/H.265 Main 10 Profile / Level 5.1
    "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
    "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG Recompression
    "1.2.840.10008.1.2.4.112",  # JPEG XL
    "1.2.840.10008.1.2.4.201",  # High-Throughput JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.202",  # High-Throughput JPEG 2000 (RPCL) Lossless
    "1.2.840.10008.1.2.4.203",  # High-Throughput JPEG 2000
    "1.2.840.10008.1.2.4.204",  # JPIP HTJ2K Referenced
    "1.2.840.10008.1.2.4.205",  # JPIP HTJ2K Referenced Deflate
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.7.1",  # SMPTE ST 2110-20 Progressive Active Video
    "1.2.840.10008.1.2.7.2",  # SMPTE ST 2110-20 Interlaced Active Video
    "1.2.840.10008.1.2.7.3",  # SMPTE ST 2110-30 PCM Digital Audio
    "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression
)


class TransferSyntaxPreference(Enum):
    """
    echoscp's transfer syntax options; each value is the option's flag
    (C{""} for none). See L{transferSyntaxOrder}.
    """

    DEFAULT = ""
    PREFER_UNCOMPRESSED = "-x="
    PREFER_LITTLE = "-xe"
    PREFER_BIG = "-xb"
    IMPLICIT_ONLY = "-xi"


def _without(uid: str) -> tuple[str, ...]:
    return tuple(ts for ts in ALL_TRANSFER_SYNTAXES if ts != uid)


def transferSyntaxOrder(preference: TransferSyntaxPreference) -> tuple[str, ...]:
    """
    The acceptor's transfer syntax list, most preferred first, for one of
    echoscp's options.

    C{-x=} moves Implicit VR Little Endian to the end; C{-xe} and C{-xb}
    move Explicit VR Little/Big Endian to the front; C{-xi} keeps Implicit
    VR Little Endian only.
    """
    if preference is TransferSyntaxPreference.DEFAULT:
        return ALL_TRANSFER_SYNTAXES
    if preference is TransferSyntaxPreference.PREFER_UNCOMPRESSED:
        return _without(IMPLICIT_VR_LITTLE_ENDIAN) + (IMPLICIT_VR_LITTLE_ENDIAN,)
    if preference is TransferSyntaxPreference.PREFER_LITTLE:
        return (EXPLICIT_VR_LITTLE_ENDIAN,) + _without(EXPLICIT_VR_LITTLE_ENDIAN)
    if preference is TransferSyntaxPreference.PREFER_BIG:
        return (EXPLICIT_VR_BIG_ENDIAN,) + _without(EXPLICIT_VR_BIG_ENDIAN)
    if preference is TransferSyntaxPreference.IMPLICIT_ONLY:
        return (IMPLICIT_VR_LITTLE_ENDIAN,)
    raise ValueError(f"unknown transfer syntax preference {preference!r}")


#: dicomecho's Implementation Class UID (PS3.7 D.3.3.2): a UUID-derived UID
#: (PS3.5 §B.2, root 2.25), generated once; never change it.
IMPLEMENTATION_CLASS_UID = "2.25.163776254591908248218757019672864136985"

#: dicomecho's Implementation Version Name (PS3.7 D.3.3.2, 1-16 characters).
IMPLEMENTATION_VERSION_NAME = "DICOMECHO_" + ".".join(__version__.split(".")[:2])

#: Our advertised Maximum Length by default, as echoscp's C{-pdu}.
DEFAULT_MAX_PDU_LENGTH = 16382

#: Default limit on concurrent associations; the next one is rejected with
#: local-limit-exceeded (see L{negotiate}'s C{atCapacity}).
DEFAULT_MAX_ASSOCIATIONS = 500

#: The smallest non-zero peer Maximum Length we can send a response within:
#: a PDV item has a 6-byte header (PS3.8 §9.3.5.1) and each fragment is an
#: even, non-empty number of bytes (PS3.8 Annex E.1), so 6 + 2.
MINIMUM_PEER_MAX_PDU_LENGTH = 8

_MAX_UINT32 = 0xFFFFFFFF


@dataclass(frozen=True)
class AssociationPolicy:
    """
    What the acceptor accepts.

    @ivar aeTitle: our AE title; compared with the called AE title only if
        C{requireCalledAETitle}.
    @ivar requireCalledAETitle: reject requests not addressed to C{aeTitle}.
    @ivar allowedCallingAETitles: if non-empty, the only calling AE titles
        accepted; empty accepts any.
    @ivar maxPDULength: our advertised Maximum Length (sub-item 0x51,
        PS3.8 D.1); 0 means unlimited.
    @ivar transferSyntaxes: accepted transfer syntaxes, most preferred first.
    @ivar abstractSyntaxes: the abstract syntaxes our responders serve.
    @ivar access: the source networks and calling-AE@network pairs allowed;
        empty allows everyone.
    """

    aeTitle: str = "ECHOSCP"
    requireCalledAETitle: bool = False
    allowedCallingAETitles: frozenset[str] = frozenset()
    maxPDULength: int = DEFAULT_MAX_PDU_LENGTH
    transferSyntaxes: tuple[str, ...] = transferSyntaxOrder(
        TransferSyntaxPreference.DEFAULT
    )
    abstractSyntaxes: tuple[str, ...] = (VERIFICATION_SOP_CLASS,)
    access: AccessList = AccessList()

    def __post_init__(self) -> None:
        # Accept any iterable, keep immutable (hashable) values.
        object.__setattr__(
            self, "allowedCallingAETitles", frozenset(self.allowedCallingAETitles)
        )
        object.__setattr__(self, "transferSyntaxes", tuple(self.transferSyntaxes))
        object.__setattr__(self, "abstractSyntaxes", tuple(self.abstractSyntaxes))
        # PS3.8 D.1: a 4-byte unsigned field.
        if not 0 <= self.maxPDULength <= _MAX_UINT32:
            raise ValueError(
                f"maximum PDU length {self.maxPDULength} does not fit 32 bits"
            )


@dataclass(frozen=True)
class AcceptedContext:
    """
    A presentation context accepted in the AC.
    """

    contextID: int
    abstractSyntax: str
    transferSyntax: str


@dataclass(frozen=True)
class Acceptance:
    """
    Accept the association: send C{ac}.

    @ivar contexts: the accepted contexts only, by context ID; empty if
        none was accepted (the association is still established).
    @ivar peerMaxPDULength: the peer's Maximum Length (PS3.8 D.1), the
        largest P-DATA-TF variable field we may send; 0 means no limit,
        and is also used when the peer sent no Maximum Length sub-item.
    """

    rq: AssociateRQ
    ac: AssociateAC
    contexts: Mapping[int, AcceptedContext]
    peerMaxPDULength: int


@dataclass(frozen=True)
class Rejection:
    """
    Reject the association: send C{rj}, then close.

    @ivar reason: one sentence for the log; peer strings appear as C{repr}s.
    """

    rq: AssociateRQ
    rj: AssociateRJ
    reason: str


class InvalidAssociateRequest(RemoteProtocolError):
    """
    The A-ASSOCIATE-RQ is not a valid PDU (a bad or repeated presentation
    context ID, an unusable Maximum Length). Answer with an A-ABORT from the
    service-provider carrying L{abortReason} (PS3.8 Table 9-26).
    """

    def __init__(
        self,
        message: str,
        abortReason: AbortReason = AbortReason.INVALID_PDU_PARAMETER_VALUE,
    ) -> None:
        super().__init__(message, abortReason)


def _peerMaxPDULength(rq: AssociateRQ) -> int:
    # Lenient: a missing user information item or Maximum Length sub-item
    # (mandatory, PS3.8 D.1) is read as "no limit"; a C-ECHO-RSP is small.
    info = rq.userInformation
    if info is None or info.maximumLength is None:
        return 0
    return info.maximumLength


def _checkValid(rq: AssociateRQ) -> int:
    """
    Raise L{InvalidAssociateRequest} if C{rq} breaks PS3.8; else return the
    peer's maximum length.
    """
    seen: set[int] = set()
    for pc in rq.presentationContexts:
        contextID = pc.contextID
        # PS3.8 §9.3.2.2: IDs are odd integers between 1 and 255.
        if not (1 <= contextID <= 255 and contextID % 2 == 1):
            raise InvalidAssociateRequest(
                f"presentation context ID {contextID} is not an odd number "
                f"from 1 to 255"
            )
        # PS3.8 §7.1.1.13: the requestor assigns an unused ID to each
        # proposed context.
        if contextID in seen:
            raise InvalidAssociateRequest(
                f"presentation context ID {contextID} is proposed more than once"
            )
        seen.add(contextID)
    peerMax = _peerMaxPDULength(rq)
    # PS3.8 D.1 (0 = no limit) and Annex E.1: below 8 bytes no PDV with an
    # even, non-empty fragment fits, so no response could ever be sent.
    if 0 < peerMax < MINIMUM_PEER_MAX_PDU_LENGTH:
        raise InvalidAssociateRequest(
            f"maximum length {peerMax} is too small to carry any PDV "
            f"(minimum {MINIMUM_PEER_MAX_PDU_LENGTH}, or 0 for no limit)"
        )
    return peerMax


def _rejection(
    rq: AssociateRQ, result: int, source: int, reason: int, why: str
) -> Rejection:
    return Rejection(rq, AssociateRJ(result, source, reason), why)


def _callingRejection(
    rq: AssociateRQ, policy: AssociationPolicy, peerHost: str | None
) -> Rejection | None:
    """
    Calling AE title not recognized (PS3.8 Table 9-21): not among the
    allowed titles, or not allowed from this source address.
    """
    if policy.allowedCallingAETitles and rq.callingAETitle not in policy.allowedCallingAETitles:
        why = f"calling AE title {rq.callingAETitle!r} is not allowed"
    elif not policy.access.admits(rq.callingAETitle, peerHost):
        why = f"calling AE title {rq.callingAETitle!r} is not allowed from {peerHost}"
    else:
        return None
    return _rejection(
        rq,
        RejectResult.PERMANENT,
        RejectSource.SERVICE_USER,
        RejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED,
        why,
    )


def _checkAcceptable(
    rq: AssociateRQ,
    policy: AssociationPolicy,
    atCapacity: bool,
    peerHost: str | None,
    localLimit: str | None = None,
) -> Rejection | None:
    """
    The first reject condition C{rq} meets, in order; C{None} if none.
    Result, source and reason values are from PS3.8 Table 9-21.
    """
    # PS3.8 §9.3.2: a receiver implementing only version 1 tests bit 0 only.
    if not rq.protocolVersion & 1:
        return _rejection(
            rq,
            RejectResult.PERMANENT,
            RejectSource.SERVICE_PROVIDER_ACSE,
            RejectReason.PROTOCOL_VERSION_NOT_SUPPORTED,
            f"protocol version 0x{rq.protocolVersion:04X} does not include "
            f"version 1 (bit 0)",
        )
    # PS3.8 §7.1.1.2 and PS3.7 Annex A.2.1: DICOM defines exactly one
    # application context name.
    if rq.applicationContextName != DICOM_APPLICATION_CONTEXT:
        if rq.applicationContextName is None:
            why = "the request has no application context name"
        else:
            why = (
                f"application context name {rq.applicationContextName!r} is not "
                f"DICOM's ({DICOM_APPLICATION_CONTEXT})"
            )
        return _rejection(
            rq,
            RejectResult.PERMANENT,
            RejectSource.SERVICE_USER,
            RejectReason.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED,
            why,
        )
    callingRefused = _callingRejection(rq, policy, peerHost)
    if callingRefused is not None:
        return callingRefused
    if policy.requireCalledAETitle and rq.calledAETitle != policy.aeTitle:
        return _rejection(
            rq,
            RejectResult.PERMANENT,
            RejectSource.SERVICE_USER,
            RejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED,
            f"called AE title {rq.calledAETitle!r} is not ours "
            f"({policy.aeTitle!r})",
        )
    if localLimit is not None:
        return localLimitRejection(rq, localLimit)
    if atCapacity:
        return localLimitRejection(rq)
    return None


#: Why a request is rejected at the association limit (or shutting down).
CAPACITY_REACHED = "the limit on concurrent associations is reached"


def localLimitRejection(rq: AssociateRQ, why: str = CAPACITY_REACHED) -> Rejection:
    """
    A rejection for a local limit: transient, service-provider
    (presentation related function), local-limit-exceeded (PS3.8 Table
    9-21), so the requestor may try again later.
    """
    return _rejection(
        rq,
        RejectResult.TRANSIENT,
        RejectSource.SERVICE_PROVIDER_PRESENTATION,
        RejectReason.LOCAL_LIMIT_EXCEEDED,
        why,
    )


def identityRejection(acceptance: Acceptance, why: str) -> Rejection:
    """
    The rejection of an association whose user identity was refused or
    missing (PS3.7 D.3.3.7): permanent, ACSE service-provider, no reason
    given (PS3.8 Table 9-21).
    """
    return _rejection(
        acceptance.rq,
        RejectResult.PERMANENT,
        RejectSource.SERVICE_PROVIDER_ACSE,
        RejectReason.ACSE_NO_REASON_GIVEN,
        why,
    )


def withIdentityResponse(acceptance: Acceptance, response: bytes) -> Acceptance:
    """
    C{acceptance} with a User Identity sub-item (0x59) in its AC carrying
    C{response}: sent when the requestor asked for a positive response
    (PS3.7 D.3.3.7.2).
    """
    ac = acceptance.ac
    info = replace(ac.userInformation, userIdentityResponse=UserIdentityAC(response))
    return replace(acceptance, ac=replace(ac, userInformation=info))


def _chooseTransferSyntax(
    ours: Iterable[str], theirs: tuple[str, ...]
) -> str | None:
    # One transfer syntax per context is accepted (PS3.8 §7.1.1.13 note);
    # the acceptor's order wins: our first one the peer proposed anywhere.
    proposed = frozenset(theirs)
    for ts in ours:
        if ts in proposed:
            return ts
    return None


def _answerContext(
    pc: PresentationContextRQ, policy: AssociationPolicy
) -> tuple[PresentationContextAC, AcceptedContext | None]:
    """
    The AC item for one proposed context (PS3.8 §9.3.3.2, Table 9-18), and
    the accepted context if it is accepted.
    """
    # A rejected item still carries one transfer syntax sub-item, which is
    # not significant and not tested (PS3.8 §9.3.3.2): echo the first
    # proposed one, as pynetdicom does.
    echoed = (
        pc.transferSyntaxes[0] if pc.transferSyntaxes else IMPLICIT_VR_LITTLE_ENDIAN
    )
    abstract = pc.abstractSyntax
    if abstract is None or abstract not in policy.abstractSyntaxes:
        result = PresentationResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
        return PresentationContextAC(pc.contextID, result, echoed), None
    chosen = _chooseTransferSyntax(policy.transferSyntaxes, pc.transferSyntaxes)
    if chosen is None:
        result = PresentationResult.TRANSFER_SYNTAXES_NOT_SUPPORTED
        return PresentationContextAC(pc.contextID, result, echoed), None
    return (
        PresentationContextAC(pc.contextID, PresentationResult.ACCEPTANCE, chosen),
        AcceptedContext(pc.contextID, abstract, chosen),
    )


def _acceptedFirst(item: PresentationContextAC) -> tuple[bool, int]:
    return (item.result != PresentationResult.ACCEPTANCE, item.contextID)


def negotiate(
    rq: AssociateRQ,
    policy: AssociationPolicy,
    atCapacity: bool = False,
    peerHost: str | None = None,
    localLimit: str | None = None,
) -> Acceptance | Rejection:
    """
    Decide how to answer C{rq}.

    Checks, in order: validity (raises), protocol version, application
    context, calling AE title, calling AE title from C{peerHost} (the
    policy's access list), called AE title, C{atCapacity}; the first
    that fails gives the L{Rejection}. Otherwise every proposed context is
    answered; the association is accepted even if no context is.

    @param atCapacity: whether accepting would exceed the association limit.
    @param localLimit: a local limit accepting would exceed, in words.
    @param peerHost: the peer's address as the transport gives it.
    @raise InvalidAssociateRequest: if C{rq} has an even, out-of-range or
        repeated presentation context ID, or a Maximum Length of 1 to 7.
    """
    peerMax = _checkValid(rq)
    rejection = _checkAcceptable(rq, policy, atCapacity, peerHost, localLimit)
    if rejection is not None:
        return rejection

    answers: list[PresentationContextAC] = []
    accepted: list[AcceptedContext] = []
    for pc in rq.presentationContexts:
        item, context = _answerContext(pc, policy)
        answers.append(item)
        if context is not None:
            accepted.append(context)
    # Accepted items first, then rejected ones, each by ascending ID, as
    # pynetdicom sends them (PS3.8 sets no order).
    answers.sort(key=_acceptedFirst)
    contexts = {c.contextID: c for c in sorted(accepted, key=lambda c: c.contextID)}

    ac = AssociateAC(
        # PS3.8 §9.3.3, Table 9-17: these reserved fields carry the RQ's
        # values, as received.
        calledAETitle=rq.calledAETitle,
        callingAETitle=rq.callingAETitle,
        reservedField=rq.reservedField,
        applicationContextName=DICOM_APPLICATION_CONTEXT,
        # PS3.8 D.1 and PS3.7 D.3.3.2: Maximum Length and implementation
        # identification only; we send no extended negotiation replies
        # (role selection, async window, SOP class extended, user identity
        # are all optional for the acceptor, PS3.7 D.3.3.3-D.3.3.7).
        userInformation=UserInformation(
            maximumLength=policy.maxPDULength,
            implementationClassUID=IMPLEMENTATION_CLASS_UID,
            implementationVersionName=IMPLEMENTATION_VERSION_NAME,
        ),
        # PS3.8 §9.3.3: version 1, bit 0.
        protocolVersion=1,
        presentationContexts=tuple(answers),
    )
    return Acceptance(rq, ac, contexts, peerMax)
