"""
Fairness under abuse (issue 15): a normal SCU (one association, one
C-ECHO, release, in a loop, from 127.0.0.2) alone, then alongside each
attack from another source (127.0.0.3), each against a fresh server. It
prints the normal SCU's associations/s and p99 latency as ratios to its
baseline, its errors, and the server's RSS and descriptors before, during
and after. Loopback only; every attack is bounded in count and time.

Usage::

    .venv/bin/python -m benchmarks.abuse [--duration 4] [--attacks a,b] [--json PATH]

Attacks (issue 15's list; the ClientHello flood is not here yet):

 - C{big-requests}: 8 connections looping the dearest A-ASSOCIATE-RQ the
   defaults admit (L{benchmarks.requestcost}).
 - C{silent}: 5,000 connections that send nothing, with the server under
   a descriptor limit of 1,024 (C{prlimit}), and C{silent-raised} with
   the hard limit the server raises its soft one to.
 - C{held}: 2 x C{--max-associations} associations held open.
 - C{connect-flood}: connect and close, 4 at a time, as fast as possible.

Target for each: the normal SCU keeps 100% success and at least 0.5x its
baseline rate; RSS and descriptors return to their baseline afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks import requestcost
from benchmarks._common import ROOT, childEnvironment, freePort, isListening, raiseFileLimit, rssKB
from dicomecho.wire.framer import DEFAULT_MAX_ASSOCIATE_LENGTH
from dicomecho.wire.itemcodec import MAX_ITEMS

NORMAL_SOURCE = "127.0.0.2"
ATTACK_SOURCE = "127.0.0.3"
MAX_ASSOCIATIONS = 500


#: The TLS port of the server under C{tls-hello-flood}: C{port + 1}.
_TLS_KEY: tuple[str, str] | None = None


def _tlsFiles() -> tuple[str, str]:
    """
    A throwaway key and self-signed certificate (openssl), made once.
    """
    global _TLS_KEY
    if _TLS_KEY is None:
        directory = tempfile.mkdtemp(prefix="abuse-tls-")
        key, cert = f"{directory}/key.pem", f"{directory}/cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout", key, "-out", cert],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _TLS_KEY = (key, cert)
    return _TLS_KEY


def startServer(
    port: int, fileLimit: int | None = None, log: Any = subprocess.DEVNULL, tls: bool = False
) -> subprocess.Popen[bytes]:
    """
    A server on C{port} (its warnings to C{log}), under a descriptor limit
    of C{fileLimit} if given, and with C{tls} a TLS listener on C{port + 1}.
    """
    command = [sys.executable, "-m", "dicomecho", "-ba", "127.0.0.1", "--port", str(port),
               "--max-associations", str(MAX_ASSOCIATIONS), "-ll", "warning"]
    if tls:
        key, cert = _tlsFiles()
        command += ["--listen", f"dicomtls:{port + 1}:interface=127.0.0.1:privateKey={key}"
                    f":certKey={cert}"]
    if fileLimit is not None:
        command = ["prlimit", f"--nofile={fileLimit}:{fileLimit}", *command]
    server = subprocess.Popen(command, cwd=ROOT, env=childEnvironment(),
                              stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not isListening(port):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    return server


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def normalSCU(port: int, duration: float) -> dict[str, Any]:
    """
    The normal SCU's loop for C{duration} seconds: its figures.
    """
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, "-m", "benchmarks.loadgen", "--port", str(port), "--mode",
             "associations", "--concurrency", "1", "--warmup", "0.3", "--duration", str(duration),
             "--sources", "1", "--op-timeout", "10", "--timeout", str(duration + 60),
             "--json", out.name],
            cwd=ROOT, env=childEnvironment(), check=True, timeout=duration + 90,
        )
        result = json.loads(Path(out.name).read_text())
    errors = result.get("errors") or 0
    if isinstance(errors, dict):
        errors = sum(errors.values())
    return {"opsPerSecond": result["opsPerSecond"], "p99us": result["latencyP99us"],
            "errors": errors}


def _connect(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((ATTACK_SOURCE, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def bigRequests(port: int, stop: threading.Event, held: list[socket.socket]) -> None:
    body = requestcost.tinyTransferSyntaxes(DEFAULT_MAX_ASSOCIATE_LENGTH, MAX_ITEMS)
    pdu = struct.pack(">BBI", 1, 0, len(body)) + body

    def loop() -> None:
        while not stop.is_set():
            try:
                with _connect(port) as sock:
                    sock.sendall(pdu)
                    sock.recv(65536)
            except OSError:
                time.sleep(0.01)

    _threads(8, loop, stop)


def connectFlood(port: int, stop: threading.Event, held: list[socket.socket]) -> None:
    def loop() -> None:
        while not stop.is_set():
            try:
                _connect(port).close()
            except OSError:
                time.sleep(0.001)

    _threads(4, loop, stop)


def helloFlood(port: int, stop: threading.Event, held: list[socket.socket]) -> None:
    """
    TLS handshakes against the TLS port (each a ClientHello the server
    must answer with its key share and signature), 8 at a time.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def loop() -> None:
        while not stop.is_set():
            try:
                with _connect(port + 1) as raw, context.wrap_socket(raw):
                    pass
            except (OSError, ssl.SSLError):
                time.sleep(0.001)

    _threads(8, loop, stop)


