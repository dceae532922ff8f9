"""
The TLS example of README.rst's "Securing dicomecho" section, run as
written: its openssl commands make the CA and certificates, its twistd line
serves (on a free port instead of 2762), and its echoscu line must succeed.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.peers import requireEchoscu
from tests.support.processes import BIN, ROOT, TIMEOUT, Server, freePort, servers, start  # noqa: F401 (fixture)

pytestmark = pytest.mark.peer


def readmeExample() -> list[str]:
    """
    The example's three parts: certificate commands, the server command,
    the client command (continuation lines joined).
    """
    readme = (ROOT / "README.rst").read_text()
    section = readme.split("A working example with a throw-away CA", 1)[1]
    block = section.split(".. code-block:: bash\n\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    text = "\n".join(lines).replace("\\\n", " ")
    parts = re.split(r"^# .*$", text, flags=re.M)
    return [p.strip() for p in parts if p.strip()]


def test_readmeTLSExample(servers: list[Server], tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is missing (CI installs it)")
    echoscu = requireEchoscu()
    certificates, serve, client = readmeExample()
    made = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", certificates],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert made.returncode == 0, made.stderr
    port = str(freePort())
    args = shlex.split(serve.rstrip("&").strip().replace("2762", port))
    assert args[:3] == ["twistd", "-n", "dicomecho"]
    # The example runs from the certificates' directory.
    server = start(
        servers,
        ["bash", "-c", f"cd {shlex.quote(str(tmp_path))} && exec {shlex.quote(str(BIN / 'twistd'))} --pidfile= {' '.join(shlex.quote(a) for a in args[1:])}"],
    )
    server.waitFor(r"Listening on dicomtls:")
    command = shlex.split(client.replace("2762", port))
    assert command[0] == "echoscu"
    done = subprocess.run(
        [echoscu, *command[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    server.waitFor(r"TLS TLSv1\.[23] from 127\.0\.0\.1:\d+ .*client certificate: .*CN=ct1")
    server.waitFor(r"^.*I: Association Released|Association Released")
    assert server.stop() == 0
