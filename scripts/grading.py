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

It writes a notebook only when this metadata changes, with ``nbformat``; the command
line, shared with ``scripts/slides.py``, is ``scripts/notebook_tool.py``'s. ``--check``
changes nothing and exits 1 (naming the notebooks) when any is out of date; a test runs it that way.

    python scripts/grading.py                       # update notebooks/
    python scripts/grading.py --check               # verify
    python scripts/grading.py --notebooks DIR       # another folder of NN-*.ipynb
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebook_tool  # noqa: E402 - from this folder (scripts/), found by the line above

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


def main(argv: list[str] | None = None) -> int:
    return notebook_tool.main(argv, description=__doc__.splitlines()[0], script="grading.py",
                              apply=apply, errors=(GradingError,))


if __name__ == "__main__":
    sys.exit(main())
