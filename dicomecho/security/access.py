# -*- test-case-name: tests.test_access -*-
"""
Who may connect and associate: source networks and calling-AE@network
pairs (C{--allow-network}, C{--allow-peer}).

L{AccessList} is pure: it answers two questions, asked at two moments.
 - L{AccessList.admitsSource}, when a connection is made: may this address
   talk DICOM to us at all? A source outside every listed network is closed
   at once, before a byte of it is parsed.
 - L{AccessList.admits}, when its A-ASSOCIATE-RQ arrives: may this calling
   AE title associate from this address? If not, the request is rejected
   (permanent, calling-AE-title-not-recognized, PS3.8 Table 9-21).

An empty list admits everyone. Addresses that are not IP (a UNIX socket)
are local and always admitted; file permissions guard those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Iterable, Union

__all__ = ["AccessList", "parseNetwork", "peerAddress"]

_Address = Union[IPv4Address, IPv6Address]


def parseNetwork(text: str) -> IPv4Network | IPv6Network:
    """
    A network in CIDR notation (C{10.0.0.0/8}, C{2001:db8::/32}); a bare
    address is a single host. Host bits are ignored (C{10.1.2.3/8} is
    C{10.0.0.0/8}).

    @raise ValueError: if C{text} is not an IPv4 or IPv6 network.
    """
    try:
        return ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IPv4 or IPv6 network (e.g. 10.0.0.0/8, "
            f"192.168.1.20, 2001:db8::/32)"
        ) from None


@lru_cache(maxsize=1024)
def peerAddress(host: str | None) -> _Address | None:
    """
    The IP address in a transport's host string, or C{None} if it is not
    one (a UNIX socket). An IPv6 zone is dropped, and an IPv4-mapped IPv6
    address (a dual-stack listener's view of an IPv4 peer) is read as the
    IPv4 address, so that IPv4 networks match it.
    """
    if not host:
        return None
    try:
        address = ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class AccessList:
    """
    Source networks any calling AE may come from, and (calling AE title,
    network) pairs.

    @ivar networks: C{--allow-network}: any calling AE from these.
    @ivar peers: C{--allow-peer AET@CIDR}: this calling AE from this network.
    @ivar empty: whether no rule is set, so that everyone is admitted (an
        attribute, not a property: it is read for every connection).
    """

    networks: tuple[IPv4Network | IPv6Network, ...] = ()
    peers: tuple[tuple[str, IPv4Network | IPv6Network], ...] = ()
    empty: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "empty", not self.networks and not self.peers)

    @classmethod
    def build(
        cls,
        networks: Iterable[str | IPv4Network | IPv6Network] = (),
        peers: Iterable[tuple[str, str | IPv4Network | IPv6Network]] = (),
    ) -> AccessList:
        """
        An access list from networks and (title, network) pairs, as text
        or parsed.
        """
        return cls(
            tuple(_network(n) for n in networks),
            tuple((title, _network(n)) for title, n in peers),
        )

    def admitsSource(self, host: str | None) -> bool:
        """
        Whether a connection from C{host} may proceed to association.
        """
        if self.empty:
            return True
        address = peerAddress(host)
        if address is None:
            return True
        return _inAny(address, self.networks) or _inAny(
            address, (network for _, network in self.peers)
        )

    def admits(self, callingAETitle: str, host: str | None) -> bool:
        """
        Whether C{callingAETitle} may associate from C{host}.
        """
        if self.empty:
            return True
        address = peerAddress(host)
        if address is None:
            return True
        if _inAny(address, self.networks):
            return True
        return any(
            title == callingAETitle and address in network
            for title, network in self.peers
        )

    def describe(self) -> str:
        """
        The rules as one line for the log, e.g. C{10.0.0.0/8, CT1@10.1.0.0/16}.
        """
        return ", ".join(
            [str(n) for n in self.networks]
            + [f"{title}@{network}" for title, network in self.peers]
        )


def _network(value: str | IPv4Network | IPv6Network) -> IPv4Network | IPv6Network:
    return parseNetwork(value) if isinstance(value, str) else value


def _inAny(address: _Address, networks: Iterable[IPv4Network | IPv6Network]) -> bool:
    # An IPv4 address is never "in" an IPv6 network and vice versa.
    return any(address in network for network in networks)
