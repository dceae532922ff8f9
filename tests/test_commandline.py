"""
Tests for L{dicomecho.server.commandline} through L{dicomecho.server.tap.Options}: the
port before, between or after the options (GNU permutation, as echoscp's
argparse allows), C{--} and extra positionals, and C{--help} grouped as
echoscp groups it, checked against README.rst's option table both ways.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.python.usage import UsageError

from dicomecho.server.commandline import ALIASES, HELP, permuteArguments, translateAliases
from dicomecho.server.tap import Options

README = Path(__file__).resolve().parent.parent / "README.rst"

#: Every option of echoscp's --help with a value to give it, in echoscp's
#: spelling (pynetdicom 3.0.4's echoscp --help); the mutually exclusive ones one at a time.
ECHOSCP_OPTIONS: list[list[str]] = [
    ["-q"], ["-v"], ["-d"], ["--quiet"], ["--verbose"], ["--debug"],
    ["-ll", "info"], ["--log-level", "debug"],
    ["-aet", "MYSCP"], ["--ae-title", "MYSCP"], ["--ae-title=MYSCP"],
    ["-ta", "5"], ["--acse-timeout", "5"],
    ["-td", "6"], ["--dimse-timeout", "6"],
    ["-tn", "7"], ["--network-timeout", "7"],
    ["-pdu", "32768"], ["--max-pdu", "0"],
    ["-ba", "127.0.0.1"], ["--bind-address", "::"],
    ["-x="], ["-xe"], ["-xb"], ["-xi"],
    ["--prefer-uncompr"], ["--prefer-little"], ["--prefer-big"], ["--implicit"],
]

#: Keys Options derives in postOptions, which say everything parsed.
DERIVED = ("ae-title", "acse-timeout", "dimse-timeout", "network-timeout", "max-pdu",
           "transferSyntaxes", "logLevelValue", "endpoints", "port")


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def outcome(*args: str) -> dict[str, Any]:
    options = parse(*args)
    return {key: options[key] for key in DERIVED}


@pytest.mark.parametrize("option", ECHOSCP_OPTIONS, ids=" ".join)
def test_everyEchoscpOptionBeforeAndAfterThePort(option: list[str]) -> None:
    """
    Each of echoscp's options means the same before and after the port.
    """
    before = outcome(*option, "104")
    assert outcome("104", *option) == before
    assert before["port"] == "104"


@pytest.mark.parametrize(
    "args",
    [
        ["11112", "-v", "-aet", "MYSCP", "-ta", "5", "-td", "5", "-tn", "5", "-pdu", "32768", "-xe"],
        ["-v", "11112", "-aet", "MYSCP", "-ta", "5", "-td", "5", "-tn", "5", "-pdu", "32768", "-xe"],
        ["-v", "-aet", "MYSCP", "-ta", "5", "11112", "-td", "5", "-tn", "5", "-pdu", "32768", "-xe"],
        ["-v", "-aet", "MYSCP", "-ta", "5", "-td", "5", "-tn", "5", "-pdu", "32768", "-xe", "11112"],
        ["--verbose", "--ae-title=MYSCP", "--acse-timeout=5", "--dimse-timeout=5",
         "--network-timeout", "5", "--max-pdu", "32768", "--prefer-little", "--", "11112"],
    ],
)
def test_issueCommandLines(args: list[str]) -> None:
    """
    The port may stand before, between or after the options; all of these
    are the same command line.
    """
    o = outcome(*args)
    assert o["port"] == "11112" and o["ae-title"] == "MYSCP"
    assert (o["acse-timeout"], o["dimse-timeout"], o["network-timeout"]) == (5.0, 5.0, 5.0)
    assert o["max-pdu"] == 32768
    assert o == outcome("-v", "-aet", "MYSCP", "-ta", "5", "-td", "5", "-tn", "5",
                        "-pdu", "32768", "-xe", "11112")


def test_doubleDashEndsOptions() -> None:
    """
    After C{--} everything is positional: C{-d} there is a second
    positional, hence a usage error, not the debug flag.
    """
    assert parse("-v", "--", "104")["port"] == "104"
    with pytest.raises(UsageError, match="unrecognized arguments: -d"):
        parse("-v", "--", "104", "-d")


@pytest.mark.parametrize("args", [["1", "2"], ["1", "-v", "2"], ["-v", "1", "2", "-d"]])
def test_secondPositionalIsAUsageError(args: list[str]) -> None:
    with pytest.raises(UsageError, match="unrecognized arguments: 2$"):
        parse(*args)


def test_valueThatLooksLikeAnOption() -> None:
    """
    A value is taken whole, even when it starts with a dash (C{-ta -1} is
    a bad timeout, not an option C{-1}); C{-p} may be glued to its value.
    """
    with pytest.raises(UsageError, match=">= 0"):
        parse("104", "-ta", "-1")
    assert parse("-vp5")["port"] == "5"
    assert parse("-vp", "5")["port"] == "5"
    assert parse("--verb", "104")["logLevelValue"] == parse("-v", "104")["logLevelValue"]


def test_permuteArguments() -> None:
    """
    The permutation itself: options in order, then C{--} and the
    positionals; an abbreviated long option takes its value along.
    """
    longs, shorts = ["ae-title=", "verbose", "port="], "vp:"
    assert permuteArguments(["1", "--ae", "X", "-v"], longs, shorts) == ["--ae", "X", "-v", "--", "1"]
    assert permuteArguments(["-p", "7", "-"], longs, shorts) == ["-p", "7", "--", "-"]
    assert permuteArguments(["--port=7", "x", "--", "-v"], longs, shorts) == ["--port=7", "--", "x", "-v"]
    assert permuteArguments(["-v"], longs, shorts) == ["-v"]
    assert permuteArguments(["--ae-title"], longs, shorts) == ["--ae-title"]


def test_translateAliasesStopsAtDoubleDash() -> None:
    assert translateAliases(["-aet", "X", "--", "-xe"]) == ["--ae-title", "X", "--", "-xe"]


_OPTION_SETS = st.lists(
    st.sampled_from([o for o in ECHOSCP_OPTIONS if o[0] not in ("-q", "--quiet", "-d", "--debug")
                     and not o[0].startswith(("-x", "--prefer", "--implicit"))]),
    max_size=6,
)


@given(_OPTION_SETS, st.data())
def test_portAnywhere(options: list[list[str]], data: st.DataObject) -> None:
    """
    Property: wherever the port is put between whole options, the result
    is that of the options followed by the port.
    """
    flat = [arg for option in options for arg in option]
    boundaries = [0] + [sum(len(o) for o in options[: i + 1]) for i in range(len(options))]
    at = data.draw(st.sampled_from(boundaries))
    assert outcome(*flat[:at], "104", *flat[at:]) == outcome(*flat, "104")


# --- --help -------------------------------------------------------------------


def helpText() -> str:
    options = Options()
    options.command = "python -m dicomecho"
    return str(options)


def test_helpUsageLineAndGroups() -> None:
    """
    The usage line names the program; echoscp's groups come first, in
    echoscp's order, then dicomecho's own.
    """
    text = helpText()
    assert text.startswith("usage: python -m dicomecho [options] [port]\n")
    groups = re.findall(r"^(\S[^:\n]*):$", text, re.M)
    assert groups == [
        "Parameters", "General Options", "Network Options", "Preferred Transfer Syntaxes",
        "Security Options", "Production Options", "Logging and Metrics Options",
    ]


def test_helpShowsBothSpellingsAndTypedDefaults() -> None:
    """
    Each option with a short spelling shows both; defaults are shown as a
    user would type them, never as a repr or an empty value.
    """
    text = helpText()
    flowing = " ".join(text.split())
    for short, long in ALIASES.items():
        assert re.search(rf"^  {re.escape(short)}( [^,]+)?, {re.escape(long)}\b", text, re.M), short
    for short, long in (("-q", "--quiet"), ("-v", "--verbose"), ("-d", "--debug"), ("-h", "--help")):
        assert f"  {short}, {long}" in text
    assert "(default: 30 s)" in flowing and "(default: ECHOSCP)" in flowing
    assert "(0 for unlimited, default: 16382)" in flowing
    assert "(default: ignore)" in flowing
    assert "UserIdentityMode" not in text and "[default: ]" not in text
    assert "(default: )" not in text and "30.0" not in text


def test_helpEveryOptionOnce() -> None:
    """
    Every option the parser accepts is in --help's table exactly once, and
    the table names no option the parser lacks.
    """
    names = [entry.name for _, entries in HELP for entry in entries]
    assert len(names) == len(set(names))
    accepted = {name.rstrip("=") for name in Options().longOpt}
    assert set(names) == accepted


def test_helpStyle() -> None:
    """
    One style of description, as echoscp's: lower case first, no final
    full stop.
    """
    for _, entries in HELP:
        for entry in entries:
            first = entry.text[0]
            assert not first.isupper() or entry.text.split()[0] in ("TCP/IP", "PEM", "AE"), entry
            assert not entry.text.endswith("."), entry


def readmeOptions() -> set[str]:
    """
    The long options named in the first column of README.rst's option
    table (under "Options").
    """
    section = README.read_text().split("\nOptions\n-------\n", 1)[1]
    table = next(part for part in section.split("\n\n") if part.startswith("===="))
    names: set[str] = set()
    for line in table.splitlines():
        if line.startswith("``") or line.startswith("port"):
            first = line.split("  ", 1)[0]
            names.update(re.findall(r"``--([a-z-]+)", first))
    return names


def test_readmeTableMatchesHelp() -> None:
    """
    Every option in --help is in README.rst's option table, and the
    other way round.
    """
    help = set(re.findall(r"--([a-z][a-z-]*)", "\n".join(
        line.split("  ")[1] if line.startswith("  -") else ""
        for line in helpText().splitlines()
    )))
    assert help == readmeOptions()


def test_shellCompletionLeftInPlace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Twisted's shell completion (C{--_shell-completion zsh:N} as the last
    two arguments) still sees them last: no permutation then.
    """
    out = tmp_path / "completion"
    options = Options()
    options._shellCompFile = out.open("w")  # type: ignore[attr-defined]
    monkeypatch.setattr("sys.argv", ["dicomecho"])
    with pytest.raises(SystemExit):
        options.parseOptions(["104", "--_shell-completion", "zsh:2"])
    options._shellCompFile.close()  # type: ignore[attr-defined]
    assert "--ae-title" in out.read_text()
