"""Write the student edition of every notebook: solutions out, placeholders in.

In the committed notebooks each exercise's solution sits between ``### BEGIN SOLUTION``
and ``### END SOLUTION`` (the nbgrader convention). For every ``notebooks/NN-*.ipynb``
this script writes a copy to ``build/student/`` (or ``--out``) in which:

* each solution block is replaced by one line, ``raise NotImplementedError("your answer
  here")``, at the block's indentation; code before and after the markers stays (a
  trailing line that displays the answer then never runs: the cell stops at the raise);
* every output and execution count is cleared.

The check cell that follows an answer then reports "not answered yet" (see
``labsupport.teach.checks.answer_of``), and every later cell still runs: a student may skip an
exercise (tests/test_student.py and tests/test_student_run.py run every edition end to
end). Nothing else needs copying: ``labsupport`` is installed and finds the lab's data
through its package path.

    python scripts/student.py                  # writes build/student/
    python scripts/student.py --out DIR        # writes DIR/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "build" / "student"
BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
PLACEHOLDER = 'raise NotImplementedError("your answer here")'


def strip_solutions(source: str, where: str = "cell") -> str:
    """The source with every solution block replaced by the placeholder line."""
    out: list[str] = []
    inside = False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise SystemExit(f"{where}: '{BEGIN}' inside a solution block")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + PLACEHOLDER)
        elif stripped == END:
            if not inside:
                raise SystemExit(f"{where}: '{END}' without '{BEGIN}'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise SystemExit(f"{where}: '{BEGIN}' is never closed by '{END}'")
    return "\n".join(out)


def student_notebook(nb: nbformat.NotebookNode, name: str = "notebook"
                     ) -> nbformat.NotebookNode:
    """The student edition of ``nb`` (changed in place and returned)."""
    for index, cell in enumerate(nb.cells):
        if BEGIN in cell.source or END in cell.source:
            if cell.cell_type != "code":
                raise SystemExit(f"{name}: solution markers in a {cell.cell_type} cell {index}")
            cell.source = strip_solutions(cell.source, f"{name} cell {index}")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.validate(nb)
    return nb


def build(out: Path = OUT, paths: Iterable[Path] | None = None) -> list[Path]:
    """Write the student edition of ``paths`` (default: every notebook) into ``out``."""
    sources = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")) if paths is None else list(paths)
    if not sources:
        raise SystemExit("no notebooks found in notebooks/")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sources:
        nb = student_notebook(nbformat.read(path, as_version=4), path.name)
        target = out / path.name
        target.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = parser.parse_args(argv)
    for target in build(args.out):
        try:
            shown = target.relative_to(ROOT)
        except ValueError:
            shown = target
        print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
