"""
Tests for L{dicomecho.cli.passwd}, run as C{python -m dicomecho.passwd} in a
subprocess, and in process for the terminal prompts.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from dicomecho.cli import passwd
from dicomecho.security.credentials import Credentials
from dicomecho.security.passcodes import hashPasscode

PROJECT = Path(__file__).resolve().parent.parent

PASSCODE = "pässcode-7f3a"


def run(*arguments: str | Path, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """
    Run C{python -m dicomecho.passwd} with C{arguments}, and check that the
    passcode is not in its output.
    """
    completed = subprocess.run(
        [sys.executable, "-m", "dicomecho.passwd", *map(str, arguments)],
        input=stdin,
        capture_output=True,
        cwd=PROJECT,
        timeout=60,
    )
    for output in (completed.stdout, completed.stderr):
        assert PASSCODE.encode() not in output
        assert b"scrypt$" not in output
    return subprocess.CompletedProcess(
        completed.args,
        completed.returncode,
        completed.stdout.decode("utf-8"),
        completed.stderr.decode("utf-8"),
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "users.txt"


def test_addUpdateDelete(path: Path) -> None:
    """
    A user is added (creating the file, mode 0600), updated in place, and
    deleted; each prints one line and exits 0.
    """
    path.parent.joinpath("keep").write_text("")
    added = run("--passcode-stdin", path, "alice", stdin=PASSCODE.encode() + b"\n")
    assert (added.returncode, added.stdout, added.stderr) == (
        0,
        f"added user 'alice' to {path}\n",
        "",
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = Credentials.load(path)
    assert users.verify(b"alice", PASSCODE.encode())
    assert path.read_text().startswith("alice:scrypt$16384$8$1$")

    path.write_text(f"# users\n{path.read_text()}bob:\n")
    updated = run("--passcode-stdin", path, "alice", stdin=b"new passcode\r\n")
    assert (updated.returncode, updated.stdout) == (0, f"updated user 'alice' in {path}\n")
    users = Credentials.load(path)
    assert users.usernames() == ("alice", "bob")
    assert users.verify(b"alice", b"new passcode")
    assert not users.verify(b"alice", PASSCODE.encode())
    assert path.read_text().startswith("# users\nalice:")

    deleted = run("--delete", path, "alice")
    assert (deleted.returncode, deleted.stdout) == (0, f"deleted user 'alice' from {path}\n")
    assert path.read_text() == "# users\nbob:\n"


def test_noPasscode(path: Path) -> None:
    """
    C{--no-passcode} writes a username-only entry, reading no passcode.
    """
    completed = run("--no-passcode", path, "modality-7")
    assert (completed.returncode, completed.stdout) == (
        0,
        f"added user 'modality-7' to {path} (username only)\n",
    )
    assert path.read_text() == "modality-7:\n"
    assert Credentials.load(path).verify(b"modality-7", None)


def test_passcodeOnlyFirstLine(path: Path) -> None:
    """
    Only the trailing newline of the first line of stdin is dropped.
    """
    completed = run("--passcode-stdin", path, "alice", stdin=b" two words \nsecond line\n")
    assert completed.returncode == 0
    assert Credentials.load(path).verify(b"alice", b" two words ")


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        ["users.txt"],
        ["--delete", "--no-passcode", "users.txt", "alice"],
        ["--delete", "--passcode-stdin", "users.txt", "alice"],
        ["--no-passcode", "--passcode-stdin", "users.txt", "alice"],
        ["--unknown", "users.txt", "alice"],
        ["users.txt", "alice", "extra"],
    ],
)
def test_usageErrors(arguments: list[str]) -> None:
    """
    Usage errors exit 2 with argparse's message.
    """
    completed = run(*arguments)
    assert completed.returncode == 2
    assert "usage: python -m dicomecho.passwd" in completed.stderr
    assert completed.stdout == ""


def test_errors(path: Path) -> None:
    """
    Bad input and unusable files exit 1 with one C{error:} line, changing
    nothing.
    """

    def failsWith(expected: str, *arguments: str | Path, stdin: bytes = b"") -> None:
        completed = run(*arguments, stdin=stdin)
        assert completed.returncode == 1
        assert completed.stdout == ""
        assert completed.stderr.startswith("error: ")
        assert completed.stderr.count("\n") == 1
        assert expected in completed.stderr

    failsWith("empty passcode", "--passcode-stdin", path, "alice", stdin=b"\n")
    failsWith("empty passcode", "--passcode-stdin", path, "alice")
    failsWith("may not contain NUL bytes", "--passcode-stdin", path, "alice", stdin=b"pw\0x\n")
    failsWith("contains ':'", "--passcode-stdin", path, "al:ice", stdin=PASSCODE.encode())
    failsWith("no user 'alice' to delete", "--delete", path, "alice")
    assert not path.exists()

    bad = f"alice:{hashPasscode(PASSCODE.encode(), n=16)}\nalice:\n"
    path.write_text(bad)
    failsWith("line 2: duplicate user 'alice'", "--passcode-stdin", path, "bob", stdin=b"x\n")
    failsWith("line 2: duplicate user 'alice'", "--no-passcode", path, "bob")
    assert path.read_text() == bad

    failsWith("error: ", "--no-passcode", path.parent / "missing" / "users.txt", "bob")


@pytest.fixture
def prompts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """
    Answers for C{getpass.getpass}, in order.
    """
    answers: list[str] = []
    asked: list[str] = []

    def getpass(prompt: str = "Password: ") -> str:
        asked.append(prompt)
        return answers.pop(0)

    monkeypatch.setattr(passwd.getpass, "getpass", getpass)
    yield answers
    assert len(asked) % 2 == 0


def test_prompt(path: Path, prompts: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """
    By default the passcode is asked for twice.
    """
    prompts.extend([PASSCODE, PASSCODE])
    assert passwd.main([str(path), "alice"]) == 0
    assert prompts == []
    assert Credentials.load(path).verify(b"alice", PASSCODE.encode("utf-8"))
    output = capsys.readouterr()
    assert output.out == f"added user 'alice' to {path}\n"
    assert PASSCODE not in output.out + output.err


@pytest.mark.parametrize(
    "answers, reason",
    [([PASSCODE, PASSCODE + "x"], "the passcodes do not match"), (["", ""], "empty passcode")],
)
def test_promptRefused(
    path: Path,
    prompts: list[str],
    capsys: pytest.CaptureFixture[str],
    answers: list[str],
    reason: str,
) -> None:
    """
    Two different passcodes, or an empty one, are refused.
    """
    prompts.extend(answers)
    assert passwd.main([str(path), "alice"]) == 1
    output = capsys.readouterr()
    assert output.out == ""
    assert output.err == f"error: {reason}\n"
    assert PASSCODE not in output.err
    assert not path.exists()
