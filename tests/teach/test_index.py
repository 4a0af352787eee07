"""The labsupport package itself: what `import labsupport` brings and costs, and the
index of names to lessons (labsupport/__init__.py, labsupport/teach/index.py)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest
from lab_helpers import PROCESS_TIMEOUT, ROOT, cli_env

import labsupport
from labsupport.teach.index import LESSONS, where_taught

HEAVY = ("matplotlib", "ipywidgets", "scapy")


def imported_after(code: str, tmp_path) -> dict:
    """Run ``code`` after ``import labsupport`` in a fresh interpreter; it sets ``out``."""
    program = (
        "import json, sys\n"
        "import labsupport\n"
        "out = {'file': labsupport.__file__}\n"
        f"{code}\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=cli_env(tmp_path),
                          capture_output=True, text=True, timeout=PROCESS_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_import_labsupport_does_not_import_heavy_packages(tmp_path) -> None:
    out = imported_after(f"out['heavy'] = [m for m in {HEAVY!r} if m in sys.modules]", tmp_path)
    assert out["file"] == str(ROOT / "labsupport" / "__init__.py")
    assert out["heavy"] == []


def test_lazy_modules_load_on_first_use(tmp_path) -> None:
    out = imported_after(
        "out['plots'] = labsupport.teach.plots.__name__\n"
        "out['widgets'] = labsupport.teach.widgets.__name__\n"
        f"out['heavy'] = [m for m in {HEAVY!r} if m in sys.modules]", tmp_path)
    assert (out["plots"], out["widgets"]) == ("labsupport.teach.plots", "labsupport.teach.widgets")
    assert out["heavy"] == []  # matplotlib and ipywidgets wait until a picture is drawn


@pytest.mark.parametrize("name", sorted(LESSONS))
def test_every_indexed_name_exists(name: str) -> None:
    assert functools.reduce(getattr, name.split("."), labsupport) is not None
    assert LESSONS[name].endswith(".ipynb")
    assert (ROOT / "notebooks" / LESSONS[name]).exists(), LESSONS[name]


def test_where_taught() -> None:
    assert where_taught("mx_hosts") == "01-dns-mx.ipynb"
    assert labsupport.where_taught("start") == "00-start-here.ipynb"
    with pytest.raises(KeyError, match="'nothing' is not in the index; known: "):
        where_taught("nothing")


def test_all_names_are_exported() -> None:
    missing = [n for n in labsupport.__all__ if not hasattr(labsupport, n)]
    assert missing == []


def test_unknown_attributes_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'no_such_part'"):
        labsupport.no_such_part  # noqa: B018
