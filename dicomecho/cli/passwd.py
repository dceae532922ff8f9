# -*- test-case-name: tests.test_passwd -*-
"""
Add, change or remove a user in a credentials file::

    python -m dicomecho.passwd [--delete | --no-passcode] [--passcode-stdin] FILE USERNAME

By default the passcode is asked for twice on the terminal, hashed with
scrypt (L{dicomecho.security.credentials.hashPasscode}) and stored for USERNAME,
replacing the user's line or appending one; FILE is created (mode 0600) if
missing. C{--passcode-stdin} reads the passcode from the first line of
standard input (without its line ending) instead, for scripts.
C{--no-passcode} stores a user who identifies with a username only (User
Identity Type 1); C{--delete} removes the user.

The file is replaced atomically and every other line is kept (see
L{dicomecho.security.credentials.updateFile}). A running server reads the file again
when it changes, so the change applies from the next association, with no
restart; associations already established are not affected.

Exit status: 0 on success, 1 if the file or the entry is unusable, 2 for a
usage error. Neither the passcode nor its hash is ever printed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from dicomecho.security.credentials import (
    Credentials,
    CredentialsError,
    updateFile,
    validateUsername,
)
from dicomecho.security.passcodes import hashPasscode

__all__ = ["main"]


class _PasscodeError(Exception):
    """
    No usable passcode was given.
    """


def _encode(passcode: str) -> bytes:
    """
    The bytes of a passcode read as text, undoing any surrogate escapes.
    """
    return passcode.encode("utf-8", "surrogateescape")


def _readPasscode(fromStdin: bool) -> bytes:
    """
    Read a passcode from the first line of standard input, or twice from
    the terminal.

    @raise _PasscodeError: If it is empty, or the two differ.
    """
    if fromStdin:
        line = sys.stdin.buffer.readline()
        if line.endswith(b"\n"):
            line = line[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
        passcode = line
    else:
        try:
            passcode = _encode(getpass.getpass("Passcode: "))
            again = _encode(getpass.getpass("Passcode again: "))
        except (EOFError, KeyboardInterrupt):
            raise _PasscodeError("no passcode given") from None
        if passcode != again:
            raise _PasscodeError("the passcodes do not match")
    if not passcode:
        raise _PasscodeError("empty passcode")
    return passcode


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dicomecho.passwd",
        description=(
            "Add, change or remove a user in a dicomecho credentials file. "
            "A running server applies the change from the next association."
        ),
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--delete", action="store_true", help="remove the user")
    action.add_argument(
        "--no-passcode",
        action="store_true",
        help="let the user identify with a username only (User Identity Type 1)",
    )
    parser.add_argument(
        "--passcode-stdin",
        action="store_true",
        help="read the passcode from the first line of standard input instead of asking",
    )
    parser.add_argument("file", metavar="FILE", help="the credentials file")
    parser.add_argument("username", metavar="USERNAME", help="the user")
    return parser


def main(argv: list[str] | None = None) -> int:
    """
    Run the command.

    @param argv: The arguments, without the program name; by default
        C{sys.argv[1:]}.
    @return: The exit status.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.passcode_stdin and (args.delete or args.no_passcode):
        parser.error("--passcode-stdin cannot be used with --delete or --no-passcode")
    path: str = args.file
    username: str = args.username
    try:
        validateUsername(username)
        # A bad file is reported before asking for a passcode; a missing
        # one is created.
        existed = os.path.exists(path) and username in Credentials.load(path)
        if args.delete:
            updateFile(path, username, None, delete=True)
            print(f"deleted user {username!r} from {path}")
            return 0
        if args.no_passcode:
            hashText = ""
        else:
            try:
                hashText = hashPasscode(_readPasscode(args.passcode_stdin))
            except ValueError as e:
                raise _PasscodeError(str(e)) from None
        updateFile(path, username, hashText)
    except (CredentialsError, _PasscodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {path}: {e.strerror or e}", file=sys.stderr)
        return 1
    done = f"updated user {username!r} in" if existed else f"added user {username!r} to"
    print(f"{done} {path}{' (username only)' if args.no_passcode else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
