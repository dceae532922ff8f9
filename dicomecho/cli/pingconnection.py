# -*- test-case-name: tests.test_ping_connection -*-
"""
The health check's connection: the host name resolved, a TCP connection,
the PROXY header it may start with, the TLS client context and handshake,
all bounded by one L{Deadline}, and every way of failing said in one line.

Blocking sockets only: no reactor, no Twisted.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

from dicomecho.cli.pingresult import USER_ABORT, ExitCode, PingFailure
from dicomecho.observability.logblocks import escape

__all__ = [
    "PROXY_V2_LOCAL_HEADER",
    "Deadline",
    "makeSSLContext",
    "openConnection",
    "tlsFailure",
]

#: A PROXY protocol version 2 header with the LOCAL command and no
#: addresses: what a load balancer sends on its own health checks, telling
#: a server behind C{haproxy:} to use the connection's real endpoints.
PROXY_V2_LOCAL_HEADER = b"\r\n\r\n\x00\r\nQUIT\n" + b"\x20\x00\x00\x00"

# OpenSSL reasons of an alert a server sends when it refuses (or misses)
# our certificate.
_CERTIFICATE_ALERTS = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
)


class Deadline:
    """
    One deadline for the whole exchange.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self, phase: str, abort: bool = False) -> float:
        """
        Seconds left.

        @param abort: whether a timeout should send an A-ABORT.
        @raise PingFailure: a timeout in C{phase} if none are.
        """
        left = self._end - time.monotonic()
        if left <= 0:
            raise self.expired(phase, abort)
        return left

    def expired(self, phase: str, abort: bool = False) -> PingFailure:
        """
        The timeout failure for C{phase}.
        """
        return PingFailure(
            ExitCode.TIMEOUT,
            f"timeout after {self.seconds:g}s during {phase}",
            USER_ABORT if abort else None,
        )


# --- TLS errors in words ----------------------------------------------------------


def _sslReason(e: ssl.SSLError) -> str:
    reason = e.reason or ""
    text = reason.lower().replace("_", " ") if reason else str(e)
    return escape(text, backslash=False)


def _refusedCertificate(e: ssl.SSLError) -> bool:
    reason = (e.reason or "").upper()
    return "ALERT" in reason and any(a in reason for a in _CERTIFICATE_ALERTS)


def tlsFailure(e: ssl.SSLError, phase: str) -> PingFailure:
    """
    A TLS error after the handshake, during C{phase}: a refused client
    certificate (TLS 1.3 tells it only then) is a connection failure, any
    other error a protocol failure.
    """
    if _refusedCertificate(e):
        return PingFailure(
            ExitCode.UNREACHABLE,
            f"TLS: the server refused our client certificate ({_sslReason(e)})",
        )
    return PingFailure(ExitCode.PROTOCOL, f"TLS error during {phase}: {_sslReason(e)}")


# --- connecting -------------------------------------------------------------------


def _resolve(host: str, port: int, deadline: Deadline) -> list[tuple]:
    """
    C{getaddrinfo} in a daemon thread, so a stuck resolver cannot outlive
    the deadline.
    """
    outcome: list[object] = []

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=lookup, name="dicomecho.cli.ping resolver", daemon=True)
    thread.start()
    thread.join(deadline.remaining("connect (resolving the host name)"))
    if not outcome:
        raise deadline.expired("connect (resolving the host name)")
    (found,) = outcome
    if isinstance(found, socket.gaierror):
        raise PingFailure(
            ExitCode.UNREACHABLE,
            f"cannot resolve host {escape(host)!r}: {found.strerror or found}",
        )
    if isinstance(found, BaseException):
        raise PingFailure(ExitCode.UNREACHABLE, f"cannot resolve host {escape(host)!r}: {found}")
    return found  # type: ignore[return-value]


def _connect(host: str, port: int, deadline: Deadline) -> socket.socket:
    """
    Connect to the first address of C{host} that answers.
    """
    lastError: OSError | None = None
    for family, kind, proto, _, address in _resolve(host, port, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.remaining("connect"))
            sock.connect(address)
        except TimeoutError:
            sock.close()
            raise deadline.expired("connect") from None
        except OSError as e:
            sock.close()
            lastError = e
            continue
        except BaseException:
            sock.close()
            raise
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return sock
    if isinstance(lastError, ConnectionRefusedError):
        raise PingFailure(ExitCode.UNREACHABLE, "cannot connect: connection refused")
    if lastError is None:
        raise PingFailure(ExitCode.UNREACHABLE, f"cannot connect: no address for {escape(host)!r}")
    raise PingFailure(
        ExitCode.UNREACHABLE,
        f"cannot connect: {lastError.strerror or lastError}",
    )


