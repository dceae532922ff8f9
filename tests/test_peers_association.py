"""
Whole associations between real DICOM peers and a running L{DICOMServerFactory}.

Each test talks over loopback to dicomecho's Twisted server, started by
C{tests.support.serve} in a subprocess, with DCMTK's C{echoscu} or pynetdicom as the
SCU. Every test checks both ends: what the peer reports (its exit status and
output, or its API) and the C{EVENT} lines the server logged for that
association. One server with the default configuration is shared by the
module; servers with other options are started only where the options
differ. Every wait is bounded: subprocesses run with timeouts, the server's
startup and shutdown are timed, and a server that does not stop is killed
by its PID.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import pytest

from dicomecho.association.negotiation import ALL_TRANSFER_SYNTAXES
from tests.support.peers import closePynetdicomRejectRace, requireEchoscu, requirePynetdicom, runEchoscu

ROOT = Path(__file__).resolve().parent.parent

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

#: Seconds the server subprocess may take to print C{PORT}.
STARTUP_TIMEOUT = 20.0

#: Seconds the server may take to exit once its stdin is closed.
STOP_TIMEOUT = 10.0

#: Seconds to wait for an expected EVENT line (or a socket state).
EVENT_TIMEOUT = 10.0

#: pynetdicom's ACSE, network, DIMSE and connection timeouts.
PYNETDICOM_TIMEOUT = 10

#: The event that ends every connection in the server's log: it is logged
#: when the connection closes, after any release, abort or rejection.
SUMMARY = "association-summary"


# --- the server subprocess ---------------------------------------------------


class Event(NamedTuple):
    """
    One C{EVENT <dicomEvent> <json>} line of C{tests.support.serve}.
    """

    name: str
    fields: dict[str, Any]

    @property
    def peer(self) -> str | None:
        return self.fields.get("peer")


class ServerProcess:
    """
    A L{DICOMServerFactory} on 127.0.0.1 in a C{python -m tests.support.serve}
    subprocess. A reader thread collects its output; L{events} returns the
    EVENT lines seen so far.

    @ivar port: the TCP port the server listens on.
    @ivar options: the factory keyword arguments, as given to C{tests.support.serve}.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self._condition = threading.Condition()
        self._lines: list[str] = []
        self._events: list[Event] = []
        #: EVENT lines that could not be parsed (there should be none).
        self.corrupt: list[str] = []
        self._port: int | None = None
        self._eof = False
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.serve", json.dumps(options)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(
            target=self._read, name=f"serve:{self._process.pid}", daemon=True
        )
        self._reader.start()
        try:
            self.port = self._waitForPort()
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            line = line.rstrip("\n")
            with self._condition:
                self._lines.append(line)
                if line.startswith("PORT ") and self._port is None:
                    self._port = int(line.split()[1])
                elif line.startswith("EVENT "):
                    try:
                        _, name, payload = line.split(" ", 2)
                        self._events.append(Event(name, json.loads(payload)))
                    except ValueError:
                        # A cut line must fail the test, not stop this thread.
                        self.corrupt.append(line)
                self._condition.notify_all()
        with self._condition:
            self._eof = True
            self._condition.notify_all()

    def _waitForPort(self) -> int:
        with self._condition:
            self._condition.wait_for(
                lambda: self._port is not None or self._eof, STARTUP_TIMEOUT
            )
            port = self._port
        if port is None:
            raise AssertionError(
                f"tests.support.serve {self.options!r} printed no PORT line within "
                f"{STARTUP_TIMEOUT}s:\n{self.output()}"
            )
        return port

    def output(self) -> str:
        """
        Everything the server printed so far (stdout and stderr).
        """
        with self._condition:
            return "\n".join(self._lines)

    def events(self, since: int = 0) -> list[Event]:
        """
        The EVENT lines collected so far, from index C{since}.
        """
        with self._condition:
            return self._events[since:]

    def mark(self) -> int:
        """
        The number of EVENT lines so far, for L{events}' C{since}.
        """
        with self._condition:
            return len(self._events)

    def waitFor(
        self,
        predicate: Callable[[list[Event]], bool],
        what: str,
        timeout: float = EVENT_TIMEOUT,
    ) -> list[Event]:
        """
        Wait until C{predicate(all events so far)} holds; return the events.

        @raise AssertionError: after C{timeout} seconds, naming C{what}.
        """
        with self._condition:
            done = self._condition.wait_for(
                lambda: predicate(self._events), timeout
            )
            events = list(self._events)
        if not done:
            raise AssertionError(
                f"server never logged {what} within {timeout}s:\n{self.output()}"
            )
        return events

    def associationEvents(self, peer: str) -> list[Event]:
        """
        Wait until the connection of C{peer} (the C{host:port} the server
        sees) has closed, then return that peer's events before its
        association-summary.
        """
        events = self.waitFor(
            lambda events: any(e.peer == peer and e.name == SUMMARY for e in events),
            f"the end of the connection from {peer}",
        )
        return [e for e in events if e.peer == peer and e.name != SUMMARY]

    def onlyAssociationSince(self, mark: int) -> list[Event]:
        """
        The events of the one association begun after C{mark}, once it has
        ended (for peers whose local port we cannot learn, like echoscu).
        The association is the one whose A-ASSOCIATE-RQ is the first after
        C{mark}; events of earlier connections that arrive late (such as
        their association-summary, logged when they close) are left out.
        """
        events = self.waitFor(
            lambda events: any(e.name == "associate-rq" for e in events[mark:]),
            f"an A-ASSOCIATE-RQ after event {mark}",
        )
        requests = [e for e in events[mark:] if e.name == "associate-rq"]
        assert len({e.peer for e in requests}) == 1, requests
        return self.associationEvents(requests[0].peer)

    def failures(self) -> list[str]:
        """
        Output lines that tell of a failure in the server (a logged failure,
        a traceback), not of a peer's error.
        """
        with self._condition:
            return [
                line
                for line in self._lines
                if line.startswith(("FAILURE", "Traceback"))
            ] + [f"cut EVENT line: {line}" for line in self.corrupt]

    def stop(self) -> None:
        """
        Close the server's stdin and wait for it to exit; kill it by its PID
        if it does not within L{STOP_TIMEOUT}.
        """
        process = self._process
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def runningServer(**options: Any) -> Iterator[ServerProcess]:
    """
    Run a server with these factory options for the duration of the block;
    afterwards, fail if it logged a failure of its own.
    """
    server = ServerProcess(options)
    try:
        yield server
    finally:
        server.stop()
    assert not server.failures(), server.output()


