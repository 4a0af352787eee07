"""The picture count run after each numbered notebook under nbval (conftest.py at the
project root): it fails a lab that draws too few pictures, passes one that draws enough,
and leaves other notebooks alone."""

from __future__ import annotations

import nbformat
import pytest
from lab_helpers import ROOT

pytest_plugins = ["pytester"]

SVG = ("from IPython.display import SVG, display\n"
       "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"/>'))")


def _notebook(pictures: int) -> str:
    cells = [nbformat.v4.new_code_cell("print('no picture here')")]
    cells += [nbformat.v4.new_code_cell(SVG) for _ in range(pictures)]
    return nbformat.writes(nbformat.v4.new_notebook(cells=cells))


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest((ROOT / "conftest.py").read_text(encoding="utf-8"))
    (pytester.path / "01-one.ipynb").write_text(_notebook(1), encoding="utf-8")
    (pytester.path / "02-two.ipynb").write_text(_notebook(2), encoding="utf-8")
    (pytester.path / "scratch.ipynb").write_text(_notebook(0), encoding="utf-8")
    return pytester


def test_a_lab_with_too_few_pictures_fails_and_one_with_enough_passes(
        project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--nbval-lax", "--nbval-current-env", "-v")
    result.stdout.fnmatch_lines([
        "*01-one.ipynb::pictures FAILED*",
        "*02-two.ipynb::pictures PASSED*",
        "*01-one.ipynb drew 1 picture(s) when executed; every numbered lab shows at least 2*",
    ])
    assert "scratch.ipynb::pictures" not in result.stdout.str()
    result.assert_outcomes(passed=7, failed=1)


def test_the_count_is_skipped_when_not_every_cell_ran(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("--nbval-lax", "--nbval-current-env", "-rs",
                                          "02-two.ipynb", "--deselect", "02-two.ipynb::Cell 1")
    result.stdout.fnmatch_lines(["*only 2 of 3 code cells ran in this session*"])
    result.assert_outcomes(passed=2, skipped=1, deselected=1)
