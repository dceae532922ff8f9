# -*- test-case-name: tests.test_ping_association -*-
"""
PDUs over the health check's blocking socket: each read and write bounded
by the one L{Deadline}, bytes framed and decoded with the project's framer
and codec (PS3.8 §9.3), and every failure a L{PingFailure}.
"""

from __future__ import annotations

import socket
import ssl

from dicomecho.association.negotiation import DEFAULT_MAX_PDU_LENGTH
from dicomecho.cli.pingconnection import Deadline, tlsFailure
from dicomecho.cli.pingresult import ExitCode, PingFailure
from dicomecho.observability.logblocks import escape
from dicomecho.wire.errors import RemoteProtocolError
from dicomecho.wire.framer import PDUFramer
from dicomecho.wire.pdu import PDU, Abort, decodePDU

__all__ = ["PDULink"]

_READ_SIZE = 65536


class PDULink:
    """
    PDUs over one connected socket, every operation bounded by the deadline.

    @ivar phase: what is going on, for messages: C{"association"},
        C{"C-ECHO"}, C{"release"}.
    """

    def __init__(self, sock: socket.socket, deadline: Deadline, tls: bool) -> None:
        self._sock = sock
        self._deadline = deadline
        self._tls = tls
        # Our advertised Maximum Length caps P-DATA-TF; the framer's default
        # caps an A-ASSOCIATE-AC.
        self._framer = PDUFramer(maxPDataLength=DEFAULT_MAX_PDU_LENGTH)
        self._receivedAny = False
        self.phase = "association"

    def send(self, data: bytes) -> None:
        """
        Send C{data} before the deadline.
        """
        try:
            self._sock.settimeout(self._deadline.remaining(self.phase, abort=True))
            self._sock.sendall(data)
        except TimeoutError:
            raise self._deadline.expired(self.phase, abort=True) from None
        except ssl.SSLError as e:
            raise tlsFailure(e, self.phase) from None
        except OSError as e:
            raise PingFailure(
                ExitCode.PROTOCOL,
                f"connection lost while sending during {self.phase}: "
                f"{e.strerror or e.__class__.__name__}",
            ) from None

    def receive(self) -> PDU:
        """
        The next PDU, decoded.

        @raise PingFailure: on a timeout, a closed connection, or a PDU that
            breaks PS3.8 (then with the A-ABORT it calls for).
        """
        while True:
            try:
                frame = self._framer.nextFrame()
                if frame is not None:
                    return decodePDU(frame.pduType, frame.body)
            except RemoteProtocolError as e:
                raise PingFailure(
                    ExitCode.PROTOCOL,
                    f"protocol error during {self.phase}: {escape(str(e), backslash=False)}",
                    (e.abortSource, e.abortReason),
                ) from None
            self._framer.receiveData(self._read())

    def _read(self) -> bytes:
        try:
            self._sock.settimeout(self._deadline.remaining(self.phase, abort=True))
            data = self._sock.recv(_READ_SIZE)
        except TimeoutError:
            raise self._deadline.expired(self.phase, abort=True) from None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            data = b""
        except ssl.SSLError as e:
            raise tlsFailure(e, self.phase) from None
        except ConnectionResetError:
            raise PingFailure(
                ExitCode.PROTOCOL, f"connection reset by the peer during {self.phase}"
            ) from None
        except OSError as e:
            raise PingFailure(
                ExitCode.PROTOCOL,
                f"read failed during {self.phase}: {e.strerror or e.__class__.__name__}",
            ) from None
        if not data:
            raise self._closed()
        self._receivedAny = True
        return data

    def _closed(self) -> PingFailure:
        """
        The peer closed the connection: with a guess at why when it never
        sent a byte.
        """
        message = f"the peer closed the connection during {self.phase}"
        if self._receivedAny:
            pass
        elif self._tls:
            # TLS 1.3 finishes the client's handshake before the server
            # has judged our certificate; a refusal shows up here.
            message += " (right after the TLS handshake: did the server refuse our client certificate?)"
        else:
            message += " without answering (does the port expect TLS, or a PROXY header?)"
        return PingFailure(ExitCode.PROTOCOL, message)

    def abort(self, source: int, reason: int) -> None:
        """
        Send an A-ABORT (PS3.8 §9.3.8) if the socket takes it at once; never
        waits.
        """
        try:
            self._sock.settimeout(0.0)
            self._sock.send(Abort(source, reason).encode())
        except (OSError, ValueError):
            pass
