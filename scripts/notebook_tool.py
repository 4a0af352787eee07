"""What the scripts that keep the notebooks' metadata up to date share.

``scripts/slides.py`` (RISE slide types) and ``scripts/grading.py`` (nbgrader metadata)
each set some metadata on every ``notebooks/NN-*.ipynb`` by rule, with an ``apply(nb,
name)`` that changes a notebook in place and says whether anything changed. This module
gives them the rest, so that both behave alike:

* :func:`plan`: every notebook of a folder that ``apply`` changes, with its new text
  (nbformat's own layout); a folder with no ``NN-*.ipynb`` is an error;
* :func:`report`: write those files (or, with ``--check``, only name them), print
  ``updated: PATH`` or ``out of date: PATH`` for each, and with ``--check`` say on
  stderr what to run and return 1 when any is out of date (``scripts/navigation.py``
  reports its files this way too);
* :func:`main`: the command line ``[--check] [--notebooks DIR]``; the errors a script
  names (a malformed exercise, say) are printed as ``error: ...`` with exit status 2.

It is not a script of its own; the scripts import it from their folder.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PATTERN = "[0-9][0-9]-*.ipynb"

#: Sets a script's metadata on a notebook in place (the second argument is the file's
#: name, for messages); True when anything changed.
Apply = Callable[[nbformat.NotebookNode, str], bool]


def plan(folder: Path, apply: Apply) -> dict[Path, str]:
    """Every notebook in ``folder`` that ``apply`` changes, with its new text."""
    paths = sorted(folder.glob(PATTERN))
    if not paths:
        raise SystemExit(f"no notebooks ({PATTERN}) found in {folder}")
    writes: dict[Path, str] = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if apply(nb, path.name):
            writes[path] = nbformat.writes(nb) + "\n"
    return writes


def shown(path: Path) -> str:
    """``path`` relative to the project when it is inside it, else as it is."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def report(stale: Mapping[Path, str], *, check: bool, rerun: str) -> int:
    """Write every stale file (not with ``check``) and name it; the exit status: 1 when
    ``check`` finds any stale file (after saying on stderr to run ``rerun``), else 0."""
    verb = "out of date" if check else "updated"
    for path, text in stale.items():
        if not check:
            path.write_text(text, encoding="utf-8")
        print(f"{verb}: {shown(path)}")
    if check and stale:
        print(f"run: {rerun}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None, *, description: str, script: str, apply: Apply,
         errors: tuple[type[Exception], ...] = ()) -> int:
    """The command line of ``scripts/<script>``: update the notebooks of ``--notebooks``
    (default ``notebooks/``) with ``apply``, or with ``--check`` only verify them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="verify only; exit 1 if stale")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, metavar="DIR",
                        help=f"folder of {PATTERN} (default: notebooks/)")
    args = parser.parse_args(argv)
    folder = args.notebooks.resolve()
    try:
        stale = plan(folder, apply)
    except errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    where = "" if folder == NOTEBOOKS else f" --notebooks {folder}"
    return report(stale, check=args.check, rerun=f"python scripts/{script}{where}")
