# -*- test-case-name: tests.test_products -*-
"""
Name the product (the SCU software) that sent an A-ASSOCIATE-RQ.

A requestor says what it is in two user-information sub-items: the
Implementation Class UID (PS3.7 Annex D.3.3.2, sub-item 0x52, always sent)
and the Implementation Version Name (PS3.7 Annex D.3.3.3, sub-item 0x55,
optional). L{recognizeProduct} looks both up in L{SIGNATURES}, a small table
of facts taken from each product's own source or from its real traffic.

Both values come from the peer and are not trusted: either may be missing,
padded with trailing spaces or NULs, or absurdly long. The answer only ever
holds a name from the table and a version made of ASCII digits and dots, so
it is safe to log or to use as a metric label. Pure: standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_INPUT_LENGTH",
    "Product",
    "Signature",
    "SIGNATURES",
    "recognizeProduct",
    "underRoot",
]

#: Longest value looked at, after trailing padding is removed. A UID has at
#: most 64 characters (PS3.5 §9.1, which PS3.7 Annex D.3.3.2 refers to); a
#: version name at most 16 (PS3.7 Annex D.3.3.3), so 64 is generous for it.
MAX_INPUT_LENGTH = 64

#: Trailing characters peers pad with: SH values pad with spaces (PS3.5
#: §6.2), UIDs in data sets with a NUL (PS3.5 §9.1).
PADDING = " \x00"

#: A version taken from a UID: whole numeric components, ASCII only.
DOTTED_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)*")


@dataclass(frozen=True, slots=True)
class Product:
    """
    A recognised SCU product.

    @ivar name: the product's name, from L{SIGNATURES}.
    @ivar version: its version as the peer's own values reveal it, or
        C{None} when they do not.
    """

    name: str
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Signature:
    """
    One row of the table: how one product identifies itself.

    @ivar name: the product's name.
    @ivar uidRoots: UID roots; an Implementation Class UID equal to one, or
        below one (see L{underRoot}), names this product.
    @ivar versionPrefix: the start of the product's Implementation Version
        Name, matched case-sensitively; C{None} if it has none of its own.
    @ivar uidVersionRoot: when the UID carries the version, the root the
        version's components follow.
    @ivar versionPattern: a pattern for the whole version name whose groups,
        joined with dots, are the version.
    """

    name: str
    uidRoots: tuple[str, ...] = ()
    versionPrefix: str | None = None
    uidVersionRoot: str | None = None
    versionPattern: re.Pattern[str] | None = None


SIGNATURES: tuple[Signature, ...] = (
    # DCMTK dcmdata/include/dcmtk/dcmdata/dcuid.h: OFFIS_UID_ROOT
    # 1.2.276.0.7230010.3, OFFIS_IMPLEMENTATION_CLASS_UID = root ".0." version
    # string, OFFIS_DTK_IMPLEMENTATION_VERSION_NAME "OFFIS_DCMTK_" + 3 digits;
    # strings in the installed libdcmnet.so.17: 1.2.276.0.7230010.3.0.3.6.7
    # and OFFIS_DCMTK_367, both sent by echoscu v3.6.7.
    Signature(
        "DCMTK", ("1.2.276.0.7230010.3",), "OFFIS_DCMTK_", "1.2.276.0.7230010.3.0",
        re.compile(r"OFFIS_DCMTK_([0-9])([0-9])([0-9])"),
    ),
    # pynetdicom/__init__.py: PYNETDICOM_UID_PREFIX 1.2.826.0.1.3680043.9.3811.
    # + '.'.join(major, minor, patch); version name "PYNETDICOM_" + ''.join(...)
    # (pynetdicom 3.0.4 here: ...3811.3.0.4 and PYNETDICOM_304).
    Signature(
        "pynetdicom", ("1.2.826.0.1.3680043.9.3811",), "PYNETDICOM_", "1.2.826.0.1.3680043.9.3811",
        re.compile(r"PYNETDICOM_([0-9])([0-9])([0-9])"),
    ),
    # GDCM Source/DataStructureAndEncodingDefinition/gdcmFileMetaInformation.cxx:
    # class UID "1.2.826.0.1.3680043.2.1143.107.104.103.115." GDCM_VERSION and
    # version name "GDCM " GDCM_VERSION; gdcmImplementationClassUIDSub.cxx
    # sends that UID on the network.
    Signature(
        "GDCM", ("1.2.826.0.1.3680043.2.1143.107.104.103.115",), "GDCM ",
        "1.2.826.0.1.3680043.2.1143.107.104.103.115",
        re.compile(r"GDCM ([0-9]+\.[0-9]+\.[0-9]+)"),
    ),
    # dcm4che3 dcm4che-core/.../org/dcm4che3/data/Implementation.java:
    # IMPL_CLASS_UID 1.2.40.0.13.1.3, version name "dcm4che-" + version (cut to
    # 16); the older org.dcm4che.data.Implementation uses 1.2.40.0.13.1.1 and
    # dcm4che-1.4.x files carry 1.2.40.0.13.1.1.1.
    Signature(
        "dcm4che", ("1.2.40.0.13.1.1", "1.2.40.0.13.1.3"), "dcm4che-", None,
        re.compile(r"dcm4che-([0-9]+(?:\.[0-9]+)+)(?:-.*)?"),
    ),
    # fo-dicom DicomImplementation.cs (FellowOakDicom and Dicom namespaces): ClassUID
    # 1.3.6.1.4.1.30071.8, Version "fo-dicom {Major}.{Minor}.{Build}".
    Signature(
        "fo-dicom", ("1.3.6.1.4.1.30071.8",), "fo-dicom ", None,
        re.compile(r"fo-dicom ([0-9]+\.[0-9]+\.[0-9]+)"),
    ),
    # PixelMed com/pixelmed/dicom/VersionAndConstants.java: uidRoot
    # 1.3.6.1.4.1.5962 + toolkit 99 + implementation class 2; version name
    # "PIXELMEDJAVA" + softwareVersion "001" (a constant, not the release).
    Signature("PixelMed", ("1.3.6.1.4.1.5962.99.2",), "PIXELMEDJAVA"),
    # Odil src/odil/uid.{h,cpp}: uid_prefix "1.2.826.0.1.3680043.9.5560" + "0."
    # + major version (no dot between, so the sent UID starts ...9.55600.);
    # version name "Odil " + major version.
    Signature(
        "Odil", ("1.2.826.0.1.3680043.9.55600",), "Odil ", "1.2.826.0.1.3680043.9.55600",
        re.compile(r"Odil ([0-9]+)"),
    ),
    # pydicom uid.py: PYDICOM_IMPLEMENTATION_UID = root
    # 1.2.826.0.1.3680043.8.498. + "1"; dataset.py writes the version name
    # f"PYDICOM {version}" (pydicom 3.0.2 here).
    Signature(
        "pydicom", ("1.2.826.0.1.3680043.8.498.1",), "PYDICOM ", None,
        re.compile(r"PYDICOM ([0-9]+\.[0-9]+\.[0-9]+)"),
    ),
    # Horos Binaries/dcmtk-source/dcmdata/dcuid.h (its bundled DCMTK 3.5.4):
    # OFFIS_UID_ROOT changed to 1.2.276.0.7238010.5, version name "OSIRIX";
    # the UID's tail is the bundled DCMTK's version, not Horos's.
    Signature("Horos/OsiriX", ("1.2.276.0.7238010.5",), "OSIRIX"),
    # ClearCanvas Dicom/DicomImplementation.cs: ClassUID 1.3.6.1.4.1.25403.1.1.1,
    # Version "Dicom 0.1" (a constant too generic to match on its own).
    Signature("ClearCanvas", ("1.3.6.1.4.1.25403.1.1.1",)),
    # Conquest DICOM server, its UCDMC-derived version header:
    # IMPLEMENTATION_CLASS_STRING 1.2.826.0.1.3680043.2.135.1066.101 and
    # IMPLEMENTATION_VERSION_STRING "<version>/<platform>", e.g. "1.5.0/WIN32".
    Signature(
        "Conquest", ("1.2.826.0.1.3680043.2.135.1066.101",), None, None,
        re.compile(r"([0-9]+(?:\.[0-9]+)+)/[A-Z0-9]+"),
    ),
    # MergeCOM-3 sample mergecom.pro [ASSOC_PARMS]: IMPLEMENTATION_CLASS_UID
    # 2.16.840.1.113669.2.1.1, IMPLEMENTATION_VERSION MergeCOM3_310; products
    # built on it keep "MergeCOM3_<nnn>" with their own UID (e.g. MergeCOM3_410).
    Signature("Merge toolkit (MergeCOM-3)", ("2.16.840.1.113669.2.1.1",), "MergeCOM3_"),
    # DICOM-rs, lib.rs of its ul and object crates: IMPLEMENTATION_VERSION_NAME
    # "DICOM-rs <version>"; its 2.25 class UID changes between releases.
    Signature(
        "DICOM-rs", (), "DICOM-rs ", None, re.compile(r"DICOM-rs ([0-9]+(?:\.[0-9]+)+)"),
    ),
)


def underRoot(uid: str, root: str) -> bool:
    """
    Whether C{uid} is C{root} or lies below it. UID components are compared
    whole (PS3.5 §9.1: components are separated by "."), so C{1.2.34} is not
    below C{1.2.3}.
    """
    return uid == root or uid.startswith(root + ".")


def cleaned(value: object) -> str | None:
    """
    C{value} without trailing spaces and NULs, or C{None} when it is not a
    string, is empty, or is longer than L{MAX_INPUT_LENGTH} once stripped.
    """
    if not isinstance(value, str):
        return None
    value = value.rstrip(PADDING)
    if not value or len(value) > MAX_INPUT_LENGTH:
        return None
    return value


def byUID(uid: str) -> Signature | None:
    """The row whose longest root C{uid} lies under, if any."""
    best: tuple[int, Signature] | None = None
    for signature in SIGNATURES:
        for root in signature.uidRoots:
            if underRoot(uid, root) and (best is None or len(root) > best[0]):
                best = (len(root), signature)
    return None if best is None else best[1]


def byVersionName(name: str) -> Signature | None:
    """The row with the longest version-name prefix C{name} starts with."""
    best: tuple[int, Signature] | None = None
    for signature in SIGNATURES:
        prefix = signature.versionPrefix
        if prefix is None or not name.startswith(prefix):
            continue
        if best is None or len(prefix) > best[0]:
            best = (len(prefix), signature)
    return None if best is None else best[1]


def versionFromUID(signature: Signature, uid: str) -> str | None:
    """The components after the row's version root, when they are numbers."""
    root = signature.uidVersionRoot
    if root is None or not uid.startswith(root + "."):
        return None
    rest = uid[len(root) + 1 :]
    return rest if DOTTED_NUMBER.fullmatch(rest) else None


