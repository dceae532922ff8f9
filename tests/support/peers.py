"""
Helpers for the real-peer tests (C{@pytest.mark.peer}).

L{requireEchoscu} and L{requirePynetdicom} find the peers, skipping the test
on a developer machine that lacks one and failing it when C{CI=true}.

L{WireScript} is a one-shot loopback DICOM server built only on the standard
library and dicomecho's wire layer: it accepts one connection, splits what
arrives with L{PDUFramer}, decodes every frame with L{decodePDU}, records the
PDUs and answers from a script. It plays the acceptor instead of
dicomecho's state machine, so that only the wire layer is under test: real
SCUs judge the bytes our codec encodes and our codec judges the bytes they
send. Every wait is bounded: the
socket operations time out and the server thread is joined with a timeout,
so a silent peer fails the test instead of hanging it.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import threading
import weakref
from types import ModuleType
from typing import Any, Callable, NamedTuple, Sequence

import pytest

from dicomecho.wire.framer import PDUFramer
from dicomecho.wire.pdu import PDU, decodePDU
from tests.support.processes import TIMEOUT

__all__ = [
    "echoscu",
    "runEchoscu",
    "Reply",
    "WireScript",
    "requireEchoscu",
    "requirePynetdicom",
]

#: Seconds any single socket operation of L{WireScript} may take.
SOCKET_TIMEOUT = 10.0

#: Seconds the test waits for the server thread to finish.
JOIN_TIMEOUT = 15.0


def _missing(message: str) -> None:
    """
    A peer is missing: fail under CI, where the peers are part of the
    install (C{.ci/run}), skip elsewhere.
    """
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@functools.lru_cache(maxsize=None)
def _findDCMTKEchoscu() -> str | None:
    """
    The first C{echoscu} on C{PATH} that is DCMTK's, or C{None}.

    pynetdicom installs a console script also named C{echoscu} (into the
    venv's C{bin}, first on C{PATH} once the venv is activated); it does not
    take DCMTK's options, so each candidate is asked for its version.
    """
    for directory in os.get_exec_path():
        candidate = shutil.which("echoscu", path=directory)
        if candidate is None:
            continue
        try:
            version = subprocess.run(
                [candidate, "--version"],
                capture_output=True,
                text=True,
                timeout=10,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "dcmtk" in (version.stdout + version.stderr).lower():
            return candidate
    return None


def requireEchoscu() -> str:
    """
    Return the path of DCMTK's C{echoscu}; skip the test if it is missing,
    or fail it when C{CI=true}.
    """
    path = _findDCMTKEchoscu()
    if path is None:
        _missing("DCMTK echoscu not found (apt-get install dcmtk)")
    assert path is not None
    return path


def requirePynetdicom() -> ModuleType:
    """
    Import and return pynetdicom; skip the test if it cannot be imported, or
    fail it when C{CI=true}.
    """
    try:
        import pynetdicom
    except ImportError as e:
        _missing(f"pynetdicom not importable ({e}); pip install -e '.[test]'")
        raise  # not reached: pytest.skip/fail raise
    return pynetdicom


#: Seconds a pynetdicom DUL may be held back by L{closePynetdicomRejectRace}.
PYNETDICOM_GATE_TIMEOUT = 10.0


def closePynetdicomRejectRace(monkeypatch: Any) -> None:
    """
    Close pynetdicom 3.0.4's race against a fast A-ASSOCIATE-RJ, for the
    rest of the test (C{monkeypatch} undoes it).

    After queueing the RQ, pynetdicom's ACSE (the calling thread) checks the
    socket's "connected" flag; if its DUL thread has meanwhile sent the RQ,
    read the RJ and closed the socket, the association ends as a connection
    failure (C{is_aborted}, the RJ unread in its queue) instead of a
    rejection. A loaded machine delays the calling thread long enough (seen
    in about 1 run in 13 with two busy loops on two cores; a capture showed
    our RJ on the wire 1.5 ms after the RQ, then our FIN). Here each DUL
    reads its first PDU only once its ACSE waits for the answer, which it
    does right after that check; the wait is bounded, and nothing else
    changes: the same bytes reach the same pynetdicom code in the same order.
    """
    from pynetdicom.dul import DULServiceProvider

    lock = threading.Lock()
    gates: weakref.WeakKeyDictionary[Any, threading.Event] = weakref.WeakKeyDictionary()

    def gateOf(dul: Any) -> threading.Event:
        with lock:
            return gates.setdefault(dul, threading.Event())

    receivePDU = DULServiceProvider.receive_pdu
    readPDUData = DULServiceProvider._read_pdu_data

    def openingReceivePDU(self: Any, wait: bool = False, timeout: float | None = None) -> Any:
        if wait:
            gateOf(self).set()
        return receivePDU(self, wait=wait, timeout=timeout)

    def gatedReadPDUData(self: Any) -> Any:
        assert gateOf(self).wait(PYNETDICOM_GATE_TIMEOUT), "pynetdicom never waited for an answer"
        return readPDUData(self)

    monkeypatch.setattr(DULServiceProvider, "receive_pdu", openingReceivePDU)
    monkeypatch.setattr(DULServiceProvider, "_read_pdu_data", gatedReadPDUData)


class Reply(NamedTuple):
    """
    What L{WireScript} does after a PDU: send C{send} (already encoded PDUs,
    in order), then, if C{close}, close its side of the connection.
    """

    send: Sequence[bytes] = ()
    close: bool = False


#: The script: called with every decoded PDU, in order, returns a L{Reply}
#: or a plain sequence of encoded PDUs (meaning "send these, keep open").
Respond = Callable[[PDU], "Reply | Sequence[bytes]"]


class WireScript:
    """
    A one-connection DICOM server on 127.0.0.1 driven by a script.

    Use it as a context manager around the client::

        with WireScript(respond) as server:
            runClient("127.0.0.1", server.port)
        assert server.received == [...]

    Leaving the block waits for the server thread (at most
    L{JOIN_TIMEOUT} seconds) and re-raises any exception it raised: a decode
    error of our codec on a real peer's bytes fails the test with its own
    traceback.

    After a L{Reply} with C{close}, the server half-closes (sends FIN), keeps
    reading until the peer closes (still recording PDUs, no longer
    answering), then closes. Closing this way lets the peer read the last
    PDU before it sees the end of the stream, instead of an RST.

    @ivar port: the port the listener is bound to (chosen by the kernel).
    @ivar received: the PDUs decoded so far, in order.
    @ivar receivedBytes: every byte the peer sent, concatenated.
    @ivar sent: the encoded PDUs sent, in order.
    @ivar peerClosed: C{True} once the peer closed or reset the connection.
    @ivar peerReset: C{True} if the peer reset the connection.
    @ivar error: the exception the server thread raised, or C{None}.
    """

    def __init__(
        self,
        respond: Respond,
        *,
        framer: PDUFramer | None = None,
        timeout: float = SOCKET_TIMEOUT,
    ) -> None:
        self._respond = respond
        self._framer = framer if framer is not None else PDUFramer()
        self._timeout = timeout
        self.received: list[PDU] = []
        self.receivedBytes = bytearray()
        self.sent: list[bytes] = []
        self.peerClosed = False
        self.peerReset = False
        self.error: BaseException | None = None
        self._connection: socket.socket | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(timeout)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run, name=f"WireScript:{self.port}", daemon=True
        )

    # -- test side -------------------------------------------------------

    def __enter__(self) -> WireScript:
        self._thread.start()
        return self

    def __exit__(self, excType, exc, tb) -> None:
        self.finish(reraise=excType is None)

    def finish(self, reraise: bool = True) -> None:
        """
        Wait for the server thread, then re-raise its exception, if any.

        @param reraise: C{False} when the test is already failing (or being
            skipped): the sockets are closed at once to free the thread, and
            its exception, if any, is left in L{error}.
        @raise AssertionError: if the thread is still running after
            L{JOIN_TIMEOUT} seconds (the sockets are closed to free it).
        """
        if not reraise:
            self._closeSockets()
        self._thread.join(JOIN_TIMEOUT)
        stuck = self._thread.is_alive()
        if stuck:
            self._closeSockets()
            self._thread.join(JOIN_TIMEOUT)
        self._closeSockets()
        if not reraise:
            return
        if self.error is not None:
            raise self.error
        if stuck:
            raise AssertionError(
                f"WireScript server thread still running after {JOIN_TIMEOUT}s"
            )

    # -- server thread ---------------------------------------------------

    def _closeSockets(self) -> None:
        # shutdown() first: on Linux, close() alone does not wake a thread
        # blocked in accept() or recv() on the same socket.
        for sock in (self._listener, self._connection):
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass

    def _run(self) -> None:
        try:
            connection, _ = self._listener.accept()
            self._connection = connection
            self._listener.close()
            with connection:
                connection.settimeout(self._timeout)
                self._serve(connection)
        except BaseException as e:  # re-raised in the test by finish()
            self.error = e

    def _serve(self, connection: socket.socket) -> None:
        closing = False
        # Bounded: every recv either returns data, returns b"" (peer closed)
        # or times out after self._timeout; the peer's data is finite.
        while True:
            try:
                data = connection.recv(65536)
            except ConnectionResetError:
                self.peerClosed = self.peerReset = True
                return
            if not data:
                self.peerClosed = True
                return
            self.receivedBytes += data
            self._framer.receiveData(data)
            while (frame := self._framer.nextFrame()) is not None:
                pdu = decodePDU(frame.pduType, frame.body)
                self.received.append(pdu)
                if closing:
                    continue
                reply = self._respond(pdu)
                if not isinstance(reply, Reply):
                    reply = Reply(tuple(reply))
                for encoded in reply.send:
                    connection.sendall(encoded)
                    self.sent.append(encoded)
                if reply.close:
                    closing = True
                    connection.shutdown(socket.SHUT_WR)


#: Seconds an echoscu run may take before the test gives up (and kills it).
ECHOSCU_TIMEOUT = 30

#: echoscu's own bounds: connect, socket, ACSE and DIMSE timeouts.
ECHOSCU_TIMEOUT_OPTIONS = ["-to", "5", "-ts", "10", "-ta", "5", "-td", "5"]


def runEchoscu(
    echoscu: str,
    port: int,
    *options: str,
    verbosity: str = "-v",
    calling: str = "MYSCU",
    called: str = "ECHOSCP",
) -> tuple[int, str]:
    """
    Run C{echoscu <verbosity> -aet calling -aec called [options] 127.0.0.1
    port}.

    @return: the exit status and everything it printed (DCMTK logs to
        stderr), stdout first.
    """
    completed = subprocess.run(
        [
            echoscu,
            verbosity,
            *ECHOSCU_TIMEOUT_OPTIONS,
            "-aet",
            calling,
            "-aec",
            called,
            *options,
            "127.0.0.1",
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=ECHOSCU_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    return completed.returncode, completed.stdout + completed.stderr


def echoscu(port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    """
    One DCMTK echoscu run (C{-aet MYSCU -aec ECHOSCP}, then C{extra})
    against 127.0.0.1:C{port}, bounded by L{TIMEOUT}.
    """
    return subprocess.run(
        [requireEchoscu(), "-aet", "MYSCU", "-aec", "ECHOSCP", *extra, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
