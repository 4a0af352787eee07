"""Slideshows (scripts/slides.py and jupyterlab-rise): the slide-type rules on small
notebooks made here, idempotence, ``--check``, the committed notebooks being up to date,
and the RISE extension being installed where JupyterLab finds it."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from lab_helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "slides.py"


slides = load_script(SCRIPT, "course_slides")


def md(source: str, *tags: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def code(source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source)


def lines(n: int, word: str = "x") -> str:
    return "\n".join(f"{word}{i} = {i}" for i in range(n))


def notebook(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = list(cells)
    return nb


def types_of(*cells: nbformat.NotebookNode) -> list[str]:
    return list(slides.slide_types(cells))


def lesson() -> nbformat.NotebookNode:
    """A small notebook in the course's shape."""
    return notebook(
        md("# A lesson\n\nWhat it is about."),
        md("[Next →](02-next.ipynb)", "navigation"),
        md("## What you will learn\n\n- one thing"),
        code("import labsupport\nlab = labsupport.start()"),
        md("### A detail\n\nText."),
        code("lab.query('northwind.test', 'MX')"),
        md("Some more words."),
        md("## Summary\n\n- done\n\n## Exercises\n\n**1.** Do it."),
        code("### BEGIN SOLUTION\nanswer = 1\n### END SOLUTION"),
        code("checks.check_it(lambda: answer)"),
        md("[Next →](02-next.ipynb)", "navigation"),
    )


# -- the rules ---------------------------------------------------------------------------


def test_the_course_shape_gets_slides_subslides_and_skips() -> None:
    assert types_of(*lesson().cells) == [
        "slide",     # title
        "skip",      # navigation
        "slide",     # ## What you will learn
        "-",         # code on the same slide
        "subslide",  # ### A detail
        "-",
        "-",         # plain text continues
        "slide",     # ## Summary ... ## Exercises
        "-",         # the answer cell: '### BEGIN SOLUTION' is code, not a heading
        "-",         # its check cell
        "skip",      # navigation
    ]


def test_the_first_cell_is_a_slide_whatever_it_holds() -> None:
    assert types_of(code("x = 1"), code("y = 2")) == ["slide", "-"]


def test_a_heading_further_down_a_cell_counts() -> None:
    assert types_of(md("# T"), md("Closing words.\n\n## 2. Next section\n\nIntro."),
                    md("End of it.\n\n### A part")) == ["slide", "slide", "subslide"]


def test_headings_inside_fenced_code_do_not_count() -> None:
    fenced = md("An example:\n\n```\n## not a heading\n```")
    assert slides.heading_level(fenced.source) is None
    assert types_of(md("# T"), fenced) == ["slide", "-"]


def test_heading_levels() -> None:
    assert slides.heading_level("# Title\n## Section") == 1
    assert slides.heading_level("text\n### Part\n## Section") == 2
    assert slides.heading_level("#hashtag, not a heading") is None


def test_a_long_code_cell_gets_a_subslide_of_its_own() -> None:
    long = slides.LONG_CODE_LINES + 1
    assert types_of(md("# T"), md("## S"), code(lines(long)), code("y = 1")) == [
        "slide", "slide", "subslide", "-"]
    assert types_of(md("# T"), md("## S"), code(lines(slides.LONG_CODE_LINES))) == [
        "slide", "slide", "-"]


def test_a_long_markdown_cell_is_not_moved_by_its_own_length() -> None:
    text = md("Words.\n" * (slides.LONG_CODE_LINES + 1))
    assert types_of(md("# T"), md("## S"), text) == ["slide", "slide", "-"]


def test_a_cell_that_would_overflow_the_slide_starts_a_subslide() -> None:
    # 1 + 20 lines fit; the next 10 would make 31 > SLIDE_LINES.
    assert slides.SLIDE_LINES == 30
    cells = [md("## S"), code(lines(20)), code(lines(10)), code(lines(5))]
    assert types_of(md("# T"), *cells) == ["slide", "slide", "-", "subslide", "-"]
    # Exactly SLIDE_LINES still fits.
    assert types_of(md("# T"), md("## S"), code(lines(20)), code(lines(9))) == [
        "slide", "slide", "-", "-"]


def test_the_line_count_starts_again_on_each_slide_and_subslide() -> None:
    cells = [md("## S"), code(lines(20)), md("### P"), code(lines(20)), md("## R"),
             code(lines(20))]
    assert types_of(md("# T"), *cells) == ["slide", "slide", "-", "subslide", "-", "slide", "-"]


