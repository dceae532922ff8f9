"""
Tests for L{dicomecho.security.passcodes}: the C{scrypt$N$r$p$SALT$KEY} form,
a known answer, the default cost, parameter limits, parsing and the dummy
hash.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from dicomecho.security.credentials import Credentials
from dicomecho.security.passcodes import (
    DEFAULT_N,
    KEY_LENGTH,
    SALT_LENGTH,
    PasscodeHash,
    dummyHash,
    hashPasscode,
    parseHash,
)

#: A cheap scrypt cost for tests.
FAST = {"n": 2**4, "r": 8, "p": 1}


def fastHash(passcode: bytes) -> str:
    return hashPasscode(passcode, **FAST)


class TestHashPasscode:
    def test_format(self) -> None:
        """
        A hash is C{scrypt$N$r$p$SALT$KEY}, with a random 16-byte salt and a
        32-byte key in standard base64.
        """
        scheme, n, r, p, salt, key = fastHash(b"x").split("$")
        assert (scheme, n, r, p) == ("scrypt", "16", "8", "1")
        assert len(base64.b64decode(salt, validate=True)) == SALT_LENGTH
        assert len(base64.b64decode(key, validate=True)) == KEY_LENGTH
        assert fastHash(b"x") != fastHash(b"x")

    def test_knownAnswer(self) -> None:
        """
        The key is the first 32 bytes of scrypt as in RFC 7914 section 12.
        """
        hashText = hashPasscode(b"password", n=1024, r=8, p=16, salt=b"NaCl")
        expected = bytes.fromhex(
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
        )
        assert hashText == "scrypt$1024$8$16$TmFDbA==$" + base64.b64encode(expected).decode()

    def test_defaultsRoundTrip(self) -> None:
        """
        The default cost is n=2**14, r=8, p=1, and what it writes verifies.
        """
        hashText = hashPasscode(b"s3cret")
        assert hashText.startswith("scrypt$16384$8$1$")
        users = Credentials.parse(f"alice:{hashText}\n")
        assert users.verify(b"alice", b"s3cret")
        assert not users.verify(b"alice", b"s3cret ")

    @pytest.mark.parametrize(
        "parameters",
        [
            {"n": 0},
            {"n": 1},
            {"n": 3},
            {"n": 48},
            {"r": 0},
            {"p": 0},
            {"n": 2**21, "r": 8},
            {"n": 2**4, "r": 8, "p": 2**20},
            {"n": 2**16, "r": 1},
            {"salt": b""},
        ],
    )
    def test_badParameters(self, parameters: dict[str, Any]) -> None:
        """
        Invalid or absurdly costly parameters are refused before any work.
        """
        with pytest.raises(ValueError):
            hashPasscode(b"x", **parameters)


class TestParseHash:
    def test_parsed(self) -> None:
        """
        A written hash parses back to its parameters, salt and key, and
        matches its passcode and no other, except that scrypt's HMAC
        zero-pads short keys, so trailing NULs match too: the reason
        L{Credentials.verify} refuses any passcode with a NUL.
        """
        parsed = parseHash(hashPasscode(b"s3cret", salt=b"pepper", **FAST))
        assert (parsed.n, parsed.r, parsed.p, parsed.salt) == (16, 8, 1, b"pepper")
        assert len(parsed.key) == KEY_LENGTH
        assert parsed.matches(b"s3cret")
        assert not parsed.matches(b"s3cret ")
        assert not parsed.matches(b"")
        assert parsed.matches(b"s3cret\0")
        users = Credentials.parse(f"alice:{hashPasscode(b's3cret', salt=b'pepper', **FAST)}\n")
        assert not users.verify(b"alice", b"s3cret\0")

    @pytest.mark.parametrize(
        "hashText",
        ["", "scrypt", "scrypt$16$8$1$AA==", "bcrypt$16$8$1$AA==$AA==", "scrypt$16$8$1$AA==$AA=="],
    )
    def test_malformed(self, hashText: str) -> None:
        """
        What is not a whole scrypt hash with a 32-byte key raises
        L{ValueError}.
        """
        with pytest.raises(ValueError, match="hash"):
            parseHash(hashText)

    def test_dummy(self) -> None:
        """
        The dummy hash has the default cost and a fresh random salt and key
        each time.
        """
        first, second = dummyHash(), dummyHash()
        assert isinstance(first, PasscodeHash)
        assert (first.n, len(first.salt), len(first.key)) == (DEFAULT_N, SALT_LENGTH, KEY_LENGTH)
        assert first.salt != second.salt and first.key != second.key
