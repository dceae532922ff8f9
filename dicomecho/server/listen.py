# -*- test-case-name: tests.test_listen -*-
"""
Where dicomecho listens: the endpoint descriptions the options ask for
(L{endpointDescriptions}: a port number on C{--bind-address}, with TLS
when the C{--tls-*} options are given, plus every C{--listen}), and
L{checkEndpoints}, which parses them before the service starts so that a
mistake is a usage error and not a traceback.

Importing this module does not import the reactor, and nothing here does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from twisted.internet.endpoints import quoteStringArgument
from twisted.python import usage

__all__ = [
    "TLS_PREFIXES",
    "TLSFiles",
    "ParseOnlyReactor",
    "tlsDescription",
    "portDescription",
    "endpointDescriptions",
    "checkEndpoints",
]

#: Endpoint types whose connections are TLS (for the start-up warning).
TLS_PREFIXES = ("dicomtls:", "ssl:")


@dataclass(frozen=True)
class TLSFiles:
    """
    What the C{--tls-*} options name.

    @ivar key: the PEM private key (C{--tls-key}).
    @ivar cert: the PEM certificate, then any chain (C{--tls-cert}).
    @ivar ca: the PEM CA certificates client certificates are checked
        against (C{--tls-ca}).
    @ivar clientCert: C{"required"} or C{"optional"} (C{--tls-client-cert}).
    """

    key: str | None = None
    cert: str | None = None
    ca: str | None = None
    clientCert: str | None = None

    @property
    def given(self) -> bool:
        """
        Whether any C{--tls-*} option was given.
        """
        return any(v is not None for v in (self.key, self.cert, self.ca, self.clientCert))


def tlsDescription(tls: TLSFiles, number: int, interface: str) -> str:
    """
    The C{dicomtls:} description of port C{number} on C{interface} that
    the C{--tls-*} options ask for.

    @raise usage.UsageError: if the options do not go together.
    """
    if not tls.key or not tls.cert:
        raise usage.UsageError("--tls-key and --tls-cert go together")
    if tls.clientCert is not None and tls.ca is None:
        raise usage.UsageError("--tls-client-cert needs --tls-ca")
    description = (
        f"dicomtls:{number}:interface={quoteStringArgument(interface)}"
        f":privateKey={quoteStringArgument(tls.key)}:certKey={quoteStringArgument(tls.cert)}"
    )
    if tls.ca is not None:
        description += f":caCerts={quoteStringArgument(tls.ca)}"
        required = "no" if tls.clientCert == "optional" else "yes"
        description += f":requireClientCert={required}"
    return description


def portDescription(port: str, bindAddress: str, backlog: int, tls: TLSFiles) -> str:
    """
    The description of C{--port}: a port number becomes TCP (C{tcp6:} when
    the bind address has a colon, C{dicomtls:} with the C{--tls-*}
    options) on the bind address, by default all IPv4 interfaces as in
    echoscp; anything else is a description already, taken as it is.

    @raise usage.UsageError: on a port number out of range, or
        C{--bind-address} or C{--tls-*} with a description.
    """
    if port.isdigit():
        number = int(port)
        if number > 65535:
            raise usage.UsageError(f"port {port} is not in the range 0-65535")
        if tls.given:
            description = tlsDescription(tls, number, bindAddress or "0.0.0.0")
        elif ":" in bindAddress:
            description = f"tcp6:{number}:interface={quoteStringArgument(bindAddress)}"
        elif bindAddress:
            description = f"tcp:{number}:interface={quoteStringArgument(bindAddress)}"
        else:
            description = f"tcp:{number}:interface=0.0.0.0"
        return description + f":backlog={backlog}"
    if bindAddress:
        raise usage.UsageError(
            "--bind-address goes with a port number, not an endpoint "
            "description; put interface= in the description instead"
        )
    if tls.given:
        raise usage.UsageError(
            "--tls-key/--tls-cert/--tls-ca go with a port number; with an "
            "endpoint description, use dicomtls:PORT:privateKey=...:certKey=..."
        )
    return port


def endpointDescriptions(
    listen: Sequence[str],
    portGiven: bool,
    port: str,
    bindAddress: str,
    backlog: int,
    tls: TLSFiles,
) -> list[str]:
    """
    Every description to listen on: those of C{--listen}, then that of
    the port (L{portDescription}), unless C{--listen} was given and the
    port was not (then the default port is not listened on).
    """
    if listen and not portGiven:
        return list(listen)
    return [*listen, portDescription(port, bindAddress, backlog, tls)]


class ParseOnlyReactor:
    """
    The reactor handed to endpoint parsers by L{checkEndpoints}, which only
    parses. Twisted has no public way to parse a description without a
    reactor (C{serverFromString} takes one), and the parsers only keep it
    for C{listen}; so this one has nothing, and any use of it fails.
    """


def checkEndpoints(descriptions: Sequence[str]) -> None:
    """
    Parse every description now, so that a mistake is a usage error and
    not a traceback at start-up. Nothing is bound or listened on.

    @raise usage.UsageError: naming the description and what is wrong.
    """
    from dicomecho.server.proxyheader import serverFromDescription

    for description in descriptions:
        try:
            serverFromDescription(ParseOnlyReactor(), description)
        except (IndexError, KeyError) as e:
            if description.startswith("systemd:"):
                raise usage.UsageError(
                    f"{description!r}: no such socket was inherited from systemd "
                    f"(LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID must name it)"
                ) from None
            raise usage.UsageError(
                f"invalid endpoint description {description!r}: {e!r}"
            ) from None
        except Exception as e:
            raise usage.UsageError(
                f"invalid endpoint description {description!r}: "
                f"{type(e).__name__}: {e}"
            ) from None
