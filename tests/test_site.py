"""The static site (scripts/site.py), built from one small notebook: the page has the
title and executed outputs, and the contents page links it."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from lab_helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
START = ROOT / "notebooks" / "00-start-here.ipynb"


site = load_script(ROOT / "scripts" / "site.py", "course_site")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    written = site.build(out, [START])
    assert sorted(p.name for p in written) == ["00-start-here.html", "index.html"]
    return out


def test_page_has_the_title_and_executed_outputs(built: Path) -> None:
    title = site.title_of(nbformat.read(START, as_version=4), START)
    page = (built / "00-start-here.html").read_text(encoding="utf-8")
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
