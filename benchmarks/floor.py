"""
The floor: the least a Twisted server can do to answer the benchmark's load
generator, and so the ceiling for any Twisted DICOM server on this machine.

It does not parse DICOM. It splits what arrives into PDUs by the 6-byte PDU
header and its 4-byte big-endian length, and answers each from canned bytes
(what dicomecho sends for the same requests; see L{benchmarks._common}):

 - A-ASSOCIATE-RQ (0x01): dicomecho's A-ASSOCIATE-AC;
 - P-DATA-TF (0x04): dicomecho's C-ECHO-RSP with MessageIDBeingRespondedTo
   copied from the request's MessageID, read at its fixed offset in the
   load generator's C-ECHO-RQ;
 - A-RELEASE-RQ (0x05): A-RELEASE-RP;
 - anything else (an A-ABORT, say): closes the connection.

Like dicomecho it sets TCP_NODELAY and runs on the default reactor (epoll on
Linux)::

    python -m benchmarks.floor --port 0

prints C{LISTENING 127.0.0.1:PORT} on stdout once it listens and serves
until SIGTERM or SIGINT. C{python -m benchmarks.floor --capture PORT}
instead records a running server's replies into the fixture the floor
answers from.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Sequence

from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Factory, Protocol

from benchmarks._common import REPLIES_FIXTURE, CannedReplies, Requests

#: A PDU longer than this closes the connection (the load generator's
#: largest is its 211-byte A-ASSOCIATE-RQ).
MAX_PDU_LENGTH = 1 << 16


class FloorProtocol(Protocol):
    """
    Answers each whole PDU with canned bytes; see the module docstring.
    """

    def __init__(self, replies: CannedReplies, messageIDOffset: int) -> None:
        self._ac = replies.associateAC
        self._rspPrefix = replies.echoRSPPrefix
        self._rspSuffix = replies.echoRSPSuffix
        self._rp = replies.releaseRP
        self._idOffset = messageIDOffset
        self._buffer = b""

    def connectionMade(self) -> None:
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        size = len(buffer)
        pos = 0
        out: list[bytes] = []
        while size - pos >= 6:
            end = pos + 6 + int.from_bytes(buffer[pos + 2 : pos + 6], "big")
            if end - pos - 6 > MAX_PDU_LENGTH:
                self._close(out)
                return
            if end > size:
                break
            pduType = buffer[pos]
            if pduType == 0x04:
                idAt = pos + self._idOffset
                out.append(self._rspPrefix + buffer[idAt : idAt + 2] + self._rspSuffix)
            elif pduType == 0x01:
                out.append(self._ac)
            elif pduType == 0x05:
                out.append(self._rp)
            else:
                self._close(out)
                return
            pos = end
        self._buffer = buffer[pos:] if pos < size else b""
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _close(self, out: list[bytes]) -> None:
        if out:
            self.transport.write(b"".join(out))
        self._buffer = b""
        self.transport.loseConnection()


class FloorFactory(Factory):
    """
    Builds L{FloorProtocol}s that answer from C{replies}.
    """

    def __init__(self, replies: CannedReplies | None = None,
                 messageIDOffset: int | None = None) -> None:
        self.replies = replies if replies is not None else CannedReplies.fromFixture()
        self.messageIDOffset = (
            messageIDOffset if messageIDOffset is not None else Requests.fromCapture().messageIDOffset
        )

    def buildProtocol(self, addr: object) -> FloorProtocol:
        protocol = FloorProtocol(self.replies, self.messageIDOffset)
        protocol.factory = self
        return protocol


def captureReplies(port: int, host: str = "127.0.0.1", out: Path = REPLIES_FIXTURE,
                   timeout: float = 10.0) -> bytes:
    """
    Send the load generator's A-ASSOCIATE-RQ, C-ECHO-RQ (MessageID 1) and
    A-RELEASE-RQ to a running server, one at a time, and write its three
    replies to C{out}.
    """
    requests = Requests.fromCapture()
    replies = b""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        buffer = b""
        for request in (requests.associateRQ, requests.echo(1), requests.releaseRQ):
            sock.sendall(request)
            while len(buffer) < 6 or len(buffer) < 6 + int.from_bytes(buffer[2:6], "big"):
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError("the server closed before replying")
                buffer += data
            end = 6 + int.from_bytes(buffer[2:6], "big")
            replies += buffer[:end]
            buffer = buffer[end:]
        sock.shutdown(socket.SHUT_WR)
    out.write_bytes(replies)
    CannedReplies.fromFixture(out)  # the three replies it expects
    return replies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0: the kernel picks one")
    parser.add_argument("--interface", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--backlog", type=int, default=128, help="listen queue (dicomecho's default)")
    parser.add_argument("--capture", type=int, metavar="PORT",
                        help="record the replies of the server on 127.0.0.1:PORT into "
                             f"{REPLIES_FIXTURE.name} and exit")
    args = parser.parse_args(argv)
    if args.capture is not None:
        data = captureReplies(args.capture)
        print(f"wrote {len(data)} bytes to {REPLIES_FIXTURE}")
        return 0

    from twisted.internet import reactor

    port = reactor.listenTCP(args.port, FloorFactory(), backlog=args.backlog,  # type: ignore[attr-defined]
                             interface=args.interface)
    address = port.getHost()
    print(f"LISTENING {address.host}:{address.port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]  # SIGTERM/SIGINT stop it
    return 0


if __name__ == "__main__":
    sys.exit(main())
