"""
Access control and user identity against running servers
(C{python -m dicomecho}) with real peers: DCMTK's echoscu and storescu
(C{-usr}/C{-pwd}), and pynetdicom (source address via C{bind_address},
user identity items). Every refusal leaves one log line and a server that
still serves.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.peers import closePynetdicomRejectRace, requireEchoscu, requirePynetdicom
from tests.support.processes import ROOT, TIMEOUT, Server, freePort, servers, start, waitListening  # noqa: F401 (fixture)
from tests.support.peers import echoscu

pytestmark = pytest.mark.peer

PASSCODE = "Corr3ct-Horse-\u00e9"


def runServer(servers: list[Server], *args: str) -> tuple[Server, int]:
    server = start(servers, [sys.executable, "-m", "dicomecho", *args])
    return server, server.port()


#: Seconds pynetdicom waits for anything (ACSE, DIMSE, network); well
#: above the 1 s the failure throttle holds the one delayed rejection of
#: these tests.
PEER_TIMEOUT = 10.0


@pytest.fixture
def pynetdicomGated(monkeypatch: Any) -> None:
    """
    pynetdicom with its race against a fast rejection closed
    (L{closePynetdicomRejectRace}): without it, a loaded machine turned
    about one refused association in 13 into a connection failure.
    """
    requirePynetdicom()
    closePynetdicomRejectRace(monkeypatch)


def pynetdicomAssociate(port: int, *, calling: str = "PYSCU", source: str = "127.0.0.1", identity: Any = None) -> Any:
    """
    Associate with pynetdicom (use with the L{pynetdicomGated} fixture).
    """
    pynetdicom = requirePynetdicom()
    ae = pynetdicom.AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = PEER_TIMEOUT
    ae.add_requested_context("1.2.840.10008.1.1")
    return ae.associate(
        "127.0.0.1", port, ae_title="ECHOSCP", bind_address=(source, 0),
        ext_neg=[identity] if identity is not None else None,
    )


def echoStatus(assoc: Any) -> int | None:
    try:
        if not assoc.is_established:
            return None
        status = assoc.send_c_echo()
        return int(status.Status) if status else None
    finally:
        if assoc.is_established:
            assoc.release()


def userIdentity(kind: int, user: str, passcode: str = "", positive: bool = False) -> Any:
    from pynetdicom.pdu_primitives import UserIdentityNegotiation

    item = UserIdentityNegotiation()
    item.user_identity_type = kind
    item.positive_response_requested = positive
    item.primary_field = user.encode()
    if kind == 2:
        item.secondary_field = passcode.encode()
    return item


def count(server: Server, pattern: str) -> int:
    regex = re.compile(pattern)
    return sum(1 for line in server.lines if regex.search(line))


def test_networksAndPeers(servers: list[Server], pynetdicomGated: None) -> None:
    """
    --allow-network 127.0.0.1/32 --allow-peer CT1@127.0.0.2: DCMTK from
    127.0.0.1 is served; pynetdicom from 127.0.0.3 is closed on connect
    (one W: line); as CT1 from 127.0.0.2 it is served, as CT2 rejected
    (1, 1, 3). The server serves on afterwards.
    """
    server, port = runServer(
        servers, "--allow-network", "127.0.0.1/32", "--allow-peer", "CT1@127.0.0.2", "-v", "0"
    )
    assert echoscu(port).returncode == 0
    outsider = pynetdicomAssociate(port, source="127.0.0.3")
    assert not outsider.is_established and not outsider.is_rejected
    server.waitFor(r"^W: Refused connection from 127\.0\.0\.3:\d+: source address not allowed")
    assert echoStatus(pynetdicomAssociate(port, calling="CT1", source="127.0.0.2")) == 0
    other = pynetdicomAssociate(port, calling="CT2", source="127.0.0.2")
    assert other.is_rejected
    rj = other.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (1, 1, 3)
    assert echoscu(port).returncode == 0
    assert count(server, r"Refused connection") == 1
    assert count(server, r"^I: Rejecting Association") == 1
    server.stop()


def test_dcmtkRefusedByNetwork(servers: list[Server]) -> None:
    """
    DCMTK's echoscu from a source outside --allow-network fails (the
    connection is closed before any A-ASSOCIATE-AC).
    """
    server, port = runServer(servers, "--allow-network", "10.0.0.0/8", "-v", "0")
    result = echoscu(port)
    assert result.returncode != 0
    server.waitFor(r"^W: Refused connection from 127\.0\.0\.1:\d+")
    server.stop()


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    path = tmp_path / "users.txt"
    for args, stdin in ((["alice"], PASSCODE), (["--no-passcode", "modality"], None)):
        extra = ["--passcode-stdin"] if stdin is not None else []
        done = subprocess.run(
            [sys.executable, "-m", "dicomecho.passwd", *extra, str(path), *args],
            input=(stdin + "\n") if stdin is not None else None,
            capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
    return path


def test_userIdentityWithPynetdicom(servers: list[Server], credentials: Path, pynetdicomGated: None) -> None:
    """
    --user-identity required: username+passcode and username-only users
    are served (with an empty 0x59 response when asked for one); a wrong
    passcode, an unknown user, a missing identity and an unsupported type
    are rejected (1, 2, 1) with a reason; the fourth failed check (the
    unsupported type; a missing identity is not checked, so not counted)
    is answered 1 s late, and pynetdicom still reports it rejected. The
    passcodes never show, even at debug level.
    """
    server, port = runServer(
        servers, "-d", "--user-identity", "required", "--credentials", str(credentials), "0"
    )
    good = pynetdicomAssociate(port, identity=userIdentity(2, "alice", PASSCODE, positive=True))
    assert good.is_established
    assert good.acceptor.user_identity is not None
    assert good.acceptor.user_identity.server_response == b""
    assert echoStatus(good) == 0
    assert echoStatus(pynetdicomAssociate(port, identity=userIdentity(1, "modality"))) == 0
    refused = [
        userIdentity(2, "alice", "not-" + PASSCODE),
        userIdentity(2, "mallory", PASSCODE),
        userIdentity(1, "alice"),
        None,
        userIdentity(5, "eyJhbGciOi"),
    ]
    for identity in refused:
        assoc = pynetdicomAssociate(port, identity=identity)
        assert assoc.is_rejected
        rj = assoc.acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (1, 2, 1)
    assert echoStatus(pynetdicomAssociate(port, identity=userIdentity(2, "alice", PASSCODE))) == 0
    server.stop()
    text = "\n".join(server.lines)
    assert count(server, r"^I: Rejecting Association") == len(refused)
    assert count(server, r"^W: 4 failed user identity checks from 127\.0\.0\.1: answering in 1(\.0)? s$") == 1
    assert "Username: [alice]" in text
    assert PASSCODE not in text and "Corr3ct" not in text


def test_userIdentityWithDCMTK(servers: list[Server], credentials: Path, tmp_path: Path) -> None:
    """
    DCMTK's storescu (-usr/-pwd): the right passcode gets the association
    accepted (and then nothing to store on, as we serve Verification only),
    a wrong one gets A-ASSOCIATE-RJ (1, 2, 1).
    """
    requireEchoscu()
    storescu = "/usr/bin/storescu"
    if not Path(storescu).exists():
        pytest.fail("DCMTK storescu is missing")
    dataset = tmp_path / "ct.dcm"
    _writeCT(dataset)
    server, port = runServer(
        servers, "-v", "--user-identity", "required", "--credentials", str(credentials), "0"
    )

    def store(passcode: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [storescu, "-v", "-aet", "CT1", "-aec", "ECHOSCP", "-usr", "alice", "-pwd", passcode,
             "127.0.0.1", str(port), str(dataset)],
            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
        )

    accepted = store(PASSCODE)
    assert "No Acceptable Presentation Contexts" in accepted.stdout + accepted.stderr
    server.waitFor(r"^I: Accepting Association")
    rejected = store("wrong")
    output = rejected.stdout + rejected.stderr
    assert rejected.returncode != 0
    assert "Association Rejected" in output
    assert "Result: Rejected Permanent, Source: Service Provider (ACSE Related)" in output
    assert "Reason: No Reason" in output
    server.stop()
    assert PASSCODE not in "\n".join(server.lines)


def _writeCT(path: Path) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Test^Security"
    ds.save_as(str(path), enforce_file_format=True)


@pytest.mark.parametrize(
    "args, warned",
    [
        ([], True),
        (["--bind-address", "127.0.0.1"], False),
        (["--allow-network", "10.0.0.0/8"], False),
        (["--allow-peer", "CT1@10.0.0.0/8"], False),
        (["-q"], False),
    ],
)
def test_warningWhenOpen(servers: list[Server], args: list[str], warned: bool) -> None:
    """
    Listening beyond loopback with neither TLS nor an allow-list prints a
    W: line even at the default (error) level; -q silences it.
    """
    port = freePort()
    server = start(servers, [sys.executable, "-m", "dicomecho", *args, str(port)])
    waitListening(port, server)
    server.stop()
    found = count(server, r"^W: Listening on 0\.0\.0\.0:\d+ without TLS or an allow-list")
    assert found == (1 if warned else 0), server.lines


@pytest.mark.parametrize(
    "args, message",
    [
        (["--allow-network", "10.0.0.0/33"], "not an IPv4 or IPv6 network"),
        (["--allow-peer", "CT1"], "expected AET@CIDR"),
        (["--allow-peer", "@10.0.0.0/8"], "empty or all spaces"),
        (["--user-identity", "required"], "needs --credentials"),
        (["--credentials", "users.txt"], "needs --user-identity"),
        (["--user-identity", "sometimes"], "not one of ignore, optional, required"),
        (["--user-identity", "optional", "--credentials", "/nonexistent/users.txt"], "nonexistent"),
        (["--tls-key", "k.pem"], "--tls-key and --tls-cert go together"),
        (["--tls-key", "k.pem", "--tls-cert", "c.pem", "--tls-client-cert", "optional"], "needs --tls-ca"),
    ],
)
def test_usageErrors(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dicomecho", *args, "0"],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert message in done.stderr