def test_navigation_cells_do_not_count_toward_a_slide() -> None:
    nav = md("\n".join(["[← Back](00-x.ipynb)"] * 40), "navigation")
    assert types_of(md("# T"), nav, code(lines(20))) == ["slide", "skip", "-"]


# -- applying them -----------------------------------------------------------------------


def test_apply_sets_the_metadata_and_keeps_the_rest() -> None:
    nb = lesson()
    nb.cells[3].metadata["slideshow"] = {"slide_type": "fragment", "note": "mine"}
    nb.cells[3].metadata["tags"] = ["keep"]
    nb.metadata["rise"] = {"transition": "none", "scroll": False}
    assert slides.apply(nb) is True
    assert [c.metadata["slideshow"]["slide_type"] for c in nb.cells] == types_of(*nb.cells)
    assert nb.cells[3].metadata["slideshow"] == {"slide_type": "-", "note": "mine"}
    assert nb.cells[3].metadata["tags"] == ["keep"]
    assert nb.metadata["rise"] == {**slides.RISE_SETTINGS, "transition": "none"}
    nbformat.validate(nb)


def test_apply_is_idempotent() -> None:
    nb = lesson()
    assert slides.apply(nb) is True
    once = nbformat.writes(nb)
    assert slides.apply(nb) is False
    assert nbformat.writes(nb) == once


def _write(folder: Path, name: str, nb: nbformat.NotebookNode) -> Path:
    path = folder / name
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, check=False)


def test_check_on_a_stale_folder_exits_1_and_names_the_notebooks(tmp_path: Path) -> None:
    stale = _write(tmp_path, "01-lesson.ipynb", lesson())
    before = stale.read_bytes()
    done = _run("--check", "--notebooks", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "01-lesson.ipynb" in done.stdout
    assert stale.read_bytes() == before, "--check must not write"


def test_update_then_check_passes_and_a_second_run_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "01-lesson.ipynb", lesson())
    _write(tmp_path, "notes.ipynb", lesson())  # not NN-*.ipynb: left alone
    assert slides.main(["--notebooks", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out == f"updated: {path}\n"

    written = path.read_text(encoding="utf-8")
    nb = json.loads(written)
    assert nb["metadata"]["rise"] == slides.RISE_SETTINGS
    assert [c["metadata"]["slideshow"]["slide_type"] for c in nb["cells"]] == types_of(
        *lesson().cells)
    assert written == nbformat.writes(nbformat.reads(written, as_version=4)) + "\n", (
        "not written in nbformat's own layout")

    mtime = path.stat().st_mtime_ns
    assert slides.main(["--notebooks", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""
    assert path.read_text(encoding="utf-8") == written and path.stat().st_mtime_ns == mtime
    assert slides.main(["--check", "--notebooks", str(tmp_path)]) == 0


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no notebooks"):
        slides.main(["--check", "--notebooks", str(tmp_path)])


def test_committed_notebooks_are_up_to_date() -> None:
    done = _run("--check")
    assert done.returncode == 0, done.stdout + done.stderr


# -- the extension -----------------------------------------------------------------------


def test_jupyterlab_rise_is_installed_as_a_jupyterlab_extension() -> None:
    dist = importlib.metadata.distribution("jupyterlab-rise")
    folder = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "jupyterlab-rise"
    package = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    assert package["name"] == "jupyterlab-rise"
    assert package["version"] == dist.version
    install = json.loads((folder / "install.json").read_text(encoding="utf-8"))
    assert install["packageName"] == "jupyterlab_rise"


@pytest.mark.parametrize("setting", sorted(slides.RISE_SETTINGS))
def test_the_rise_settings_are_ones_the_extension_knows(setting: str) -> None:
    schema = (Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "jupyterlab-rise"
              / "schemas" / "jupyterlab-rise" / "plugin.json")
    properties = json.loads(schema.read_text(encoding="utf-8"))["properties"]
    assert setting in properties, f"jupyterlab-rise has no setting {setting!r}"
    value = slides.RISE_SETTINGS[setting]
    if "enum" in properties[setting]:
        assert value in properties[setting]["enum"]
    else:
        json_type = {bool: "boolean", str: "string", int: "number", float: "number"}
        assert properties[setting]["type"] == json_type[type(value)]
