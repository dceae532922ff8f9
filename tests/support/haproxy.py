"""
HAProxy for the tests that run the example configuration: L{requireHAProxy}
finds the binary, L{localConfig} points the example at one local dicomecho.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.processes import BIN, ROOT

EXAMPLES = ROOT / "examples"


def requireHAProxy() -> str:
    found = shutil.which("haproxy") or (Path("/usr/sbin/haproxy") if Path("/usr/sbin/haproxy").exists() else None)
    if found is None:
        message = "haproxy is missing (CI installs Debian's haproxy)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return str(found)


def localConfig(tmp_path: Path, frontend: int, backend: int) -> Path:
    """
    The example configuration, pointed at one local dicomecho, with the
    check script and Python from this checkout.
    """
    text = (EXAMPLES / "haproxy" / "haproxy.cfg").read_text()
    text = text.replace("bind :11112", f"bind 127.0.0.1:{frontend}")
    text = text.replace('external-check path "/usr/local/bin:/usr/bin:/bin"', f'external-check path "{BIN}:/usr/bin:/bin"')
    text = text.replace("/etc/haproxy/dicom-echo-check", str(tmp_path / "dicom-echo-check"))
    lines = [line for line in text.splitlines() if "server echo2" not in line]
    text = "\n".join(lines).replace("10.0.0.11:11112", f"127.0.0.1:{backend}").replace("inter 10s", "inter 1s")
    script = (EXAMPLES / "haproxy" / "dicom-echo-check").read_text()
    # Run from the checkout, whatever the working directory.
    script = script.replace("exec python3", f"cd {ROOT} && exec python3")
    (tmp_path / "dicom-echo-check").write_text(script)
    (tmp_path / "dicom-echo-check").chmod(0o755)
    config = tmp_path / "haproxy.cfg"
    config.write_text(text + "\n")
    return config
