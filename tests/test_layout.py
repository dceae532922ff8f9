"""
The tree tells the truth about itself: every C{test-case-name} header in
the package and the plugins names test modules that exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.processes import ROOT

SOURCES = sorted([*(ROOT / "dicomecho").rglob("*.py"), *(ROOT / "twisted" / "plugins").glob("*.py")])
HEADER = re.compile(r"^# -\*- test-case-name: (\S+) -\*-$", re.M)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_testCaseNamesExist(source: Path) -> None:
    for match in HEADER.finditer(source.read_text()):
        for name in match.group(1).split(","):
            path = ROOT.joinpath(*name.split("."))
            assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), name
