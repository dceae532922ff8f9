"""
Shared by the benchmark's floor server, load generator and runner: the
pre-encoded requests and canned replies, a minimal Implicit VR Little Endian
command-set reader, the load generator's reply checker (L{ReplyChecker}),
the servers under test (L{ServerProcess}), CPU pinning, and a few C{/proc}
readers.

The requests are DCMTK echoscu's (C{tests/fixtures/dcmtk_echoscu_default.c2s.bin},
split by L{benchmarks.soak.Requests}). The canned replies are what dicomecho
answered to exactly those requests, captured once into
C{benchmarks/fixtures/dicomecho_replies.s2c.bin} (A-ASSOCIATE-AC, the C-ECHO-RSP
to MessageID 1, A-RELEASE-RP); C{python -m benchmarks.floor --capture PORT}
records them again from a running server.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.soak import (
    ReplyError,
    Requests,
    checkAC,
    commandElements,
    cpuSeconds,
    readStatus,
    splitPDUs,
)

__all__ = [
    "ROOT",
    "REPLIES_FIXTURE",
    "UNLIMITED_SOURCES",
    "Requests",
    "CannedReplies",
    "BadReply",
    "ReplyChecker",
    "parseEchoRSP",
    "replyKind",
    "commandElements",
    "cpuSeconds",
    "rssKB",
    "splitPDUs",
    "machineDescription",
    "PDU_HEADER",
    "IP_BIND_ADDRESS_NO_PORT",
    "twoCPUs",
    "pinnedCommand",
    "pinAfterStart",
    "freePort",
    "isListening",
    "childEnvironment",
    "raiseFileLimit",
    "machineCPU",
    "ServerProcess",
]

ROOT = Path(__file__).resolve().parent.parent
REPLIES_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "dicomecho_replies.s2c.bin"

PDU_HEADER = struct.Struct(">BBI")
IP_BIND_ADDRESS_NO_PORT: int = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


#: Seconds a server may take to listen.
START_TIMEOUT = 30.0

#: Command-set tags the benchmark reads.
MESSAGE_ID = (0x0000, 0x0110)
MESSAGE_ID_RESPONDED_TO = (0x0000, 0x0120)
COMMAND_FIELD = (0x0000, 0x0100)
STATUS = (0x0000, 0x0900)

C_ECHO_RSP = 0x8030

#: P-DATA-TF header (6) + PDV length (4) + context ID (1) + control header (1).
COMMAND_OFFSET = 12


def valueOffset(pdata: bytes, tag: tuple[int, int]) -> int:
    """
    The offset, from the start of a one-PDV P-DATA-TF PDU, of the value of
    C{tag} in its command set.
    """
    offset, _ = commandElements(pdata[COMMAND_OFFSET:])[tag]
    return COMMAND_OFFSET + offset


#: The load generator opens thousands of associations from 16 loopback
#: addresses, far beyond the per-source defaults (100 associations, 64
#: pending per source), which are for one misbehaving source among many
#: (benchmarks.abuse measures them): the capacity benchmarks lift them.
UNLIMITED_SOURCES = ("--max-associations-per-source", "0", "--max-pending-per-source", "0",
                     "--connection-rate-per-source", "0")


@dataclass(frozen=True)
class CannedReplies:
    """
    dicomecho's replies to the benchmark's requests: the A-ASSOCIATE-AC, the
    C-ECHO-RSP (split around its 2-byte MessageIDBeingRespondedTo) and the
    A-RELEASE-RP.
    """

    associateAC: bytes
    echoRSPPrefix: bytes
    echoRSPSuffix: bytes
    releaseRP: bytes

    @classmethod
    def fromFixture(cls, path: Path = REPLIES_FIXTURE) -> CannedReplies:
        ac, rsp, rp = splitPDUs(path.read_bytes())
        if (ac[0], rsp[0], rp[0]) != (2, 4, 6):
            raise ValueError(f"{path}: expected AC, P-DATA-TF, RELEASE-RP")
        offset = valueOffset(rsp, MESSAGE_ID_RESPONDED_TO)
        return cls(ac, rsp[:offset], rsp[offset + 2 :], rp)

    def echoRSP(self, messageID: int) -> bytes:
        """
        The C-ECHO-RSP answering C{messageID}.
        """
        return self.echoRSPPrefix + messageID.to_bytes(2, "little") + self.echoRSPSuffix


class BadReply(Exception):
    """
    A reply that was not the one expected; C{kind} is C{"RJ"}, C{"abort"}
    or C{"bad reply"}.
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


def replyKind(pdu: bytes) -> str:
    """
    The error kind of an unexpected PDU: C{"RJ"}, C{"abort"} or C{"bad reply"}.
    """
    return {0x03: "RJ", 0x07: "abort"}.get(pdu[0], "bad reply")


