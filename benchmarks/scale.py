"""
Several dicomecho processes on one port: associations/s and echoes/s with
1 and 2 processes sharing a C{reuseport:} port, and pynetdicom's echoscp
(one process, it cannot share a port) in the same run.

    python -m benchmarks.scale [--rounds 3] [--duration 3] [--warmup 0.5]
        [--concurrency 8] [--processes 1,2] [--json PATH]

Rounds interleave the configurations; the report gives per-configuration
medians and the median of per-round ratios. Nothing is pinned: the kernel
spreads the servers and the load generator over the CPUs there are, which
is what a deployment gets. On a 2-CPU machine the load generator takes
about one CPU itself, so 2 processes cannot show a 2x gain here; see
benchmarks/README.rst for what to expect with more cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Sequence

from benchmarks._common import (
    ROOT,
    UNLIMITED_SOURCES,
    childEnvironment,
    freePort,
    isListening,
    machineDescription,
)

START_TIMEOUT = 20.0
MODES = ("associations", "echoes")


class Servers:
    """
    C{count} processes of one kind on one port, started and stopped by PID.
    """

    def __init__(self, kind: str, count: int) -> None:
        self.kind, self.count = kind, count
        self.port = freePort()
        self.procs: list[subprocess.Popen[bytes]] = []

    def command(self) -> list[str]:
        long = "600"
        if self.kind == "pynetdicom":
            return [sys.executable, "-m", "pynetdicom", "echoscp", "-ba", "127.0.0.1",
                    "-ta", long, "-td", long, "-tn", long, str(self.port)]
        return [sys.executable, "-m", "dicomecho", "-q", "--max-associations", "10100",
                "--listen", f"reuseport:{self.port}:interface=127.0.0.1:backlog=1024",
                "--network-timeout", long, "--acse-timeout", long, "--shutdown-grace", "1",
                *UNLIMITED_SOURCES]

    def __enter__(self) -> Servers:
        for _ in range(self.count):
            self.procs.append(subprocess.Popen(
                self.command(), cwd=ROOT, env=childEnvironment(), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        deadline = time.monotonic() + START_TIMEOUT
        while not isListening(self.port):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.__exit__()
                raise RuntimeError(f"{self.kind} x{self.count} did not start")
            time.sleep(0.05)
        # Every process must be listening before the window: give the
        # others time to bind (one listening says nothing of the rest).
        time.sleep(1.0)
        return self

    def __exit__(self, *_: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def cpuSeconds(pids: list[int]) -> float:
    """
    User plus system CPU seconds of these processes so far.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def loadgen(port: int, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    timeout = args.warmup + args.duration + 30
    command = [sys.executable, "-m", "benchmarks.loadgen", "--port", str(port), "--mode", mode,
               "--concurrency", str(args.concurrency), "--warmup", str(args.warmup),
               "--duration", str(args.duration), "--timeout", str(timeout)]
    done = subprocess.run(command, cwd=ROOT, env=childEnvironment(), capture_output=True,
                          timeout=timeout + 15, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        return {"failed": done.stderr.decode(errors="replace")[-800:]}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def configurations(args: argparse.Namespace) -> list[tuple[str, int]]:
    configs = [("dicomecho", n) for n in args.processes]
    if args.pynetdicom:
        configs.append(("pynetdicom", 1))
    return configs


def run(args: argparse.Namespace) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        configs = configurations(args)
        # Rotate the order so drift does not favour one configuration.
        shift = number % len(configs)
        configs = configs[shift:] + configs[:shift]
        figures: dict[str, Any] = {}
        for kind, count in configs:
            with Servers(kind, count) as servers:
                for mode in MODES:
                    if kind == "pynetdicom" and mode == "echoes" and args.concurrency > 10:
                        continue
                    pids = [p.pid for p in servers.procs]
                    before, started = cpuSeconds(pids), time.monotonic()
                    result = loadgen(servers.port, mode, args)
                    # Over the whole load generator run (warm-up included).
                    result["serversCPUPercent"] = round(
                        100 * (cpuSeconds(pids) - before) / (time.monotonic() - started), 1
                    )
                    figures[f"{kind}x{count}/{mode}"] = result
                    print(f"round {number + 1} {kind} x{count} {mode}: "
                          f"{result.get('opsPerSecond', result.get('failed'))}", file=sys.stderr)
        rounds.append(figures)
    return {"machine": machineDescription(), "settings": vars(args), "rounds": rounds,
            "summary": summarize(rounds, args)}


def summarize(rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    keys = sorted({key for r in rounds for key in r})
    medians = {}
    for key in keys:
        values = [r[key]["opsPerSecond"] for r in rounds if "opsPerSecond" in r.get(key, {})]
        errors = sum(r[key].get("errors", 0) for r in rounds if key in r)

        def median(metric: str) -> float | None:
            found = [r[key][metric] for r in rounds if r.get(key, {}).get(metric) is not None]
            return statistics.median(found) if found else None

        medians[key] = {"opsPerSecond": statistics.median(values) if values else None, "errors": errors,
                        "serversCPUPercent": median("serversCPUPercent"),
                        "loadgenCPUPercent": median("loadgenCPUPercent")}
    ratios: dict[str, float | None] = {}
    for mode in MODES:
        for n in args.processes:
            for base in ("dicomechox1", "pynetdicomx1"):
                key, baseKey = f"dicomechox{n}/{mode}", f"{base}/{mode}"
                per = [r[key]["opsPerSecond"] / r[baseKey]["opsPerSecond"] for r in rounds
                       if r.get(key, {}).get("opsPerSecond") and r.get(baseKey, {}).get("opsPerSecond")]
                if key != baseKey and per:
                    ratios[f"{key} / {baseKey}"] = statistics.median(per)
    return {"medians": medians, "ratios": ratios}


def report(result: dict[str, Any]) -> str:
    lines = ["configuration / mode                 ops/s   errors  servers CPU%  loadgen CPU%"]
    for key, figure in result["summary"]["medians"].items():
        ops = figure["opsPerSecond"]
        lines.append(f"{key:<34} {ops if ops is None else round(ops):>8}   {figure['errors']:>6}"
                     f"  {figure['serversCPUPercent']!s:>12}  {figure['loadgenCPUPercent']!s:>12}")
    lines.append("")
    lines.append("median of per-round ratios")
    for key, ratio in result["summary"]["ratios"].items():
        lines.append(f"  {key:<52} {ratio:.2f}x")
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--processes", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2])
    parser.add_argument("--no-pynetdicom", dest="pynetdicom", action="store_false")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if 1 not in args.processes:
        parser.error("--processes must include 1 (the baseline)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    result = run(args)
    print(report(result))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    failed = any("failed" in figure for r in result["rounds"] for figure in r.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