@pytest.fixture(scope="module")
def defaultServer() -> Iterator[ServerProcess]:
    """
    One server with the default configuration, shared by the module.
    """
    with runningServer() as server:
        yield server


@pytest.fixture(scope="module")
def preferLittleServer() -> Iterator[ServerProcess]:
    """
    A server preferring Explicit VR Little Endian (echoscp C{-xe}).
    """
    with runningServer(transferSyntaxes="PREFER_LITTLE") as server:
        yield server


@pytest.fixture(scope="module")
def implicitOnlyServer() -> Iterator[ServerProcess]:
    """
    A server accepting Implicit VR Little Endian only (echoscp C{-xi}).
    """
    with runningServer(transferSyntaxes="IMPLICIT_ONLY") as server:
        yield server


@pytest.fixture(scope="module")
def calledAEServer() -> Iterator[ServerProcess]:
    """
    A server that rejects requests not addressed to ECHOSCP.
    """
    with runningServer(aeTitle="ECHOSCP", requireCalledAETitle=True) as server:
        yield server


@pytest.fixture(scope="module")
def callingAEServer() -> Iterator[ServerProcess]:
    """
    A server that accepts the calling AE title GOOD only.
    """
    with runningServer(allowedCallingAETitles=["GOOD"]) as server:
        yield server


@pytest.fixture
def twoAssociationServer() -> Iterator[ServerProcess]:
    """
    A fresh server allowing two concurrent associations (its count is the
    test's state, so it is not shared).
    """
    with runningServer(maxAssociations=2) as server:
        yield server