def _wrongType(pdu: bytes, expected: str) -> BadReply:
    if pdu[0] == 0x03:
        return BadReply("RJ", f"A-ASSOCIATE-RJ instead of {expected}: {pdu[6:10].hex()}")
    if pdu[0] == 0x07:
        return BadReply("abort", f"A-ABORT instead of {expected}: {pdu[6:10].hex()}")
    return BadReply("bad reply", f"PDU type 0x{pdu[0]:02X} instead of {expected}")


def parseEchoRSP(pdu: bytes, messageID: int, contextID: int = 1) -> int:
    """
    Fully check a C-ECHO-RSP: a P-DATA-TF holding one command PDV on
    C{contextID} whose Implicit VR Little Endian command set has
    CommandField 0x8030, MessageIDBeingRespondedTo C{messageID} and Status
    0x0000.

    @return: the offset in C{pdu} of the MessageIDBeingRespondedTo value.
    @raise BadReply: if it is anything else.
    """
    if pdu[0] != 0x04:
        raise _wrongType(pdu, "P-DATA-TF")
    if len(pdu) < COMMAND_OFFSET:
        raise BadReply("bad reply", f"{len(pdu)}-byte P-DATA-TF")
    pdvLength = int.from_bytes(pdu[6:10], "big")
    if 10 + pdvLength != len(pdu):
        raise BadReply("bad reply", f"PDV length {pdvLength} in a {len(pdu)}-byte PDU")
    if pdu[10] != contextID or pdu[11] & 0x03 != 0x03:
        raise BadReply("bad reply", f"PDV context {pdu[10]}, control 0x{pdu[11]:02X}")
    try:
        elements = commandElements(pdu[COMMAND_OFFSET:])
    except ValueError as e:
        raise BadReply("bad reply", str(e)) from None

    def unsignedShort(tag: tuple[int, int]) -> int | None:
        value = elements.get(tag, (0, b""))[1]
        return int.from_bytes(value, "little") if len(value) == 2 else None

    if (field := unsignedShort(COMMAND_FIELD)) != C_ECHO_RSP:
        raise BadReply("bad reply", f"CommandField {field!r}, not C-ECHO-RSP")
    if (answered := unsignedShort(MESSAGE_ID_RESPONDED_TO)) != messageID:
        raise BadReply("bad reply", f"MessageIDBeingRespondedTo {answered!r}, expected {messageID}")
    if (status := unsignedShort(STATUS)) != 0:
        raise BadReply("bad reply", f"Status {status!r}")
    return COMMAND_OFFSET + elements[MESSAGE_ID_RESPONDED_TO][0]


class ReplyChecker:
    """
    Checks a server's replies. The first fully verified reply of each kind is
    kept as a template; a later reply equal to it (the C-ECHO-RSP with the
    MessageID patched in) passes as is, anything else gets the full check.

    @ivar matched: replies that equalled their template.
    @ivar parsed: replies that passed the full check.
    """

    def __init__(self, contextID: int = 1) -> None:
        self.contextID = contextID
        self.associateAC: bytes | None = None
        self.rspPrefix: bytes | None = None
        self.rspSuffix = b""
        self.releaseRP: bytes | None = None
        self.matched = 0
        self.parsed = 0

    def checkAC(self, pdu: bytes) -> None:
        """
        @raise BadReply: unless C{pdu} is an AC accepting our context.
        """
        if pdu == self.associateAC:
            self.matched += 1
            return
        if pdu[0] != 0x02:
            raise _wrongType(pdu, "A-ASSOCIATE-AC")
        try:
            checkAC(pdu, self.contextID)
        except ReplyError as e:
            raise BadReply("bad reply", str(e)) from None
        self.parsed += 1
        if self.associateAC is None:
            self.associateAC = pdu

    def checkEchoRSP(self, pdu: bytes, messageID: int) -> None:
        """
        @raise BadReply: unless C{pdu} is a successful C-ECHO-RSP to C{messageID}.
        """
        prefix = self.rspPrefix
        if prefix is not None and pdu == prefix + messageID.to_bytes(2, "little") + self.rspSuffix:
            self.matched += 1
            return
        offset = parseEchoRSP(pdu, messageID, self.contextID)
        self.parsed += 1
        if prefix is None:
            self.rspPrefix, self.rspSuffix = pdu[:offset], pdu[offset + 2 :]

    def checkRP(self, pdu: bytes) -> None:
        """
        @raise BadReply: unless C{pdu} is an A-RELEASE-RP.
        """
        if pdu == self.releaseRP:
            self.matched += 1
            return
        if pdu[0] != 0x06:
            raise _wrongType(pdu, "A-RELEASE-RP")
        if len(pdu) != 10:
            raise BadReply("bad reply", f"{len(pdu)}-byte A-RELEASE-RP")
        self.parsed += 1
        if self.releaseRP is None:
            self.releaseRP = pdu

    def templates(self) -> dict[str, str | None]:
        """
        The cached replies, hex (the C-ECHO-RSP with MessageID 0).
        """
        rsp = None if self.rspPrefix is None else (self.rspPrefix + b"\0\0" + self.rspSuffix).hex()
        return {"associateAC": self.associateAC.hex() if self.associateAC else None,
                "echoRSP": rsp, "releaseRP": self.releaseRP.hex() if self.releaseRP else None}


