"""
The shape of the code, checked: layers import only downwards, the pure
layers import no reactor, transport or logger, sizes stay small, no private
name crosses a module, and README's Architecture section names every
module that exists and nothing else.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dicomecho"

#: The layers, lowest first.
LAYERS = ["wire", "security", "association", "services", "observability", "web", "server", "cli"]
RANK = {name: rank for rank, name in enumerate(LAYERS)}
PURE = {"wire", "security", "association", "services"}
#: What a pure layer must not import: the reactor, transports, the logger.
REACTOR_SIDE = (
    "twisted.internet.reactor",
    "twisted.internet.protocol",
    "twisted.internet.tcp",
    "twisted.internet.endpoints",
    "twisted.internet.task",
    "twisted.internet.abstract",
    "twisted.internet.threads",
    "twisted.internet.defer",
    "twisted.logger",
)


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def dotted(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def layerOf(path: Path) -> str | None:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else None


def runtimeImports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """
    Every module name imported outside C{if TYPE_CHECKING:} blocks.
    """
    typingOnly: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typingOnly.update(id(sub) for sub in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in typingOnly:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


@pytest.mark.parametrize("path", modules(), ids=dotted)
def test_layersImportDownwards(path: Path) -> None:
    """
    A layer imports only from itself and the layers below it; a pure layer
    imports nothing from Twisted's reactor side.
    """
    layer = layerOf(path)
    if layer is None:
        return
    tree = ast.parse(path.read_text())
    wrong = []
    for line, name in runtimeImports(tree):
        parts = name.split(".")
        if parts[0] == "dicomecho" and len(parts) > 1 and parts[1] in RANK:
            if RANK[parts[1]] > RANK[layer]:
                wrong.append(f"line {line}: {name}")
        if layer in PURE and name.startswith(REACTOR_SIDE):
            wrong.append(f"line {line}: {name}")
    assert wrong == []


def test_everyModuleIsInALayer() -> None:
    """
    Top-level modules are entry points and documented re-exports only.
    """
    topLevel = {p.stem for p in PACKAGE.glob("*.py")}
    assert topLevel == {
        "__init__", "__main__", "logs", "ping", "passwd", "verification", "identity", "metrics",
    }
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(LAYERS)


@pytest.mark.parametrize(
    "path",
    modules() + sorted((ROOT / "twisted" / "plugins").glob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_sizes(path: Path) -> None:
    """
    Modules under 600 lines, classes under 400, functions under 60.
    """
    source = path.read_text()
    assert len(source.splitlines()) <= 600
    tooLong = [
        (node.name, node.end_lineno - node.lineno + 1)  # type: ignore[operator]
        for node in ast.walk(ast.parse(source))
        if (isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 400)  # type: ignore[operator]
        or (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > 60  # type: ignore[operator]
        )
    ]
    assert tooLong == []


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (ROOT / "tests").rglob("*.py") if "__pycache__" not in p.parts),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_testModuleSizes(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 1000


def test_testsDoNotImportTestModules() -> None:
    """
    Shared test code lives in tests/support, never in a test module.
    """
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "fuzz").rglob("*.py")):
        for line, name in runtimeImports(ast.parse(path.read_text())):
            if re.match(r"tests\.test_", name):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert offenders == []


def definedNames(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return names


@pytest.mark.parametrize("path", modules(), ids=dotted)
def test_noPrivateNameCrossesAModule(path: Path) -> None:
    """
    A C{_name} used in a module is defined in that module: no private
    member of another class or module is reached into.
    """
    tree = ast.parse(path.read_text())
    defined = definedNames(tree)
    crossing = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.attr not in defined
        ):
            crossing.append(f"line {node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.ImportFrom):
            crossing.extend(
                f"line {node.lineno}: from {node.module} import {alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            )
    assert crossing == []


def architectureSection() -> str:
    readme = (ROOT / "README.rst").read_text()
    start = readme.index("Architecture\n============\n")
    return readme[start : readme.index("Behaviour\n=========\n", start)]


def test_readmeNamesEveryModule() -> None:
    """
    README's Architecture section names every module of the package and
    every plugin, and each name it gives exists.
    """
    text = architectureSection()
    named = set(re.findall(r"``(dicomecho(?:\.\w+)+)``", text))
    named |= {f"dicomecho.{n}" for n in re.findall(r"``dicomecho\.\w+``, ``(\w+)``", text)}
    shims = re.search(r"``dicomecho\.logs``(.*?)thin re-exports", text, re.S)
    assert shims is not None
    named |= {f"dicomecho.{n}" for n in re.findall(r"``dicomecho\.(\w+)``", shims.group(0))}
    existing = {dotted(p) for p in modules() if p.stem != "__init__"}
    assert named - existing == set(), "named in README but missing"
    assert existing - named == set(), "in the package but not in README"
    for plugin in (ROOT / "twisted" / "plugins").glob("*.py"):
        assert plugin.name in text


def test_architectureDocument() -> None:
    """
    docs/architecture.rst describes every layer.
    """
    text = (ROOT / "docs" / "architecture.rst").read_text()
    for layer in LAYERS:
        assert f"\n{layer}\n    " in text


#: The documented paths: they re-export on purpose.
DOCUMENTED = {"__init__", "logs", "ping", "passwd", "verification", "identity", "metrics"}


@pytest.mark.parametrize(
    "path",
    [p for p in modules() if not (p.parent == PACKAGE and p.stem in DOCUMENTED)],
    ids=dotted,
)
def test_noOldNamesKept(path: Path) -> None:
    """
    A module exports only what it defines: a name that moved is imported
    from its new home, not kept alive where it was.
    """
    tree = ast.parse(path.read_text())
    defined = {
        node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    } | {
        target.id
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in ast.walk(node.targets[0] if isinstance(node, ast.Assign) else node.target)
        if isinstance(target, ast.Name)
    }
    exported = next(
        (
            [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            and isinstance(node.value, ast.List)
        ),
        [],
    )
    assert [name for name in exported if name not in defined] == []