# --- DCMTK echoscu -----------------------------------------------------------


@pytest.fixture
def echoscu() -> str:
    """
    The path of DCMTK's echoscu.
    """
    return requireEchoscu()


def dcmtkBlock(output: str, name: str) -> str:
    """
    DCMTK's debug dump of an A-ASSOCIATE-RQ or -AC (C{name}), between its
    BEGIN and END markers.
    """
    start = output.index(f"BEGIN {name}")
    return output[start : output.index(f"END {name}", start)]


def dcmtkContexts(block: str) -> list[tuple[int, str, list[str]]]:
    """
    The presentation contexts of a DCMTK dump: (ID, state, transfer syntax
    names), where the names are those listed as proposed (RQ) or the one
    accepted (AC).
    """
    contexts: list[tuple[int, str, list[str]]] = []
    for line in block.splitlines():
        text = line[2:].strip() if line.startswith("D:") else line.strip()
        found = re.match(r"Context ID:\s+(\d+) \((\w+)\)", text)
        if found:
            contexts.append((int(found[1]), found[2], []))
            continue
        found = re.match(r"Accepted Transfer Syntax:\s+(\S+)", text)
        if found and contexts:
            contexts[-1][2].append(found[1])
            continue
        if re.match(r"=[A-Za-z]", text) and contexts:
            contexts[-1][2].append(text)
    return contexts


def names(events: Sequence[Event]) -> list[str]:
    return [e.name for e in events]


#: The server's events for an association that echoes once and releases.
ECHOED = [
    "associate-rq",
    "association-accepted",
    "dimse-received",
    "association-released",
]


@pytest.mark.peer
def test_echoscuPlain(echoscu, defaultServer):
    """
    A plain C{echoscu -aet MYSCU -aec ECHOSCP} associates, gets a
    successful C-ECHO response and releases; the server logs exactly that
    association: request, acceptance, one C-ECHO-RQ (message ID 1, context
    1), release.
    """
    mark = defaultServer.mark()
    status, output = runEchoscu(echoscu, defaultServer.port)

    assert status == 0, output
    assert "Association Accepted (Max Send PDV: 16370)" in output, output
    assert "Received Echo Response (Success)" in output, output
    assert "Releasing Association" in output, output
    events = defaultServer.onlyAssociationSince(mark)
    assert names(events) == ECHOED, events
    echo = events[2].fields
    assert (echo["commandField"], echo["messageID"], echo["contextID"]) == (
        0x0030,
        1,
        1,
    )


@pytest.mark.peer
@pytest.mark.parametrize("count", [1, 2, 3, 10, 38])
def test_echoscuProposedTransferSyntaxes(echoscu, defaultServer, count):
    """
    With C{--propose-ts N} echoscu proposes N transfer syntaxes on its one
    context, Implicit VR Little Endian first; under the default preference
    the server accepts Implicit VR Little Endian whatever else is offered
    (echoscu's debug dump of our AC says so) and the echo succeeds.
    """
    mark = defaultServer.mark()
    status, output = runEchoscu(
        echoscu, defaultServer.port, "--propose-ts", str(count), verbosity="-d"
    )

    assert status == 0, output
    ((contextID, state, proposed),) = dcmtkContexts(
        dcmtkBlock(output, "A-ASSOCIATE-RQ")
    )
    assert (contextID, state) == (1, "Proposed")
    assert len(proposed) == count, proposed
    assert proposed[0] == "=LittleEndianImplicit"
    assert dcmtkContexts(dcmtkBlock(output, "A-ASSOCIATE-AC")) == [
        (1, "Accepted", ["=LittleEndianImplicit"])
    ]
    assert "Received Echo Response (Success)" in output, output
    assert names(defaultServer.onlyAssociationSince(mark)) == ECHOED


