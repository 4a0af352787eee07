"""The notebooks' shape and navigation (the notebooks themselves run under nbval)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))

TOP = ["What you will learn", "What you need", "Time"]
END = ["Summary", "Exercises", "Further reading"]


def headings(nb: nbformat.NotebookNode) -> list[str]:
    found = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found += [m.group(1).strip() for m in re.finditer(r"^#+\s+(.*)$", cell.source, re.M)]
    return found


def test_there_are_notebooks() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert "00-start-here.ipynb" in names and "01-dns-mx.ipynb" in names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_the_course_shape(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    heads = headings(nb)
    assert nb.cells[0].source.startswith("# "), f"{path.name}: the first cell is not a title"
    for name in TOP:
        assert name in heads[:8], f"{path.name}: '{name}' is not near the top ({heads[:8]})"
    tail = heads[-6:]
    for name in END:
        assert name in tail, f"{path.name}: '{name}' is not among the last headings ({tail})"
    assert [h for h in heads if h in END] == END, f"{path.name}: end sections out of order"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_have_check_cells(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    solutions = [i for i, src in enumerate(code) if "### BEGIN SOLUTION" in src]
    assert solutions, f"{path.name}: no exercise answer cell (### BEGIN SOLUTION)"
    for i in solutions:
        assert "### END SOLUTION" in code[i], f"{path.name}: unclosed solution in cell {i}"
        following = code[i + 1] if i + 1 < len(code) else ""
        assert "checks.check_" in following, (
            f"{path.name}: the answer cell {i} is not followed by a check cell")


def test_navigation_is_up_to_date() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "navigation.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_navigation_links_point_at_existing_notebooks() -> None:
    names = {p.name for p in NOTEBOOKS}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        navs = [c for c in nb.cells if "navigation" in c.get("metadata", {}).get("tags", [])]
        assert len(navs) == 2, f"{path.name}: expected a navigation cell at top and bottom"
        assert nb.cells[1] is navs[0] and nb.cells[-1] is navs[1]
        for target in re.findall(r"\]\(([^)#]+)", navs[0].source):
            assert target in names, f"{path.name}: navigation links to missing {target}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f"(notebooks/{path.name})" in readme, f"README contents lack {path.name}"
