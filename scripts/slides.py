"""Mark every notebook's cells for a RISE slideshow, by rule and idempotently.

Instructors present the labs with jupyterlab-rise, which reads each cell's
``metadata.slideshow.slide_type`` ("slide", "subslide", "fragment", "skip", "notes" or
"-" to continue the current slide). For every ``notebooks/NN-*.ipynb`` this script sets
that field on every cell from the notebook's own structure:

* the first cell (the ``# `` title) starts a slide;
* a Markdown cell with a ``## `` heading starts a slide, one with a ``### `` heading (and
  no ``## ``) starts a subslide. A heading usually opens its cell; one further down (a
  section that begins after a closing paragraph of the previous one) counts too, so each
  section starts on a slide of its own;
* cells tagged ``navigation`` (written by ``scripts/navigation.py``) are skipped;
* every other cell continues the current slide ("-"): code cells, text, and the exercise
  answer cells (code starting with ``### BEGIN SOLUTION``: a comment, not a heading);
* so that nothing falls off the screen, a code cell longer than ``LONG_CODE_LINES``
  source lines starts a subslide, and so does any cell that would take the current
  (sub)slide past ``SLIDE_LINES`` source lines.

It also sets the notebook-level RISE settings in ``RISE_SETTINGS`` (``scroll``: a slide
whose outputs are taller than the screen scrolls instead of being cut off; ``theme``: one
that loads no web fonts), keeping any other ``metadata.rise`` key an instructor added.

It writes a notebook only when this metadata changes, with ``nbformat``; the command
line, shared with ``scripts/grading.py``, is ``scripts/notebook_tool.py``'s. ``--check``
changes nothing and exits 1 (naming the notebooks) when any is out of date; a test runs
it that way. Run it after editing a notebook, and after ``scripts/navigation.py``.

    python scripts/slides.py                       # update notebooks/
    python scripts/slides.py --check               # verify
    python scripts/slides.py --notebooks DIR       # another folder of NN-*.ipynb
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebook_tool  # noqa: E402 - from this folder (scripts/), found by the line above

NAV_TAG = "navigation"

SLIDE = "slide"
SUBSLIDE = "subslide"
SKIP = "skip"
CONTINUE = "-"

# A code cell longer than this starts a subslide of its own.
LONG_CODE_LINES = 25
# At most this many source lines on one (sub)slide before the next cell moves on.
SLIDE_LINES = 30
# Notebook-level settings jupyterlab-rise reads from metadata.rise (the properties of its
# settings schema, jupyterlab-rise/schemas/jupyterlab-rise/plugin.json). "scroll": a
# slide taller than the screen scrolls. "theme": reveal.js's "white" uses only fonts
# shipped with the extension; its default, "simple", asks fonts.googleapis.com for its
# fonts, and the labs never touch the Internet.
RISE_SETTINGS: dict[str, Any] = {"scroll": True, "theme": "white"}

_HEADING = re.compile(r"^(#{1,6})\s")
_FENCE = re.compile(r"^\s*(```|~~~)")


def heading_level(source: str) -> int | None:
    """The highest-ranking Markdown heading level (1 for ``#``) among the lines of
    ``source``, outside fenced code blocks; None when there is no heading."""
    best: int | None = None
    fenced = False
    for line in source.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            level = len(match.group(1))
            best = level if best is None else min(best, level)
    return best


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _lines(cell: nbformat.NotebookNode) -> int:
    return len(cell.get("source", "").splitlines())


def slide_types(cells: Sequence[nbformat.NotebookNode]) -> list[str]:
    """The slide type of each cell, by the rules in this module's docstring."""
    types: list[str] = []
    used = 0  # source lines on the current (sub)slide
    for index, cell in enumerate(cells):
        if NAV_TAG in _tags(cell):
            types.append(SKIP)
            continue
        lines = _lines(cell)
        level = heading_level(cell.source) if cell.cell_type == "markdown" else None
        if index == 0 or (level is not None and level <= 2):
            kind = SLIDE
        elif level == 3:
            kind = SUBSLIDE
        elif cell.cell_type == "code" and lines > LONG_CODE_LINES:
            kind = SUBSLIDE
        elif used > 0 and used + lines > SLIDE_LINES:
            kind = SUBSLIDE
        else:
            kind = CONTINUE
        used = used + lines if kind == CONTINUE else lines
        types.append(kind)
    return types


def apply(nb: nbformat.NotebookNode) -> bool:
    """Set the slide types and RISE settings on ``nb`` in place; True if anything changed.

    Only ``slideshow.slide_type`` of each cell and the ``RISE_SETTINGS`` keys of
    ``metadata.rise`` are touched; other metadata stays as it is."""
    changed = False
    for cell, kind in zip(nb.cells, slide_types(nb.cells), strict=True):
        slideshow = cell.metadata.get("slideshow")
        if not isinstance(slideshow, dict):
            slideshow = {}
        if slideshow.get("slide_type") != kind:
            cell.metadata["slideshow"] = {**slideshow, "slide_type": kind}
            changed = True
    rise = nb.metadata.get("rise")
    if not isinstance(rise, dict):
        rise = {}
    if any(rise.get(key) != value for key, value in RISE_SETTINGS.items()):
        nb.metadata["rise"] = {**rise, **RISE_SETTINGS}
        changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    return notebook_tool.main(argv, description=__doc__.splitlines()[0], script="slides.py",
                              apply=lambda nb, _name: apply(nb))


if __name__ == "__main__":
    sys.exit(main())