@pytest.mark.peer
def test_echoscuRepeat50(echoscu, defaultServer):
    """
    C{--repeat 50} sends 50 C-ECHO-RQs on one association; all 50 succeed,
    and the server logs 50 dimse-received events, message IDs 1 to 50, then
    the release.

    (echoscu takes about 2 s here: DCMTK leaves Nagle's algorithm on by
    default, and each request waits for a delayed ACK; with C{TCP_NODELAY=1}
    in its environment the 50 echoes take a few ms.)
    """
    mark = defaultServer.mark()
    status, output = runEchoscu(echoscu, defaultServer.port, "--repeat", "50")

    assert status == 0, output
    assert output.count("Received Echo Response (Success)") == 50, output
    assert output.count("Sending Echo Request") == 50, output
    events = defaultServer.onlyAssociationSince(mark)
    assert names(events) == (
        ["associate-rq", "association-accepted"]
        + ["dimse-received"] * 50
        + ["association-released"]
    )
    assert [e.fields["messageID"] for e in events[2:-1]] == list(range(1, 51))


@pytest.mark.peer
def test_echoscuMaxPDU4096(echoscu, defaultServer):
    """
    C{--max-pdu 4096} (DCMTK's smallest; the issue's C{-pdu}) is offered in
    echoscu's request, and the association and echo succeed. The C-ECHO-RSP
    is far shorter than 4096 bytes, so this does not fragment it; see
    L{test_pynetdicomTinyMaximumPDUFragments}.
    """
    mark = defaultServer.mark()
    status, output = runEchoscu(
        echoscu, defaultServer.port, "--max-pdu", "4096", verbosity="-d"
    )

    assert status == 0, output
    assert re.search(
        r"Our Max PDU Receive Size:\s+4096\n", dcmtkBlock(output, "A-ASSOCIATE-AC")
    ), output
    assert "Received Echo Response (Success)" in output, output
    assert names(defaultServer.onlyAssociationSince(mark)) == ECHOED


@pytest.mark.peer
def test_echoscuManyPresentationContexts(echoscu, defaultServer):
    """
    echoscu's largest request, C{--propose-pc 128 --propose-ts 16}: all 128
    Verification contexts (IDs 1 to 255) are accepted with Implicit VR
    Little Endian, and the echo on one of them succeeds.
    """
    mark = defaultServer.mark()
    status, output = runEchoscu(
        echoscu,
        defaultServer.port,
        "--propose-pc",
        "128",
        "--propose-ts",
        "16",
        verbosity="-d",
    )

    assert status == 0, output
    contexts = dcmtkContexts(dcmtkBlock(output, "A-ASSOCIATE-AC"))
    assert contexts == [
        (contextID, "Accepted", ["=LittleEndianImplicit"])
        for contextID in range(1, 256, 2)
    ]
    assert "Received Echo Response (Success)" in output, output
    events = defaultServer.onlyAssociationSince(mark)
    assert names(events) == ECHOED
    assert events[2].fields["contextID"] in range(1, 256, 2)


@pytest.mark.peer
def test_echoscuAbort(echoscu, defaultServer):
    """
    C{echoscu --abort} echoes, then ends with an A-ABORT instead of a
    release; the server logs association-aborted with source 0 (service
    user).
    """
    mark = defaultServer.mark()
    status, output = runEchoscu(echoscu, defaultServer.port, "--abort")

    assert status == 0, output
    assert "Received Echo Response (Success)" in output, output
    assert "Aborting Association" in output, output
    events = defaultServer.onlyAssociationSince(mark)
    assert names(events) == [
        "associate-rq",
        "association-accepted",
        "dimse-received",
        "association-aborted",
    ]
    assert events[-1].fields["source"] == 0


@pytest.mark.peer
@pytest.mark.parametrize(
    "count, accepted",
    [
        (1, "=LittleEndianImplicit"),
        (2, "=LittleEndianExplicit"),
        (38, "=LittleEndianExplicit"),
    ],
)
def test_echoscuPreferLittle(echoscu, preferLittleServer, count, accepted):
    """
    With C{transferSyntaxes=PREFER_LITTLE} (echoscp C{-xe}), Explicit VR
    Little Endian is chosen whenever echoscu proposes it alongside Implicit
    (C{--propose-ts 2} and up), and Implicit when it is the only one.
    """
    mark = preferLittleServer.mark()
    status, output = runEchoscu(
        echoscu, preferLittleServer.port, "--propose-ts", str(count), verbosity="-d"
    )

    assert status == 0, output
    assert dcmtkContexts(dcmtkBlock(output, "A-ASSOCIATE-AC")) == [
        (1, "Accepted", [accepted])
    ]
    assert "Received Echo Response (Success)" in output, output
    assert names(preferLittleServer.onlyAssociationSince(mark)) == ECHOED


