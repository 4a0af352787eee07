"""The exercises under nbgrader: every answer and check cell carries its metadata
(scripts/grading.py), and a real nbgrader, offline in a temporary course directory with
the course settings of grading/nbgrader_config.py, releases a lab without its solutions
and grades it: the answers give full marks, answers not given score nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from lab_helpers import ROOT, load_script

grading = load_script(ROOT / "scripts" / "grading.py", "grading_script")

NOTEBOOK = ROOT / "notebooks" / "01-dns-mx.ipynb"
CONFIG = ROOT / "grading" / "nbgrader_config.py"
ASSIGNMENT = "mail-labs"
#: Each nbgrader command gets this long: it executes the whole lab once at most.
NBGRADER_TIMEOUT = 600


def test_grading_metadata_is_up_to_date() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "grading.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_exercise_is_a_solution_then_an_autograded_check() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    marked = [(cell.source, cell.metadata["nbgrader"]) for cell in nb.cells
              if "nbgrader" in cell.metadata]
    kinds = [("solution" if meta["solution"] else "tests") for _, meta in marked]
    assert kinds == ["solution", "tests"] * 3
    for (answer, solution), (check, tests) in zip(marked[::2], marked[1::2], strict=True):
        assert grading.BEGIN in answer and "checks.check_" in check
        assert solution["grade_id"].removeprefix("answer-") \
            == tests["grade_id"].removeprefix("check-")
        assert tests["points"] == 1 and tests["locked"] and not solution["grade"]


def _notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


@pytest.mark.parametrize(("sources", "message"), [
    (["### BEGIN SOLUTION\nx = 1\n", "print(x)"], "### BEGIN SOLUTION without ### END"),
    (["### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "print(x)"], "not followed by a check"),
    (["### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "checks.check_x(42)"],
     "does not name its answer"),
    (["### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "checks.check_x(lambda: x)",
      "### BEGIN SOLUTION\nx = 2\n### END SOLUTION", "checks.check_y(lambda: x)"],
     "a second exercise reads the answer 'x'"),
])
def test_a_malformed_exercise_is_named(sources: list[str], message: str) -> None:
    with pytest.raises(grading.GradingError, match=message):
        grading.grading_metadata(_notebook(*sources), "lab.ipynb")


def test_stale_metadata_is_reported_and_rewritten(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    del nb.cells[next(i for i, c in enumerate(nb.cells) if "nbgrader" in c.metadata)] \
        .metadata["nbgrader"]
    nb.cells[0].metadata["nbgrader"] = {"grade": True}  # a cell that is no exercise
    copy = tmp_path / NOTEBOOK.name
    nbformat.write(nb, copy)
    assert grading.main(["--check", "--notebooks", str(tmp_path)]) == 1
    assert grading.main(["--notebooks", str(tmp_path)]) == 0
    assert grading.main(["--check", "--notebooks", str(tmp_path)]) == 0
    assert nbformat.read(copy, as_version=4) == nbformat.read(NOTEBOOK, as_version=4)


# -- a real nbgrader -----------------------------------------------------------------------


def _nbgrader(course: Path, *args: str) -> str:
    pytest.importorskip("nbgrader")
    env = {key: value for key, value in os.environ.items() if key != "MAIL_LABS_GRADING"}
    # nbgrader runs its database migrations with the `alembic` command of its environment.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=NBGRADER_TIMEOUT)
    assert done.returncode == 0, f"nbgrader {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course with the lab as its one assignment, released (generate_assignment)."""
    course = tmp_path_factory.mktemp("course")
    shutil.copy(CONFIG, course / "nbgrader_config.py")
    source = course / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    shutil.copy(NOTEBOOK, source / NOTEBOOK.name)
    _nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    return course


def _released(course: Path) -> nbformat.NotebookNode:
    return nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK.name, as_version=4)


def test_the_released_lab_has_no_solutions(course: Path) -> None:
    source = nbformat.read(NOTEBOOK, as_version=4)
    released = _released(course)
    answers = [c.source for c in source.cells if grading.BEGIN in c.source]
    stubs = [c.source for c in released.cells
             if c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    assert len(stubs) == len(answers) == 3
    for answer, stub in zip(answers, stubs, strict=True):
        solution = answer.split(grading.BEGIN)[1].split(grading.END)[0].strip()
        assert solution and solution not in stub
        assert 'raise NotImplementedError("your answer here")' in stub
    text = nbformat.writes(released)
    assert grading.BEGIN not in text and grading.END not in text
    checks = [c.source for c in released.cells if "checks.check_" in c.source]
    assert checks == [c.source for c in source.cells if "checks.check_" in c.source]


def _submit(course: Path, student: str, nb: nbformat.NotebookNode) -> None:
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / NOTEBOOK.name)


def test_answers_score_full_marks_and_answers_not_given_nothing(course: Path) -> None:
    from nbgrader.api import Gradebook

    answered = _released(course)
    solutions = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells
                 if grading.BEGIN in c.source]
    stubs = [c for c in answered.cells if c.metadata.get("nbgrader", {}).get("solution")]
    for cell, solution in zip(stubs, solutions, strict=True):
        cell.source = solution  # the student's answers: the solutions themselves
    _submit(course, "ana", answered)
    _submit(course, "ben", _released(course))  # handed in as released
    _nbgrader(course, "autograde", ASSIGNMENT, "--create", "--force")

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {student: gradebook.find_submission(ASSIGNMENT, student)
                  for student in ("ana", "ben")}
        assert scores["ana"].max_score == 3
        assert scores["ana"].score == 3, "the solutions did not score full marks"
        assert scores["ben"].score == 0, "answers not given scored"
    graded = nbformat.read(course / "autograded" / "ben" / ASSIGNMENT / NOTEBOOK.name,
                           as_version=4)
    said = [out.get("evalue", "") for c in graded.cells if "checks.check_" in c.source
            for out in c.outputs if out.output_type == "error"]
    assert len(said) == 3 and all("not answered yet" in s for s in said), said
