"""
Tests for L{dicomecho.observability.products}: naming the SCU product from
the Implementation Class UID and Implementation Version Name of an
A-ASSOCIATE-RQ, on values from each product's source, on bytes captured from
real peers (tests/fixtures) and on live requests from the installed DCMTK
echoscu and pynetdicom.
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomecho.observability.products import (
    MAX_INPUT_LENGTH,
    SIGNATURES,
    Product,
    Signature,
    recognizeProduct,
    underRoot,
)
from dicomecho.wire.pdu import AssociateRQ, decodePDU
from tests.support.helpers import SESSIONS, fixtureBytes, splitStream
from tests.support.peers import ECHOSCU_TIMEOUT_OPTIONS, requireEchoscu, requirePynetdicom

#: Seconds any wait in the live captures may take.
TIMEOUT = 5.0

NAMES = {signature.name for signature in SIGNATURES}


# --- reading the implementation values out of A-ASSOCIATE-RQ bytes -----------


def subItems(data: bytes, start: int, end: int) -> dict[int, bytes]:
    """
    The items between C{start} and C{end} (type, reserved, 2-byte length,
    value: PS3.8 §9.3.2), by type.
    """
    found: dict[int, bytes] = {}
    while start + 4 <= end:
        itemType, _, length = struct.unpack_from(">BBH", data, start)
        found.setdefault(itemType, data[start + 4 : start + 4 + length])
        start += 4 + length
    return found


def implementationValues(pdu: bytes) -> tuple[str | None, str | None]:
    """
    The implementation class UID (sub-item 0x52) and version name (0x55) of
    the user information item (0x50) of one whole A-ASSOCIATE-RQ PDU.
    """
    pduType, _, length = struct.unpack_from(">BBI", pdu)
    assert pduType == 0x01 and len(pdu) == 6 + length
    items = subItems(pdu, 6 + 68, len(pdu))  # after the 68-byte fixed part
    userInfo = items[0x50]
    values = subItems(userInfo, 0, len(userInfo))
    uid, name = values.get(0x52), values.get(0x55)
    return (
        None if uid is None else uid.decode("ascii"),
        None if name is None else name.decode("ascii"),
    )


def firstPDU(stream: bytes) -> bytes:
    (length,) = struct.unpack_from(">I", stream, 2)
    return stream[: 6 + length]


# --- every row, on values from its source -------------------------------------

ROWS = [
    # dcuid.h / libdcmnet.so.17 (DCMTK 3.6.7) and an older release.
    ("1.2.276.0.7230010.3.0.3.6.7", "OFFIS_DCMTK_367", "DCMTK", "3.6.7"),
    ("1.2.276.0.7230010.3.0.3.5.4", "OFFIS_DCMTK_354", "DCMTK", "3.5.4"),
    # pynetdicom/__init__.py (3.0.4), and 1.0.0 from pynetdicom issue #240.
    ("1.2.826.0.1.3680043.9.3811.3.0.4", "PYNETDICOM_304", "pynetdicom", "3.0.4"),
    ("1.2.826.0.1.3680043.9.3811.1.0.0", "PYNETDICOM_100", "pynetdicom", "1.0.0"),
    # gdcmFileMetaInformation.cxx with GDCM_VERSION 3.0.20.
    ("1.2.826.0.1.3680043.2.1143.107.104.103.115.3.0.20", "GDCM 3.0.20", "GDCM", "3.0.20"),
    # dcm4che3 Implementation.java, and dcm4che 1.4 file meta.
    ("1.2.40.0.13.1.3", "dcm4che-5.23.3", "dcm4che", "5.23.3"),
    ("1.2.40.0.13.1.1.1", "dcm4che-1.4.35", "dcm4che", "1.4.35"),
    # fo-dicom DicomImplementation.cs.
    ("1.3.6.1.4.1.30071.8", "fo-dicom 5.1.2", "fo-dicom", "5.1.2"),
    # PixelMed VersionAndConstants.java.
    ("1.3.6.1.4.1.5962.99.2", "PIXELMEDJAVA001", "PixelMed", None),
    # Odil uid.cpp with ODIL_MAJOR_VERSION 0.
    ("1.2.826.0.1.3680043.9.55600.0", "Odil 0", "Odil", "0"),
    # pydicom uid.py / dataset.py (3.0.2).
    ("1.2.826.0.1.3680043.8.498.1", "PYDICOM 3.0.2", "pydicom", "3.0.2"),
    # Horos's bundled dcuid.h.
    ("1.2.276.0.7238010.5.0.3.5.4", "OSIRIX", "Horos/OsiriX", None),
    # ClearCanvas DicomImplementation.cs (seen on the wire in dicomweb-pacs #47).
    ("1.3.6.1.4.1.25403.1.1.1", "Dicom 0.1", "ClearCanvas", None),
    # Conquest's version header.
    ("1.2.826.0.1.3680043.2.135.1066.101", "1.5.0/WIN32", "Conquest", "1.5.0"),
    # MergeCOM-3's sample mergecom.pro, and a vendor UID with Merge's name.
    ("2.16.840.1.113669.2.1.1", "MergeCOM3_310", "Merge toolkit (MergeCOM-3)", None),
    ("1.2.246.352.70.2.1.120.1", "MergeCOM3_410", "Merge toolkit (MergeCOM-3)", None),
    # DICOM-rs ul/src/lib.rs.
    ("2.25.262086406829110419931297894772577063974", "DICOM-rs 0.8.1", "DICOM-rs", "0.8.1"),
]


@pytest.mark.parametrize("uid, name, product, version", ROWS)
def test_tableRow(uid: str, name: str, product: str, version: str | None) -> None:
    """
    Each product's own values name it, with the version they carry.
    """
    assert recognizeProduct(uid, name) == Product(product, version)


def test_everyRowIsTested() -> None:
    """
    L{ROWS} covers every row of the table, and no name appears twice.
    """
    assert {row[2] for row in ROWS} == NAMES
    assert len(NAMES) == len(SIGNATURES)


@pytest.mark.parametrize("signature", SIGNATURES, ids=lambda s: s.name)
def test_eachSignatureAlone(signature: Signature) -> None:
    """
    Every root alone, and every prefix followed by text that is no version,
    names its own row.
    """
    for root in signature.uidRoots:
        assert recognizeProduct(root, None) == Product(signature.name, None)
    if signature.versionPrefix is not None:
        found = recognizeProduct(None, signature.versionPrefix + "X")
        assert found is not None and found.name == signature.name


def test_versionFromEitherValue() -> None:
    """
    The version comes from the UID when the row puts it there, else from
    the version name; a name only match reads the name.
    """
    assert recognizeProduct("1.2.276.0.7230010.3.0.3.6.7", None) == Product("DCMTK", "3.6.7")
    assert recognizeProduct("1.2.276.0.7230010.3", "OFFIS_DCMTK_365") == Product("DCMTK", "3.6.5")
    assert recognizeProduct(None, "OFFIS_DCMTK_367") == Product("DCMTK", "3.6.7")
    assert recognizeProduct("1.9.9", "PYNETDICOM_304") == Product("pynetdicom", "3.0.4")
    assert recognizeProduct(None, "dcm4che-5.23.3-SNAP") == Product("dcm4che", "5.23.3")
    assert recognizeProduct(None, "OFFIS_DCMTK_3670") == Product("DCMTK", None)
    assert recognizeProduct("1.2.276.0.7230010.3.1.1", None) == Product("DCMTK", None)


def test_uidWinsOverVersionName() -> None:
    """
    A UID that matches decides, even when the version name names another
    product, whose version is then not used.
    """
    assert recognizeProduct("1.2.826.0.1.3680043.9.3811.3.0.4", "OFFIS_DCMTK_367") == Product(
        "pynetdicom", "3.0.4"
    )
    assert recognizeProduct("1.3.6.1.4.1.30071.8", "OFFIS_DCMTK_367") == Product("fo-dicom", None)


# --- component boundaries, padding, absent and hostile values -----------------


def test_rootBoundary() -> None:
    """
    A root matches only at a component boundary.
    """
    assert underRoot("1.2.276.0.7230010", "1.2.276.0.7230010")
    assert underRoot("1.2.276.0.7230010.3", "1.2.276.0.7230010")
    assert not underRoot("1.2.276.0.72300101", "1.2.276.0.7230010")
    assert not underRoot("1.2.276.0.723001", "1.2.276.0.7230010")
    assert recognizeProduct("1.2.276.0.72300101", None) is None
    assert recognizeProduct("1.2.276.0.7230010.33.0.3.6.7", None) is None
    assert recognizeProduct("1.3.6.1.4.1.30071.80", None) is None
    assert recognizeProduct("1.2.826.0.1.3680043.8.498.12345", None) is None
    assert recognizeProduct("1.2.826.0.1.3680043.9.5560.0", None) is None


@pytest.mark.parametrize("pad", ["\x00", " ", "  ", "\x00 \x00", " \x00" * 20])
def test_trailingPadding(pad: str) -> None:
    """
    Trailing spaces and NULs are removed before matching, even when the
    padding alone is longer than a UID.
    """
    expected = Product("DCMTK", "3.6.7")
    assert recognizeProduct("1.2.276.0.7230010.3.0.3.6.7" + pad, None) == expected
    assert recognizeProduct(None, "OFFIS_DCMTK_367" + pad) == expected
    assert recognizeProduct(pad, pad) is None


def test_leadingPaddingIsNotRemoved() -> None:
    assert recognizeProduct(" 1.2.276.0.7230010.3.0.3.6.7", " OFFIS_DCMTK_367") is None


def test_absentValues() -> None:
    assert recognizeProduct(None, None) is None
    assert recognizeProduct("", "") is None
    assert recognizeProduct("1.3.6.1.4.1.30071.8", None) == Product("fo-dicom", None)
    assert recognizeProduct(None, "fo-dicom 4.0.7") == Product("fo-dicom", "4.0.7")


def test_overLongValuesAreIgnored() -> None:
    """
    A value longer than L{MAX_INPUT_LENGTH} after stripping is not looked
    at; the other value still counts.
    """
    longUID = "1.2.276.0.7230010.3.0." + "1." * 30 + "1"
    assert len(longUID) > MAX_INPUT_LENGTH
    assert recognizeProduct(longUID, None) is None
    assert recognizeProduct(longUID, "PYNETDICOM_304") == Product("pynetdicom", "3.0.4")
    longName = "OFFIS_DCMTK_367" + "x" * MAX_INPUT_LENGTH
    assert recognizeProduct(None, longName) is None
    atLimit = "1.2.40.0.13.1.3." + "9" * (MAX_INPUT_LENGTH - 16)
    assert len(atLimit) == MAX_INPUT_LENGTH
    assert recognizeProduct(atLimit, None) == Product("dcm4che", None)
    assert recognizeProduct("1.2.276.0.7230010.3" + "0" * 1_000_000, None) is None


def test_unknown() -> None:
    assert recognizeProduct("1.2.3.4", "SOMETHING_10") is None
    assert recognizeProduct("1.2.840.10008.1.1", "offis_dcmtk_367") is None  # case-sensitive
    assert recognizeProduct("not a uid", "Dicom 0.1") is None


def test_nonDigitsNeverMakeAVersion() -> None:
    """
    Versions hold ASCII digits and dots only: other Unicode digits and
    empty components give no version.
    """
    assert recognizeProduct("1.2.276.0.7230010.3.0.\u0663.6.7", None) == Product("DCMTK", None)
    assert recognizeProduct("1.2.276.0.7230010.3.0.3..7", None) == Product("DCMTK", None)
    assert recognizeProduct(None, "OFFIS_DCMTK_\u0663\u0666\u0667") == Product("DCMTK", None)


VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")
uidLike = st.one_of(
    st.none(),
    st.text(),
    st.text(alphabet="0123456789. \x00", max_size=80),
    st.builds(
        lambda root, tail: root + tail,
        st.sampled_from([root for s in SIGNATURES for root in s.uidRoots]),
        st.text(alphabet="0123456789.\x00 x", max_size=70),
    ),
)
nameLike = st.one_of(
    st.none(),
    st.text(),
    st.builds(
        lambda prefix, tail: prefix + tail,
        st.sampled_from([s.versionPrefix for s in SIGNATURES if s.versionPrefix] + ["1.5"]),
        st.text(max_size=70),
    ),
)


@given(uidLike, nameLike)
def test_neverRaisesAndOnlyNamesTheTable(uid: str | None, name: str | None) -> None:
    """
    Any text gives C{None} or a product named in the table, whose version,
    if any, is ASCII digits and dots.
    """
    found = recognizeProduct(uid, name)
    assert found is None or isinstance(found, Product)
    if found is not None:
        assert found.name in NAMES
        assert found.version is None or VERSION.fullmatch(found.version)


# --- bytes captured from real peers --------------------------------------------


@pytest.mark.parametrize("session", SESSIONS)
def test_capturedRequests(session: str) -> None:
    """
    The first PDU each real SCU sent (tests/fixtures) is recognised as that
    SCU, with the version the fixtures README records.
    """
    pdu = firstPDU(fixtureBytes(session, "c2s"))
    uid, name = implementationValues(pdu)
    expected = {
        "dcmtk": Product("DCMTK", "3.6.7"),
        "pynetdicom": Product("pynetdicom", "3.0.4"),
    }[session.split("_")[0]]
    assert recognizeProduct(uid, name) == expected


@pytest.mark.parametrize("session", ["dcmtk_echoscu_default", "pynetdicom_echoscu_default"])
def test_parserAgreesWithWireLayer(session: str) -> None:
    """
    This module's small parser reads the same values as dicomecho's codec.
    """
    stream = fixtureBytes(session, "c2s")
    rq = decodePDU(*splitStream(stream)[0])
    assert isinstance(rq, AssociateRQ) and rq.userInformation is not None
    info = rq.userInformation
    assert implementationValues(firstPDU(stream)) == (
        info.implementationClassUID,
        info.implementationVersionName,
    )


# --- live requests from the installed peers ------------------------------------


def receiveExactly(connection: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        assert chunk, "peer closed before sending a whole PDU"
        data += chunk
    return data


def acceptFirstPDU(server: socket.socket) -> bytes:
    """
    Accept one connection on C{server}, read its first PDU, close it.
    """
    connection, _ = server.accept()
    with connection:
        connection.settimeout(TIMEOUT)
        header = receiveExactly(connection, 6)
        (length,) = struct.unpack(">I", header[2:])
        assert length <= 65536
        return header + receiveExactly(connection, length)


def listener() -> socket.socket:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(TIMEOUT)
    return server


@pytest.mark.peer
def test_liveEchoscu() -> None:
    """
    The installed DCMTK echoscu's A-ASSOCIATE-RQ names DCMTK with the
    version echoscu reports for itself.
    """
    echoscu = requireEchoscu()
    reported = subprocess.run(
        [echoscu, "--version"], capture_output=True, text=True, timeout=TIMEOUT
    )
    installed = re.search(r"echoscu v([0-9]+\.[0-9]+\.[0-9]+)", reported.stdout + reported.stderr)
    assert installed is not None
    with listener() as server:
        port = server.getsockname()[1]
        command = [echoscu, *ECHOSCU_TIMEOUT_OPTIONS, "127.0.0.1", str(port)]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            pdu = acceptFirstPDU(server)
        finally:
            try:
                process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=TIMEOUT)
    assert recognizeProduct(*implementationValues(pdu)) == Product("DCMTK", installed[1])
    assert installed[1] == "3.6.7"


@pytest.mark.peer
def test_livePynetdicom() -> None:
    """
    pynetdicom's AE, associating with a socket that reads one PDU, names
    pynetdicom with its own version.
    """
    pynetdicom = requirePynetdicom()
    ae = pynetdicom.AE()
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.network_timeout = ae.connection_timeout = TIMEOUT
    with listener() as server:
        port = server.getsockname()[1]
        client = threading.Thread(
            target=lambda: ae.associate("127.0.0.1", port), daemon=True
        )
        client.start()
        try:
            pdu = acceptFirstPDU(server)
        finally:
            client.join(TIMEOUT)
            ae.shutdown()
    assert not client.is_alive()
    version = ".".join(pynetdicom.__version__.split(".")[:3])
    assert recognizeProduct(*implementationValues(pdu)) == Product("pynetdicom", version)
    assert version == "3.0.4"