@pytest.mark.peer
def test_echoscuWrongCalledAETitle(echoscu, calledAEServer):
    """
    With C{requireCalledAETitle}, echoscu calling C{WRONG} is rejected
    permanently by the service user because the called AE title is not
    recognized (1, 1, 7), and exits with a failure status; the server logs
    the rejection and why.
    """
    mark = calledAEServer.mark()
    status, output = runEchoscu(echoscu, calledAEServer.port, called="WRONG")

    assert status != 0, output
    assert "Association Rejected" in output, output
    assert "Result: Rejected Permanent, Source: Service User" in output, output
    assert "Reason: Called AE Title Not Recognized" in output, output
    events = calledAEServer.onlyAssociationSince(mark)
    assert names(events) == ["associate-rq", "association-rejected"]
    assert "called AE title 'WRONG'" in events[-1].fields["reason"]


@pytest.mark.peer
def test_echoscuDisallowedCallingAETitle(echoscu, callingAEServer):
    """
    With C{allowedCallingAETitles=["GOOD"]}, echoscu calling as BAD is
    rejected (1, 1, 3: calling AE title not recognized); as GOOD it echoes.
    """
    mark = callingAEServer.mark()
    status, output = runEchoscu(echoscu, callingAEServer.port, calling="BAD")

    assert status != 0, output
    assert "Result: Rejected Permanent, Source: Service User" in output, output
    assert "Reason: Calling AE Title Not Recognized" in output, output
    events = callingAEServer.onlyAssociationSince(mark)
    assert names(events) == ["associate-rq", "association-rejected"]
    assert "calling AE title 'BAD'" in events[-1].fields["reason"]

    mark = callingAEServer.mark()
    status, output = runEchoscu(echoscu, callingAEServer.port, calling="GOOD")
    assert status == 0, output
    assert "Received Echo Response (Success)" in output, output
    assert names(callingAEServer.onlyAssociationSince(mark)) == ECHOED


# --- pynetdicom --------------------------------------------------------------


@pytest.fixture
def pynetdicom(caplog, monkeypatch):
    """
    pynetdicom, with its logger limited to errors (pytest shows the records
    only if the test fails) and with its reject race closed
    (L{closePynetdicomRejectRace}).
    """
    module = requirePynetdicom()
    caplog.set_level(logging.ERROR, logger="pynetdicom")
    closePynetdicomRejectRace(monkeypatch)
    return module


def pynetdicomAE(
    pynetdicom, *contexts: tuple[str, Sequence[str] | None], title: str = "PYSCU"
):
    """
    A pynetdicom AE requesting C{contexts} (abstract syntax, transfer
    syntaxes or C{None} for pynetdicom's default four), with 10 s bounds.
    """
    ae = pynetdicom.AE(ae_title=title)
    ae.acse_timeout = PYNETDICOM_TIMEOUT
    ae.network_timeout = PYNETDICOM_TIMEOUT
    ae.dimse_timeout = PYNETDICOM_TIMEOUT
    ae.connection_timeout = PYNETDICOM_TIMEOUT
    for abstractSyntax, transferSyntaxes in contexts or [(VERIFICATION, None)]:
        if transferSyntaxes is None:
            ae.add_requested_context(abstractSyntax)
        else:
            ae.add_requested_context(abstractSyntax, list(transferSyntaxes))
    return ae


