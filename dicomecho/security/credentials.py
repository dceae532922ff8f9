# -*- test-case-name: tests.test_credentials -*-
"""
Users and passcodes for DICOM User Identity Negotiation (PS3.7 D.3.3.7).

A credentials file holds one user a line::

    # comments and blank lines are ignored
    alice:scrypt$16384$8$1$<SALT>$<KEY>
    modality-7:

C{alice} identifies with a username and passcode (User Identity Type 2):
her passcode is stored as a salted scrypt hash, C{scrypt$N$r$p$SALT$KEY},
SALT and KEY in standard base64 (L{dicomecho.security.passcodes} makes and
checks them). C{modality-7} has an empty hash and
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

import os
import tempfile
import threading
import unicodedata
from types import MappingProxyType
from typing import Mapping, Union

from dicomecho.security.passcodes import PasscodeHash, dummyHash, parseHash

__all__ = [
    "MAX_USERNAME_LENGTH",
    "CredentialsError",
    "Credentials",
    "CredentialsStore",
    "validateUsername",
    "formatEntry",
    "updateFile",
]

StrPath = Union[str, "os.PathLike[str]"]

MAX_USERNAME_LENGTH = 255

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
            parseHash(hashText)
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

    def __init__(self, entries: Mapping[str, PasscodeHash | None], source: str = "<credentials>"):
        """
        Use L{parse} or L{load}.

        @param entries: Each username and its hash, or C{None} for a
            username-only user, in file order.
        @param source: Where they come from, for L{__repr__}.
        """
        self._entries: Mapping[bytes, PasscodeHash | None] = MappingProxyType(
            {username.encode("utf-8"): entry for username, entry in entries.items()}
        )
        self._source = source
        # Checked against for unknown and username-only users, so that a
        # type 2 request costs one scrypt whoever it names; it is never used
        # to admit anyone.
        self._dummy = dummyHash()

    @classmethod
    def parse(cls, text: str, source: str = "<credentials>") -> Credentials:
        """
        Parse the text of a credentials file.

        @param text: The text.
        @param source: The file name, for error messages.
        @return: The users.
        @raise CredentialsError: At the first bad line.
        """
        entries: dict[str, PasscodeHash | None] = {}
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
                    entry = parseHash(hashText)
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
    newLine = _changedEntry(username, hashText, delete)
    path = os.path.realpath(os.fspath(path))
    try:
        status: os.stat_result | None
        status, text = _readText(path)
    except FileNotFoundError:
        status, text = None, ""
    Credentials.parse(text, path)
    newText = _editedText(text, username, newLine, path)
    _replaceFile(path, newText.encode("utf-8"), status)


def _changedEntry(username: str, hashText: str | None, delete: bool) -> str | None:
    """
    The line C{username} will have, or C{None} to delete it; the arguments
    are those of L{updateFile}.

    @raise CredentialsError: If C{username} or C{hashText} is invalid.
    @raise ValueError: If C{hashText} and C{delete} disagree.
    """
    if delete:
        if hashText is not None:
            raise ValueError("hashText must be None to delete a user")
        validateUsername(username)
        return None
    if hashText is None:
        raise ValueError("hashText is required unless deleting")
    return formatEntry(username, hashText)


def _editedText(text: str, username: str, newLine: str | None, path: str) -> str:
    """
    C{text} with C{username}'s line replaced by C{newLine} (appended if the
    user is new, removed if C{newLine} is C{None}), every other line kept.

    @raise CredentialsError: If C{newLine} is C{None} and there is no such
        user.
    """
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
    return "".join(line + "\n" for line in lines)


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
