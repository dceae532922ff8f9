# -*- test-case-name: tests.test_reuseport -*-
"""
The C{reuseport:} endpoint description: a TCP listener with C{SO_REUSEPORT},
so that several independent processes can listen on one port and the kernel
spreads the connections between them (Linux 3.9 or later, the BSDs, macOS)::

    reuseport:11112[:interface=ADDR][:backlog=N]

for C{twistd dicomecho --listen ...}, C{python -m dicomecho --listen ...}
or L{serverFromString <twisted.internet.endpoints.serverFromString>}. The
arguments are those of C{tcp:}; an IPv6 interface (escaped colons,
C{interface=\\:\\:}) listens on IPv6, as C{tcp6:} does.

Twisted's C{tcp:} endpoint cannot set C{SO_REUSEPORT} before it binds, so
L{ReusePortServerEndpoint} makes the listening socket itself and hands it to
L{IReactorSocket.adoptStreamPort}, the pattern that interface documents for
listeners C{listenTCP} cannot make. The kernel does the balancing: on Linux
each listener gets its own accept queue, and a connection goes to one of
them by a hash of its addresses and ports.

Linux lets a port be shared only by sockets that all set C{SO_REUSEPORT}
and belong to the same effective user: a C{tcp:} listener on the port, or a
process of another user, makes the listen fail with C{EADDRINUSE}.
"""

from __future__ import annotations

import errno
import socket
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, execute
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorSocket,
    IStreamServerEndpoint,
)
from zope.interface import implementer

from dicomecho.server.descriptions import checkArguments, numberArgument

__all__ = [
    "DEFAULT_BACKLOG",
    "ReusePortListenError",
    "ReusePortServerEndpoint",
    "parseStreamServer",
]

#: The listen queue length when the description names none: C{tcp:}'s.
DEFAULT_BACKLOG = 50

_HINTS = {
    errno.EADDRINUSE: (
        "A port is shared only by sockets that all set SO_REUSEPORT and "
        "belong to the same user: is a tcp: listener, or another user's "
        "process, on it?"
    ),
    errno.EACCES: (
        "Ports below 1024 need CAP_NET_BIND_SERVICE; or let systemd bind "
        "the port (--listen systemd:domain=INET:name=...)."
    ),
}


class ReusePortListenError(CannotListenError):
    """
    A C{reuseport:} listener could not be set up; the message says why and,
    for the usual causes, what to check.
    """

    def __str__(self) -> str:
        text = super().__str__()
        hint = _HINTS.get(getattr(self.socketError, "errno", 0))
        return f"{text} {hint}" if hint else text


@implementer(IStreamServerEndpoint)
class ReusePortServerEndpoint:
    """
    A TCP server endpoint whose listening socket has C{SO_REUSEADDR} and
    C{SO_REUSEPORT} set before it is bound.

    @ivar port: the port number (0: the kernel picks one; then nothing can
        share it knowingly).
    @ivar interface: the address to bind: C{""} (all IPv4 addresses), an
        IPv4 address or an IPv6 address.
    @ivar backlog: the listen queue length.
    """

    def __init__(
        self,
        reactor: IReactorSocket,
        port: int,
        backlog: int = DEFAULT_BACKLOG,
        interface: str = "",
    ) -> None:
        """
        @param reactor: adopts the listening socket.
        """
        self._reactor = reactor
        self.port = port
        self.backlog = backlog
        self.interface = interface

    @property
    def addressFamily(self) -> socket.AddressFamily:
        """
        C{AF_INET6} for an IPv6 interface, else C{AF_INET}.
        """
        return socket.AF_INET6 if isIPv6Address(self.interface) else socket.AF_INET

    def _bindAddress(self) -> tuple[str, int] | tuple[str, int, int, int]:
        if self.addressFamily == socket.AF_INET6:
            # getaddrinfo keeps a scope (fe80::1%eth0) as the scope ID.
            address: tuple[str, int, int, int] = socket.getaddrinfo(  # type: ignore[assignment]
                self.interface,
                self.port,
                socket.AF_INET6,
                socket.SOCK_STREAM,
                0,
                socket.AI_NUMERICHOST,
            )[0][4]
            return address
        return (self.interface, self.port)

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """
        Listen on the port alongside any other C{SO_REUSEPORT} listener of
        the same user.

        @return: a L{Deferred} that has already fired: with the
            L{IListeningPort}, or failed with L{ReusePortListenError} if the
            socket could not be bound or put to listen.
        """
        return execute(self._listen, protocolFactory)

    def _listen(self, protocolFactory: IProtocolFactory) -> IListeningPort:
        family = self.addressFamily
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                listener.bind(self._bindAddress())
                listener.listen(self.backlog)
            except OSError as e:
                raise ReusePortListenError(self.interface, self.port, e) from None
            listener.setblocking(False)
            port: IListeningPort = self._reactor.adoptStreamPort(
                listener.fileno(), family, protocolFactory
            )
            return port
        finally:
            # adoptStreamPort has made its own copy of the descriptor.
            listener.close()


_ARGUMENTS = ("port", "interface", "backlog")


def parseStreamServer(
    reactor: IReactorSocket, *args: str, **kwargs: str
) -> ReusePortServerEndpoint:
    """
    Build the endpoint of a C{reuseport:} description:
    C{reuseport:PORT[:interface=ADDR][:backlog=N]} (C{port=PORT} works too,
    as in C{tcp:}). The interface defaults to all IPv4 addresses and the
    backlog to 50, as in C{tcp:}.

    Nothing is bound here: parsing (as C{--listen} does to check its
    arguments) has no side effects.

    @raise ValueError: on a missing, unknown or malformed argument, or if
        this platform has no C{SO_REUSEPORT}.
    """
    checkArguments("reuseport", kwargs, _ARGUMENTS)
    ports = list(args) + ([kwargs["port"]] if "port" in kwargs else [])
    if len(ports) != 1:
        raise ValueError(
            "reuseport: needs exactly one port number, e.g. "
            "reuseport:11112:interface=0.0.0.0"
            + (f" (got {len(ports)})" if ports else "")
        )
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuseport: this platform has no SO_REUSEPORT")
    port = numberArgument("reuseport", "port", ports[0], 0, 65535)
    backlog = numberArgument(
        "reuseport", "backlog", kwargs.get("backlog", str(DEFAULT_BACKLOG)), 1, 2**31 - 1
    )
    interface = kwargs.get("interface", "")
    if interface and not (isIPAddress(interface) or isIPv6Address(interface)):
        raise ValueError(
            f"reuseport: interface={interface!r} is not an IPv4 or IPv6 address"
        )
    return ReusePortServerEndpoint(reactor, port, backlog, interface)
