"""Write the course's navigation from the notebooks' own titles, idempotently.

For every ``notebooks/NN-*.ipynb`` in name order, the title is the first ``# `` heading
of its first Markdown cell. This script then:

* puts a navigation cell (previous, contents, next) right after the title cell and
  another one as the very last cell of each notebook (cells tagged ``navigation``);
* writes the table of contents into ``notebooks/00-start-here.ipynb`` (the cell tagged
  ``contents``) and into ``README.md`` between ``<!-- contents:start -->`` and
  ``<!-- contents:end -->``.

It writes a file only when its content changes. ``--check`` changes nothing and exits 1
(listing the files) when anything is out of date; a test runs it that way.

    python scripts/navigation.py           # update
    python scripts/navigation.py --check   # verify
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebook_tool  # noqa: E402 - from this folder (scripts/), found by the line above
from notebook_tool import NOTEBOOKS, PATTERN, ROOT  # noqa: E402

README = ROOT / "README.md"
START = "00-start-here.ipynb"
NAV_TAG = "navigation"
CONTENTS_TAG = "contents"
README_START = "<!-- contents:start -->"
README_END = "<!-- contents:end -->"


def title_of(nb: nbformat.NotebookNode, path: Path) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
            break
    raise SystemExit(f"{path.name}: the first Markdown cell must start with a '# ' title")


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def nav_text(titles: list[tuple[str, str]], index: int) -> str:
    parts = []
    if index > 0:
        name, title = titles[index - 1]
        parts.append(f"[← {title}]({name})")
    if titles[index][0] != START:
        parts.append(f"[Contents]({START}#Contents)")
    if index + 1 < len(titles):
        name, title = titles[index + 1]
        parts.append(f"[{title} →]({name})")
    return " | ".join(parts)


def contents_text(titles: list[tuple[str, str]], prefix: str = "") -> str:
    lines = [f"{i}. [{title}]({prefix}{name})" for i, (name, title) in enumerate(titles)]
    return "\n".join(lines)


def _nav_cell(text: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata["tags"] = [NAV_TAG]
    cell.metadata["slideshow"] = {"slide_type": "skip"}  # never a slide (scripts/slides.py)
    del cell["id"]  # ids are given when the notebook is normalised below
    return cell


def updated_notebook(nb: nbformat.NotebookNode, nav: str, contents: str | None
                     ) -> nbformat.NotebookNode:
    """The notebook with its navigation (and, for the start page, contents) in place."""
    existing_ids = [c.get("id") for c in nb.cells if NAV_TAG in _tags(c)]
    cells = [c for c in nb.cells if NAV_TAG not in _tags(c)]
    top, bottom = _nav_cell(nav), _nav_cell(nav)
    # Keep the ids the navigation cells had, so an unchanged notebook stays byte-identical.
    for cell, old_id in zip((top, bottom), (existing_ids + [None, None])[:2], strict=True):
        cell["id"] = old_id or f"nav-{'top' if cell is top else 'bottom'}"
    cells = cells[:1] + [top] + cells[1:] + [bottom]
    if contents is not None:
        for cell in cells:
            if CONTENTS_TAG in _tags(cell):
                cell.source = "## Contents\n\n" + contents
    nb.cells = cells
    return nb


def plan() -> dict[Path, str]:
    """Every file this script would write, with its new text."""
    paths = sorted(NOTEBOOKS.glob(PATTERN))
    if not paths:
        raise SystemExit("no notebooks found in notebooks/")
    books = [(p, nbformat.read(p, as_version=4)) for p in paths]
    titles = [(p.name, title_of(nb, p)) for p, nb in books]
    writes: dict[Path, str] = {}
    for index, (path, nb) in enumerate(books):
        contents = contents_text(titles) if path.name == START else None
        new = updated_notebook(nb, nav_text(titles, index), contents)
        writes[path] = nbformat.writes(new) + "\n"
    readme = README.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README.md needs the markers {README_START} and {README_END}")
    block = f"{README_START}\n{contents_text(titles, 'notebooks/')}\n{README_END}"
    writes[README] = pattern.sub(lambda _m: block, readme)
    return writes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify only; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = {path: text for path, text in plan().items()
             if path.read_text(encoding="utf-8") != text}
    return notebook_tool.report(stale, check=args.check, rerun="python scripts/navigation.py")


if __name__ == "__main__":
    sys.exit(main())
