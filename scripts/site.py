"""Build a static HTML rendering of the executed course under ``build/site/``.

Every ``notebooks/NN-*.ipynb`` is executed (kernel ``python3``, in the notebooks folder)
and rendered with nbconvert's HTML exporter, pictures embedded, to ``NN-*.html``; an
``index.html`` contents page lists the notebooks by title (the first ``# `` heading, as
``scripts/navigation.py`` reads it) and links each page. Links between notebooks
(``*.ipynb``) are rewritten to the ``.html`` pages.

The explorers' widgets are saved as they were when their cell ran (the kernel's widget
state, which nbclient stores in the notebook) and drawn by the reader's browser with the
widgets' HTML manager, copied from ``data/site/html-manager/`` to ``_static/``: the pages
load nothing from the network (``site_template/`` leaves out the lab template's
require.js, MathJax and Mermaid, which come from a CDN). A saved widget shows what its cell
showed; changing it does nothing without a kernel, and a page says so above its first
widget.

    python scripts/site.py                 # writes build/site/
    python scripts/site.py --out DIR       # writes DIR/
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from navigation import title_of  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "build" / "site"
#: Seconds a cell may run (cells take about a second): a hung kernel fails the build.
TIMEOUT = 180
TEMPLATE_DIR = Path(__file__).resolve().parent
TEMPLATE = "site_template"
#: The widgets' HTML manager the pages load (data/site/README.md), and where they find it.
HTML_MANAGER = ROOT / "data" / "site" / "html-manager"
HTML_MANAGER_VERSION = "1.0.15"
STATIC = "_static"
WIDGET_RENDERER = f"{STATIC}/embed.js"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: Said once above a page's first widget.
SAVED_WIDGETS_NOTE = ("These controls are saved as they were when the notebook ran: "
                      "open the notebook in JupyterLab to change them.")

_LINK = re.compile(r'href="(\d\d-[^"#/]*?)\.ipynb(#[^"]*)?"')


def execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Run every cell of ``nb`` in a fresh ``python3`` kernel, keeping the state of its
    widgets in ``nb.metadata.widgets``; errors stop the build."""
    NotebookClient(nb, kernel_name="python3", timeout=TIMEOUT, store_widget_state=True,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def widget_views(nb: nbformat.NotebookNode) -> int:
    """How many outputs of ``nb`` show a widget."""
    return sum(1 for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []) if WIDGET_VIEW in out.get("data", {}))


def _note_saved_widgets(nb: nbformat.NotebookNode) -> None:
    """Say, once, above the first widget, that the page's widgets are saved ones."""
    for cell in nb.cells:
        outputs = cell.get("outputs", []) if cell.cell_type == "code" else []
        for index, out in enumerate(outputs):
            if WIDGET_VIEW in out.get("data", {}):
                note = nbformat.v4.new_output("display_data", data={
                    "text/html": f'<p class="saved-widgets"><em>{SAVED_WIDGETS_NOTE}</em></p>'})
                outputs.insert(index, note)
                return


def render(nb: nbformat.NotebookNode, title: str) -> str:
    """The HTML page of an executed notebook, pictures embedded, widgets from their
    saved state (the renderer at ``_static/embed.js``, see :func:`copy_static`)."""
    if widget_views(nb):
        _note_saved_widgets(nb)
    exporter = HTMLExporter(embed_images=True, extra_template_basedirs=[str(TEMPLATE_DIR)],
                            template_name=TEMPLATE, widget_renderer_url=WIDGET_RENDERER)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return _LINK.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', body)


def copy_static(out: Path) -> list[Path]:
    """Copy the widgets' HTML manager beside the pages, in ``out/_static/``."""
    static = out / STATIC
    static.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(HTML_MANAGER.iterdir()):
        target = static / source.name
        shutil.copyfile(source, target)
        written.append(target)
    return written


def index_page(pages: list[tuple[str, str]]) -> str:
    """The contents page: an ordered list of ``(file name, title)`` links."""
    items = "\n".join(f'    <li><a href="{html.escape(name)}">{html.escape(title)}</a></li>'
                      for name, title in pages)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Mail Labs</title>
  <style>body {{ font-family: sans-serif; max-width: 40em; margin: 2em auto; }}</style>
</head>
<body>
  <h1>Mail Labs</h1>
  <p>The course, executed: every notebook with its outputs, for reading without running.</p>
  <ol start="0">
{items}
  </ol>
</body>
</html>
"""


def build(out: Path = OUT, paths: Iterable[Path] | None = None) -> list[Path]:
    """Execute and render ``paths`` (default: every notebook) and write the index."""
    sources = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")) if paths is None else list(paths)
    if not sources:
        raise SystemExit("no notebooks found in notebooks/")
    out.mkdir(parents=True, exist_ok=True)
    pages: list[tuple[str, str]] = []
    written = []
    copy_static(out)
    for path in sources:
        nb = nbformat.read(path, as_version=4)
        title = title_of(nb, path)
        print(f"running {path.name} ...", flush=True)
        execute(nb, path.parent)
        target = out / (path.stem + ".html")
        target.write_text(render(nb, title), encoding="utf-8")
        pages.append((target.name, title))
        written.append(target)
    index = out / "index.html"
    index.write_text(index_page(pages), encoding="utf-8")
    written.append(index)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to build (default: every notebooks/NN-*.ipynb)")
    args = parser.parse_args(argv)
    written = build(args.out, args.notebooks or None)
    print(f"wrote {len(written)} pages to {args.out}; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
