"""
The deployment examples, exercised with the real tools: the HAProxy
configuration checked by C{haproxy -c} and run in front of dicomecho (the
PROXY header carries the client's address; the external check is
C{python -m dicomecho.ping}); the Kubernetes manifest parsed, its container
arguments run as a server and its readiness probe run against it. (The
C{.tac} is run by tests/test_cli.py, the systemd units by
tests/test_systemd.py.)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.haproxy import EXAMPLES, localConfig, requireHAProxy
from tests.support.peers import requirePynetdicom
from tests.support.processes import BIN, ROOT, TIMEOUT, Server, freePort, servers, start  # noqa: F401 (fixture)

pytestmark = pytest.mark.peer


def test_haproxyConfigIsValid() -> None:
    haproxy = requireHAProxy()
    done = subprocess.run(
        [haproxy, "-c", "-f", str(EXAMPLES / "haproxy" / "haproxy.cfg")],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_haproxyInFront(servers: list[Server], tmp_path: Path) -> None:
    """
    HAProxy (send-proxy-v2) in front of dicomecho --listen haproxy:tcp:...
    --allow-network 127.0.0.2/32: pynetdicom from 127.0.0.2 through HAProxy
    is served and logged as 127.0.0.2 (HAProxy itself connects from
    127.0.0.1); from 127.0.0.3 it is refused by the allow-list; the
    external C-ECHO check marks the server up.
    """
    haproxy = requireHAProxy()
    pynetdicom = requirePynetdicom()
    frontend, backend = freePort(), freePort()
    dicom = start(
        servers,
        [sys.executable, "-m", "dicomecho", "-v", "--listen", f"haproxy:tcp:{backend}:interface=127.0.0.1",
         "--allow-network", "127.0.0.2/32", "--allow-network", "127.0.0.1/32"],
    )
    dicom.waitFor(r"Listening on haproxy:")
    proxy = start(servers, [haproxy, "-db", "-f", str(localConfig(tmp_path, frontend, backend))])
    # The external check (python -m dicomecho.ping --proxy-header) passes.
    dicom.waitFor(r"^I: Association Released")
    deadline = time.monotonic() + TIMEOUT

    def associate(source: str) -> Any:
        ae = pynetdicom.AE(ae_title="VIAPROXY")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        ae.add_requested_context("1.2.840.10008.1.1")
        return ae.associate("127.0.0.1", frontend, ae_title="ECHOSCP", bind_address=(source, 0))

    while True:
        assoc = associate("127.0.0.2")
        if assoc.is_established or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert assoc.is_established, "\n".join(proxy.lines)
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    dicom.waitFor(r"Received Echo Request")
    refused = associate("127.0.0.3")
    assert not refused.is_established
    dicom.waitFor(r"^W: Refused connection from 127\.0\.0\.3:\d+: source address not allowed")
    assert dicom.stop() == 0
    proxy.stop()
    accepted = [line for line in dicom.lines if "Accepting Association" in line]
    assert accepted
    # The JSON-free way to see the address: the refusal names the client,
    # and HAProxy's own address never appears as a refused source.
    assert not any("Refused connection from 127.0.0.1:" in line for line in dicom.lines)


def manifest() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "dicomecho.yaml").read_text()))


def test_kubernetesManifest(servers: list[Server]) -> None:
    """
    The Deployment's container arguments start a server (ports swapped for
    free ones) and its readiness probe command, run as written, passes;
    the Service targets the named ports.
    """
    deployment, service = manifest()
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    dicomPort, metricsPort = freePort(), freePort()
    args = [
        a.replace(str(ports["metrics"]), str(metricsPort)).replace(str(ports["dicom"]), str(dicomPort))
        for a in container["args"]
    ]
    assert args[0] == "twistd"
    server = start(servers, [str(BIN / "twistd"), *args[1:]])
    probe = [
        a.replace(str(ports["dicom"]), str(dicomPort)) for a in container["readinessProbe"]["exec"]["command"]
    ]
    assert probe[:3] == ["python", "-m", "dicomecho.ping"]
    deadline = time.monotonic() + TIMEOUT
    while True:
        done = subprocess.run([sys.executable, *probe[1:]], capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert done.returncode == 0, done.stderr + "\n".join(server.lines)
    server.waitFor(r"Association Released")
    assert server.stop() == 0
