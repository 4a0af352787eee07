"""End to end in a real browser: JupyterLab runs notebook 01 in headless Chromium.

Starts JupyterLab on 127.0.0.1 (a free port, a random token, no browser of its own)
in a temporary folder holding copies of ``notebooks/01-dns-mx.ipynb`` and
``notebooks/08-troubleshooting.ipynb``, opens each in Debian's Chromium driven by
Playwright, runs all cells, and checks that every code cell ran, that no cell shows an
error, and that the ipywidgets explorers render and react to a change (01: the MX
explorer; 08: the reply decoder and the provider explorer). Screenshots are saved as
``build/browser-01-dns-mx.png`` and ``build/browser-08-troubleshooting.png``.

Playwright drives the system's ``/usr/bin/chromium`` (``.ci/run`` installs it);
``playwright install`` is never needed. The test is skipped, with the reason, only
when that browser or the ``playwright`` package is missing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01-dns-mx.ipynb"
SCREENSHOT = ROOT / "build" / "browser-01-dns-mx.png"
# The troubleshooting lab's two explorers (the reply decoder, the provider settings).
NOTEBOOK_08 = ROOT / "notebooks" / "08-troubleshooting.ipynb"
SCREENSHOT_08 = ROOT / "build" / "browser-08-troubleshooting.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

SERVER_START_TIMEOUT = 90  # s until JupyterLab answers /api/status
RUN_ALL_TIMEOUT = 180  # s for every cell of notebook 01 to run (about 10 s here)
UI_TIMEOUT_MS = 60_000  # ms for the page, the kernel and the widget to appear

# Chromium is a heavy neighbour: keep this file in one xdist worker of its own
# (it is one file, so --dist loadfile already does; the group says so for loadgroup).
pytestmark = [pytest.mark.xdist_group("browser")]

if not CHROMIUM.exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package "
        "(.ci/run does, as root) to run the browser test",
        allow_module_level=True,
    )
try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(
        f"the playwright Python package cannot be imported ({exc}); "
        "install the test extra: pip install -e '.[test]'",
        allow_module_level=True,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_settings(settings_dir: Path) -> None:
    """User settings for this server only: every cell in the DOM, no news fetching."""
    notebook = settings_dir / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True)
    # Without windowing, cells scrolled out of view stay in the page, so their
    # prompts and outputs can be checked.
    (notebook / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}), encoding="utf-8"
    )
    apputils = settings_dir / "@jupyterlab" / "apputils-extension"
    apputils.mkdir(parents=True)
    (apputils / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}), encoding="utf-8"
    )


class Lab:
    def __init__(self, proc: subprocess.Popen[str], port: int, token: str, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.token = token
        self.log = log

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def api(self, path: str, method: str = "GET") -> int:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            headers={"Authorization": f"token {self.token}"},
            data=b"" if method == "POST" else None,
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    root = tmp_path / "notebooks"
    root.mkdir()
    for notebook in (NOTEBOOK, NOTEBOOK_08):
        shutil.copy2(notebook, root / notebook.name)
    settings = tmp_path / "user-settings"
    _write_settings(settings)
    runtime = tmp_path / "runtime"
    runtime.mkdir()

    env = dict(os.environ)
    env["MAIL_LABS_HOME"] = str(tmp_path / "mail-labs-home")
    env["JUPYTER_RUNTIME_DIR"] = str(runtime)
    env.pop("JUPYTER_TOKEN", None)

    port = _free_port()
    token = secrets.token_hex(24)
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        # window.jupyterapp: the test waits on the kernel and runs commands through it.
        "--LabApp.expose_app_in_browser=True",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")

    log = tmp_path / "jupyter-lab.log"
    with log.open("w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True,
        )
    server = Lab(proc, port, token, log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"jupyter lab exited with status {proc.returncode}:\n{server.log_tail()}"
                )
            try:
                if server.api("/api/status") == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"jupyter lab did not answer within {SERVER_START_TIMEOUT} s:\n"
                    f"{server.log_tail()}"
                )
            time.sleep(0.25)
        yield server
    finally:
        _shut_down(server)


def _shut_down(server: Lab) -> None:
    """Ask the server to stop (it shuts its kernels down); kill it only if it hangs."""
    proc = server.proc
    if proc.poll() is None:
        try:
            server.api("/api/shutdown", method="POST")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# True once every code cell shows "[n]:" (not "[ ]:" before running, "[*]:" while queued).
ALL_CELLS_RAN_JS = """
() => {
  const prompts = [...document.querySelectorAll(
      '.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')];
  return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
}
"""

PROMPTS_JS = """
() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')]
        .map(p => p.textContent.trim())
"""


# True once the notebook in the main area has a connected kernel that is idle:
# the execution indicator can say "idle" before the kernel exists, and a Run All
# given then runs nothing.
KERNEL_READY_JS = """
() => {
  const app = window.jupyterapp;
  const widget = app && app.shell.currentWidget;
  const session = widget && widget.sessionContext;
  const kernel = session && session.session && session.session.kernel;
  return !!kernel && session.isReady && kernel.connectionStatus === 'connected'
      && kernel.status === 'idle';
}
"""

# Some prompt shows "[*]:" or "[n]:": the Run All was taken.
ANY_CELL_STARTED_JS = """
() => [...document.querySelectorAll(
    '.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')]
  .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))