def associate(ae, port: int, *, called: str = "ECHOSCP", **kwargs: Any):
    """
    C{ae.associate()} to 127.0.0.1, also returning the C{host:port} the
    server sees for this association (its C{peer} field).
    """
    from pynetdicom import evt

    local: list[tuple[str, int]] = []

    def opened(event):
        local.append(event.assoc.dul.socket.socket.getsockname()[:2])

    handlers = [*kwargs.pop("evt_handlers", []), (evt.EVT_CONN_OPEN, opened)]
    assoc = ae.associate(
        "127.0.0.1", port, ae_title=called, evt_handlers=handlers, **kwargs
    )
    assert local, "pynetdicom never opened its connection"
    host, localPort = local[0]
    return assoc, f"{host}:{localPort}"


def echoAndRelease(assoc) -> int:
    """
    Send one C-ECHO on an established association, release it and return
    the response status; abort it if anything fails.
    """
    try:
        assert assoc.is_established
        response = assoc.send_c_echo()
        assert "Status" in response, response
        status = response.Status
        assoc.release()
        assert assoc.is_released
        return status
    finally:
        if assoc.is_established:
            assoc.abort()


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
    assoc, peer = associate(ae, defaultServer.port)

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
    assoc, peer = associate(ae, defaultServer.port)

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
    assoc, peer = associate(ae, defaultServer.port, ext_neg=[identity])

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
    assoc, peer = associate(ae, defaultServer.port, ext_neg=[role])

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
    assoc, peer = associate(ae, defaultServer.port, ext_neg=[window])

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
        defaultServer.port,
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
        defaultServer.port,
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
        defaultServer.port,
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
    assoc, peer = associate(ae, defaultServer.port)
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
    assoc, peer = associate(ae, preferLittleServer.port)

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
    assoc, peer = associate(ae, implicitOnlyServer.port)

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


def rejection(assoc) -> tuple[int, int, int]:
    """
    The (result, source, reason) of pynetdicom's A-ASSOCIATE-RJ confirmation.
    """
    assert assoc.is_rejected, (assoc.is_aborted, assoc.acceptor.primitive)
    assert not assoc.is_established
    answer = assoc.acceptor.primitive
    return (answer.result, answer.result_source, answer.diagnostic)


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
        calledAEServer.port,
        called="WRONG",
        evt_handlers=[(evt.EVT_REJECTED, lambda event: rejected.append(event))],
    )

    assert rejection(assoc) == (1, 1, 7)
    assert assoc.acceptor.primitive.reason_str == "Called AE title not recognised"
    assert len(rejected) == 1
    events = calledAEServer.associationEvents(peer)
    assert names(events) == ["associate-rq", "association-rejected"]
    assert "called AE title 'WRONG'" in events[-1].fields["reason"]

    assoc, peer = associate(ae, calledAEServer.port, called="ECHOSCP")
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
    assoc, peer = associate(ae, callingAEServer.port)

    assert rejection(assoc) == (1, 1, 3)
    assert assoc.acceptor.primitive.reason_str == "Calling AE title not recognised"
    events = callingAEServer.associationEvents(peer)
    assert names(events) == ["associate-rq", "association-rejected"]
    assert "calling AE title 'BAD'" in events[-1].fields["reason"]

    ae = pynetdicomAE(pynetdicom, title="GOOD")
    assoc, peer = associate(ae, callingAEServer.port)
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
            assoc, peer = associate(ae, server.port)
            held.append(assoc)
            assert assoc.is_established
        third, thirdPeer = associate(ae, server.port)

        assert rejection(third) == (2, 3, 2)
        assert third.acceptor.primitive.reason_str == "Local limit exceeded"
        events = server.associationEvents(thirdPeer)
        assert names(events) == ["associate-rq", "association-rejected"]
        assert "limit on concurrent associations" in events[-1].fields["reason"]
        waitUntilClosed(server.port, int(thirdPeer.rsplit(":", 1)[1]))

        mark = server.mark()
        status, output = runEchoscu(echoscu, server.port)
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
        assoc, peer = associate(ae, server.port)
        assert echoAndRelease(assoc) == 0x0000
        assert names(server.associationEvents(peer)) == ECHOED
    finally:
        for assoc in held:
            if assoc.is_established:
                assoc.release()
