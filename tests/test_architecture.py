"""The house labsupport is built as: layers that import one way, no import cycles, and
modules small enough to read (labsupport/*/).

The import graph is read from the source with :mod:`ast`, counting every import a module
makes: at the top, inside functions, and under ``if TYPE_CHECKING:`` alike, since each
of them is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lab_helpers import ROOT

import labsupport

PACKAGE = ROOT / "labsupport"

#: Each layer and the layers it may import. ``auth`` and ``wire`` sit side by side, each
#: independent of the other; ``mail`` uses both (a server signs, verifies and serves TLS).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "dns": frozenset({"core"}),
    "auth": frozenset({"dns", "core"}),
    "wire": frozenset({"dns", "core"}),
    "mail": frozenset({"auth", "wire", "dns", "core"}),
    "lab": frozenset({"mail", "auth", "wire", "dns", "core"}),
    "teach": frozenset({"lab", "mail", "auth", "wire", "dns", "core"}),
}

#: No module over this many lines: split by concept past it.
MAX_LINES = 600

#: Modules still over MAX_LINES, each with the size it may not grow past. The list only
#: shrinks: a module split below MAX_LINES must leave it (the test says so).
STILL_TO_SPLIT: dict[str, int] = {
}


@dataclass(frozen=True)
class Import:
    """One import in a module: who imports what, and where."""

    importer: str
    imported: str
    line: int


def modules(package_dir: Path) -> dict[str, Path]:
    """Every module under ``package_dir`` by dotted name (packages by their own name)."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(package_dir: Path) -> Iterator[Import]:
    """Every import of a module of the package by another one, resolved to a module."""
    known = modules(package_dir)
    root = package_dir.name
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    # ``from . import spf`` imports a module; ``from .zone import ZoneSet`` a name.
                    candidate = f"{source}.{alias.name}"
                    targets.append(candidate if candidate in known else source)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                if (target == root or target.startswith(root + ".")) and target != name:
                    yield Import(name, target, node.lineno)


def layer_of(module: str) -> str | None:
    """The layer a module belongs to (``labsupport.dns.zone`` -> ``dns``); None for the
    package's own ``__init__`` and ``__main__``, the facade above every layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT else None


def layer_violations(found: list[Import]) -> list[str]:
    """Each import that goes up or sideways, as a sentence."""
    problems = []
    for edge in found:
        source, target = layer_of(edge.importer), layer_of(edge.imported)
        if source is None:
            continue
        if target is None:
            problems.append(f"{edge.importer} (line {edge.line}) imports {edge.imported}, "
                            "the package facade; import the module itself")
        elif target != source and target not in MAY_IMPORT[source]:
            problems.append(f"{edge.importer} (line {edge.line}) imports {edge.imported}: "
                            f"layer {source} may import only "
                            f"{', '.join(sorted(MAY_IMPORT[source])) or 'nothing else'}")
    return problems


def cycles(found: list[Import]) -> list[list[str]]:
    """The import cycles (strongly connected components of two or more modules, or a
    module importing itself), by Tarjan's algorithm."""
    graph: dict[str, set[str]] = {}
    for edge in found:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


# -- the checker itself catches what it is for -------------------------------------------


def _tiny_package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "labsupport"
    for rel, text in {"__init__.py": "", **files}.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package


def test_checker_finds_an_upward_import_even_inside_a_function(tmp_path: Path) -> None:
    package = _tiny_package(tmp_path, {
        "dns/__init__.py": "", "teach/__init__.py": "",
        "teach/plots.py": "from ..dns.mx import mx_hosts\n",
        "dns/mx.py": "def plot():\n    from ..teach.plots import draw\n",
    })
    problems = layer_violations(list(imports(package)))
    assert problems == ["labsupport.dns.mx (line 2) imports labsupport.teach.plots: layer dns "
                        "may import only core"]


def test_checker_finds_a_sideways_import_and_one_of_the_facade(tmp_path: Path) -> None:
    package = _tiny_package(tmp_path, {
        "auth/__init__.py": "", "wire/__init__.py": "",
        "auth/spf.py": "from ..wire import capture\nimport labsupport\n",
        "wire/capture.py": "",
    })
    problems = layer_violations(list(imports(package)))
    assert [p.split(":")[0] for p in problems] == [
        "labsupport.auth.spf (line 1) imports labsupport.wire.capture",
        "labsupport.auth.spf (line 2) imports labsupport, the package facade; import the "
        "module itself",
    ]


def test_checker_finds_a_cycle_within_one_layer(tmp_path: Path) -> None:
    package = _tiny_package(tmp_path, {
        "wire/__init__.py": "",
        "wire/capture.py": "from .capture_tls import TLSView\n",
        "wire/capture_tls.py": "from . import capture\n",
        "wire/tls.py": "from .capture import Capture\n",
    })
    assert cycles(list(imports(package))) == [["labsupport.wire.capture",
                                               "labsupport.wire.capture_tls"]]


# -- labsupport as it is ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    return list(imports(PACKAGE))


def test_every_module_belongs_to_a_layer() -> None:
    loose = [name for name in modules(PACKAGE)
             if layer_of(name) is None and name not in ("labsupport", "labsupport.__main__")]
    assert loose == [], f"modules outside every layer: {loose}"


def test_layers_import_one_way(graph: list[Import]) -> None:
    problems = layer_violations(graph)
    assert problems == [], "imports against the layers:\n" + "\n".join(problems)


def test_no_import_cycles(graph: list[Import]) -> None:
    found = cycles(graph)
    assert found == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_every_module_is_short_enough_to_read() -> None:
    """No module over MAX_LINES, except those still waiting to be split, which may not
    grow; one that got under the limit must leave STILL_TO_SPLIT."""
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines())
             for name, path in modules(PACKAGE).items()}
    problems = []
    for name, lines in sorted(sizes.items()):
        ceiling = STILL_TO_SPLIT.get(name, MAX_LINES)
        if lines > ceiling:
            problems.append(f"{name}: {lines} lines, over {ceiling} (split it by concept)")
        elif name in STILL_TO_SPLIT and lines <= MAX_LINES:
            problems.append(f"{name}: {lines} lines now; take it off STILL_TO_SPLIT")
    problems += [f"{name} is in STILL_TO_SPLIT but is no module" for name in STILL_TO_SPLIT
                 if name not in sizes]
    assert problems == [], "\n".join(problems)


def test_each_layer_lists_its_modules() -> None:
    """``labsupport.LAYERS`` and each layer's ``MODULES`` match the files, so the short
    names (``labsupport.spf``) and the lazy attributes reach every module."""
    assert set(labsupport.LAYERS) == set(MAY_IMPORT)
    seen: dict[str, str] = {}
    for layer in labsupport.LAYERS:
        folder = PACKAGE / layer
        files = sorted([p.stem for p in folder.glob("*.py") if p.stem != "__init__"]
                       + [p.parent.name for p in folder.glob("*/__init__.py")])
        assert sorted(getattr(labsupport, layer).MODULES) == files, layer
        for name in files:
            assert name not in seen, f"{name} is in both {seen.get(name)} and {layer}"
            seen[name] = layer
