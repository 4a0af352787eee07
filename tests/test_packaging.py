"""Packaging and CI consistency checks.

pyproject.toml, environment.yml and constraints.txt must name the same
dependencies; notebooks must be committed clean; `.ci/run` must run
`make test`, and `make test` must fail when pytest collects no tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
ENVIRONMENT = ROOT / "environment.yml"
CONSTRAINTS = ROOT / "constraints.txt"
CI_RUN = ROOT / ".ci" / "run"
MAKEFILE = ROOT / "Makefile"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Conda-only entries of environment.yml that have no pyproject counterpart.
CONDA_ONLY = {"python", "pip"}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def normalise(requirement: str) -> str:
    """Package name of a pip/conda requirement: lowercase, '_' and '.' -> '-',
    without extras, version specifiers, markers or a conda channel prefix."""
    spec = requirement.strip().split("::")[-1]
    match = _NAME.match(spec)
    assert match, f"cannot read a package name from {requirement!r}"
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def pyproject_deps() -> tuple[set[str], set[str]]:
    """(runtime, test) dependency names from pyproject.toml."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    runtime = {normalise(r) for r in project["dependencies"]}
    test = {normalise(r) for r in project["optional-dependencies"]["test"]}
    return runtime, test


def environment_deps() -> tuple[set[str], list[str]]:
    """(conda and pip package names, raw pip entries) from environment.yml."""
    env = yaml.safe_load(ENVIRONMENT.read_text(encoding="utf-8"))
    names: set[str] = set()
    pip_entries: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_entries.extend(str(p).strip() for p in dep.get("pip", []))
        else:
            names.add(normalise(str(dep)))
    for entry in pip_entries:
        if entry.startswith("-e") or entry.startswith("--editable"):
            continue  # the project itself, in development mode
        names.add(normalise(entry))
    return names - CONDA_ONLY, pip_entries


def _difference_message(what: str, pyproject: set[str], env: set[str]) -> str:
    return (
        f"{what} differ between pyproject.toml and environment.yml:\n"
        f"  missing from environment.yml: {sorted(pyproject - env) or 'nothing'}\n"
        f"  missing from pyproject.toml:  {sorted(env - pyproject) or 'nothing'}"
    )


def test_environment_yml_matches_pyproject() -> None:
    runtime, test = pyproject_deps()
    env_names, pip_entries = environment_deps()
    env = yaml.safe_load(ENVIRONMENT.read_text(encoding="utf-8"))

    assert env["name"] == "mail-labs"
    assert "conda-forge" in env["channels"]
    assert any(
        re.fullmatch(r"(-e|--editable)\s+\.", e) for e in pip_entries
    ), f"environment.yml's pip section must install the project with '-e .', has {pip_entries}"

    env_test = env_names & test
    env_runtime = env_names - test
    assert env_runtime == runtime, _difference_message("runtime dependencies", runtime, env_runtime)
    assert env_test == test, _difference_message("test tools ('test' extra)", test, env_test)


def test_constraints_pin_every_dependency() -> None:
    runtime, test = pyproject_deps()
    pins: dict[str, str] = {}
    for raw in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-e"), f"editable entry in constraints.txt: {raw!r}"
        name, sep, version = line.partition("==")
        assert sep and version.strip(), f"constraints.txt line is not 'name==version': {raw!r}"
        pins[normalise(name)] = version.strip()

    unpinned = sorted((runtime | test) - pins.keys())
    assert not unpinned, (
        f"not pinned in constraints.txt: {unpinned}; regenerate it with 'make constraints'"
    )
    tooling = sorted({"pip", "setuptools", "wheel"} & pins.keys())
    assert not tooling, f"constraints.txt must not pin {tooling}"


@pytest.mark.parametrize(
    "notebook",
    NOTEBOOKS or [None],
    ids=[nb.name for nb in NOTEBOOKS] or ["no-notebooks"],
)
def test_notebook_committed_clean(notebook: Path | None) -> None:
    if notebook is None:
        pytest.skip("no notebooks/*.ipynb yet")
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    problems = []
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"kernelspec name is {kernel!r}, not 'python3'")
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(
                f"cell {index} (id {cell.get('id')}) has {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(
                f"cell {index} (id {cell.get('id')}) has execution_count "
                f"{cell['execution_count']}"
            )
    assert not problems, f"{notebook.relative_to(ROOT)} is not cleared:\n  " + "\n  ".join(problems)


def test_ci_run_is_executable_and_runs_make_test() -> None:
    mode = CI_RUN.stat().st_mode
    assert mode & stat.S_IXUSR, f".ci/run is not executable (mode {stat.filemode(mode)})"
    lines = [ln.split("#", 1)[0] for ln in CI_RUN.read_text(encoding="utf-8").splitlines()]
    assert any(re.search(r"^\s*(exec\s+)?make(\s+\S+)*\s+test\b", ln) for ln in lines), (
        ".ci/run does not call 'make test'"
    )


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    # Don't inherit the jobserver/flags of an enclosing `make test`.
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    return subprocess.run(
        ["make", "-s", "-C", str(ROOT), *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )


def test_pytest_exit_5_fails_make() -> None:
    result = _make("_pytest_status", "STATUS=5")
    assert result.returncode != 0, "pytest exit 5 (no tests collected) must fail make"
    assert "pytest collected no tests" in result.stderr + result.stdout


@pytest.mark.parametrize("status, fails", [(0, False), (1, True), (2, True)])
def test_other_pytest_statuses_pass_through(status: int, fails: bool) -> None:
    result = _make("_pytest_status", f"STATUS={status}")
    assert (result.returncode != 0) is fails, result.stderr
    assert "collected no tests" not in result.stderr + result.stdout


@pytest.mark.parametrize("target", ["test", "unit"])
def test_pytest_targets_use_exit_status_check(target: str) -> None:
    # -n only prints the recipes (of the target and of an outdated bootstrap).
    result = _make("-n", target)
    assert result.returncode == 0, result.stderr
    assert "-m pytest" in result.stdout, f"'make {target}' does not run pytest"
    assert "pytest collected no tests" in result.stdout, (
        f"'make {target}' does not check for pytest exit status 5"
    )


def test_deprecation_warnings_are_not_errors() -> None:
    ini = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    offending = []
    for spec in ini.get("filterwarnings", []):
        action, _, rest = spec.partition(":")
        category = (rest.split(":") + ["", ""])[1].strip()  # action:message:category:...
        if action.strip() == "error" and category.rsplit(".", 1)[-1] in (
            "", "Warning", "DeprecationWarning"
        ):
            offending.append(spec)
    assert not offending, f"pyproject.toml turns DeprecationWarning into errors: {offending}"


@pytest.mark.parametrize("script", sorted((ROOT / "benchmarks").glob("*.py")),
                         ids=lambda p: p.name)
def test_benchmark_scripts_import(script: Path) -> None:
    """A benchmark that no longer finds what it measures (a moved test module, a renamed
    function) fails here, not on the day someone runs ``make bench``."""
    code = (f"import sys; sys.path.insert(0, {str(script.parent)!r}); "
            f"sys.argv = ['x']; import {script.stem}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
