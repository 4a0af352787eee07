"""Settings for every test run, unit tests and notebooks alike.

Labs started during a test run (in the test process or in notebook kernels, which
inherit this environment) keep their state in a temporary folder, never in the user's
own lab state, and each pytest worker has its own.
"""

import os
import tempfile

if "MAIL_LABS_HOME" not in os.environ or os.environ.get("MAIL_LABS_TEST_HOME_SET") != "1":
    os.environ["MAIL_LABS_HOME"] = tempfile.mkdtemp(prefix="mail-labs-test-")
    os.environ["MAIL_LABS_TEST_HOME_SET"] = "1"


# -- every numbered lab shows pictures ---------------------------------------------------
#
# The nbval run already executes every notebook cell by cell; after the last cell of each
# numbered notebook one more item counts the pictures (image/png or image/svg+xml outputs)
# the cells drew. It runs on the same worker as the cells (``--dist loadfile`` keeps a
# file's items together and in order).

import re  # noqa: E402

import pytest  # noqa: E402

#: The fewest pictures a numbered lab draws when executed.
MIN_PICTURES = 2
PICTURE_TYPES = ("image/png", "image/svg+xml")
NUMBERED = re.compile(r"\A\d\d-.*\.ipynb\Z")


def pictures_in(outputs: list[dict]) -> int:
    """How many of a cell's outputs are pictures."""
    return sum(1 for out in outputs if any(kind in out.get("data", {}) for kind in PICTURE_TYPES))


class TooFewPictures(Exception):
    """A numbered notebook drew fewer than MIN_PICTURES pictures."""


class NotebookPictures(pytest.Item):
    """Did the cells of one notebook, all run in this session, draw enough pictures?"""

    def __init__(self, *, cells: list[pytest.Item], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.cells = cells

    def runtest(self) -> None:
        ran = [cell for cell in self.cells if getattr(cell, "test_outputs", None) is not None]
        # Counted from the notebook itself: ``-k`` or ``--deselect`` may have left some out.
        code_cells = sum(1 for cell in self.parent.nb.cells  # type: ignore[union-attr]
                         if cell.cell_type == "code")
        if len(ran) < code_cells:
            pytest.skip(f"only {len(ran)} of {code_cells} code cells ran in this session")
        count = sum(pictures_in(cell.test_outputs) for cell in ran)  # type: ignore[attr-defined]
        if count < MIN_PICTURES:
            raise TooFewPictures(f"{self.path.name} drew {count} picture(s) when executed; "
                                 f"every numbered lab shows at least {MIN_PICTURES}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: object = None) -> str:
        if isinstance(excinfo.value, TooFewPictures):
            return str(excinfo.value)
        return super().repr_failure(excinfo)  # type: ignore[return-value]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    by_notebook: dict[pytest.Collector, list[pytest.Item]] = {}
    for item in items:
        parent = item.parent
        if type(item).__name__ == "IPyNbCell" and parent is not None \
                and NUMBERED.match(parent.path.name):
            by_notebook.setdefault(parent, []).append(item)
    for notebook, cells in by_notebook.items():
        check = NotebookPictures.from_parent(notebook, name="pictures", cells=cells)
        items.insert(items.index(cells[-1]) + 1, check)
