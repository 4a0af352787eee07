"""The other half of the student editions, run end to end (see tests/test_student.py, which
runs the first half and holds the helpers), and the capstone as a student who skips a step
leaves it: the steps build on each other, so every later check names the missing step in
words and every later cell still runs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from test_student import (
    NOTEBOOKS,
    ROOT,
    assert_runs_unanswered,
    errors_of,
    execute,
    stdout_of,
    student,
)

EXECUTED = NOTEBOOKS[1::2]
CAPSTONE = ROOT / "notebooks" / "07-capstone-secure-a-domain.ipynb"
SKIPPED = "spf"


@pytest.fixture(scope="module")
def edition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("student-run")
    written = student.build(out, EXECUTED)
    assert [p.name for p in written] == [p.name for p in EXECUTED]
    return out


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.name)
def test_checks_say_not_answered_yet(edition: Path, path: Path) -> None:
    nb = execute(nbformat.read(edition / path.name, as_version=4))
    assert_runs_unanswered(nb, path.name)


def _is_step_check(source: str, step: str) -> bool:
    return "checks.check_secure_step(" in source and f'"{step}", DOMAIN' in source


def test_capstone_with_one_step_skipped() -> None:
    nb = nbformat.read(CAPSTONE, as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    checks_at = [i for i in code if "checks.check_" in nb.cells[i].source]
    skipped_check = next(i for i in checks_at if _is_step_check(nb.cells[i].source, SKIPPED))
    answer = nb.cells[skipped_check - 1]
    assert student.BEGIN in answer.source
    answer.source = student.strip_solutions(answer.source)
    execute(nb)

    failed = {i: errors_of(nb.cells[i]) for i in code if errors_of(nb.cells[i])}
    assert failed == {skipped_check - 1: ["NotImplementedError"]}, failed
    assert "not answered yet" in stdout_of(nb.cells[skipped_check])
    def claims_after(i: int) -> int:  # the next cell that claims (a picture may come first)
        return next(j for j in code if j > i and "claim" in nb.cells[j].source)

    earlier = [i for i in checks_at if i < skipped_check]
    later = [i for i in checks_at if i > skipped_check]
    assert earlier and later, "the skipped step should sit between other steps"
    for i in earlier:  # done, and the claims after it hold
        assert stdout_of(nb.cells[i]).startswith("✔"), stdout_of(nb.cells[i])
        claims = stdout_of(nb.cells[claims_after(i)])
        assert claims.startswith("✔"), claims
    for i in later:  # each later check, the subdomain exercise too, names the missing step
        said = stdout_of(nb.cells[i])
        assert "not answered yet" in said and f"step '{SKIPPED}' above is not done" in said, (
            f"cell {i} printed {said!r}")
        if "check_secure_step" in nb.cells[i].source:  # its claims wait, and say so
            assert "Skipped until the steps above are done" in stdout_of(
                nb.cells[claims_after(i)])
