"""
Instructions per operation, counted by valgrind: a noise-free companion to
L{benchmarks.run} for deciding whether a change to dicomecho helps.

Usage::

    .venv/bin/python -m benchmarks.instructions [--servers dicomecho,floor]
        [--modes associations,echoes] [--ops 500] [--concurrency 8] [--json PATH]

Each server runs under C{valgrind --tool=callgrind --instr-atstart=no};
the load generator (not under valgrind) warms it with a few operations,
then C{callgrind_control -i on} counts the server's user-space
instructions over C{--ops} operations and C{-i off} stops counting. The
report gives instructions per association or per echo and the ratio
dicomecho/floor.

Why: on a shared virtual machine the time figures of L{benchmarks.run}
move by 10-30% from run to run (steal time), which hides a 5% change.
Instruction counts repeat to within a fraction of a percent, and they
track the time figures: kernel work (sockets, epoll) is the same for every
server and is not counted, so a ratio here is larger than the same ratio
of CPU seconds. Needs valgrind (Debian package C{valgrind}); runs the
servers about 50 times slower, so keep C{--ops} small.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks._common import ROOT, childEnvironment, freePort, isListening

#: dicomecho-web: dicomecho with the live page on (--web), whose cost per
#: association is bounded (+5%) and per echo nil.
SERVERS = ("dicomecho", "dicomecho-web", "floor")
MODES = ("associations", "echoes")
START_TIMEOUT = 240.0


def serverCommand(name: str, port: int) -> list[str]:
    python = sys.executable
    if name.startswith("dicomecho"):
        web = ["--web", "tcp:0:interface=127.0.0.1"] if name == "dicomecho-web" else []
        return [python, "-m", "dicomecho", "-ba", "127.0.0.1", "--port", str(port),
                "--max-associations", "1000", *web]
    return [python, "-m", "benchmarks.floor", "--port", str(port)]


def loadgen(port: int, mode: str, concurrency: int, ops: int) -> dict[str, Any]:
    """
    Run the load generator until C{ops} operations are done; its result.
    """
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, "-m", "benchmarks.loadgen", "--port", str(port), "--mode", mode,
             "--concurrency", str(concurrency), "--warmup", "0", "--duration", "600",
             "--max-ops", str(ops), "--op-timeout", "60", "--timeout", "900",
             "--sources", "0", "--json", out.name],
            cwd=ROOT, env=childEnvironment(), check=True, stdout=subprocess.DEVNULL,
            timeout=960,
        )
        return json.loads(Path(out.name).read_text())


def countedInstructions(outputs: Sequence[Path]) -> int:
    """
    The largest C{totals:}/C{summary:} line of callgrind's output files.
    """
    total = 0
    for path in outputs:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


def measure(name: str, mode: str, concurrency: int, ops: int) -> dict[str, Any]:
    """
    One server, one mode: instructions per operation.
    """
    port = freePort()
    workdir = Path(tempfile.mkdtemp(prefix="instructions-"))
    output = workdir / "callgrind.out"
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={output}", *serverCommand(name, port)]
    env = childEnvironment()
    env["PYTHONHASHSEED"] = "0"
    log = open(workdir / "server.log", "wb")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                              stdout=log, stderr=log)
    try:
        started = time.monotonic()
        while not isListening(port):
            if server.poll() is not None or time.monotonic() - started > START_TIMEOUT:
                raise RuntimeError(f"{name} did not start under valgrind; see {workdir}")
            time.sleep(0.2)
        loadgen(port, mode, concurrency, 50)
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = loadgen(port, mode, concurrency, ops)
        subprocess.run(["callgrind_control", "-i", "off", str(server.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()
    done = result.get("ops") or 0
    instructions = countedInstructions(sorted(workdir.glob("callgrind.out*")))
    shutil.rmtree(workdir, ignore_errors=True)
    return {"server": name, "mode": mode, "concurrency": concurrency, "ops": done,
            "errors": result.get("errors"), "instructions": instructions,
            "instructionsPerOp": round(instructions / done) if done else None}


def _commaList(choices: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        values = [v for v in text.split(",") if v]
        for value in values:
            if value not in choices:
                raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(choices)}")
        return values
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=_commaList(SERVERS), default=list(SERVERS))
    parser.add_argument("--modes", type=_commaList(MODES), default=list(MODES))
    parser.add_argument("--ops", type=int, default=500, help="operations counted per mode")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 1
    results = []
    for mode in options.modes:
        ops = options.ops * (6 if mode == "echoes" else 1)
        for name in options.servers:
            result = measure(name, mode, options.concurrency, ops)
            results.append(result)
            print(f"{mode:13} {name:10} {result['instructionsPerOp']:>10,} instructions/op"
                  f"  ({result['ops']} ops, {result['errors']} errors)", flush=True)
        byServer = {r["server"]: r["instructionsPerOp"] for r in results if r["mode"] == mode}
        if byServer.get("dicomecho") and byServer.get("floor"):
            print(f"{mode:13} dicomecho/floor {byServer['dicomecho'] / byServer['floor']:.2f}")
    if options.json:
        options.json.write_text(json.dumps({"pid": os.getpid(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