# --- processes ---------------------------------------------------------------------


def twoCPUs() -> bool:
    """
    Whether this process may run on both CPU 0 and CPU 1.
    """
    try:
        return {0, 1} <= os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return False


def pinnedCommand(command: list[str], cpu: int | None) -> list[str]:
    """
    C{command} run under C{taskset -c cpu}, if C{cpu} is set and taskset
    exists.
    """
    if cpu is not None and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *command]
    return command


def pinAfterStart(pid: int, cpu: int | None) -> None:
    """
    Pin a started process with C{sched_setaffinity} when taskset is missing.
    """
    if cpu is not None and not shutil.which("taskset"):
        os.sched_setaffinity(pid, {cpu})


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def isListening(port: int) -> bool:
    """
    Whether something listens on 127.0.0.1:C{port} (from C{/proc/net/tcp},
    so without connecting to it).
    """
    local = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            return any(line.split()[1] == local and line.split()[3] == "0A" for line in list(f)[1:])
    except OSError:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0


def childEnvironment() -> dict[str, str]:
    """
    This environment, with the checkout first on C{PYTHONPATH}.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def raiseFileLimit(needed: int) -> tuple[int, int]:
    """
    Raise RLIMIT_NOFILE's soft limit to the hard one (and the hard one to
    C{needed} when it is lower and we are root), so that the servers and
    load generators started from here inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed and os.geteuid() == 0:
        try:
            ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            ceiling = needed
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, ceiling), min(needed, ceiling)))
        except (OSError, ValueError):
            pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


def machineCPU() -> tuple[float, float]:
    """
    CPU seconds the whole machine has been busy (user, nice, system, irq,
    softirq; all CPUs) and stolen by the hypervisor, from C{/proc/stat}.
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _, _, irq, softirq, steal = fields + [0] * (8 - len(fields))
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


class ServerProcess:
    """
    One server under test, started fresh, its output in a temporary log.
    """

    def __init__(self, name: str, cpu: int | None, maxAssociations: int = 10_100) -> None:
        self.name = name
        self.cpu = cpu
        self.port = 0 if name == "floor" else freePort()
        python = sys.executable
        # Timeouts long enough for the idle mode's hold.
        long = "600"
        if name == "dicomecho":
            command = [python, "-m", "dicomecho", "-ba", "127.0.0.1", "--port", str(self.port),
                       "--max-associations", str(maxAssociations), "--network-timeout", long,
                       "--acse-timeout", long, "--dimse-timeout", long, "--shutdown-grace", "1",
                       *UNLIMITED_SOURCES]
        elif name == "floor":
            command = [python, "-m", "benchmarks.floor", "--port", "0"]
        else:
            command = [python, "-m", "pynetdicom", "echoscp", "-ba", "127.0.0.1", "-ta", long,
                       "-td", long, "-tn", long, str(self.port)]
        self.command = pinnedCommand(command, cpu)
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.startSeconds = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        started = time.monotonic()
        self.proc = subprocess.Popen(self.command, cwd=ROOT, env=childEnvironment(),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        pinAfterStart(self.proc.pid, self.cpu)
        while time.monotonic() - started < START_TIMEOUT:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            if self.name == "floor" and not self.port:
                for line in self.output().splitlines():
                    if line.startswith("LISTENING "):
                        self.port = int(line.rsplit(":", 1)[1])
            if self.port and isListening(self.port):
                self.startSeconds = round(time.monotonic() - started, 3)
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not listen within {START_TIMEOUT:g} s: {self.tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return Path(self.log.name).read_bytes().decode("utf-8", "replace")

    def tail(self, lines: int = 5) -> list[str]:
        return self.output().splitlines()[-lines:]

    def stop(self) -> int | None:
        """
        SIGTERM, then SIGKILL after 10 s, by PID. Returns the exit status.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def summary(self) -> dict[str, Any]:
        text = self.output()
        return {"command": self.command, "pid": self.proc.pid if self.proc else None,
                "port": self.port, "startSeconds": self.startSeconds,
                "outputLines": len(text.splitlines()),
                "errorLines": sum(1 for line in text.splitlines() if line.startswith("E:")),
                "outputTail": self.tail()}


def rssKB(pid: int) -> int:
    """
    VmRSS of process C{pid}, in kB.
    """
    return readStatus(pid)["VmRSS"]


def _cpuModel() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machineDescription() -> dict[str, Any]:
    """
    CPU model, core count, kernel, and the versions that matter.
    """
    return {
        "cpuModel": _cpuModel(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "twisted": _version("twisted"),
        "pydicom": _version("pydicom"),
        "pynetdicom": _version("pynetdicom"),
        "dicomecho": _version("dicomecho"),
    }
