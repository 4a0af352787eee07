"""The student edition (scripts/student.py): no solutions left, valid notebooks, and every
notebook's edition runs end to end: each exercise's check cell says "not answered yet" on the
placeholder, and no other cell fails (a student may skip an exercise).

Running the editions takes a few seconds each, so they are shared between this file and
tests/test_student_run.py (alternate notebooks in name order): the test run spreads the two
files over its workers (``-n 2 --dist loadfile``). Both take every notebook in notebooks/,
so a new one is run without editing either file.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from lab_helpers import load_script
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
# The editions this file runs; tests/test_student_run.py runs NOTEBOOKS[1::2].
EXECUTED = NOTEBOOKS[0::2]


student = load_script(ROOT / "scripts" / "student.py", "course_student")


@pytest.fixture(scope="module")
def edition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("student")
    written = student.build(out)
    assert sorted(p.name for p in written) == [p.name for p in NOTEBOOKS]
    return out


def _solution_lines(nb: nbformat.NotebookNode) -> tuple[set[str], set[str]]:
    """(lines inside solution blocks, lines anywhere else), stripped and non-empty."""
    inside, outside = set(), set()
    for cell in nb.cells:
        within = False
        for line in cell.source.splitlines():
            text = line.strip()
            if text == student.BEGIN:
                within = True
            elif text == student.END:
                within = False
            elif text:
                (inside if within else outside).add(text)
    return inside, outside


def test_strip_solutions_keeps_code_around_the_block() -> None:
    source = "before = 1\n### BEGIN SOLUTION\nx = 42\n### END SOLUTION\nx"
    assert student.strip_solutions(source) == (
        'before = 1\nraise NotImplementedError("your answer here")\nx')
    indented = "if True:\n    ### BEGIN SOLUTION\n    y = 2\n    ### END SOLUTION\n"
    assert student.strip_solutions(indented) == (
        'if True:\n    raise NotImplementedError("your answer here")')


@pytest.mark.parametrize("bad", [
    "### BEGIN SOLUTION\nx = 1\n",
    "x = 1\n### END SOLUTION\n",
    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n",
])
def test_unbalanced_markers_are_refused(bad: str) -> None:
    with pytest.raises(SystemExit):
        student.strip_solutions(bad)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_solution_is_left_and_the_notebook_is_valid(edition: Path, path: Path) -> None:
    original = nbformat.read(path, as_version=4)
    built = nbformat.read(edition / path.name, as_version=4)
    nbformat.validate(built)
    assert len(built.cells) == len(original.cells)
    text = "\n".join(c.source for c in built.cells)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    inside, outside = _solution_lines(original)
    assert inside, f"{path.name}: no solution found in the committed notebook"
    built_lines = {line.strip() for line in text.splitlines()}
    leaked = sorted((inside - outside) & built_lines)
    assert not leaked, f"{path.name}: solution lines left in the student edition: {leaked}"
    answers = [c for c in original.cells if student.BEGIN in c.source]
    assert text.count(student.PLACEHOLDER) == len(answers)
    for cell in built.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def stdout_of(cell: nbformat.NotebookNode) -> str:
    """What a code cell printed on stdout."""
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"
                   and o.get("name") == "stdout")


def errors_of(cell: nbformat.NotebookNode) -> list[str]:
    """The names of the exceptions a code cell raised."""
    return [o.ename for o in cell.outputs if o.output_type == "error"]


def execute(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Run ``nb`` in a fresh kernel, as JupyterLab would from notebooks/, keeping going
    after a cell fails (the kernel inherits MAIL_LABS_HOME from conftest.py)."""
    NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True,
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return nb


def placeholder_cells(nb: nbformat.NotebookNode) -> list[int]:
    """Indexes of the answer cells that hold the placeholder."""
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and student.PLACEHOLDER in c.source]


def assert_runs_unanswered(nb: nbformat.NotebookNode, name: str) -> None:
    """An executed student edition: each placeholder raised NotImplementedError, the check
    cell after it said "not answered yet", and no other cell failed."""
    placeholders = placeholder_cells(nb)
    assert placeholders, f"{name}: no placeholder in the student edition"
    for i in placeholders:
        assert errors_of(nb.cells[i]) == ["NotImplementedError"], (
            f"{name} cell {i}: {errors_of(nb.cells[i])}")
        check = nb.cells[i + 1]
        assert "checks.check_" in check.source
        assert errors_of(check) == [], f"{name} cell {i + 1} raised {errors_of(check)}"
        assert "not answered yet" in stdout_of(check), (
            f"{name} cell {i + 1} printed {stdout_of(check)!r}")
    others = {i: errors_of(c) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and i not in placeholders and errors_of(c)}
    assert not others, f"{name}: cells other than the placeholders failed: {others}"


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.name)
def test_checks_say_not_answered_yet(edition: Path, path: Path) -> None:
    nb = execute(nbformat.read(edition / path.name, as_version=4))
    assert_runs_unanswered(nb, path.name)