def _sendProxyHeader(sock: socket.socket, deadline: Deadline) -> None:
    """
    Send L{PROXY_V2_LOCAL_HEADER}, before TLS if any.
    """
    try:
        sock.settimeout(deadline.remaining("connect"))
        sock.sendall(PROXY_V2_LOCAL_HEADER)
    except TimeoutError:
        raise deadline.expired("connect") from None
    except OSError as e:
        raise PingFailure(
            ExitCode.UNREACHABLE,
            f"cannot send the PROXY header: {e.strerror or e.__class__.__name__}",
        ) from None


def _handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    serverHostname: str,
    deadline: Deadline,
) -> ssl.SSLSocket:
    """
    Wrap C{sock} in TLS and complete the handshake. C{sock} is owned by the
    returned socket from then on; on failure the caller closes whichever it
    holds.
    """
    phase = "TLS handshake"
    tls = context.wrap_socket(sock, server_hostname=serverHostname, do_handshake_on_connect=False)
    try:
        tls.settimeout(deadline.remaining(phase))
        tls.do_handshake()
    except TimeoutError:
        tls.close()
        raise deadline.expired(phase) from None
    except ssl.SSLCertVerificationError as e:
        tls.close()
        why = escape(e.verify_message or _sslReason(e), backslash=False)
        raise PingFailure(
            ExitCode.UNREACHABLE, f"TLS handshake failed: server certificate not trusted: {why}"
        ) from None
    except ssl.SSLError as e:
        tls.close()
        if _refusedCertificate(e):
            raise PingFailure(
                ExitCode.UNREACHABLE,
                f"TLS handshake failed: the server refused our client certificate ({_sslReason(e)})",
            ) from None
        raise PingFailure(ExitCode.UNREACHABLE, f"TLS handshake failed: {_sslReason(e)}") from None
    except OSError as e:
        tls.close()
        raise PingFailure(
            ExitCode.UNREACHABLE,
            f"TLS handshake failed: {e.strerror or e.__class__.__name__}",
        ) from None
    return tls


def openConnection(
    host: str,
    port: int,
    deadline: Deadline,
    sslContext: ssl.SSLContext | None = None,
    serverHostname: str | None = None,
    proxyHeader: bool = False,
) -> socket.socket:
    """
    Connect to C{host}:C{port}, send L{PROXY_V2_LOCAL_HEADER} if
    C{proxyHeader}, then complete a TLS handshake if C{sslContext} is given
    (checking the server against C{serverHostname}, default C{host}).

    @return: the connected socket, an L{ssl.SSLSocket} with TLS; the
        caller closes it.
    @raise PingFailure: on any failure, the socket then closed.
    """
    sock = _connect(host, port, deadline)
    try:
        if proxyHeader:
            _sendProxyHeader(sock, deadline)
        if sslContext is None:
            return sock
        return _handshake(sock, sslContext, serverHostname or host, deadline)
    except BaseException:
        sock.close()
        raise


def makeSSLContext(
    caFile: str | None = None,
    certFile: str | None = None,
    keyFile: str | None = None,
    checkHostname: bool = True,
) -> ssl.SSLContext:
    """
    A TLS client context for DICOM TLS (PS3.15 B.12): TLS 1.2 or later,
    the server certificate verified against C{caFile} (or the system's
    trust store), its host name checked unless C{checkHostname} is false.

    @param certFile: our certificate (PEM, then any chain), for mutual TLS.
    @param keyFile: its private key; defaults to C{certFile}.
    @raise OSError: if a file cannot be read.
    @raise ssl.SSLError: if a file is not what it should be.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = checkHostname
    context.verify_mode = ssl.CERT_REQUIRED
    if caFile is not None:
        context.load_verify_locations(cafile=caFile)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if certFile is not None:
        context.load_cert_chain(certFile, keyFile)
    return context
