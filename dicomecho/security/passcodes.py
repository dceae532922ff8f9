# -*- test-case-name: tests.test_passcodes -*-
"""
Salted scrypt hashes of User Identity passcodes (PS3.7 D.3.3.7), as a
credentials file stores them: C{scrypt$N$r$p$SALT$KEY}, SALT and KEY in
standard base64, KEY the first L{KEY_LENGTH} bytes of scrypt (RFC 7914).

L{hashPasscode} writes one; L{parseHash} reads one into a L{PasscodeHash},
whose L{PasscodeHash.matches} checks a passcode in constant time. The cost
parameters are checked before any work, so a hostile file cannot ask for
more than L{MAX_COST} bytes of memory. Error messages quote no hash, salt,
key or passcode.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = [
    "DEFAULT_N",
    "DEFAULT_R",
    "DEFAULT_P",
    "SALT_LENGTH",
    "KEY_LENGTH",
    "MAX_COST",
    "PasscodeHash",
    "hashPasscode",
    "parseHash",
    "dummyHash",
]

#: Default scrypt cost: about 16 MiB and a few tens of milliseconds a hash.
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1

#: Bytes of random salt and of derived key in a hash written here.
SALT_LENGTH = 16
KEY_LENGTH = 32

#: The largest scrypt cost accepted, as C{128 * n * r * p} bytes: 1 GiB.
MAX_COST = 2**30

_SCHEME = "scrypt"


def _checkParameters(n: int, r: int, p: int) -> None:
    """
    Refuse scrypt parameters that are invalid or cost more than L{MAX_COST}.

    @raise ValueError: If they are. The message quotes no value.
    """
    if n < 2 or n & (n - 1):
        raise ValueError("scrypt n must be a power of two, at least 2")
    if r < 1 or p < 1:
        raise ValueError("scrypt r and p must be at least 1")
    if 128 * n * r * p > MAX_COST:
        raise ValueError("scrypt cost 128*n*r*p is over 1 GiB")
    if n.bit_length() > 16 * r:
        # RFC 7914 section 2: n must be less than 2**(128 * r / 8).
        raise ValueError("scrypt n must be less than 2**(16*r)")


def _derive(passcode: bytes, n: int, r: int, p: int, salt: bytes) -> bytes:
    """
    Run scrypt, with a memory limit just above what C{n}, C{r}, C{p} need.
    """
    maxmem = 128 * r * (n + p + 2) + 2**20
    return hashlib.scrypt(passcode, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=KEY_LENGTH)


@dataclass(frozen=True)
class PasscodeHash:
    """
    A parsed C{scrypt$N$r$p$SALT$KEY}.
    """

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def matches(self, passcode: bytes) -> bool:
        """
        Whether C{passcode} derives C{key}, compared in constant time.
        """
        return hmac.compare_digest(_derive(passcode, self.n, self.r, self.p, self.salt), self.key)


def dummyHash() -> PasscodeHash:
    """
    A hash at the default cost with a random salt and key: it matches no
    passcode but with negligible probability. Checking a passcode against
    it costs what checking a real one does.
    """
    return PasscodeHash(
        DEFAULT_N,
        DEFAULT_R,
        DEFAULT_P,
        secrets.token_bytes(SALT_LENGTH),
        secrets.token_bytes(KEY_LENGTH),
    )


def _decimal(text: str) -> int:
    """
    A positive decimal integer written in ASCII digits with no sign.

    @raise ValueError: If C{text} is not one.
    """
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or text[0] == "0":
        raise ValueError
    return int(text)


def parseHash(hashText: str) -> PasscodeHash:
    """
    Parse a C{scrypt$N$r$p$SALT$KEY}.

    @raise ValueError: If it is not one; the message quotes none of it.
    """
    fields = hashText.split("$")
    if len(fields) != 6:
        raise ValueError("malformed hash (expected scrypt$N$r$p$SALT$KEY)")
    if fields[0] != _SCHEME:
        raise ValueError("unsupported hash scheme (expected scrypt$N$r$p$SALT$KEY)")
    try:
        n, r, p = (_decimal(field) for field in fields[1:4])
    except ValueError:
        raise ValueError("malformed hash: N, r and p must be positive decimal integers") from None
    _checkParameters(n, r, p)
    try:
        salt = base64.b64decode(fields[4], validate=True)
    except binascii.Error:
        raise ValueError("malformed hash: salt is not valid base64") from None
    try:
        key = base64.b64decode(fields[5], validate=True)
    except binascii.Error:
        raise ValueError("malformed hash: key is not valid base64") from None
    if not salt:
        raise ValueError("malformed hash: salt is empty")
    if len(key) != KEY_LENGTH:
        raise ValueError(f"malformed hash: key is not {KEY_LENGTH} bytes")
    return PasscodeHash(n, r, p, salt, key)


def hashPasscode(
    passcode: bytes,
    *,
    n: int = DEFAULT_N,
    r: int = DEFAULT_R,
    p: int = DEFAULT_P,
    salt: bytes | None = None,
) -> str:
    """
    Hash a passcode for a credentials file.

    @param passcode: The passcode, as the SCU will send it.
    @param n: scrypt CPU and memory cost, a power of two.
    @param r: scrypt block size.
    @param p: scrypt parallelization.
    @param salt: The salt; by default L{SALT_LENGTH} random bytes.
    @return: C{scrypt$N$r$p$SALT$KEY}.
    @raise ValueError: If the parameters are invalid, or cost over
        L{MAX_COST}, or C{salt} is empty, or the passcode holds a NUL byte
        (scrypt's HMAC pads short keys with zeros, so C{b"pw\\0"} would hash
        as C{b"pw"}).
    """
    _checkParameters(n, r, p)
    if b"\0" in passcode:
        raise ValueError("a passcode may not contain NUL bytes")
    if salt is None:
        salt = secrets.token_bytes(SALT_LENGTH)
    elif not salt:
        raise ValueError("salt is empty")
    key = _derive(passcode, n, r, p, salt)
    encodedSalt = base64.b64encode(salt).decode("ascii")
    encodedKey = base64.b64encode(key).decode("ascii")
    return f"{_SCHEME}${n}${r}${p}${encodedSalt}${encodedKey}"
