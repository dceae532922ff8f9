"""
README.rst's quick start as a new user meets it: the run command, taken
from the README, works by itself in a fresh copy of the tree (no
C{.venv} yet), installing what it needs and then answering DCMTK's
echoscu. (The test command by itself is what CI runs on a clean clone.)
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess

import pytest

from tests.support.peers import requireEchoscu
from tests.support.processes import ROOT, TIMEOUT, Server, freePort, servers, start  # noqa: F401 (fixture)

pytestmark = pytest.mark.peer

#: Installing from the package registries can take a while on a cold cache.
INSTALL_TIMEOUT = 600.0


def quickStartCommands() -> list[str]:
    """
    The commands of README.rst's quick start block.
    """
    text = (ROOT / "README.rst").read_text()
    section = text.split("\nQuick start\n===========\n", 1)[1]
    block = section.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def freshCopy(target: object) -> None:
    """
    Copy the files git knows of (tracked, or new and not ignored), as a
    clean clone would have them: no .venv, no caches.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=TIMEOUT,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            destination = target / name  # type: ignore[operator]
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def test_runCommandOnAFreshCopy(servers: list[Server], tmp_path: object) -> None:
    """
    C{scripts/serve --port PORT -v} in a copy without C{.venv} makes it,
    then serves: the listening line, an echo, a clean stop.
    """
    commands = quickStartCommands()
    assert commands == ["scripts/test", "scripts/serve --port 11112 -v"]
    echoscu = requireEchoscu()
    freshCopy(tmp_path)
    assert not (tmp_path / ".venv").exists()  # type: ignore[operator]
    port = freePort()
    run = commands[1].replace("11112", str(port)).split()
    # scripts/serve works from its own tree, wherever it is started from.
    server = start(servers, [str(tmp_path / run[0]), *run[1:]])  # type: ignore[operator]
    server.waitFor(rf"Listening on .*:{port}\)", timeout=INSTALL_TIMEOUT)
    echo = subprocess.run(
        [echoscu, "-aet", "MYSCU", "-aec", "ECHOSCP", "127.0.0.1", str(port)],
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    )
    assert echo.returncode == 0, echo.stderr
    server.waitFor(re.escape("Association Released"))
    assert server.stop(signal.SIGINT) == 0
    assert (tmp_path / ".venv" / "bin" / "twistd").exists()  # type: ignore[operator]
