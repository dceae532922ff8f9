# -*- test-case-name: tests.test_commandline -*-
"""
The command line as pynetdicom's echoscp (argparse) reads and shows it,
for a L{twisted.python.usage.Options}:

 - L{translateAliases}: echoscp's single-dash multi-letter spellings
   (C{-aet}, C{-ta} ...) to our long names;
 - L{permuteArguments}: options and the port in any order, as argparse
   and GNU getopt allow (Twisted's parser, like POSIX getopt, stops at the
   first argument that is not an option);
 - L{HELP}: the one table of what C{--help} says, grouped as echoscp's
   C{--help} groups it, then dicomecho's own groups; L{formatHelp} renders
   it; L{usageError} reports a usage error as argparse does.

Pure: no reactor, no I/O but the stream L{usageError} is handed.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from enum import Enum
from typing import Mapping, Sequence, TextIO

__all__ = [
    "ALIASES",
    "HELP",
    "HELP_TEXT",
    "HelpEntry",
    "translateAliases",
    "permuteArguments",
    "formatHelp",
    "defaultText",
    "usageError",
]

#: echoscp's single-dash spellings and the long options they stand for.
ALIASES = {
    "-aet": "--ae-title",
    "-ta": "--acse-timeout",
    "-td": "--dimse-timeout",
    "-tn": "--network-timeout",
    "-pdu": "--max-pdu",
    "-ba": "--bind-address",
    "-ll": "--log-level",
    "-x=": "--prefer-uncompr",
    "-xe": "--prefer-little",
    "-xb": "--prefer-big",
    "-xi": "--implicit",
}

_SHORT_OF = {long[2:]: short for short, long in ALIASES.items()}


@dataclass(frozen=True)
class HelpEntry:
    """
    One option as C{--help} shows it.

    @ivar name: the long name, without C{--}.
    @ivar metavar: what its value is called (echoscp's C{[s]econds} style
        for echoscp's options); C{None} for a flag.
    @ivar text: what it does: lower case, no final full stop, as echoscp.
    @ivar unit: appended to the default (C{"s"} for seconds).
    @ivar default: the default as a user would type it, where the parser's
        own default is not it (C{None}: take the parser's).
    """

    name: str
    metavar: str | None
    text: str
    unit: str = ""
    default: str | None = None


#: Groups of options in C{--help}, in order: echoscp's three, then ours.
HELP: tuple[tuple[str, tuple[HelpEntry, ...]], ...] = (
    ("General Options", (
        HelpEntry("help", None, "show this help message and exit"),
        HelpEntry("version", None, "print version information and exit"),
        HelpEntry("quiet", None, "quiet mode, print no warnings and errors"),
        HelpEntry("verbose", None, "verbose mode, print processing details"),
        HelpEntry("debug", None, "debug mode, print debug information"),
        HelpEntry("log-level", "[l]", "use level l for the logger (critical, error, "
                  "warn, warning, info, debug); overrides -v and -d, not -q"),
    )),
    ("Network Options", (
        HelpEntry("ae-title", "[a]etitle", "set my AE title"),
        HelpEntry("acse-timeout", "[s]econds", "timeout for ACSE messages", "s"),
        HelpEntry("dimse-timeout", "[s]econds", "timeout for DIMSE messages", "s"),
        HelpEntry("network-timeout", "[s]econds", "timeout for the network", "s"),
        HelpEntry("max-pdu", "[n]umber of bytes", "set max receive pdu to n bytes "
                  "(0 for unlimited)"),
        HelpEntry("bind-address", "[a]ddress", "the address of the network interface "
                  "to listen on; :: for IPv6 and IPv4", default="all IPv4 interfaces"),
        HelpEntry("port", "PORT", "TCP/IP port number to listen on, or an endpoint "
                  "description such as tcp6:11112 or unix:/run/dicom.sock; also "
                  "the positional argument"),
    )),
    ("Preferred Transfer Syntaxes", (
        HelpEntry("prefer-uncompr", None, "prefer explicit VR local byte order"),
        HelpEntry("prefer-little", None, "prefer explicit VR little endian TS"),
        HelpEntry("prefer-big", None, "prefer explicit VR big endian TS"),
        HelpEntry("implicit", None, "accept implicit VR little endian TS only"),
    )),
    ("Security Options", (
        HelpEntry("require-called-aet", None, "reject requests whose called AE title "
                  "is not mine (1, 1, 7)"),
        HelpEntry("allow-calling-aet", "AET", "accept only this calling AE title, "
                  "others are rejected (1, 1, 3); repeatable", default="any"),
        HelpEntry("allow-network", "CIDR", "accept connections only from this IPv4 or "
                  "IPv6 network, others are closed on connect; repeatable", default="any"),
        HelpEntry("allow-peer", "AET@CIDR", "also accept this calling AE title from "
                  "this network, and only that title from there; repeatable"),
        HelpEntry("user-identity", "MODE", "check user identity, refusing with "
                  "(1, 2, 1): ignore, optional (when sent) or required"),
        HelpEntry("credentials", "FILE", "users and scrypt-hashed passcodes for "
                  "--user-identity (write it with python -m dicomecho.passwd)"),
        HelpEntry("tls-key", "FILE", "serve TLS on the port number with this PEM "
                  "private key"),
        HelpEntry("tls-cert", "FILE", "PEM certificate for --tls-key, then any chain "
                  "certificates"),
        HelpEntry("tls-ca", "FILE", "verify client certificates against these PEM CA "
                  "certificates"),
        HelpEntry("tls-client-cert", "MODE", "with --tls-ca: required or optional",
                  default="required"),
    )),
    ("Production Options", (
        HelpEntry("listen", "ENDPOINT", "listen on this endpoint description too, "
                  "e.g. reuseport:11112 or haproxy:tcp:11112; repeatable; without "
                  "--port it replaces the default port"),
        HelpEntry("backlog", "N", "listen queue length for a port number"),
        HelpEntry("max-associations", "N", "reject (2, 3, 2) beyond this many "
                  "associations at once"),
        HelpEntry("max-pending", "N", "hold at most N connections not yet associated, "
                  "closing the oldest to make room; 0: no limit"),
        HelpEntry("max-pending-per-source", "N", "close a source's connections "
                  "beyond N not yet associated (TLS handshakes count); 0: no limit"),
        HelpEntry("max-associations-per-source", "N", "reject (2, 3, 2) a source's "
                  "associations beyond N at once; 0: no limit"),
        HelpEntry("connection-rate-per-source", "R", "close a source's new "
                  "connections beyond R per second (bursts of 2R); 0: no limit"),
        HelpEntry("request-bytes-per-source", "B", "reject (2, 3, 2) without "
                  "decoding a source's A-ASSOCIATE-RQs beyond B bytes per second "
                  "(bursts of 4B); 0: no limit"),
        HelpEntry("tls-handshakes-per-source", "R", "close a source's new TLS "
                  "connections beyond R handshakes per second (bursts of 2R); 0: no limit"),
        HelpEntry("max-associate-length", "[n]umber of bytes", "abort an "
                  "A-ASSOCIATE-RQ longer than n bytes (DCMTK's largest, 128 contexts "
                  "x 38 transfer syntaxes, is 129691)"),
        HelpEntry("shutdown-grace", "[s]econds", "time associations may take to "
                  "finish on SIGTERM or SIGINT before they are aborted", "s"),
    )),
    ("Logging and Metrics Options", (
        HelpEntry("metrics", "ENDPOINT", "serve Prometheus metrics at /metrics on "
                  "this endpoint, e.g. tcp:9102:interface=127.0.0.1 (needs "
                  "pip install 'dicomecho[metrics]')"),
        HelpEntry("web", "ENDPOINT", "serve the live page of recent connections "
                  "on this endpoint, e.g. tcp:8080:interface=127.0.0.1"),
        HelpEntry("web-history", "N", "connections the live page keeps (default 1000)"),
        HelpEntry("web-credentials", "FILE", "ask the live page's visitors for a "
                  "username and passcode from FILE (dicomecho passwd; HTTP Basic)"),
    )),
)

#: What each option does, by long name (for the parser's own docs).
HELP_TEXT: Mapping[str, str] = {e.name: e.text for _, group in HELP for e in group}

#: The positional argument, as echoscp's "Parameters" group shows it.
PORT_HELP = HelpEntry(
    "port", None, "TCP/IP port number to listen on, or an endpoint description; "
    "it may stand before, between or after the options"
)


def translateAliases(args: Sequence[str]) -> list[str]:
    """
    Replace echoscp's single-dash multi-letter options (also in the
    C{-aet=VALUE} form) with their long names; stop at C{--}.
    """
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + list(args[i:])
        if arg in ALIASES:
            out.append(ALIASES[arg])
        elif "=" in arg and arg.split("=", 1)[0] in ALIASES:
            name, value = arg.split("=", 1)
            out.append(f"{ALIASES[name]}={value}")
        else:
            out.append(arg)
    return out


def _longTakesValue(name: str, longOpts: Sequence[str]) -> bool:
    """
    Whether C{--name} (perhaps abbreviated, as getopt allows) takes a
    value. An unknown or ambiguous name is left to getopt to refuse.
    """
    if name + "=" in longOpts:
        return True
    if name in longOpts:
        return False
    matches = [o for o in longOpts if o.startswith(name)]
    return len(matches) == 1 and matches[0].endswith("=")


def permuteArguments(args: Sequence[str], longOpts: Sequence[str], shortOpts: str) -> list[str]:
    """
    Put every option (with its value) before every positional argument, as
    GNU getopt does, so that C{11112 -v} parses as C{-v 11112}.

    C{longOpts} and C{shortOpts} are getopt's (long names, C{"name="} for
    those taking a value; short letters, C{"p:"} for those taking one).
    C{--} ends the options: what follows is positional. A lone C{-} is
    positional.

    @return: the options, then C{--} and the positionals if there are any.
    """
    options: list[str] = []
    positionals: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positionals.extend(args[i:])
            break
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            continue
        options.append(arg)
        if arg.startswith("--"):
            needsNext = "=" not in arg and _longTakesValue(arg[2:], longOpts)
        else:
            needsNext = _shortClusterNeedsNext(arg[1:], shortOpts)
        if needsNext and i < len(args):
            options.append(args[i])
            i += 1
    return options + (["--", *positionals] if positionals else [])


def _shortClusterNeedsNext(letters: str, shortOpts: str) -> bool:
    """
    Whether the short-option cluster C{letters} (C{"vp"}, C{"p5"}) ends
    with an option whose value is the next argument.
    """
    for position, letter in enumerate(letters):
        index = shortOpts.find(letter)
        if letter != ":" and index >= 0 and shortOpts[index + 1 : index + 2] == ":":
            return position == len(letters) - 1
    return False


def defaultText(entry: HelpEntry, defaults: Mapping[str, object]) -> str | None:
    """
    The default of C{entry} as a user would type it: C{30}, not C{30.0};
    C{ignore}, not an Enum's repr; nothing for an empty default.
    """
    if entry.metavar is None:
        return None  # a flag
    if entry.default is not None:
        return entry.default
    value = defaults.get(entry.name)
    if value is None or value == "":
        return None
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value} {entry.unit}".rstrip()


def _spellings(entry: HelpEntry, shortLetters: Mapping[str, str]) -> str:
    """
    C{-aet [a]etitle, --ae-title [a]etitle}: every spelling of an option,
    the short one first, as argparse lists them.
    """
    value = f" {entry.metavar}" if entry.metavar else ""
    short = _SHORT_OF.get(entry.name) or (
        f"-{shortLetters[entry.name]}" if entry.name in shortLetters else None
    )
    names = [f"{short}{value}"] if short else []
    return ", ".join(names + [f"--{entry.name}{value}"])


def _item(invocation: str, text: str, width: int) -> list[str]:
    """
    One option in argparse's layout: the invocation from column 2, the
    help from column 24 (on the next line if the invocation is too long).
    """
    column = 24
    wrapped = textwrap.wrap(text, max(width - column, 20)) or [""]
    if len(invocation) <= column - 4:
        first = f"  {invocation:<{column - 4}}  {wrapped[0]}"
        return [first] + [" " * column + line for line in wrapped[1:]]
    return [f"  {invocation}"] + [" " * column + line for line in wrapped]


def _withDefault(text: str, default: str | None) -> str:
    """
    C{text (default: D)}, or C{(..., default: D)} after a parenthesis, as
    echoscp writes C{(0 for unlimited, default: 16382)}.
    """
    if default is None:
        return text
    if text.endswith(")"):
        return f"{text[:-1]}, default: {default})"
    return f"{text} (default: {default})"


def formatHelp(
    description: str,
    defaults: Mapping[str, object],
    shortLetters: Mapping[str, str],
    width: int = 80,
) -> str:
    """
    The body of C{--help} (after the usage line): the description, the
    positional port, then every group of L{HELP}.

    @param defaults: the parser's defaults, by long name.
    @param shortLetters: the one-letter spellings (C{{"quiet": "q"}}).
    """
    lines = [""] + textwrap.wrap(description, width) + ["", "Parameters:"]
    lines += _item(PORT_HELP.name, _withDefault(PORT_HELP.text, str(defaults["port"])), width)
    for title, entries in HELP:
        lines += ["", f"{title}:"]
        for entry in entries:
            text = _withDefault(entry.text, defaultText(entry, defaults))
            lines += _item(_spellings(entry, shortLetters), text, width)
    return "\n".join(lines) + "\n"


def usageError(usageLine: str, command: str, error: object, stream: TextIO) -> int:
    """
    Report a usage error as argparse does (the usage line, then
    C{COMMAND: error: ...}) on C{stream}.

    @return: the exit status for a usage error, 2.
    """
    print(usageLine, file=stream)
    print(f"{command}: error: {error}", file=stream)
    return 2
