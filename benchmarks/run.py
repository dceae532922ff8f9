"""
The benchmark: dicomecho against the floor (L{benchmarks.floor}) and
pynetdicom's echoscp, driven by the load generator (L{benchmarks.loadgen}).

    python -m benchmarks.run [--rounds 3] [--duration 3] [--warmup 0.5]
        [--idle 10000] [--hold 3] [--servers dicomecho,floor,pynetdicom]
        [--modes echoes,associations,idle] [--json PATH] [--quick]

Each round starts every server fresh (in a rotating order), runs every mode
against it (one load generator process per mode), and stops it. The server
runs on CPU 0 and the load generator on CPU 1 (C{taskset}) when both exist.
Ratios dicomecho/floor and dicomecho/pynetdicom are computed within each
round; the report gives the median of those per-round ratios, and checks
them against the issue's targets. See C{benchmarks/README.rst}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from benchmarks._common import (
    ROOT,
    ServerProcess,
    childEnvironment,
    machineDescription,
    pinAfterStart,
    pinnedCommand,
    raiseFileLimit,
    twoCPUs,
)

SERVERS = ("dicomecho", "floor", "pynetdicom")
MODES = ("echoes", "associations", "idle")

#: pynetdicom's echoscp accepts at most this many associations.
PYNETDICOM_MAX_ASSOCIATIONS = 10


@dataclass(frozen=True)
class ModeRun:
    """
    One load generator run: C{key} names it in the report.
    """

    key: str
    mode: str
    concurrency: int


class Settings(argparse.Namespace):
    """
    The parsed command line.
    """

    rounds: int
    warmup: float
    duration: float
    maxOps: int
    idle: int
    pynetdicomIdle: int
    hold: float
    openConcurrency: int
    opTimeout: float
    echoConcurrency: list[int]
    clients: list[int]
    servers: list[str]
    modes: list[str]
    pin: bool
    json: Path | None
    quick: bool
    machineWarmup: float
    busyPoll: bool


def modeRuns(settings: Settings) -> list[ModeRun]:
    """
    The runs of one server in one round, in order.
    """
    runs = []
    if "echoes" in settings.modes:
        runs += [ModeRun(f"echoes/{c}", "echoes", c) for c in settings.echoConcurrency]
    if "associations" in settings.modes:
        runs += [ModeRun(f"associations/{c}", "associations", c) for c in settings.clients]
    if "idle" in settings.modes:
        runs.append(ModeRun("idle", "idle", settings.idle))
    return runs


# --- processes ----------------------------------------------------------------------


def busyPolls(run: ModeRun, settings: Settings, cpu: int | None) -> bool:
    """
    Whether the load generator busy-polls: in the one-at-a-time modes
    (C{echoes/1}, C{associations/1}), on a CPU of its own. There the round
    trip otherwise includes waking the load generator (about 70 us of a
    120 us echo on the reference VM), which measures the scheduler rather
    than the server; with its own CPU, spinning costs the server nothing.
    """
    return settings.busyPoll and cpu is not None and run.mode != "idle" and run.concurrency == 1


def runLoadGenerator(server: ServerProcess, run: ModeRun, settings: Settings,
                     cpu: int | None, duration: float | None = None) -> dict[str, Any]:
    """
    One load generator process against C{server} (a window of C{duration},
    default C{settings.duration}); its JSON result, or a result with
    C{failed} set if it crashed or overran.
    """
    duration = settings.duration if duration is None else duration
    concurrency, openConcurrency = run.concurrency, settings.openConcurrency
    if run.mode == "idle":
        timeout = 30 + settings.hold + run.concurrency / 200
        if server.name == "pynetdicom":
            # It refuses beyond 10 (RJ) and accepts through a 5-deep backlog.
            concurrency = min(concurrency, settings.pynetdicomIdle)
            openConcurrency = min(openConcurrency, 8)
    else:
        timeout = settings.warmup + duration + settings.opTimeout + 10
    command = pinnedCommand([
        sys.executable, "-m", "benchmarks.loadgen", "--port", str(server.port),
        "--mode", run.mode, "--concurrency", str(concurrency), "--warmup", str(settings.warmup),
        "--duration", str(duration), "--max-ops", str(settings.maxOps),
        "--hold", str(settings.hold), "--open-concurrency", str(openConcurrency),
        "--op-timeout", str(settings.opTimeout), "--timeout", str(timeout),
        "--server-pid", str(server.pid),
    ] + (["--busy-poll"] if busyPolls(run, settings, cpu) else []), cpu)
    with subprocess.Popen(command, cwd=ROOT, env=childEnvironment(), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        pinAfterStart(proc.pid, cpu)
        try:
            out, err = proc.communicate(timeout=timeout + 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"failed": f"load generator still running after {timeout + 15:g} s (killed)"}
        except BaseException:
            proc.kill()
            raise
    if proc.returncode != 0:
        return {"failed": f"load generator exited {proc.returncode}: "
                          f"{err.decode(errors='replace')[-1500:]}"}
    result: dict[str, Any] = json.loads(out)
    return result


# --- figures ------------------------------------------------------------------------

THROUGHPUT_METRICS = ("opsPerSecond", "latencyP50us", "latencyP99us", "serverCPUPer1000",
                      "serverCPUPercent", "loadgenCPUPercent", "otherCPUPercent", "stealPercent",
                      "serverRSSKB", "errors")
IDLE_METRICS = ("requested", "held", "rejected", "rssGrowthPerAssociationKiB",
                "holdServerCPUSeconds", "holdSeconds", "openSeconds", "serverRSSKB", "errors")
RATIO_METRICS = ("opsPerSecond", "latencyP50us", "latencyP99us", "serverCPUPer1000", "serverRSSKB",
                 "rssGrowthPerAssociationKiB")
BASELINES = ("floor", "pynetdicom")

#: A window with more hypervisor steal than this (percent of one CPU) is noisy.
NOISY_STEAL_PERCENT = 10


@dataclass(frozen=True)
class Bound:
    """
    C{dicomecho/baseline} of C{metric} in mode C{key} must be C{>=} (or
    C{<=}) C{limit}.
    """

    key: str
    metric: str
    baseline: str
    atLeast: bool
    limit: float


#: The issue's targets: (name, requirement, bounds); idle ones are absolute.
TARGETS: list[tuple[str, str, list[Bound]]] = [
    ("echoes/s on 1 association", "≥ 0.8 × floor and ≥ 25 × pynetdicom",
     [Bound("echoes/1", "opsPerSecond", "floor", True, 0.8),
      Bound("echoes/1", "opsPerSecond", "pynetdicom", True, 25)]),
    ("echoes/s on 8 associations", "≥ 0.8 × floor",
     [Bound("echoes/8", "opsPerSecond", "floor", True, 0.8)]),
    ("associations/s, 1 client", "≥ 0.7 × floor and ≥ 12 × pynetdicom",
     [Bound("associations/1", "opsPerSecond", "floor", True, 0.7),
      Bound("associations/1", "opsPerSecond", "pynetdicom", True, 12)]),
    ("associations/s, 8 clients", "≥ 0.7 × floor",
     [Bound("associations/8", "opsPerSecond", "floor", True, 0.7)]),
    ("server CPU per 1,000 echoes (8 assoc.)", "≤ 1.5 × floor",
     [Bound("echoes/8", "serverCPUPer1000", "floor", False, 1.5)]),
    ("echo p99 latency, 1 association", "≤ 2 × floor",
     [Bound("echoes/1", "latencyP99us", "floor", False, 2.0)]),
]
IDLE_TARGET_HELD = 10_000
IDLE_TARGET_KIB = 6.0


def _figure(round_: dict[str, Any], server: str, key: str, metric: str) -> float | None:
    value = round_["servers"].get(server, {}).get("modes", {}).get(key, {}).get(metric)
    return value if isinstance(value, (int, float)) else None


def _keys(rounds: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for round_ in rounds:
        for entry in round_["servers"].values():
            keys.update(dict.fromkeys(entry["modes"]))
    return list(keys)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def computeMedians(rounds: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """
    server -> mode -> metric -> median over the rounds that have it (for
    C{errors}: the total).
    """
    medians: dict[str, dict[str, dict[str, float | None]]] = {}
    for server in dict.fromkeys(s for r in rounds for s in r["servers"]):
        for key in _keys(rounds):
            metrics = IDLE_METRICS if key == "idle" else THROUGHPUT_METRICS
            figures = {m: [v for r in rounds if (v := _figure(r, server, key, m)) is not None]
                       for m in metrics}
            medians.setdefault(server, {})[key] = {
                m: (sum(values) if m == "errors" else _median(values)) for m, values in figures.items()
            }
    return medians


def computeRatios(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """
    mode -> metric -> "dicomecho/BASELINE" -> per-round ratios and their
    median.
    """
    ratios: dict[str, Any] = {}
    for key in _keys(rounds):
        for metric in RATIO_METRICS:
            for baseline in BASELINES:
                perRound = []
                for r in rounds:
                    mine, theirs = _figure(r, "dicomecho", key, metric), _figure(r, baseline, key, metric)
                    if mine is not None and theirs:
                        perRound.append(round(mine / theirs, 4))
                if perRound:
                    ratios.setdefault(key, {}).setdefault(metric, {})[f"dicomecho/{baseline}"] = {
                        "perRound": perRound, "median": _median(perRound)}
    return ratios


def evaluateTargets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """
    Each target with what was measured and whether it passed (C{None}: not
    measured).
    """
    rows = []
    for name, requirement, bounds in TARGETS:
        measured, verdicts = [], []
        for b in bounds:
            ratio = report["ratios"].get(b.key, {}).get(b.metric, {}).get(f"dicomecho/{b.baseline}")
            if ratio is None:
                measured.append(f"n/a × {b.baseline}")
                verdicts.append(None)
                continue
            value = ratio["median"]
            measured.append(f"{value:.3g} × {b.baseline}")
            verdicts.append(value >= b.limit if b.atLeast else value <= b.limit)
        rows.append({"target": name, "requirement": requirement, "measured": ", ".join(measured),
                     "pass": None if None in verdicts else all(verdicts)})
    rounds = [r["servers"]["dicomecho"]["modes"]["idle"] for r in report["rounds"]
              if "idle" in r["servers"].get("dicomecho", {}).get("modes", {})]
    rounds = [i for i in rounds if "held" in i]
    hold = report["settings"]["hold"]
    if rounds:
        held = min(i["held"] for i in rounds)
        requested = min(i["requested"] for i in rounds)
        allHeld = all(i["held"] == i["requested"] and not i["errors"] for i in rounds)
        rows.append({"target": "idle associations in one process",
                     "requirement": f"{IDLE_TARGET_HELD:,} held",
                     "measured": f"held {held}/{requested} (fewest over rounds)",
                     "pass": (allHeld if requested >= IDLE_TARGET_HELD else None)})
        growth = _median([g for i in rounds if (g := i["rssGrowthPerAssociationKiB"]) is not None])
        rows.append({"target": "  RSS growth per idle association",
                     "requirement": f"≤ {IDLE_TARGET_KIB:g} KiB", "measured": f"{growth} KiB",
                     "pass": None if growth is None else growth <= IDLE_TARGET_KIB})
        cpu = _median([c for i in rounds if (c := i["holdServerCPUSeconds"]) is not None])
        limit = max(0.02, 0.005 * hold)
        rows.append({"target": "  server CPU while idle",
                     "requirement": f"≈ 0 (≤ {limit:g} s in a {hold:g} s hold)",
                     "measured": f"{cpu} s", "pass": None if cpu is None else cpu <= limit})
    return rows


def _cell(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def formatReport(report: dict[str, Any]) -> str:
    """
    The figures for humans: medians, ratios, targets, then anything odd.
    """
    m, s = report["machine"], report["settings"]
    pinning = report["pinning"]
    lines = [
        f"dicomecho benchmark: {s['rounds']} round(s), {m['cpus']} CPU(s) ({m['cpuModel']}), "
        f"Linux {m['kernel']}, Python {m['python']}, Twisted {m['twisted']}, pydicom {m['pydicom']}, "
        f"pynetdicom {m['pynetdicom']}",
        "pinning: " + (f"server {pinning['server']}, load generator {pinning['loadGenerator']} "
                        f"({pinning['how']})" if pinning else "none")
        + f"; windows {s['warmup']:g} s warm-up + {s['duration']:g} s; RLIMIT_NOFILE "
          f"{report['rlimitNofile'][0]}; wall {report.get('wallSeconds', 0):.1f} s",
        "",
        "medians over rounds (ops: echoes in echoes modes, whole associations in associations modes)",
    ]
    medians = report["medians"]
    rows = [["mode", "server", "ops/s", "p50 µs", "p99 µs", "CPU s/1k ops", "server CPU%",
             "loadgen CPU%", "other CPU%", "steal %", "RSS MiB", "errors (sum)"]]
    idleRows = [["idle", "server", "requested", "held", "rejected", "KiB/assoc", "hold CPU s",
                 "open s", "RSS MiB", "errors (sum)"]]
    for key in _keys(report["rounds"]):
        for server, modes in medians.items():
            f = modes.get(key, {})
            rss = None if f.get("serverRSSKB") is None else f["serverRSSKB"] / 1024
            if key == "idle":
                idleRows.append([key, server, _cell(f.get("requested")), _cell(f.get("held")),
                                 _cell(f.get("rejected")), _cell(f.get("rssGrowthPerAssociationKiB"), 2),
                                 _cell(f.get("holdServerCPUSeconds"), 2), _cell(f.get("openSeconds"), 2),
                                 _cell(rss, 1), _cell(f.get("errors"))])
                continue
            rows.append([key, server, _cell(f.get("opsPerSecond")), _cell(f.get("latencyP50us")),
                         _cell(f.get("latencyP99us")), _cell(f.get("serverCPUPer1000"), 4), _cell(f.get("serverCPUPercent")),
                         _cell(f.get("loadgenCPUPercent")), _cell(f.get("otherCPUPercent")),
                         _cell(f.get("stealPercent")),
                         _cell(rss, 1), _cell(f.get("errors"))])
    lines += _table(rows) if len(rows) > 1 else []
    lines += [""] + _table(idleRows) if len(idleRows) > 1 else []
    lines += ["", "ratios dicomecho/baseline, median of the per-round ratios (each round's in "
                  "parentheses); above 1 is better for ops/s, worse for the others"]
    ratioRows = [["mode", "metric", "vs floor", "vs pynetdicom"]]
    for key, metrics in report["ratios"].items():
        for metric, pair in metrics.items():
            ratioRows.append([key, metric] + [
                f"{p['median']:.3g} ({' '.join(f'{v:.3g}' for v in p['perRound'])})"
                if (p := pair.get(f"dicomecho/{b}")) else "-" for b in BASELINES])
    lines += _table(ratioRows) if len(ratioRows) > 1 else []
    lines += ["", "targets"]
    targetRows = [["target", "requirement", "measured (median ratio)", "result"]]
    for t in report["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]]
        targetRows.append([t["target"], t["requirement"], t["measured"], verdict])
    lines += [line.replace("  ", "  ", 1) for line in _table(targetRows)]
    lines += ["", "notes"] + _notes(report)
    return "\n".join(lines)


def _notes(report: dict[str, Any]) -> list[str]:
    notes = []
    sent = ok = 0
    loadgenPeak = otherPeak = 0.0
    windows = 0
    stolen: list[str] = []
    for r in report["rounds"]:
        for server, entry in r["servers"].items():
            where = f"round {r['round']} {server}"
            if "failed" in entry:
                notes.append(f"{where}: FAILED: {entry['failed']}")
            if entry.get("exitStatus") not in (0, None, -signal.SIGTERM):
                notes.append(f"{where}: exit status {entry['exitStatus']}")
            if entry.get("errorLines"):
                notes.append(f"{where}: {entry['errorLines']} E: lines, last: {entry['outputTail']}")
            for key, result in entry["modes"].items():
                if "failed" in result:
                    notes.append(f"{where} {key}: FAILED: {result['failed']}")
                    continue
                if not result.get("busyPoll"):
                    loadgenPeak = max(loadgenPeak, result.get("loadgenCPUPercent") or 0.0)
                otherPeak = max(otherPeak, result.get("otherCPUPercent") or 0.0)
                if result.get("stealPercent") is not None:
                    windows += 1
                    if result["stealPercent"] > NOISY_STEAL_PERCENT:
                        stolen.append(f"r{r['round']} {server} {key} {result['stealPercent']:.0f}%")
                if server == "dicomecho":
                    sent += result["echoesSent"]
                    ok += result["echoesOK"]
                if key == "idle" and result["held"] < result["requested"]:
                    why = (f"; its limit is {PYNETDICOM_MAX_ASSOCIATIONS}, as expected"
                           if server == "pynetdicom" else " -- UNEXPECTED")
                    notes.append(f"{where} idle: held {result['held']} of {result['requested']} "
                                 f"({result['rejected']} rejected with A-ASSOCIATE-RJ{why})")
                if result["errors"]:
                    kinds = ", ".join(f"{k} {n}" for k, n in result["errorKinds"].items())
                    notes.append(f"{where} {key}: {result['errors']} errors ({kinds}); "
                                 f"e.g. {result['errorSamples'][:2]}")
    notes.append(f"dicomecho echo replies checked OK: {ok} of {sent} sent"
                 + ("" if ok == sent else " -- SOME NOT ANSWERED OR WRONG"))
    notes.append(f"load generator CPU: at most {loadgenPeak:.0f}% of its core in any window"
                 " (busy-polling windows, at 100% by design, left out)"
                 + (" -- it may be the bottleneck" if loadgenPeak > 90 else ""))
    notes.append(f"other processes (and unattributed kernel work) used at most {otherPeak:.0f}% "
                 "of a CPU in any window" + (" -- THE MACHINE WAS NOT QUIET, figures are noisy"
                                              if otherPeak > 15 else ""))
    notes.append(f"hypervisor steal over {NOISY_STEAL_PERCENT}% of a CPU in {len(stolen)} of {windows} "
                 "windows" + (": their figures are noisy, compare per-round ratios or run more rounds: "
                              + ", ".join(stolen) if stolen else ""))
    first = report["rounds"][0]["servers"] if report["rounds"] else {}
    templates = {s: e["modes"].get("echoes/1", e["modes"].get("associations/1", {})).get("templates")
                 for s, e in first.items()}
    if templates.get("dicomecho") and templates.get("floor"):
        same = templates["dicomecho"] == templates["floor"]
        notes.append("the floor's canned AC, C-ECHO-RSP and RP "
                     + ("equal dicomecho's replies" if same else
                        "DIFFER from dicomecho's current replies (re-capture: python -m "
                        "benchmarks.floor --capture PORT)"))
    return notes


# --- rounds -------------------------------------------------------------------------


def runRounds(settings: Settings, report: dict[str, Any], progress: Any) -> None:
    """
    Run every round into C{report["rounds"]}. Every server is stopped on
    the way out, also on an exception or Ctrl-C.
    """
    pin = settings.pin and twoCPUs()
    serverCPU, loadCPU = (0, 1) if pin else (None, None)
    runs = modeRuns(settings)
    if settings.machineWarmup > 0:
        # Unmeasured: the first server measured otherwise pays for a cold
        # machine (on a VM the hypervisor's halt polling adapts to load).
        floor = ServerProcess("floor", serverCPU)
        try:
            floor.start()
            result = runLoadGenerator(floor, ModeRun("warm-up", "echoes", 8), settings, loadCPU,
                                      settings.machineWarmup)
            report["machineWarmup"] = {k: result.get(k) for k in ("opsPerSecond", "errors", "failed")}
        finally:
            floor.stop()
            floor.log.close()
    for index in range(settings.rounds):
        shift = index % len(settings.servers)
        order = settings.servers[shift:] + settings.servers[:shift]
        roundResult: dict[str, Any] = {"round": index + 1, "order": order, "servers": {}}
        report["rounds"].append(roundResult)
        for name in order:
            server = ServerProcess(name, serverCPU, settings.idle + 100)
            entry: dict[str, Any] = {"modes": {}}
            roundResult["servers"][name] = entry
            try:
                server.start()
                for run in runs:
                    if not server.alive():
                        status = server.proc.returncode  # type: ignore[union-attr]
                        entry["modes"][run.key] = {"failed": f"server exited with {status}"}
                        continue
                    result = runLoadGenerator(server, run, settings, loadCPU)
                    entry["modes"][run.key] = result
                    print(f"round {index + 1} {name:10} {run.key:15} {_progressLine(result)}",
                          file=progress, flush=True)
            except RuntimeError as e:
                entry["failed"] = str(e)
                print(f"round {index + 1} {name}: {e}", file=progress, flush=True)
            finally:
                entry["exitStatus"] = server.stop()
                entry.update(server.summary())
                server.log.close()


def _progressLine(result: dict[str, Any]) -> str:
    if "failed" in result:
        return f"FAILED: {result['failed']}"
    if result["mode"] == "idle":
        text = (f"held {result['held']}/{result['requested']}, "
                f"{result['rssGrowthPerAssociationKiB']} KiB/assoc, "
                f"hold CPU {result['holdServerCPUSeconds']} s")
    else:
        text = (f"{result['opsPerSecond']:.0f} ops/s, p99 {result['latencyP99us']} µs, "
                f"server {result['serverCPUPercent']}% / loadgen {result['loadgenCPUPercent']}% CPU")
        if (result.get("stealPercent") or 0) > NOISY_STEAL_PERCENT:
            text += f", steal {result['stealPercent']}%"
    return text + (f", errors {result['errorKinds']}" if result["errors"] else "")


def _commaList(kind: type, choices: Sequence[str] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        values = [kind(v) for v in text.split(",") if v]
        if choices is not None and not set(values) <= set(choices):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return values
    return parse


def parseSettings(argv: Sequence[str] | None) -> Settings:
    """
    The command line, with C{--quick} applied.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before each window")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of each window")
    parser.add_argument("--max-ops", dest="maxOps", type=int, default=10_000_000,
                        help="a window also ends after this many operations")
    parser.add_argument("--idle", type=int, default=10_000, help="associations to hold in idle mode")
    parser.add_argument("--pynetdicom-idle", dest="pynetdicomIdle", type=int, default=200,
                        help="idle-mode attempts against pynetdicom (it holds 10)")
    parser.add_argument("--hold", type=float, default=3.0, help="idle mode: seconds to hold")
    parser.add_argument("--open-concurrency", dest="openConcurrency", type=int, default=32,
                        help="idle mode: associations being opened at once")
    parser.add_argument("--op-timeout", dest="opTimeout", type=float, default=10.0,
                        help="seconds one connect or reply may take")
    parser.add_argument("--echo-concurrency", dest="echoConcurrency", type=_commaList(int),
                        default=[1, 8], help="associations in echoes mode, e.g. 1,8")
    parser.add_argument("--clients", type=_commaList(int), default=[1, 8],
                        help="clients in associations mode, e.g. 1,8")
    parser.add_argument("--servers", type=_commaList(str, SERVERS), default=list(SERVERS))
    parser.add_argument("--modes", type=_commaList(str, MODES), default=list(MODES))
    parser.add_argument("--machine-warmup", dest="machineWarmup", type=float, default=3.0,
                        help="seconds of unmeasured load (floor, echoes/8) before the first round")
    parser.add_argument("--no-busy-poll", dest="busyPoll", action="store_false",
                        help="let the load generator sleep in the one-at-a-time modes too")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin the server to CPU 0 and the load generator to CPU 1")
    parser.add_argument("--json", type=Path, help="write all figures as JSON here")
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke: 1 round, tiny windows, 200 idle associations")
    settings = parser.parse_args(argv, namespace=Settings())
    if settings.quick:
        settings.rounds, settings.warmup, settings.duration = 1, 0.1, 0.3
        settings.idle, settings.pynetdicomIdle, settings.hold = 200, 30, 0.5
        settings.machineWarmup = min(settings.machineWarmup, 0.5)
    if settings.rounds < 1 or settings.idle < 1 or not settings.servers:
        parser.error("need at least one round, one idle association and one server")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the benchmark, print the report; 0, or 130 if interrupted.
    """
    settings = parseSettings(argv)
    started = time.monotonic()
    limit = raiseFileLimit(settings.idle + 1024)
    pin = settings.pin and twoCPUs()
    report: dict[str, Any] = {
        "machine": machineDescription(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(settings).items()},
        "pinning": ({"server": "CPU 0", "loadGenerator": "CPU 1",
                     "how": "taskset" if shutil.which("taskset") else "sched_setaffinity"}
                    if pin else None),
        "rlimitNofile": list(limit),
        "rounds": [],
        "interrupted": False,
    }
    if limit[0] < settings.idle + 100:
        print(f"warning: RLIMIT_NOFILE is {limit[0]}, too low for {settings.idle} idle associations",
              file=sys.stderr)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        runRounds(settings, report, sys.stderr)
    except KeyboardInterrupt:
        report["interrupted"] = True
        print("interrupted: reporting what was measured", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
    report["medians"] = computeMedians(report["rounds"])
    report["ratios"] = computeRatios(report["rounds"])
    report["targets"] = evaluateTargets(report)
    report["wallSeconds"] = round(time.monotonic() - started, 1)
    print(formatReport(report))
    if settings.json:
        settings.json.write_text(json.dumps(report, indent=1))
    return 130 if report["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
