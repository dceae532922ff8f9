"""
Tests for L{dicomecho.security.credentials}: the file format and its errors, the
User Identity verification truth table and its constant-cost dummy check,
reloading by L{CredentialsStore}, and atomic rewriting by L{updateFile}. The
scrypt hashes themselves are tested in C{tests.test_passcodes}.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dicomecho.security import credentials, passcodes
from dicomecho.security.credentials import (
    MAX_USERNAME_LENGTH,
    Credentials,
    CredentialsError,
    CredentialsStore,
    formatEntry,
    updateFile,
    validateUsername,
)
from dicomecho.security.passcodes import hashPasscode
from dicomecho.security.passcodes import DEFAULT_N

#: A cheap scrypt cost for tests.
FAST = {"n": 2**4, "r": 8, "p": 1}

ALICE_PASSCODE = b"correct horse"
ALICE_HASH = hashPasscode(ALICE_PASSCODE, salt=b"alice salt 16 by", **FAST)
SALT_TEXT, KEY_TEXT = ALICE_HASH.split("$")[4:]
BOB_HASH = hashPasscode(b"bob's passcode", **FAST)

TEXT = f"""\
# Users for the echo SCP
alice:{ALICE_HASH}

  # username only:
modality-7:
bob:{BOB_HASH}
"""


def fastHash(passcode: bytes) -> str:
    return hashPasscode(passcode, **FAST)


#: Usernames valid by the rules of the module.
usernames = (
    st.text(
        alphabet=st.characters(
            blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"), blacklist_characters=":"
        ),
        min_size=1,
        max_size=MAX_USERNAME_LENGTH,
    )
    .map(str.strip)
    .filter(lambda name: name and not name.startswith("#"))
)


class TestParse:
    def test_parse(self) -> None:
        """
        Comments and blank lines are skipped; users keep file order.
        """
        users = Credentials.parse(TEXT, "users.txt")
        assert len(users) == 3
        assert users.usernames() == ("alice", "modality-7", "bob")
        assert "alice" in users and "modality-7" in users
        assert "carol" not in users and b"alice" not in users and "\ud800" not in users

    def test_crlfAndByteOrderMark(self, tmp_path: Path) -> None:
        """
        A file with CRLF line endings and a UTF-8 byte order mark loads.
        """
        path = tmp_path / "users.txt"
        path.write_bytes(b"\xef\xbb\xbf" + TEXT.replace("\n", "\r\n").encode())
        users = Credentials.load(path)
        assert users.usernames() == ("alice", "modality-7", "bob")
        assert users.verify(b"alice", ALICE_PASSCODE)
        assert users.verify(b"modality-7", None)

    def test_repr(self) -> None:
        """
        The repr gives the source and number of users, and no hash.
        """
        text = repr(Credentials.parse(TEXT, "users.txt"))
        assert text == "<Credentials from 'users.txt': 3 users>"
        assert repr(Credentials.parse("a:\n")) == "<Credentials from '<credentials>': 1 user>"

    def test_empty(self) -> None:
        assert len(Credentials.parse("")) == 0
        assert len(Credentials.parse("# nobody\n\n")) == 0

    @pytest.mark.parametrize(
        "line, reason",
        [
            ("alice", "no ':'"),
            (f"alice {ALICE_HASH}", "no ':'"),
            (":", "empty username"),
            (f":{ALICE_HASH}", "empty username"),
            (" alice:", "whitespace"),
            ("alice :", "whitespace"),
            ("al\tice:", "control character"),
            ("al\x00ice:", "control character"),
            ("al\u2028ice:", "control character"),
            ("al\u200bice:", "control character"),
            ("x" * 256 + ":", "longer than 255"),
            ("alice:scrypt", "malformed hash"),
            (f"alice:{ALICE_HASH}$", "malformed hash"),
            (f"alice:bcrypt{ALICE_HASH[6:]}", "unsupported hash scheme"),
            (f"alice:{ALICE_HASH.replace('$16$', '$sixteen$')}", "decimal"),
            (f"alice:{ALICE_HASH.replace('$16$', '$016$')}", "decimal"),
            (f"alice:{ALICE_HASH.replace('$16$', '$+16$')}", "decimal"),
            (f"alice:{ALICE_HASH.replace('$16$', '$15$')}", "power of two"),
            (f"alice:{ALICE_HASH.replace('$8$', '$0$')}", "decimal"),
            (f"alice:{ALICE_HASH.replace('$16$', '$8388608$')}", "over 1 GiB"),
            (f"alice:{ALICE_HASH.replace(SALT_TEXT, SALT_TEXT[:-1])}", "salt is not valid base64"),
            (f"alice:{ALICE_HASH.replace(SALT_TEXT, '!' + SALT_TEXT[1:])}", "salt is not"),
            (f"alice:{ALICE_HASH.replace(SALT_TEXT, '')}", "salt is empty"),
            (f"alice:{ALICE_HASH.replace(KEY_TEXT, KEY_TEXT[:-2])}", "key is not valid base64"),
            (f"alice:{ALICE_HASH.replace(KEY_TEXT, KEY_TEXT[4:])}", "key is not 32 bytes"),
        ],
    )
    def test_errors(self, line: str, reason: str) -> None:
        """
        A bad line is reported with the file, its line number and what is
        wrong, and the message quotes no hash, salt or key.
        """
        text = f"# header\nbob:{BOB_HASH}\n\n{line}\ncarol:\n"
        with pytest.raises(CredentialsError) as raised:
            Credentials.parse(text, "users.txt")
        message = str(raised.value)
        assert message.startswith("users.txt, line 4: ")
        assert reason in message
        assert raised.value.lineNumber == 4 and raised.value.source == "users.txt"
        for secret in (ALICE_HASH, SALT_TEXT, KEY_TEXT, BOB_HASH, line.partition(":")[2]):
            if len(secret) > 6:
                assert secret not in message

    def test_duplicate(self) -> None:
        """
        A username listed twice is an error naming both lines.
        """
        text = f"alice:{ALICE_HASH}\nbob:\n# again\nalice:\n"
        with pytest.raises(CredentialsError) as raised:
            Credentials.parse(text, "users.txt")
        assert str(raised.value) == (
            "users.txt, line 4: duplicate user 'alice' (first on line 1)"
        )

    def test_loadErrors(self, tmp_path: Path) -> None:
        """
        A missing, unreadable or non-UTF-8 file raises L{CredentialsError}
        naming it, and the line of a bad byte.
        """
        with pytest.raises(CredentialsError, match="no such file"):
            Credentials.load(tmp_path / "missing")
        with pytest.raises(CredentialsError, match="cannot read"):
            Credentials.load(tmp_path)
        path = tmp_path / "users.txt"
        path.write_bytes(b"alice:\nb\xffb:\n")
        with pytest.raises(CredentialsError) as raised:
            Credentials.load(path)
        assert str(raised.value) == f"{path}, line 2: not valid UTF-8"

    @given(username=usernames)
    def test_validUsernames(self, username: str) -> None:
        """
        Any username valid by the rules is written and read back as is.
        """
        users = Credentials.parse(formatEntry(username, "") + "\n")
        assert users.usernames() == (username,)
        assert users.verify(username.encode("utf-8"), None)

    @pytest.mark.parametrize(
        "username",
        ["", "a:b", " a", "a ", "a\n", "a\tb", "#a", "x" * 256, "a\u2029", "\ufeffa", "\ud800"],
    )
    def test_invalidUsernames(self, username: str) -> None:
        with pytest.raises(CredentialsError):
            validateUsername(username)
        with pytest.raises(CredentialsError):
            formatEntry(username, "")

    def test_formatEntry(self) -> None:
        """
        L{formatEntry} joins username and hash, and refuses a bad hash
        without quoting it.
        """
        assert formatEntry("alice", ALICE_HASH) == f"alice:{ALICE_HASH}"
        assert formatEntry("Ünïcødé 名前", "") == "Ünïcødé 名前:"
        bad = ALICE_HASH[:-8]
        with pytest.raises(CredentialsError) as raised:
            formatEntry("alice", bad)
        assert bad not in str(raised.value) and KEY_TEXT[:8] not in str(raised.value)


class TestVerify:
    users = Credentials.parse(TEXT)

    @pytest.mark.parametrize(
        "username, passcode, expected",
        [
            # Type 1: username only.
            (b"modality-7", None, True),
            (b"alice", None, False),
            (b"carol", None, False),
            (b"modality-7\xff", None, False),
            (b"\xff\xfe", None, False),
            (b"", None, False),
            # Type 2: username and passcode.
            (b"alice", ALICE_PASSCODE, True),
            (b"alice", ALICE_PASSCODE + b" ", False),
            (b"alice", b"", False),
            (b"alice", b"bob's passcode", False),
            (b"bob", b"bob's passcode", True),
            (b"bob", ALICE_PASSCODE, False),
            (b"ALICE", ALICE_PASSCODE, False),
            (b"alice ", ALICE_PASSCODE, False),
            (b"modality-7", b"", False),
            (b"modality-7", b"anything", False),
            (b"carol", ALICE_PASSCODE, False),
            (b"al\xffice", ALICE_PASSCODE, False),
        ],
    )
    def test_truthTable(self, username: bytes, passcode: bytes | None, expected: bool) -> None:
        assert self.users.verify(username, passcode) is expected

    def test_dummyScrypt(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        A type 2 request costs one scrypt whoever it names: for an unknown,
        username-only or non-UTF-8 user it is run at the default cost
        against one dummy entry, made once per L{Credentials}. A type 1
        request runs none.
        """
        calls: list[tuple[int, bytes]] = []
        realScrypt = hashlib.scrypt

        def scrypt(password: bytes, **kwargs: Any) -> bytes:
            calls.append((kwargs["n"], kwargs["salt"]))
            return realScrypt(password, **kwargs)

        monkeypatch.setattr(passcodes.hashlib, "scrypt", scrypt)
        users = Credentials.parse(TEXT)
        for username in (b"carol", b"modality-7", b"\xff"):
            del calls[:]
            assert not users.verify(username, b"guess")
            assert [n for n, salt in calls] == [DEFAULT_N]
        dummySalt = calls[0][1]

        del calls[:]
        assert not users.verify(b"dave", b"guess")
        assert calls == [(DEFAULT_N, dummySalt)]

        del calls[:]
        assert users.verify(b"alice", ALICE_PASSCODE)
        assert calls == [(FAST["n"], b"alice salt 16 by")]

        del calls[:]
        for username in (b"carol", b"alice", b"modality-7"):
            users.verify(username, None)
        assert calls == []

        assert Credentials.parse(TEXT)._dummy.salt != dummySalt

    @given(username=usernames, passcode=st.binary(max_size=64), other=st.binary(max_size=64))
    def test_roundTrip(self, username: str, passcode: bytes, other: bytes) -> None:
        """
        For any valid username and passcode (without NUL), the hash verifies
        the passcode and no other. Hypothesis found b"" and b"\\0" equal
        under scrypt (HMAC zero-pads short keys): NUL is refused instead.
        """
        passcode = passcode.replace(b"\0", b"")
        assume(passcode != other)
        users = Credentials.parse(formatEntry(username, fastHash(passcode)) + "\n")
        encoded = username.encode("utf-8")
        assert users.verify(encoded, passcode)
        assert not users.verify(encoded, other)
        assert not users.verify(encoded, None)

    @pytest.mark.parametrize("presented", [b"pw\0", b"pw\0\0", b"\0pw", b"p\0w"])
    def test_nulNeverAdmitted(self, presented: bytes) -> None:
        """
        scrypt would hash C{pw} and C{pw} plus NULs alike; a passcode with a
        NUL is refused, and none can be hashed.
        """
        users = Credentials.parse(formatEntry("alice", fastHash(b"pw")) + "\n")
        assert users.verify(b"alice", b"pw")
        assert not users.verify(b"alice", presented)
        with pytest.raises(ValueError, match="NUL"):
            hashPasscode(presented, n=16)

    def test_threads(self) -> None:
        """
        Several threads can verify against one L{Credentials} at once.
        """
        attempts = [(b"alice", ALICE_PASSCODE, True), (b"bob", b"nope", False)] * 50
        attempts += [(b"modality-7", None, True)] * 50

        def check(attempt: tuple[bytes, bytes | None, bool]) -> bool:
            username, passcode, expected = attempt
            return self.users.verify(username, passcode) is expected

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(check, attempts))


