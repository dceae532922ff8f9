# -*- test-case-name: tests.test_credentials -*-
"""
Users and passcodes for DICOM User Identity Negotiation (PS3.7 D.3.3.7).

A credentials file holds one user a line::

    # comments and blank lines are ignored
    alice:scrypt$16384$8$1$<SALT>$<KEY>
    modality-7:

C{alice} identifies with a username and passcode (User Identity Type 2):
her passcode is stored as a salted scrypt hash, C{scrypt$N$r$p$SALT$KEY},
SALT and KEY in standard base64. C{modality-7} has an empty hash and
identifies with a username only (Type 1). A user with a passcode is not
admitted by username alone.

Usernames are UTF-8 text of 1 to 255 characters with no C{:}, no control,
format or line-separator characters, no leading or trailing whitespace, and
not starting with C{#}. They are compared with the username bytes an SCU
sends exactly, with no case folding or Unicode normalization.

L{Credentials} is the parsed, immutable content of such a file;
L{CredentialsStore} re-reads a file when it changes, so an added, changed or
removed user takes effect for the next association without a restart.
L{hashPasscode}, L{formatEntry} and L{updateFile} write entries (see
L{dicomecho.cli.passwd} for the command). Error messages name the file and
line, and never quote a hash or a passcode.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile
import threading
import unicodedata
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Union

__all__ = [
    "DEFAULT_N",
    "DEFAULT_R",
    "DEFAULT_P",
    "SALT_LENGTH",
    "KEY_LENGTH",
    "MAX_COST",
    "MAX_USERNAME_LENGTH",
    "CredentialsError",
    "Credentials",
    "CredentialsStore",
    "hashPasscode",
    "validateUsername",
    "formatEntry",
    "updateFile",
]

StrPath = Union[str, "os.PathLike[str]"]

#: Default scrypt cost: about 16 MiB and a few tens of milliseconds a hash.
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1

#: Bytes of random salt and of derived key in a hash written here.
SALT_LENGTH = 16
KEY_LENGTH = 32

#: The largest scrypt cost accepted, as C{128 * n * r * p} bytes: 1 GiB.
MAX_COST = 2**30

MAX_USERNAME_LENGTH = 255

_SCHEME = "scrypt"

#: Unicode categories a username may not contain: controls, format
#: characters (such as a byte order mark), surrogates, line and paragraph
#: separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


class CredentialsError(ValueError):
    """
    A credentials file, or an entry for one, is unusable.

    The message names the file (C{source}) and line (C{lineNumber}) where
    they are known, and what is wrong; it never quotes a hash or a passcode.

    @ivar reason: What is wrong.
    @ivar source: The file, or C{None}.
    @ivar lineNumber: The 1-based line, or C{None}.
    """

    def __init__(self, reason: str, source: str | None = None, lineNumber: int | None = None):
        self.reason = reason
        self.source = source
        self.lineNumber = lineNumber
        where = source or ""
        if lineNumber is not None:
            where = f"{where}, line {lineNumber}" if where else f"line {lineNumber}"
        super().__init__(f"{where}: {reason}" if where else reason)


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


@dataclass(frozen=True)
class _Hash:
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


def _derive(passcode: bytes, n: int, r: int, p: int, salt: bytes) -> bytes:
    """
    Run scrypt, with a memory limit just above what C{n}, C{r}, C{p} need.
    """
    maxmem = 128 * r * (n + p + 2) + 2**20
    return hashlib.scrypt(passcode, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=KEY_LENGTH)


def _decimal(text: str) -> int:
    """
    A positive decimal integer written in ASCII digits with no sign.

    @raise ValueError: If C{text} is not one.
    """
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or text[0] == "0":
        raise ValueError
    return int(text)


def _parseHash(hashText: str) -> _Hash:
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
    return _Hash(n, r, p, salt, key)


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
        (see L{Credentials.verify}).
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


def _usernameProblem(username: str) -> str | None:
    """
    What makes C{username} invalid, or C{None}. The answer does not quote it.
    """
    if not username:
        return "empty username"
    if len(username) > MAX_USERNAME_LENGTH:
        return f"username longer than {MAX_USERNAME_LENGTH} characters"
    if ":" in username:
        return "username contains ':'"
    if username != username.strip():
        return "username has leading or trailing whitespace"
    if username.startswith("#"):
        return "username starts with '#'"
    if any(unicodedata.category(c) in _FORBIDDEN_CATEGORIES for c in username):
        return "username contains a control character"
    return None


def validateUsername(username: str) -> None:
    """
    Check that C{username} can be written to a credentials file.

    @raise CredentialsError: If it cannot.
    """
    problem = _usernameProblem(username)
    if problem is not None:
        raise CredentialsError(problem)


def formatEntry(username: str, hashText: str) -> str:
    """
    The line, without its newline, for a user.

    @param username: The username.
    @param hashText: From L{hashPasscode}, or C{""} for a user who
        identifies with a username only.
    @return: C{username:hashText}.
    @raise CredentialsError: If C{username} or C{hashText} is invalid.
    """
    validateUsername(username)
    if hashText:
        try:
            _parseHash(hashText)
        except ValueError as e:
            raise CredentialsError(f"user {username!r}: {e}") from None
    return f"{username}:{hashText}"


def _splitLines(text: str) -> list[str]:
    """
    The lines of C{text}, each with its C{"\\n"} removed. A final empty
    string stands for a trailing newline.
    """
    return text.split("\n")


def _entryUsername(line: str) -> str | None:
    """
    The username on an entry line, or C{None} for a blank or comment line.

    @raise ValueError: If the line is neither and has no C{:}.
    """
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    username, colon, _ = line.partition(":")
    if not colon:
        raise ValueError("no ':' on line (expected username:hash)")
    return username


def _readText(path: str) -> tuple[os.stat_result, str]:
    """
    Read a credentials file as UTF-8 (an initial byte order mark is
    dropped), and its status at the time of reading.

    @raise FileNotFoundError: If there is no file.
    @raise CredentialsError: If it cannot be read or is not UTF-8.
    """
    try:
        with open(path, "rb") as f:
            status = os.fstat(f.fileno())
            data = f.read()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CredentialsError(f"cannot read: {e.strerror or e}", path) from None
    try:
        return status, data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        lineNumber = data.count(b"\n", 0, e.start) + 1
        raise CredentialsError("not valid UTF-8", path, lineNumber) from None


class Credentials:
    """
    The users of a credentials file, immutable and so safe to share
    between threads.
    """

    __slots__ = ("_entries", "_source", "_dummy")

    def __init__(self, entries: Mapping[str, _Hash | None], source: str = "<credentials>"):
        """
        Use L{parse} or L{load}.

        @param entries: Each username and its hash, or C{None} for a
            username-only user, in file order.
        @param source: Where they come from, for L{__repr__}.
        """
        self._entries: Mapping[bytes, _Hash | None] = MappingProxyType(
            {username.encode("utf-8"): entry for username, entry in entries.items()}
        )
        self._source = source
        # Checked against for unknown and username-only users, so that a
        # type 2 request costs one scrypt whoever it names. The key matches
        # no passcode but with negligible probability, and is never used
        # to admit anyone.
        self._dummy = _Hash(
            DEFAULT_N,
            DEFAULT_R,
            DEFAULT_P,
            secrets.token_bytes(SALT_LENGTH),
            secrets.token_bytes(KEY_LENGTH),
        )

    @classmethod
    def parse(cls, text: str, source: str = "<credentials>") -> Credentials:
        """
        Parse the text of a credentials file.

        @param text: The text.
        @param source: The file name, for error messages.
        @return: The users.
        @raise CredentialsError: At the first bad line.
        """
        entries: dict[str, _Hash | None] = {}
        firstLines: dict[str, int] = {}
        for index, line in enumerate(_splitLines(text)):
            lineNumber = index + 1
            try:
                username = _entryUsername(line)
            except ValueError as e:
                raise CredentialsError(str(e), source, lineNumber) from None
            if username is None:
                continue
            problem = _usernameProblem(username)
            if problem is not None:
                raise CredentialsError(problem, source, lineNumber)
            if username in firstLines:
                raise CredentialsError(
                    f"duplicate user {username!r} (first on line {firstLines[username]})",
                    source,
                    lineNumber,
                )
            hashText = line.partition(":")[2].strip()
            entry = None
            if hashText:
                try:
                    entry = _parseHash(hashText)
                except ValueError as e:
                    raise CredentialsError(f"user {username!r}: {e}", source, lineNumber) from None
            firstLines[username] = lineNumber
            entries[username] = entry
        return cls(entries, source)

    @classmethod
    def load(cls, path: StrPath) -> Credentials:
        """
        Read and parse a credentials file.

        @param path: The file.
        @return: The users.
        @raise CredentialsError: If the file cannot be read, is not UTF-8 or
            does not parse.
        """
        return _load(os.fspath(path))[1]

    def verify(self, username: bytes, passcode: bytes | None) -> bool:
        """
        Whether a user identity is admitted.

        A type 2 request (with a passcode) costs one scrypt whether or not
        the user exists, so its time does not tell which usernames do.

        @param username: The primary field, as sent.
        @param passcode: The secondary field for User Identity Type 2, or
            C{None} for Type 1 (username only).
        @return: For type 1, whether the user exists without a passcode; for
            type 2, whether the user has a passcode and this is it. A
            passcode with a NUL byte is never admitted: scrypt's HMAC pads
            short keys with zeros, so C{b"pw\\0"} would hash as C{b"pw"}.
        """
        entry = self._entries.get(username)
        if passcode is None:
            return username in self._entries and entry is None
        if entry is None or b"\0" in passcode:
            self._dummy.matches(passcode)
            return False
        return entry.matches(passcode)

    def usernames(self) -> tuple[str, ...]:
        """
        The usernames, in file order.
        """
        return tuple(username.decode("utf-8") for username in self._entries)

    def __contains__(self, username: object) -> bool:
        if not isinstance(username, str):
            return False
        try:
            return username.encode("utf-8") in self._entries
        except UnicodeEncodeError:
            return False

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        count = len(self._entries)
        return f"<Credentials from {self._source!r}: {count} user{'' if count == 1 else 's'}>"


def _stamp(status: os.stat_result) -> tuple[int, ...]:
    """
    What tells that a file has changed: a replaced file has a new inode, a
    rewritten one a new size or modification time, a chmod a new ctime.
    """
    return (
        status.st_dev,
        status.st_ino,
        status.st_size,
        status.st_mtime_ns,
        status.st_ctime_ns,
    )


def _load(path: str) -> tuple[tuple[int, ...], Credentials]:
    """
    Read and parse a credentials file, with the stamp of what was read.

    @raise CredentialsError: If the file is missing, unreadable or bad.
    """
    try:
        status, text = _readText(path)
    except FileNotFoundError:
        raise CredentialsError("cannot read: no such file", path) from None
    return _stamp(status), Credentials.parse(text, path)


class CredentialsStore:
    """
    A credentials file, re-read when it has changed.

    Each L{verify} checks the file's status and re-reads it if it changed
    since the last read, so edits take effect at once. If it can then no
    longer be read or parsed, L{verify} raises rather than use what it
    read before. Safe to call from several threads; scrypt runs outside the
    lock.
    """

    def __init__(self, path: StrPath):
        """
        @param path: The credentials file.
        @raise CredentialsError: If it cannot be read or parsed now.
        """
        self._path = os.fspath(path)
        self._lock = threading.Lock()
        self._stamp, self._credentials = _load(self._path)

    @property
    def path(self) -> str:
        """
        The credentials file.
        """
        return self._path

    def current(self) -> Credentials:
        """
        The file's users now, re-reading it if it changed.

        @raise CredentialsError: If it has gone, or can no longer be read or
            parsed.
        """
        with self._lock:
            try:
                status = os.stat(self._path)
            except OSError as e:
                raise CredentialsError(f"cannot read: {e.strerror or e}", self._path) from None
            if _stamp(status) != self._stamp:
                self._stamp, self._credentials = _load(self._path)
            return self._credentials

    def verify(self, username: bytes, passcode: bytes | None) -> bool:
        """
        L{Credentials.verify} against the file's current users.

        @raise CredentialsError: If the file has gone, or can no longer be
            read or parsed; the caller should reject the association.
        """
        return self.current().verify(username, passcode)

    def __repr__(self) -> str:
        return f"<CredentialsStore {self._path!r}>"


def updateFile(
    path: StrPath,
    username: str,
    hashText: str | None,
    *,
    delete: bool = False,
) -> None:
    """
    Add, change or delete one user in a credentials file, keeping every
    other line, comment and blank line where it was.

    A changed user's line is replaced in place; a new user is appended.
    The file is written whole to a temporary file in the same directory,
    with mode 0600 (and the old file's owner and group where permitted),
    synced, and renamed over the old one, so a reader sees either the old
    or the new file. A missing file is created. A symbolic link is
    followed and the file it names replaced.

    @param path: The credentials file.
    @param username: The user.
    @param hashText: From L{hashPasscode}, C{""} for a username-only user,
        or C{None} with C{delete}.
    @param delete: Remove the user instead.
    @raise CredentialsError: If C{username} or C{hashText} is invalid, the
        existing file cannot be read or does not parse (it is left alone),
        or C{delete} names a user who is not in the file.
    @raise ValueError: If C{hashText} is C{None} without C{delete}, or not
        C{None} with it.
    @raise OSError: If the file cannot be written.
    """
    if delete:
        if hashText is not None:
            raise ValueError("hashText must be None to delete a user")
        validateUsername(username)
        newLine = None
    else:
        if hashText is None:
            raise ValueError("hashText is required unless deleting")
        newLine = formatEntry(username, hashText)
    path = os.path.realpath(os.fspath(path))
    try:
        status: os.stat_result | None
        status, text = _readText(path)
    except FileNotFoundError:
        status, text = None, ""
    Credentials.parse(text, path)

    lines = _splitLines(text)
    if lines[-1] == "":
        # The file ends with a newline, or is empty.
        lines.pop()
    position = next(
        (index for index, line in enumerate(lines) if _entryUsername(line) == username),
        None,
    )
    if position is None:
        if newLine is None:
            raise CredentialsError(f"no user {username!r} to delete", path)
        lines.append(newLine)
    elif newLine is None:
        del lines[position]
    else:
        # Keep a CRLF line ending.
        ending = "\r" if lines[position].endswith("\r") else ""
        lines[position] = newLine + ending
    newText = "".join(line + "\n" for line in lines)
    _replaceFile(path, newText.encode("utf-8"), status)


def _replaceFile(path: str, data: bytes, previous: os.stat_result | None) -> None:
    """
    Atomically replace C{path} with a mode 0600 file holding C{data}.

    @param previous: The status of the file replaced, if any, whose owner
        and group the new file keeps where the process may set them.
    """
    directory, name = os.path.split(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with open(descriptor, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            if previous is not None:
                try:
                    os.fchown(f.fileno(), previous.st_uid, previous.st_gid)
                except OSError:
                    pass
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    try:
        directoryDescriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directoryDescriptor)
    except OSError:
        pass
    finally:
        os.close(directoryDescriptor)
