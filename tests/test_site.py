"""The static site (scripts/site.py), built from two small notebooks: each page has the
title and executed outputs, the contents page links it, the explorers' widgets come with
their saved state and a renderer of the site's own, and no page loads anything from the
network; in Chromium (where Debian's is installed) the saved widget draws as it was."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from lab_helpers import ROOT, cli_env, load_script

START = ROOT / "notebooks" / "00-start-here.ipynb"
DNS = ROOT / "notebooks" / "01-dns-mx.ipynb"  # one explorer: mx_explorer
CHROMIUM = Path("/usr/bin/chromium")
UI_TIMEOUT_MS = 30_000

site = load_script(ROOT / "scripts" / "site.py", "course_site")

#: What would make a reader's browser fetch from the network: a script or style sheet
#: from an address, or a module imported from one.
_REMOTE = re.compile(r'<(?:script|link)[^>]*(?:src|href)="(?:https?:)?//|import\("https?://')


#: Seconds the two-notebook build may take (it takes about 10).
BUILD_TIMEOUT = 240


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site of two notebooks, built as `make site` builds it: in a process of its
    own (with a lab home of its own), not inside this test worker, whose session lab,
    event loops and earlier tests the notebooks' kernels should not share."""
    out = tmp_path_factory.mktemp("site")
    home = tmp_path_factory.mktemp("site-home")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "site.py"), "--out",
                           str(out), str(START), str(DNS)], cwd=ROOT, env=cli_env(home),
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"wrote 3 pages to {out}" in done.stdout
    assert sorted(p.name for p in out.glob("*.html")) == ["00-start-here.html",
                                                          "01-dns-mx.html", "index.html"]
    return out


def _page(built: Path, path: Path) -> str:
    return (built / (path.stem + ".html")).read_text(encoding="utf-8")


def test_page_has_the_title_and_executed_outputs(built: Path) -> None:
    title = site.title_of(nbformat.read(START, as_version=4), START)
    page = _page(built, START)
    assert f"<title>{title}</title>" in page
    assert "✔" in page, "no executed claim line in the page"
    assert "Traceback" not in page
    # Links to other notebooks point at their pages.
    assert 'href="01-dns-mx.html' in page and 'href="01-dns-mx.ipynb' not in page


def test_index_links_the_page(built: Path) -> None:
    title = site.title_of(nbformat.read(START, as_version=4), START)
    index = (built / "index.html").read_text(encoding="utf-8")
    assert f'<a href="00-start-here.html">{site.html.escape(title)}</a>' in index


def test_index_page_escapes_titles() -> None:
    page = site.index_page([("a.html", "SMTP <and> TLS")])
    assert '<a href="a.html">SMTP &lt;and&gt; TLS</a>' in page


def test_widgets_come_with_their_saved_state_and_the_sites_renderer(built: Path) -> None:
    page = _page(built, DNS)
    state = re.search(r'<script type="application/vnd\.jupyter\.widget-state\+json">'
                      r"(.*?)</script>", page, re.S)
    assert state and '"_model_name": "ComboboxModel"' in state.group(1).replace("&quot;", '"')
    assert '"value": "northwind.test"' in state.group(1).replace("&quot;", '"')
    assert page.count('type="application/vnd.jupyter.widget-view+json"') >= 1
    assert f"widgetRendererSrc = '{site.WIDGET_RENDERER}'" in page
    assert page.count(site.SAVED_WIDGETS_NOTE) == 1
    renderer = built / site.WIDGET_RENDERER
    assert renderer.read_bytes() == (site.HTML_MANAGER / "embed.js").read_bytes()
    # A page without widgets carries neither the renderer nor the note.
    start = _page(built, START)
    assert "widgetRendererSrc" not in start and site.SAVED_WIDGETS_NOTE not in start


def test_no_page_loads_anything_from_the_network(built: Path) -> None:
    for page in sorted(built.glob("*.html")):
        text = page.read_text(encoding="utf-8")
        found = _REMOTE.findall(text)
        assert not found, f"{page.name} loads from the network: {found[:3]}"
        assert not re.search(r"unpkg\.com|cdnjs\.|jsdelivr", text), page.name


def test_the_remote_pattern_finds_what_it_should() -> None:
    assert _REMOTE.search('<script src="https://unpkg.com/x.js"></script>')
    assert _REMOTE.search('<link rel="stylesheet" href="//cdn.example/x.css">')
    assert _REMOTE.search('await import("https://cdn.example/m.mjs")')
    assert not _REMOTE.search('<a href="https://www.rfc-editor.org/rfc/rfc5321">RFC</a>')
    assert not _REMOTE.search('<script src="_static/embed.js"></script>')


def test_the_saved_widget_draws_in_chromium(built: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package "
                    "(.ci/run does) to draw the saved widgets")
    sync_api = pytest.importorskip("playwright.sync_api")
    fetched: list[str] = []
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.on("request", lambda request: fetched.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto((built / "01-dns-mx.html").as_uri())
            domain = page.locator(".jupyter-widgets .widget-text input").first
            domain.wait_for(timeout=UI_TIMEOUT_MS)
            assert domain.input_value() == "northwind.test"
            assert page.locator(".jupyter-widgets button", has_text="pick again").count() == 1
            # The Output widget's saved content: the MX set the cell showed.
            shown = page.locator(".jupyter-widgets", has_text="Mail for northwind.test")
            assert shown.count() >= 1
        finally:
            browser.close()
    assert not errors, errors
    remote = [url for url in fetched if not url.startswith(("file:", "data:"))]
    assert not remote, f"the page fetched from the network: {remote}"