def writeUsers(path: Path, text: str) -> None:
    """
    Rewrite C{path} in place and make sure its modification time moves,
    however coarse the file system's clock.
    """
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))


class TestCredentialsStore:
    @pytest.fixture
    def path(self, tmp_path: Path) -> Path:
        path = tmp_path / "users.txt"
        path.write_text(TEXT, encoding="utf-8")
        return path

    def test_changedPasscode(self, path: Path) -> None:
        """
        A passcode changed with L{updateFile} applies to the next verify.
        """
        store = CredentialsStore(path)
        assert store.verify(b"alice", ALICE_PASSCODE)
        updateFile(path, "alice", fastHash(b"new passcode"))
        assert not store.verify(b"alice", ALICE_PASSCODE)
        assert store.verify(b"alice", b"new passcode")

    def test_rewrittenInPlace(self, path: Path) -> None:
        """
        A file edited in place, to the same size, is read again.
        """
        store = CredentialsStore(path)
        assert store.verify(b"modality-7", None)
        writeUsers(path, TEXT.replace("modality-7:", "modality-8:"))
        assert not store.verify(b"modality-7", None)
        assert store.verify(b"modality-8", None)

    def test_deletedUser(self, path: Path) -> None:
        store = CredentialsStore(path)
        assert store.verify(b"bob", b"bob's passcode")
        updateFile(path, "bob", None, delete=True)
        assert not store.verify(b"bob", b"bob's passcode")
        assert store.verify(b"alice", ALICE_PASSCODE)

    def test_unchangedNotReread(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        An unchanged file is not read again.
        """
        store = CredentialsStore(path)
        first = store.current()
        monkeypatch.setattr(credentials, "_readText", None)
        assert store.current() is first
        assert store.verify(b"modality-7", None)

    def test_corrupted(self, path: Path) -> None:
        """
        Once the file no longer parses, verify raises rather than use the
        old users, until the file is fixed.
        """
        store = CredentialsStore(path)
        assert store.verify(b"alice", ALICE_PASSCODE)
        writeUsers(path, TEXT + "alice:\n")
        for _ in range(2):
            with pytest.raises(CredentialsError, match="line 7: duplicate user 'alice'"):
                store.verify(b"alice", ALICE_PASSCODE)
        writeUsers(path, TEXT)
        assert store.verify(b"alice", ALICE_PASSCODE)

    def test_removed(self, path: Path) -> None:
        store = CredentialsStore(path)
        assert store.verify(b"modality-7", None)
        path.unlink()
        with pytest.raises(CredentialsError, match="cannot read"):
            store.verify(b"modality-7", None)
        path.write_text(TEXT, encoding="utf-8")
        assert store.verify(b"modality-7", None)

    def test_badAtStart(self, tmp_path: Path) -> None:
        """
        The constructor raises at once for a missing or bad file.
        """
        with pytest.raises(CredentialsError, match="no such file"):
            CredentialsStore(tmp_path / "missing")
        path = tmp_path / "users.txt"
        path.write_text("alice:scrypt$1$2$3\n", encoding="utf-8")
        with pytest.raises(CredentialsError, match="line 1: user 'alice': malformed hash"):
            CredentialsStore(path)

    def test_threads(self, path: Path) -> None:
        """
        Threads verifying while the file changes each see an old or a new
        set of users, never an error.
        """
        store = CredentialsStore(path)
        stop = threading.Event()

        def verifyLoop() -> int:
            count = 0
            while not stop.is_set():
                store.verify(b"alice", ALICE_PASSCODE)
                count += 1
            return count

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(verifyLoop) for _ in range(4)]
            for index in range(20):
                updateFile(path, "alice", fastHash(b"passcode %d" % index))
            updateFile(path, "alice", ALICE_HASH)
            stop.set()
            assert all(future.result() > 0 for future in futures)
        assert store.verify(b"alice", ALICE_PASSCODE)


class TestUpdateFile:
    def test_keepsOrderAndComments(self, tmp_path: Path) -> None:
        """
        A changed user is replaced in place, a new one appended, a deleted
        one removed; every other line stays as it was.
        """
        path = tmp_path / "users.txt"
        path.write_text(TEXT, encoding="utf-8")
        newHash = fastHash(b"alice 2")
        updateFile(path, "alice", newHash)
        updateFile(path, "carol", "")
        updateFile(path, "modality-7", None, delete=True)
        assert path.read_text(encoding="utf-8") == (
            "# Users for the echo SCP\n"
            f"alice:{newHash}\n"
            "\n"
            "  # username only:\n"
            f"bob:{BOB_HASH}\n"
            "carol:\n"
        )

    def test_noFinalNewlineAndCRLF(self, tmp_path: Path) -> None:
        path = tmp_path / "users.txt"
        path.write_bytes(b"# users\r\nalice:\r\nbob:")
        updateFile(path, "alice", ALICE_HASH)
        updateFile(path, "carol", "")
        assert path.read_bytes() == (
            f"# users\r\nalice:{ALICE_HASH}\r\nbob:\ncarol:\n".encode()
        )

    def test_newFile(self, tmp_path: Path) -> None:
        """
        A missing file is created with mode 0600.
        """
        path = tmp_path / "users.txt"
        updateFile(path, "alice", ALICE_HASH)
        assert path.read_text(encoding="utf-8") == f"alice:{ALICE_HASH}\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_atomicReplace(self, tmp_path: Path) -> None:
        """
        The file is replaced by a new one (a reader holding the old one
        keeps it whole), with mode 0600, and no temporary file is left.
        """
        path = tmp_path / "users.txt"
        path.write_text(TEXT, encoding="utf-8")
        path.chmod(0o644)
        with path.open(encoding="utf-8") as old:
            inode = path.stat().st_ino
            updateFile(path, "carol", "")
            assert path.stat().st_ino != inode
            assert old.read() == TEXT
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["users.txt"]

    def test_failedWrite(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        If the rename fails the old file is untouched and the temporary
        file removed.
        """
        path = tmp_path / "users.txt"
        path.write_text(TEXT, encoding="utf-8")

        def replace(source: str, destination: str) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(credentials.os, "replace", replace)
        with pytest.raises(OSError):
            updateFile(path, "carol", "")
        assert path.read_text(encoding="utf-8") == TEXT
        assert sorted(p.name for p in tmp_path.iterdir()) == ["users.txt"]

    def test_symlink(self, tmp_path: Path) -> None:
        """
        A symbolic link is followed; the file it names is replaced.
        """
        target = tmp_path / "users.txt"
        target.write_text(TEXT, encoding="utf-8")
        link = tmp_path / "link.txt"
        link.symlink_to(target)
        updateFile(link, "carol", "")
        assert link.is_symlink()
        assert target.read_text(encoding="utf-8") == TEXT + "carol:\n"

    def test_errors(self, tmp_path: Path) -> None:
        """
        Deleting an unknown user, or changing a bad file, raises
        L{CredentialsError} and leaves the file alone; bad arguments raise
        L{ValueError}.
        """
        path = tmp_path / "users.txt"
        with pytest.raises(CredentialsError, match="no user 'carol' to delete"):
            updateFile(path, "carol", None, delete=True)
        assert not path.exists()
        path.write_text(TEXT, encoding="utf-8")
        with pytest.raises(CredentialsError, match="no user 'carol' to delete"):
            updateFile(path, "carol", None, delete=True)
        with pytest.raises(CredentialsError):
            updateFile(path, "car:ol", "")
        with pytest.raises(CredentialsError):
            updateFile(path, "carol", "scrypt$16$8$1$AA==$AA==")
        with pytest.raises(ValueError):
            updateFile(path, "carol", None)
        with pytest.raises(ValueError):
            updateFile(path, "alice", "", delete=True)
        assert path.read_text(encoding="utf-8") == TEXT

        bad = TEXT + "bob:\n"
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(CredentialsError, match="line 7: duplicate user 'bob'"):
            updateFile(path, "carol", "")
        assert path.read_text(encoding="utf-8") == bad
