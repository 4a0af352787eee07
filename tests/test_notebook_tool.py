"""scripts/notebook_tool.py, the part scripts/slides.py and scripts/grading.py share: the
plan of which notebooks change, the report (write, or only name them with ``--check``),
and the command line, on folders of small notebooks made here with a made-up ``apply``."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from lab_helpers import ROOT, load_script

tool = load_script(ROOT / "scripts" / "notebook_tool.py", "course_notebook_tool")

MARK = "marked"


class Malformed(Exception):
    """What a script's ``apply`` raises for a notebook it cannot handle."""


def mark(nb: nbformat.NotebookNode, name: str) -> bool:
    """A made-up ``apply``: tag the notebook's metadata; refuse a notebook named bad."""
    if "bad" in name:
        raise Malformed(f"{name}: cannot be marked")
    if nb.metadata.get(MARK) is True:
        return False
    nb.metadata[MARK] = True
    return True


def _write(folder: Path, name: str, *, marked: bool = False) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}")])
    if marked:
        nb.metadata[MARK] = True
    path = folder / name
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return path


def test_plan_holds_only_the_numbered_notebooks_that_change(tmp_path: Path) -> None:
    stale = _write(tmp_path, "02-b.ipynb")
    first = _write(tmp_path, "01-a.ipynb")
    _write(tmp_path, "03-done.ipynb", marked=True)
    _write(tmp_path, "notes.ipynb")  # not NN-*.ipynb
    writes = tool.plan(tmp_path, mark)
    assert list(writes) == [first, stale]  # in name order
    for path, text in writes.items():
        nb = nbformat.reads(text, as_version=4)
        assert nb.metadata[MARK] is True and text == nbformat.writes(nb) + "\n"
        assert MARK not in nbformat.read(path, as_version=4).metadata, "plan must not write"


def test_plan_of_a_folder_without_notebooks_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "notes.ipynb")
    with pytest.raises(SystemExit, match=r"no notebooks \(\[0-9\]\[0-9\]-\*\.ipynb\) found"):
        tool.plan(tmp_path, mark)


def test_shown_is_relative_inside_the_project_and_whole_outside(tmp_path: Path) -> None:
    assert tool.shown(ROOT / "notebooks" / "01-x.ipynb") == str(Path("notebooks/01-x.ipynb"))
    assert tool.shown(tmp_path / "01-x.ipynb") == str(tmp_path / "01-x.ipynb")


def test_report_with_check_names_without_writing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "01-a.ipynb")
    before = path.read_text(encoding="utf-8")
    assert tool.report({path: "new"}, check=True, rerun="python scripts/x.py") == 1
    said = capsys.readouterr()
    assert (said.out, said.err) == (f"out of date: {path}\n", "run: python scripts/x.py\n")
    assert path.read_text(encoding="utf-8") == before
    assert tool.report({}, check=True, rerun="python scripts/x.py") == 0
    assert capsys.readouterr().err == ""


def test_report_without_check_writes_and_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "01-a.ipynb"
    assert tool.report({path: "new text"}, check=False, rerun="unused") == 0
    assert path.read_text(encoding="utf-8") == "new text"
    said = capsys.readouterr()
    assert (said.out, said.err) == (f"updated: {path}\n", "")


def test_main_checks_updates_and_then_finds_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "01-a.ipynb")
    run = {"description": "d", "script": "x.py", "apply": mark}
    assert tool.main(["--check", "--notebooks", str(tmp_path)], **run) == 1
    said = capsys.readouterr()
    assert said.out == f"out of date: {path}\n"
    assert said.err == f"run: python scripts/x.py --notebooks {tmp_path.resolve()}\n"
    assert tool.main(["--notebooks", str(tmp_path)], **run) == 0
    assert capsys.readouterr().out == f"updated: {path}\n"
    assert nbformat.read(path, as_version=4).metadata[MARK] is True
    assert tool.main(["--check", "--notebooks", str(tmp_path)], **run) == 0
    assert capsys.readouterr() == ("", "")


def test_main_prints_a_named_error_and_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "01-bad.ipynb")
    argv = ["--check", "--notebooks", str(tmp_path)]
    assert tool.main(argv, description="d", script="x.py", apply=mark,
                     errors=(Malformed,)) == 2
    assert capsys.readouterr().err == "error: 01-bad.ipynb: cannot be marked\n"
    with pytest.raises(Malformed):  # an error the script does not name is not caught
        tool.main(argv, description="d", script="x.py", apply=mark)