def silent(port: int, stop: threading.Event, held: list[socket.socket], count: int = 5000) -> None:
    for _ in range(count):
        if stop.is_set():
            return
        try:
            held.append(_connect(port))
        except OSError:
            time.sleep(0.001)


def heldAssociations(port: int, stop: threading.Event, held: list[socket.socket]) -> None:
    rq = _dcmtkRequest()
    for _ in range(2 * MAX_ASSOCIATIONS):
        if stop.is_set():
            return
        try:
            sock = _connect(port)
            sock.sendall(rq)
            sock.recv(65536)
            held.append(sock)
        except OSError:
            time.sleep(0.001)


def _dcmtkRequest() -> bytes:
    """
    DCMTK echoscu's default A-ASSOCIATE-RQ, as captured.
    """
    data = (ROOT / "tests" / "fixtures" / "dcmtk_echoscu_default.c2s.bin").read_bytes()
    (length,) = struct.unpack_from(">I", data, 2)
    return data[: 6 + length]


def _threads(count: int, target: Callable[[], None], stop: threading.Event) -> None:
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(10)


ATTACKS: dict[str, tuple[Callable[..., None], int | None]] = {
    "big-requests": (bigRequests, None),
    "silent": (silent, 1024),
    "silent-raised": (silent, None),
    "held": (heldAssociations, None),
    "connect-flood": (connectFlood, None),
    "tls-hello-flood": (helloFlood, None),
}


def runAttack(name: str, duration: float, log: Any = subprocess.DEVNULL) -> dict[str, Any]:
    """
    The normal SCU alone, then under attack C{name}, against a fresh
    server whose warnings go to C{log}.
    """
    attack, fileLimit = ATTACKS[name]
    port = freePort()
    while not _free(port + 1):
        port = freePort()
    server = startServer(port, fileLimit, log, tls=attack is helloFlood)
    try:
        baseline = normalSCU(port, duration)
        before = {"rssKB": rssKB(server.pid), "fds": fds(server.pid)}
        stop = threading.Event()
        held: list[socket.socket] = []
        attacker = threading.Thread(target=attack, args=(port, stop, held), daemon=True)
        attacker.start()
        time.sleep(1.0)
        under = normalSCU(port, duration)
        during = {"rssKB": rssKB(server.pid), "fds": fds(server.pid)}
        stop.set()
        attacker.join(30)
        for sock in held:
            sock.close()
        time.sleep(2.0)
        after = {"rssKB": rssKB(server.pid), "fds": fds(server.pid)}
    finally:
        server.terminate()
        server.wait(30)
    ratio = under["opsPerSecond"] / baseline["opsPerSecond"] if baseline["opsPerSecond"] else 0.0
    return {"attack": name, "baseline": baseline, "underAttack": under,
            "rateRatio": round(ratio, 3),
            "p99Ratio": round(under["p99us"] / baseline["p99us"], 2) if baseline["p99us"] else None,
            "server": {"before": before, "during": during, "after": after},
            "pass": under["errors"] == 0 and ratio >= 0.5}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.abuse",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--json", type=Path)
    options = parser.parse_args(argv)
    raiseFileLimit(4 * MAX_ASSOCIATIONS + 6000)
    rows = [runAttack(name, options.duration) for name in options.attacks.split(",") if name]
    print(f"{'attack':15} {'alone/s':>8} {'attacked/s':>10} {'ratio':>6} {'p99 x':>6} "
          f"{'errors':>6} {'RSS MiB b/d/a':>16} {'fds b/d/a':>14}  result")
    for row in rows:
        s = row["server"]
        rss = "/".join(f"{s[k]['rssKB'] / 1024:.0f}" for k in ("before", "during", "after"))
        fd = "/".join(str(s[k]["fds"]) for k in ("before", "during", "after"))
        print(f"{row['attack']:15} {row['baseline']['opsPerSecond']:>8.0f} "
              f"{row['underAttack']['opsPerSecond']:>10.0f} {row['rateRatio']:>6.2f} "
              f"{row['p99Ratio'] or 0:>6.1f} {row['underAttack']['errors']:>6} {rss:>16} "
              f"{fd:>14}  {'PASS' if row['pass'] else 'FAIL'}")
    if options.json:
        options.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
