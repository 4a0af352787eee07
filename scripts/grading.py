"""Mark every notebook's exercises for nbgrader, by rule and idempotently.

nbgrader reads each cell's ``metadata.nbgrader``. Every exercise in the labs is an answer
cell (code holding ``### BEGIN SOLUTION`` ... ``### END SOLUTION``, the nbgrader markers)
followed by its check cell (a call of ``checks.check_...``). For every
``notebooks/NN-*.ipynb`` this script marks

* each answer cell as an nbgrader *solution* cell (``solution: true``): ``nbgrader
  generate_assignment`` replaces what lies between the markers with the code stub of the
  course's ``nbgrader_config.py`` (``grading/nbgrader_config.py``);
* each check cell as an *autograded tests* cell (``grade: true``, locked, ``POINTS``
  points): it scores when it runs without an error. A wrong answer raises in every run;
  an answer not given raises only under grading (``MAIL_LABS_GRADING=1``, which
  ``grading/nbgrader_config.py`` sets), so that a student's "Run All" still goes on;
* every other cell is left without nbgrader metadata.

Each ``grade_id`` names the answer the check reads (``answer-careless_mx`` and
``check-careless_mx`` for ``checks.check_mx_fix(lambda: careless_mx, ...)``): readable
in the gradebook, unique in a notebook, and stable when cells move.

It writes a notebook only when this metadata changes, with ``nbformat`` as the other
scripts do. ``--check`` changes nothing and exits 1 (naming the notebooks) when any is
out of date; a test runs it that way.

    python scripts/grading.py                       # update notebooks/
    python scripts/grading.py --check               # verify
    python scripts/grading.py --notebooks DIR       # another folder of NN-*.ipynb
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PATTERN = "[0-9][0-9]-*.ipynb"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CHECK = "checks.check_"
#: Points for each exercise's check cell.
POINTS = 1
#: The cell metadata schema of nbgrader 0.6 and later.
SCHEMA_VERSION = 3
#: The answer a check reads: ``checks.check_x(lambda: NAME`` (or ``checks.check_x(NAME``).
ANSWER_NAME = re.compile(r"checks\.check_\w+\(\s*(?:lambda\s*:\s*)?([A-Za-z_]\w*)")


class GradingError(Exception):
    """A notebook whose exercises do not have the answer-then-check shape."""


def _answer_name(check_source: str, where: str) -> str:
    found = ANSWER_NAME.search(check_source)
    if not found:
        raise GradingError(f"{where}: the check cell does not name its answer "
                           f"(expected {CHECK}...(lambda: NAME, ...))")
    return found.group(1)


def _solution(grade_id: str) -> dict[str, Any]:
    return {"grade": False, "grade_id": grade_id, "locked": False,
            "schema_version": SCHEMA_VERSION, "solution": True, "task": False}


def _tests(grade_id: str) -> dict[str, Any]:
    return {"grade": True, "grade_id": grade_id, "locked": True, "points": POINTS,
            "schema_version": SCHEMA_VERSION, "solution": False, "task": False}


def grading_metadata(nb: nbformat.NotebookNode, name: str = "notebook") -> list[
        dict[str, Any] | None]:
    """The nbgrader metadata each cell of ``nb`` should carry (None: none at all)."""
    wanted: list[dict[str, Any] | None] = [None] * len(nb.cells)
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    seen: set[str] = set()
    for position, index in enumerate(code):
        source = nb.cells[index].source
        if BEGIN not in source:
            continue
        where = f"{name}, cell {index}"
        if END not in source:
            raise GradingError(f"{where}: {BEGIN} without {END}")
        following = code[position + 1] if position + 1 < len(code) else None
        if following is None or CHECK not in nb.cells[following].source:
            raise GradingError(f"{where}: the answer cell is not followed by a check cell")
        answer = _answer_name(nb.cells[following].source, f"{name}, cell {following}")
        if answer in seen:
            raise GradingError(f"{where}: a second exercise reads the answer {answer!r}")
        seen.add(answer)
        wanted[index] = _solution(f"answer-{answer}")
        wanted[following] = _tests(f"check-{answer}")
    return wanted


def apply(nb: nbformat.NotebookNode, name: str = "notebook") -> bool:
    """Set every cell's nbgrader metadata; True when anything changed."""
    changed = False
    for cell, wanted in zip(nb.cells, grading_metadata(nb, name), strict=True):
        metadata = cell.setdefault("metadata", {})
        if wanted is None:
            if "nbgrader" in metadata:
                del metadata["nbgrader"]
                changed = True
        elif metadata.get("nbgrader") != wanted:
            metadata["nbgrader"] = wanted
            changed = True
    return changed


def plan(folder: Path = NOTEBOOKS) -> dict[Path, str]:
    """Every notebook in ``folder`` whose nbgrader metadata is out of date, with its text."""
    paths = sorted(folder.glob(PATTERN))
    if not paths:
        raise SystemExit(f"no notebooks ({PATTERN}) found in {folder}")
    writes: dict[Path, str] = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if apply(nb, path.name):
            writes[path] = nbformat.writes(nb) + "\n"
    return writes


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify only; exit 1 if stale")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, metavar="DIR",
                        help=f"folder of {PATTERN} (default: notebooks/)")
    args = parser.parse_args(argv)
    folder = args.notebooks.resolve()
    try:
        stale = plan(folder)
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path, text in stale.items():
        if not args.check:
            path.write_text(text, encoding="utf-8")
        verb = "out of date" if args.check else "updated"
        print(f"{verb}: {_shown(path)}")
    if args.check and stale:
        where = "" if folder == NOTEBOOKS else f" --notebooks {folder}"
        print(f"run: python scripts/grading.py{where}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