"""


def _run_all_cells(page: Page) -> None:
    """Run All Cells through JupyterLab's command registry, once the kernel is ready.

    The command acts on the current notebook; it is given again (at most three
    times) if no cell has started within 10 s, so a click lost to a slow start
    cannot fail the test.
    """
    page.wait_for_function(KERNEL_READY_JS, timeout=UI_TIMEOUT_MS)
    for _attempt in range(3):
        page.evaluate(
            "() => window.jupyterapp.commands.execute('notebook:run-all-cells')"
        )
        try:
            page.wait_for_function(ANY_CELL_STARTED_JS, timeout=10_000)
            return
        except Exception:
            continue
    pytest.fail("JupyterLab did not start running the notebook after three Run All commands")


def _error_outputs(page: Page) -> list[str]:
    stderr = page.locator(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    )
    return [
        text for text in stderr.all_inner_texts()
        if "Traceback" in text or "Error" in text
    ]


def _browser(pw: Any) -> Any:
    return pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def _new_page(browser: Any, console: list[str]) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda exc: console.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: console.append(f"console {msg.type}: {msg.text}")
        if msg.type == "error" else None,
    )
    page.set_default_timeout(UI_TIMEOUT_MS)
    return page


def _open_and_run_all(page: Page, lab: Lab, notebook: Path, screenshot: Path,
                      console: list[str]) -> None:
    """Open ``notebook`` in JupyterLab, run all its cells, and fail with what the page
    shows unless every code cell ran without an error output."""
    code_cells = sum(
        cell["cell_type"] == "code"
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    )
    page.goto(f"{lab.base}/lab/tree/{notebook.name}?reset&token={lab.token}")

    # The notebook is open and its kernel is up.
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(state="visible")
    idle = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
    idle.first.wait_for(state="attached")
    # Cells are rendered in batches; with windowing off all of them end up in the page.
    page.wait_for_function(
        "n => document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell').length === n",
        arg=code_cells,
    )

    _run_all_cells(page)
    try:
        page.wait_for_function(ALL_CELLS_RAN_JS, timeout=RUN_ALL_TIMEOUT * 1000)
        idle.first.wait_for(state="attached", timeout=UI_TIMEOUT_MS)
    except Exception:
        screenshot.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(screenshot))
        pytest.fail(
            f"not every cell of {notebook.name} ran within {RUN_ALL_TIMEOUT} s; prompts: "
            f"{page.evaluate(PROMPTS_JS)}\nerrors: {_error_outputs(page)}\n"
            f"jupyter lab log:\n{lab.log_tail()}\n" + "\n".join(console[-20:])
        )

    errors = _error_outputs(page)
    assert not errors, "cells show errors:\n\n" + "\n\n---\n\n".join(errors)


def test_notebook_01_runs_in_chromium(lab: Lab) -> None:
    console: list[str] = []
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = _new_page(browser, console)
            _open_and_run_all(page, lab, NOTEBOOK, SCREENSHOT, console)

            # The MX explorer renders ...
            # ipywidgets 8 draws a Combobox as a text input with a <datalist> of options.
            combobox = page.locator(
                ".jp-OutputArea-output .jupyter-widgets.widget-text input.widget-input[list], "
                ".jp-OutputArea-output .widget-combobox input"
            ).first
            expect(combobox).to_be_visible()
            expect(combobox).to_have_value("northwind.test")
            explorer = page.locator(
                ".jp-OutputArea-output .widget-vbox",
                has=page.locator("input.widget-input[list], .widget-combobox input"),
            ).first
            shown = explorer.locator(".widget-output").first
            expect(shown).to_contain_text("mx1.northwind.test")

            # ... and reacts to a change: the kernel answers with campus.test's MX set.
            combobox.scroll_into_view_if_needed()
            combobox.fill("campus.test")
            combobox.press("Enter")
            expect(shown).to_contain_text("campus.test")
            expect(shown).to_contain_text("mx-a.campus.test")
            expect(shown).not_to_contain_text("mx1.northwind.test")

            errors = _error_outputs(page)
            assert not errors, "the widget change caused errors:\n\n" + "\n\n".join(errors)

            SCREENSHOT.parent.mkdir(exist_ok=True)
            explorer.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOT))
            page.close()
        finally:
            browser.close()

    assert SCREENSHOT.stat().st_size > 10_000, "the screenshot is (nearly) empty"


def test_notebook_08_explorers_work_in_chromium(lab: Lab) -> None:
    """The troubleshooting lab runs, and its two explorers answer in the browser: the
    reply decoder decodes what is typed, the provider explorer shows the chosen provider."""
    console: list[str] = []
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = _new_page(browser, console)
            _open_and_run_all(page, lab, NOTEBOOK_08, SCREENSHOT_08, console)

            # The reply decoder: a text area; typing a reply and leaving the box decodes it.
            decoder = page.locator(".jp-OutputArea-output .widget-vbox",
                                   has=page.locator("textarea")).first
            box = decoder.locator("textarea").first
            expect(decoder).to_contain_text("Decoded reply: 550 5.7.1")
            box.scroll_into_view_if_needed()
            box.fill("451 4.7.1 Greylisted, try again later")
            box.press("Tab")  # continuous_update is off: the value is sent on blur
            expect(decoder).to_contain_text("Decoded reply: 451 4.7.1")
            expect(decoder).to_contain_text("retry later", ignore_case=True)

            # The provider explorer: choosing another provider shows its host.
            explorer = page.locator(".jp-OutputArea-output .widget-vbox",
                                    has=page.get_by_text("Try a pair:")).first
            provider = explorer.locator("select").first
            provider.scroll_into_view_if_needed()
            expect(explorer).to_contain_text("smtp.gmail.com")
            provider.select_option("Fastmail")
            expect(explorer).to_contain_text("smtp.fastmail.com")
            expect(explorer).not_to_contain_text("smtp.gmail.com")

            errors = _error_outputs(page)
            assert not errors, "the widget changes caused errors:\n\n" + "\n\n".join(errors)
            SCREENSHOT_08.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT_08))
            page.close()
        finally:
            browser.close()
