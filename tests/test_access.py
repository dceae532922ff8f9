"""
Tests for L{dicomecho.security.access}: network parsing, address normalisation and
the two admission questions, including a property against a brute-force
reading of the rules.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomecho.security.access import AccessList, parseNetwork, peerAddress


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.1.2.3/8", "10.0.0.0/8"),
        (" 192.168.1.20 ", "192.168.1.20/32"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("::1", "::1/128"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_parseNetwork(text: str, expected: str) -> None:
    assert str(parseNetwork(text)) == expected


@pytest.mark.parametrize("text", ["", "10.0.0.0/33", "host.example", "10.0.0/8x", "CT1@10.0.0.0/8"])
def test_parseNetworkRefuses(text: str) -> None:
    with pytest.raises(ValueError, match="not an IPv4 or IPv6 network"):
        parseNetwork(text)


@pytest.mark.parametrize(
    "host, expected",
    [
        ("10.1.2.3", IPv4Address("10.1.2.3")),
        ("::ffff:10.1.2.3", IPv4Address("10.1.2.3")),
        ("fe80::1%eth0", IPv6Address("fe80::1")),
        ("2001:db8::1", IPv6Address("2001:db8::1")),
        ("/run/dicom.sock", None),
        ("", None),
        (None, None),
    ],
)
def test_peerAddress(host: str | None, expected: object) -> None:
    assert peerAddress(host) == expected


def test_emptyAdmitsEveryone() -> None:
    access = AccessList()
    assert access.empty
    assert access.admitsSource("203.0.113.9")
    assert access.admits("ANY", "203.0.113.9")
    assert access.describe() == ""


def test_describe() -> None:
    access = AccessList.build(["10.0.0.0/8"], [("CT1", "192.168.1.0/24")])
    assert access.describe() == "10.0.0.0/8, CT1@192.168.1.0/24"


def test_unixSocketsAreLocal() -> None:
    access = AccessList.build(["10.0.0.0/8"])
    assert access.admitsSource("/run/dicom.sock")
    assert access.admits("X", "/run/dicom.sock")


def test_familiesDoNotMix() -> None:
    """
    An IPv4 rule never admits an IPv6 source (other than IPv4-mapped) and
    vice versa.
    """
    access = AccessList.build(["0.0.0.0/0"])
    assert access.admitsSource("192.0.2.1")
    assert not access.admitsSource("2001:db8::1")
    assert access.admitsSource("::ffff:192.0.2.1")
    assert AccessList.build(["::/0"]).admitsSource("2001:db8::1")
    assert not AccessList.build(["::/0"]).admitsSource("192.0.2.1")


addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda n: str(IPv4Address(n))),
    st.integers(0, 2**128 - 1).map(lambda n: str(IPv6Address(n))),
)
networks = st.one_of(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(
        lambda t: ip_network((t[0], t[1]), strict=False)
    ),
    st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)).map(
        lambda t: ip_network((IPv6Address(t[0]), t[1]), strict=False)
    ),
)
titles = st.sampled_from(["CT1", "MR1", "US1"])


@given(
    st.lists(networks, max_size=3),
    st.lists(st.tuples(titles, networks), max_size=3),
    addresses,
    titles,
)
def test_rulesMatchTheirReading(nets, peers, host, title) -> None:  # type: ignore[no-untyped-def]
    """
    admitsSource and admits agree with a literal reading of the rules, and
    an association admitted is always from an admitted source.
    """
    access = AccessList.build(nets, peers)
    address = ip_address(host)
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped

    def inside(network: object) -> bool:
        return address.version == network.version and address in network  # type: ignore[attr-defined]

    empty = not nets and not peers
    source = empty or any(inside(n) for n in nets) or any(inside(n) for _, n in peers)
    association = empty or any(inside(n) for n in nets) or any(t == title and inside(n) for t, n in peers)
    assert access.admitsSource(host) == source
    assert access.admits(title, host) == association
    assert not association or source