def versionFromName(signature: Signature, name: str | None) -> str | None:
    """The version the row's pattern reads from the whole version name."""
    if name is None or signature.versionPattern is None:
        return None
    match = signature.versionPattern.fullmatch(name)
    return None if match is None else ".".join(match.groups())


def recognizeProduct(implementationClassUID: str | None, versionName: str | None) -> Product | None:
    """
    The product an A-ASSOCIATE-RQ's Implementation Class UID (PS3.7 Annex
    D.3.3.2) and Implementation Version Name (PS3.7 Annex D.3.3.3) name, or
    C{None} when L{SIGNATURES} knows neither.

    Trailing spaces and NULs are removed first; a value still longer than
    L{MAX_INPUT_LENGTH} is ignored. The UID decides when it matches a row,
    since a registered UID root is unique to its owner (PS3.5 §9); the
    version name is used only when it does not. The version is read from
    the UID when the row puts it there, else from the version name.
    """
    uid = cleaned(implementationClassUID)
    name = cleaned(versionName)
    if uid is not None and (signature := byUID(uid)) is not None:
        version = versionFromUID(signature, uid) or versionFromName(signature, name)
        return Product(signature.name, version)
    if name is not None and (signature := byVersionName(name)) is not None:
        return Product(signature.name, versionFromName(signature, name))
    return None
